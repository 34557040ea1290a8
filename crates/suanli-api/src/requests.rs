//! Order requests over HTTP: an enterprise submits an order to the scheduling loop, sees it
//! waiting, then placed (with its order and what each policy term weighed) or refused with the
//! reason, and may withdraw it while it waits. The platform admin may run a round at once; the
//! server runs one every window on its own (`schedule_window_seconds`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use suanli_domain::RequestId;
use suanli_service::requests::OrderRequest;
use suanli_service::{Role, View};

use crate::lifecycle::{Grant, Page, Paged, actor, body, granted, id, permit, permit_endpoint, permit_seen, read, run};
use crate::orders::{OrderJson, OriginJson, WorkJson};
use crate::{ApiError, AppState};

/// The states of requests, as `?state=` filters them.
pub const REQUEST_STATES: &[&str] = &["waiting", "placed", "refused", "withdrawn"];

/// An order for the scheduling loop: an order's fields without a pool, and how long it may wait.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestJson {
    #[schemars(with = "suanli_domain::EnterpriseId")]
    enterprise: String,
    #[schemars(with = "suanli_domain::VoucherId")]
    voucher: String,
    #[schemars(length(min = 1, max = 64), regex(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"))]
    chip: Option<String>,
    #[schemars(range(min = 1, max = 1_000_000))]
    gpus: u32,
    #[schemars(range(min = 1, max = 8784))]
    hours: u32,
    #[schemars(with = "suanli_service::model::Purpose")]
    purpose: String,
    work: Option<WorkJson>,
    origin: Option<OriginJson>,
    /// Seconds the request may wait for a round to place it [default: the deployment's].
    #[schemars(range(min = 0, max = 604_800))]
    wait_s: Option<i64>,
    /// The most the enterprise pays per GPU-hour, in fen, for capacity bought between hub nodes
    /// when its programme trades and its highest tier cannot serve it (without it, the request is
    /// not a bid in the market's clearings).
    #[schemars(range(min = 1, max = 10_000_000))]
    limit_fen_per_gpu_hour: Option<i64>,
}

impl RequestJson {
    /// The order it asks for, as an order's body without a pool.
    fn order(self) -> OrderJson {
        let RequestJson { enterprise, voucher, chip, gpus, hours, purpose, work, origin, .. } = self;
        OrderJson { enterprise, voucher, pool: None, chip, gpus, hours, purpose, work, origin }
    }
}

pub(crate) async fn submit_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: Result<Json<RequestJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = body(input)?;
    let (wait_s, limit) = (input.wait_s, input.limit_fen_per_gpu_hour.map(suanli_domain::Fen::new));
    let (request, _) = input.order().request()?;
    run(&state, &headers, move |s, role| {
        permit(role, &[Grant::Admin, Grant::Enterprise(request.enterprise)], &request.enterprise.to_string())?;
        let id = s.submit_bid(&actor(role), &request, wait_s, limit)?;
        s.request(id).cloned()
    })
    .await
}

/// Who may read a request: its enterprise, its programme's authority and the overseers.
fn readers(s: &View, request: &OrderRequest) -> Result<[Grant; 4], suanli_service::ServiceError> {
    let authority = s.program(request.program)?.authority;
    Ok([Grant::Admin, Grant::Auditor, Grant::Authority(authority), Grant::Enterprise(request.enterprise)])
}

pub(crate) async fn show_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(request): Path<String>,
) -> Result<Response, ApiError> {
    let id = id("request", &request, RequestId::parse)?;
    read(&state, &headers, move |s, role| {
        let request = s.request(id)?;
        permit(role, &readers(s, request)?, &id.to_string())?;
        Ok(request.clone())
    })
    .await
}

pub(crate) async fn withdraw_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(request): Path<String>,
    _unused_body: Bytes,
) -> Result<Response, ApiError> {
    let id = id("request", &request, RequestId::parse)?;
    run(&state, &headers, move |s, role| {
        let request = s.request(id)?;
        let grants = [Grant::Admin, Grant::Enterprise(request.enterprise)];
        permit_seen(role, &grants, &readers(s, request)?, &id.to_string())?;
        s.withdraw_request(&actor(role), id)?;
        s.request(id).cloned()
    })
    .await
}

/// Requests within the caller's scope, in submission order (paged; filter by program and state).
pub(crate) async fn list_requests(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, role| {
        let wanted = page.state_in(REQUEST_STATES)?;
        let program = page.program.as_ref().map(|p| s.find_program(p)).transpose()?;
        page.window(visible_requests(s, role, program, wanted)).map(Paged::owned)
    })
    .await
}

pub(crate) fn visible_requests<'a>(
    s: &'a View,
    role: Role,
    program: Option<suanli_domain::ProgramId>,
    state: Option<&str>,
) -> Vec<&'a OrderRequest> {
    s.state()
        .requests
        .values()
        .filter(|r| program.is_none_or(|p| r.program == p))
        .filter(|r| state.is_none_or(|wanted| r.state.as_str() == wanted))
        .filter(|r| readers(s, r).is_ok_and(|grants| granted(role, &grants)))
        .collect()
}

/// Runs a round of the scheduling loop now (the platform admin).
pub(crate) async fn run_round(
    State(state): State<AppState>,
    headers: HeaderMap,
    _unused_body: Bytes,
) -> Result<Response, ApiError> {
    run(&state, &headers, move |s, role| {
        permit_endpoint(role, &[Grant::Admin], "the scheduling loop")?;
        s.run_round(&actor(role))
    })
    .await
}

/// So the document's enum and the filter agree.
#[test]
fn the_filter_names_every_state() {
    use suanli_service::requests::RequestState;
    let names: Vec<&str> = RequestState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, REQUEST_STATES);
}
