//! Logs through `tracing`, one line per event on standard error: JSON (`timestamp` in RFC 3339,
//! `level`, `message`, the event's fields, and `span` with the request's `request_id`, method and
//! route when the event happened while answering a request) or plain text. `SUANLI_LOG` sets the
//! levels (`info` by default; `debug` adds each commit with its duration).
//!
//! The binary installs the subscriber once ([`init`], or [`configure`] for `serve`); the API's
//! middleware opens a `request` span per request, and the writer runs each job in the span of
//! the request that sent it, inside a `commit` span.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

static REQUESTS: AtomicBool = AtomicBool::new(false);

/// Installs the subscriber in `format` (the first call wins) and sets whether each request is
/// logged.
pub fn configure(format: Format, requests: bool) {
    REQUESTS.store(requests, Ordering::Relaxed);
    init(format);
}

/// Installs the process's subscriber, writing to standard error; later calls change nothing.
pub fn init(format: Format) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUANLI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        Format::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        Format::Text => builder.with_ansi(false).try_init(),
    };
}

pub fn requests_logged() -> bool {
    REQUESTS.load(Ordering::Relaxed)
}
