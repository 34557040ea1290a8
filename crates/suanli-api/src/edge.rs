//! Limits at the edge, before a request reaches a handler: how many connections are open, how
//! long a client may take to send its headers and its body, how many bodies are read at once,
//! and a full writer queue answered before a body is read or verified.
//!
//! A slow or stalled client is dropped instead of holding a connection, and memory for bodies in
//! flight is bounded by `body_reads_max × BODY_BYTES_MAX`, whatever clients do.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

use crate::{ApiError, AppState, BODY_BYTES_MAX};

/// The edge's limits; [`Limits::default`] is what `serve` uses.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once; one more is closed at once.
    pub connections_max: usize,
    /// Time a client has to send a request's headers, from the first byte of the request.
    pub header_read_ms: u64,
    /// Time a client has to send a request's whole body once its headers arrived.
    pub body_read_ms: u64,
    /// Bodies being read at once; beyond this a request with a body is answered 503 at once.
    pub body_reads_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { connections_max: 1_024, header_read_ms: 10_000, body_read_ms: 10_000, body_reads_max: 64 }
    }
}

/// What the admission middleware shares across requests.
#[derive(Clone)]
pub struct Admission {
    limits: Limits,
    body_reads: Arc<Semaphore>,
}

impl Admission {
    pub fn new(limits: Limits) -> Admission {
        Admission { limits, body_reads: Arc::new(Semaphore::new(limits.body_reads_max)) }
    }
}

impl Default for Admission {
    fn default() -> Admission {
        Admission::new(Limits::default())
    }
}

/// Admits a request that carries a body: refused at once (503 `overloaded`, `Retry-After`) while
/// the writer's queue is full or too many bodies are being read; otherwise its body is read within
/// the time limit (408 `body_timeout` if not) and handed on whole.
pub async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let admission = state.admission.clone();
    if state.writer.is_full() {
        return ApiError::from(crate::writer::Refused::Overloaded).into_response();
    }
    let Ok(_permit) = admission.body_reads.clone().try_acquire_owned() else {
        return ApiError::overloaded("too many request bodies are being read; retry shortly").into_response();
    };
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, BODY_BYTES_MAX + 1);
    let bytes = match tokio::time::timeout(Duration::from_millis(admission.limits.body_read_ms), read).await {
        Ok(Ok(bytes)) => bytes,
        // Too large: the Json extractor answers 413 from the limit itself, so hand on what fits.
        Ok(Err(_)) => {
            return ApiError::body_too_large().into_response();
        }
        Err(_) => {
            return ApiError::with_status(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("body: not received within {} ms", admission.limits.body_read_ms),
            )
            .into_response();
        }
    };
    if bytes.len() > BODY_BYTES_MAX {
        return ApiError::body_too_large().into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// Serves `router` on `listener` with the edge's limits until `shutdown` resolves; then waits for
/// the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.connections_max));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_millis(limits.header_read_ms));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: wait a moment rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            drop(stream); // over the connection limit: closed at once
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service =
            TowerToHyperService::new(router.clone().layer(axum::Extension(crate::login::ClientAddress(peer.ip()))));
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
