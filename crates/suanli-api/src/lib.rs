//! Suanli's HTTP API: JSON under `/api/v1`, `/healthz` and `/metrics`, in front of the single
//! writer.
//!
//! Requests authenticate with `Authorization: Bearer <token>`. Tokens are checked against a
//! snapshot of the live tokens that the writer refreshes, so authentication does not queue. Every
//! state change goes through the [`writer::Writer`] queue. Usage batches also carry a
//! `Suanli-Signature` header: the Ed25519 signature of the provider over the batch's canonical
//! bytes. It is verified in the handler, in parallel, before the batch is queued.
//!
//! Errors are one JSON shape, `{"error": {"code", "message"}}`, with a stable code. Bodies are
//! limited, unknown fields are refused, and no panic reaches a client (the writer answers every
//! job; a handler that cannot reach it answers 503).

pub mod console;
pub mod edge;
pub mod error;
pub mod evidence;
pub mod lifecycle;
pub mod lists;
pub mod log;
pub mod login;
pub mod lottery;
pub mod market;
pub mod metrics;
pub mod nats;
pub mod openapi;
pub mod operate;
pub mod operations;
pub mod orders;
pub mod report;
pub mod requests;
pub mod schedule;
mod scope;
mod statements;
pub mod times;
pub mod tokens;
pub mod transparency;
pub mod utilization;
pub mod writer;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use suanli_domain::{ProviderId, VoucherId};
use suanli_service::access::verify_usage;
use suanli_service::model::{UsageInput, UsageOutcome};
use suanli_service::service::USAGE_BATCH_RECORDS_MAX;
use suanli_service::{Actor, Role};
use suanli_wire::UsageResult;

pub use error::ApiError;
use metrics::Metrics;
pub use writer::Writer;

/// The largest request body accepted: a full usage batch of 4,000 records fits with room.
pub const BODY_BYTES_MAX: usize = 2 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    /// Limits on bodies in flight (see `edge`).
    pub admission: edge::Admission,
    /// Failed logins per name and address.
    pub logins: Arc<login::Throttle>,
    /// Whether the console's cookies are marked `Secure` (the server is reached over TLS).
    pub secure_cookies: bool,
}

impl AppState {
    pub fn new(writer: Writer) -> AppState {
        AppState {
            writer,
            metrics: Default::default(),
            admission: Default::default(),
            logins: Default::default(),
            secure_cookies: false,
        }
    }
}

/// The API's routes: every operation of [`operations::operations`], then the console.
pub fn router(state: AppState) -> Router {
    operations::routes()
        .merge(console::routes())
        .fallback(no_route)
        // Instants in every JSON answer as RFC 3339.
        .layer(axum::middleware::from_fn(times::layer))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge::admit))
        // Before any part of the request is read or checked: the token.
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_token))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .with_state(state)
}

async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("{method} {}: no such endpoint", uri.path()))
}

/// Every path under `/api/` needs a valid bearer token except the public routes: checked before the body is
/// read, the path parsed or the query checked, so a caller without a token learns nothing.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let public = !path.starts_with("/api/")
        || operations::operations().iter().any(|operation| operation.is_public() && operation.path == path);
    if !public && let Err(error) = authenticate(&state, request.headers()) {
        return error.into_response();
    }
    next.run(request).await
}

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    if state.writer.is_ready() {
        return "ready".into_response();
    }
    ApiError::from(suanli_service::ServiceError::new(
        suanli_service::ErrorCode::StorageUnavailable,
        "storage cannot be written now",
    ))
    .into_response()
}

pub(crate) async fn metrics_text(State(state): State<AppState>) -> Response {
    ([("content-type", "text/plain; version=0.0.4")], state.metrics.render(&state)).into_response()
}

/// The role behind the request's bearer token.
pub(crate) fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Role, ApiError> {
    // The scheme's name is case-insensitive (RFC 9110, 11.1).
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(ApiError::unauthenticated)?;
    state.writer.view().authenticate(token).ok_or_else(ApiError::unauthenticated)
}

pub(crate) async fn show_voucher(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(voucher): Path<String>,
) -> Result<Response, ApiError> {
    use lifecycle::{Grant, permit, voucher_scope};
    let role = authenticate(&state, &headers)?;
    let id = VoucherId::parse(&voucher).map_err(|e| ApiError::field("voucher", e))?;
    let view = state.writer.view();
    let (enterprise, authority) = voucher_scope(&view, id)?;
    let grants = [Grant::Admin, Grant::Auditor, Grant::Authority(authority), Grant::Enterprise(enterprise)];
    permit(role, &grants, &id.to_string())?;
    Ok(Json(view.voucher(id)?.clone()).into_response())
}

