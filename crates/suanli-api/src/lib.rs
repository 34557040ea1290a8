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
mod lists;
pub mod log;
pub mod login;
pub mod lottery;
pub mod metrics;
pub mod nats;
pub mod openapi;
pub mod operate;
pub mod report;
pub mod schedule;
mod scope;
mod statements;
pub mod transparency;
pub mod utilization;
pub mod writer;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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

/// The API's routes. `ROUTES` lists them for the documentation and the authorization tests.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/login", post(login::login))
        .route("/api/openapi.json", get(openapi::document_json))
        .route("/api/docs", get(openapi::page))
        .route("/api/v1/vouchers/{voucher}", get(show_voucher))
        .route("/api/v1/providers/{provider}/usage", post(post_usage))
        .route("/api/v1/heads/latest", get(transparency::latest))
        .route("/api/v1/heads", post(transparency::publish))
        .route("/api/v1/audit/proof", get(transparency::proof))
        .merge(lifecycle::routes())
        .merge(evidence::routes())
        .merge(operate::routes())
        .merge(report::routes())
        .merge(utilization::routes())
        .merge(lottery::routes())
        .merge(console::routes())
        .fallback(no_route)
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
async fn require_token(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let public = !path.starts_with("/api/") || PUBLIC_ROUTES.iter().any(|(_, route, _)| *route == path);
    if !public && let Err(error) = authenticate(&state, request.headers()) {
        return error.into_response();
    }
    next.run(request).await
}

/// The routes that need no token: health, metrics, and logging in.
pub const PUBLIC_ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/healthz", "Liveness: answers ok while the process lives."),
    (
        "GET",
        "/readyz",
        "Readiness: 200 ready while storage takes writes; 503 storage_unavailable (with Retry-After) after a storage fault until storage is reached again.",
    ),
    ("GET", "/metrics", "Prometheus text: requests, latency, queue depth, commits, batch sizes, records applied."),
    ("POST", "/api/v1/login", "Log in with name and password (argon2); answers a bearer token for the user's role."),
    ("GET", "/api/openapi.json", "This document."),
    ("GET", "/api/docs", "A browsable page of this document."),
    (
        "GET",
        "/api/v1/heads/latest",
        "The newest signed head (log size, Merkle root, journal head, state hash, Ed25519 signature) and the platform's public key: the public record anyone may check.",
    ),
];