/// The batches providers send, defined once in `suanli-wire` for the server and connectors.
pub use suanli_wire::{UsageBatch, UsageRecord};

impl From<suanli_wire::FieldError> for ApiError {
    fn from(error: suanli_wire::FieldError) -> ApiError {
        ApiError::field(&error.field, error.message)
    }
}

/// A batch refused for its signature (forged, missing, or made with another key) is kept as an
/// anomaly: evidence, whichever way it came in.
pub async fn flag_bad_signature(writer: &Writer, provider: ProviderId, error: &ApiError) {
    if error.code != suanli_service::ErrorCode::SignatureInvalid.as_str() {
        return;
    }
    let Some(refused_since) = writer.signature_flag_due(provider) else { return };
    let detail = format!(
        "{} ({refused_since} batch(es) refused for their signature since the last such anomaly)",
        error.message
    );
    let _ = writer
        .call(move |s| s.flag_anomaly(&Actor::server(), "signature_invalid", &provider.to_string(), &detail))
        .await;
}

/// Checks a usage batch as it arrives, by HTTP or through NATS: 1 to 4,000 well-formed records
/// and the provider's Ed25519 signature over them. Answers the records to queue.
pub fn check_usage_batch(
    writer: &Writer,
    provider: ProviderId,
    batch: &UsageBatch,
    signature: Option<&str>,
) -> Result<Vec<UsageInput>, ApiError> {
    if batch.records.is_empty() || batch.records.len() > USAGE_BATCH_RECORDS_MAX {
        return Err(ApiError::field("records", format!("must hold 1 to {USAGE_BATCH_RECORDS_MAX} records")));
    }
    let records: Vec<UsageInput> =
        batch.records.iter().enumerate().map(|(i, r)| r.to_input(i)).collect::<Result<_, _>>()?;
    let signature = signature.ok_or_else(|| {
        ApiError::from(suanli_service::ServiceError::new(
            suanli_service::ErrorCode::SignatureInvalid,
            "signature: the Suanli-Signature header is missing",
        ))
    })?;
    let view = writer.view();
    let key = view.state().providers.get(&provider).and_then(|p| p.public_key_hex.as_deref());
    verify_usage(key, provider, &records, signature)?;
    Ok(records)
}

pub(crate) async fn post_usage(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(provider): Path<String>,
    body: Result<Json<UsageBatch>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let role = authenticate(&state, &headers)?;
    let provider = ProviderId::parse(&provider).map_err(|e| ApiError::field("provider", e))?;
    if role != Role::Provider(provider) {
        return Err(ApiError::forbidden(format!("{role} may not send usage for {provider}")));
    }
    let Json(batch) = body.map_err(ApiError::from_json)?;
    let signature = headers.get("suanli-signature").and_then(|v| v.to_str().ok());
    let records = match check_usage_batch(&state.writer, provider, &batch, signature) {
        Ok(records) => records,
        Err(error) => {
            flag_bad_signature(&state.writer, provider, &error).await;
            return Err(error);
        }
    };
    let outcomes = state.writer.usage(Actor::of(role), provider, records).await??;
    let results: Vec<UsageResult> = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            UsageOutcome::Recorded { id, cost_fen, voucher_part_fen, enterprise_part_fen } => UsageResult {
                id,
                status: "ok".into(),
                cost_fen: Some(cost_fen.fen()),
                voucher_part_fen: Some(voucher_part_fen.fen()),
                enterprise_part_fen: Some(enterprise_part_fen.fen()),
                code: None,
                message: None,
            },
            UsageOutcome::Duplicate { id, cost_fen, voucher_part_fen, enterprise_part_fen } => UsageResult {
                id,
                status: "exists".into(),
                cost_fen: Some(cost_fen.fen()),
                voucher_part_fen: Some(voucher_part_fen.fen()),
                enterprise_part_fen: Some(enterprise_part_fen.fen()),
                code: None,
                message: None,
            },
            UsageOutcome::Refused { id, code, message } => UsageResult {
                id,
                status: "error".into(),
                cost_fen: None,
                voucher_part_fen: None,
                enterprise_part_fen: None,
                code: Some(code),
                message: Some(message),
            },
        })
        .collect();
    Ok((StatusCode::OK, Json(suanli_wire::UsageAnswer { results })).into_response())
}

/// Serves the API on `listener` with the edge's default limits until `shutdown` resolves; then
/// waits for requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    edge::serve(listener, router(state), edge::Limits::default(), shutdown).await
}