/// Every API route under `/api/v1` that needs a token: method, path and what it does. The
/// authorization tests walk this list, so a route added here without a case in the matrix fails
/// them; the OpenAPI document is generated from it.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/api/v1/programs", "List programmes (paged; filter by state). Any role."),
    ("POST", "/api/v1/programs", "Load a programme file {toml} as a draft. Admin."),
    ("GET", "/api/v1/programs/{program}", "One programme by id or key. Any role."),
    (
        "GET",
        "/api/v1/programs/{program}/outcome",
        "What the programme's money achieved: budget, vouchers used, partly used and unused, GPU-hours subsidized and the subsidy per GPU-hour by chip, hub and operator kind, the price cut, the domestic-chip share, who was served (kind, region, size) and how concentrated (top-10 share, Gini). Admin, auditor, the authority.",
    ),
    (
        "GET",
        "/api/v1/programs/{program}/lottery",
        "A lottery programme's rounds: the seed's SHA-256 committed before the round closed, the seed revealed, the participants with their amounts, the budget and the drawn; each drawn round redone from its seed (verified, or the problem). Admin, auditor, the authority.",
    ),
    (
        "POST",
        "/api/v1/programs/{program}/lottery/commit",
        "Commit a lottery round {seed_sha256 (hex SHA-256 of the seed's UTF-8 bytes), closes_at (RFC 3339; applications submitted before it take part)}. Admin or the authority's admin.",
    ),
    (
        "POST",
        "/api/v1/programs/{program}/lottery/draw",
        "Reveal the round's seed {seed} after it closed and draw: refused lottery_seed_mismatch unless it hashes to the commitment; those drawn are approved for what they asked while the budget lasts, the others rejected as the control group, in one commit. Admin or the authority's admin.",
    ),
    (
        "POST",
        "/api/v1/programs/preview",
        "Check a programme file {toml} as loading would, write nothing, and answer its terms and each registered enterprise's eligibility verdicts. Admin or an authority's admin.",
    ),
    (
        "POST",
        "/api/v1/programs/{program}/{action}",
        "open | close | finish | amend {toml} (a draft's terms replaced; same key and authority). Admin or the authority's admin.",
    ),
    (
        "POST",
        "/api/v1/enterprises",
        "Register an enterprise {uscc, name, region?, kind, headcount, revenue_fen, research_projects, related_parties}. Admin.",
    ),
    (
        "GET",
        "/api/v1/enterprises",
        "List enterprises (paged): every one for the admin and the auditor, itself for an enterprise. Not authorities or providers.",
    ),
    ("GET", "/api/v1/enterprises/{enterprise}", "One enterprise. Admin, auditor, the enterprise."),
    (
        "GET",
        "/api/v1/applications",
        "List applications in submission order (paged; filter by program, state), within the caller's scope.",
    ),
    (
        "POST",
        "/api/v1/applications",
        "Draft an application {enterprise, program, amount_fen, note}. Admin or the enterprise.",
    ),
    (
        "GET",
        "/api/v1/applications/{application}",
        "One application with every eligibility verdict. Admin, auditor, the authority, the enterprise.",
    ),
    (
        "POST",
        "/api/v1/applications/{application}/{action}",
        "submit | withdraw (the enterprise); approve {amount_fen, rate_bp?} (a rate at most the programme's) | reject {reason} (the authority).",
    ),
    (
        "GET",
        "/api/v1/vouchers/{voucher}",
        "One voucher with its balances. Admin, auditor, the authority, the enterprise.",
    ),
    (
        "POST",
        "/api/v1/vouchers/{voucher}/{action}",
        "suspend {reason} | reinstate | revoke {reason}. Admin or the authority's admin.",
    ),
    ("GET", "/api/v1/providers", "List providers (paged). Any role."),
    ("POST", "/api/v1/providers", "Register a provider {uscc, name, operator}. Admin."),
    ("GET", "/api/v1/sites", "List sites with their hub, region, place and verification (paged). Any role."),
    (
        "POST",
        "/api/v1/providers/{provider}/sites",
        "Add a site {name, hub, region, latitude, longitude, operator?, power_price_fen_per_kwh?, pue?}. Admin or the provider.",
    ),
    (
        "POST",
        "/api/v1/providers/{provider}/key",
        "Register the Ed25519 key {public_key_hex} usage is signed with. Admin or the provider.",
    ),
    (
        "POST",
        "/api/v1/providers/{provider}/usage",
        "A signed usage batch {records: [{id, order, gpu_seconds, period_start, period_end}]} (at most 4,000 records, 2 MiB; header Suanli-Signature). The provider.",
    ),
    (
        "POST",
        "/api/v1/providers/{provider}/utilization",
        "A signed utilization batch {samples: [{pool, at, busy_gpus}]}: each pool's busy GPUs at an instant, all work counted (at most 4,000 samples; header Suanli-Signature over the utilization signing bytes). Each sample answers ok, exists (the same sample again) or error (utilization_conflict, utilization_too_old beyond 7 days, utilization_in_future, utilization_exceeds_pool, not_found). The provider.",
    ),
    (
        "GET",
        "/api/v1/utilization",
        "The load series of one pool, site or hub (?pool= | ?site= | ?hub=, from, to, step=hour|day): per bucket the load in basis points and the sums it comes from. Samples are kept as sent for 7 days, hourly for 400, daily after. Admin, auditor, authorities; a provider its own pools; not enterprises.",
    ),
    (
        "POST",
        "/api/v1/sites/{site}/pools",
        "Add a pool {chip, gpus, domestic?, price_fen_per_gpu_hour}: the chip must be registered (any case, or an alias) and its domestic flag comes from the registry. Admin or the site's provider.",
    ),
    (
        "POST",
        "/api/v1/sites/{site}/verify",
        "Verify a site's operator kind and region; until then they are claims and count for no provider rule (government_run, within_region). Admin.",
    ),
    ("GET", "/api/v1/pools", "List pools (paged). Any role."),
    (
        "POST",
        "/api/v1/pools/{pool}",
        "Change a pool for orders placed from now on {gpus?, price_fen_per_gpu_hour?}; it never shrinks below the GPUs its orders hold. Admin or the pool's provider.",
    ),
    (
        "POST",
        "/api/v1/pools/{pool}/retire",
        "Retire a pool: no new order is placed on it; the orders on it run to their end. Admin or the pool's provider.",
    ),
    (
        "GET",
        "/api/v1/users",
        "List the people who log in (paged): name, role, created, disabled; never a password. Admin.",
    ),
    ("POST", "/api/v1/users", "Add a person who logs in {name, role, password (10-256 characters)}. Admin."),
    (
        "POST",
        "/api/v1/users/{name}/{action}",
        "disable | enable | password {password}; disabling and a new password revoke the person's sessions. Admin.",
    ),
    (
        "GET",
        "/api/v1/tokens",
        "List tokens, newest first (paged): role, person, issued, expires, revoked; never a secret. Admin.",
    ),
    (
        "POST",
        "/api/v1/orders",
        "Place an order {enterprise, voucher, pool?, chip?, gpus, hours, purpose}; without a pool the placement engine chooses. Admin or the enterprise.",
    ),
    (
        "POST",
        "/api/v1/orders/quote",
        "Quote an order: the engine's choice, alternatives and exclusions (or the pinned pool). Admin or the enterprise.",
    ),
    (
        "GET",
        "/api/v1/orders/{order}",
        "One order with its usage totals. Admin, auditor, the authority, the enterprise, the provider.",
    ),
    (
        "POST",
        "/api/v1/orders/{order}/{action}",
        "start (the provider) | complete (the provider or the enterprise) | cancel (the enterprise) | extend {hours} (the enterprise: more hours at the locked price, with the voucher's share held; usage never runs past the hours ordered).",
    ),
    (
        "GET",
        "/api/v1/statements",
        "List statements within the caller's scope, with their totals and without their lines (paged; filter by program, state). Not enterprises.",
    ),
    (
        "POST",
        "/api/v1/statements",
        "Issue a monthly statement {provider, program, month}. Admin or the authority's admin.",
    ),
    (
        "GET",
        "/api/v1/statements/{statement}",
        "One statement with its lines and the amount in words. Admin, auditor, the authority, the provider.",
    ),
    (
        "POST",
        "/api/v1/statements/{statement}/approve",
        "Approve a statement; it never changes again. Admin or the authority's admin.",
    ),
    ("POST", "/api/v1/sweep", "Expire vouchers past their validity. Admin."),
    ("GET", "/api/v1/audit/log", "The hash-chained audit log (paged). Admin or auditor."),
    ("POST", "/api/v1/tokens", "Issue a machine token {role}; the secret is answered once. Admin."),
    ("POST", "/api/v1/tokens/{token}/revoke", "Revoke a token (token-N). Admin."),
    (
        "GET",
        "/api/v1/vouchers",
        "List vouchers within the caller's scope (paged; filter by program, state). Not providers.",
    ),
    ("GET", "/api/v1/orders", "List orders within the caller's scope (paged; filter by program, state)."),
    ("POST", "/api/v1/heads", "Sign and publish a head of the log as it is now. Admin."),
    (
        "POST",
        "/api/v1/ownership",
        "Declare who controls an enterprise or provider {party, legal_representative_id?, shareholders: [uscc]} (only a hash of the identity number is kept); orders between parties whose declarations match are flagged as related. Admin or the party itself.",
    ),
    (
        "GET",
        "/api/v1/anomalies",
        "Anomalies kept as evidence (paged; filter by kind, object): refused usage, forged signatures, conflicting replays, clock skew, stacking attempts, throttled logins, related parties. Admin and auditors; an authority for its programmes.",
    ),
    (
        "GET",
        "/api/v1/audit/proof",
        "An inclusion proof (RFC 9162 audit path) of entry `sequence` in the tree of `size` entries (default: the latest signed head). Admin and auditors for any entry; others for entries touching their own objects.",
    ),
];

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.writer.is_ready() {
        return "ready".into_response();
    }
    ApiError::from(suanli_service::ServiceError::new(
        suanli_service::ErrorCode::StorageUnavailable,
        "storage cannot be written now",
    ))
    .into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    ([("content-type", "text/plain; version=0.0.4")], state.metrics.render(&state)).into_response()
}

/// The role behind the request's bearer token.
pub(crate) fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Role, ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthenticated)?;
    state.writer.view().authenticate(token).ok_or_else(ApiError::unauthenticated)
}

async fn show_voucher(
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

async fn post_usage(
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
