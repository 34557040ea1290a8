//! Orders over HTTP: quote and place (through the placement engine, or on a pinned pool), read
//! one, list them (paged, from memory and the archive), and start, complete, cancel or extend.
//! An order may buy hours or work (reference GPU-hours of a work class) and say where its data
//! is.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use suanli_domain::{EnterpriseId, OrderId, PoolId, VoucherId};
use suanli_service::model::Purpose;
use suanli_service::{PoolRequest, Role, Service, ServiceError};

use crate::lifecycle::{
    Grant, Page, Paged, actor, body, id, known_action, order_query, permit, permit_seen, read, run,
};
use crate::{ApiError, AppState, authenticate};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderJson {
    #[schemars(with = "EnterpriseId")]
    pub(crate) enterprise: String,
    #[schemars(with = "VoucherId")]
    pub(crate) voucher: String,
    /// Pins a pool; without it the placement engine chooses.
    #[schemars(with = "Option<PoolId>")]
    pub(crate) pool: Option<String>,
    #[schemars(length(min = 1, max = 64), regex(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"))]
    pub(crate) chip: Option<String>,
    #[schemars(range(min = 1, max = 1_000_000))]
    pub(crate) gpus: u32,
    #[schemars(range(min = 1, max = 8784))]
    pub(crate) hours: u32,
    #[schemars(with = "Purpose")]
    pub(crate) purpose: String,
    /// Buy work instead of hours: `hours` is then the most the work may take.
    pub(crate) work: Option<WorkJson>,
    /// Where the order's data is.
    pub(crate) origin: Option<OriginJson>,
}

/// Work as reference GPU-hours (one A800 for an hour) of a work class: each chip takes the
/// hours its speed for the class gives (`data/speed.csv`), and a chip without one cannot run it.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkJson {
    #[schemars(with = "WorkClass")]
    class: String,
    #[schemars(range(min = 1, max = 100_000_000))]
    reference_gpu_hours: u32,
}

/// A work class of the speed table.
pub struct WorkClass;

impl schemars::JsonSchema for WorkClass {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "WorkClass".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "enum": suanli_service::work_classes() })
    }
}

/// The hub the order's data is in and its size: data moved to a site of another hub costs
/// egress, and a latency bound is measured from the hub.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OriginJson {
    #[schemars(length(min = 1, max = 500))]
    hub: String,
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1e9))]
    data_gb: f64,
    /// The round trip to the hub, at most, in milliseconds.
    #[schemars(range(min = 0.0, max = 1e6))]
    rtt_ms_max: Option<f64>,
}

impl OrderJson {
    pub(crate) fn request(&self) -> Result<(PoolRequest, Option<PoolId>), ApiError> {
        let request = PoolRequest {
            enterprise: id("enterprise", &self.enterprise, EnterpriseId::parse)?,
            voucher: id("voucher", &self.voucher, VoucherId::parse)?,
            chip: self.chip.clone(),
            gpu_count: self.gpus,
            hours: self.hours,
            purpose: Purpose::parse(&self.purpose)
                .ok_or_else(|| ApiError::field("purpose", "must be training, inference, fine_tuning or data"))?,
            needs: suanli_service::Needs {
                work: self.work.as_ref().map(|w| suanli_service::Work {
                    class: w.class.clone(),
                    reference_gpu_hours: w.reference_gpu_hours,
                }),
                origin_hub: self.origin.as_ref().map(|o| o.hub.clone()),
                data_gb: self.origin.as_ref().map_or(0.0, |o| o.data_gb),
                rtt_ms_max: self.origin.as_ref().and_then(|o| o.rtt_ms_max),
            },
        };
        let pool = self.pool.as_deref().map(|p| id("pool", p, PoolId::parse)).transpose()?;
        Ok((request, pool))
    }
}

pub(crate) async fn quote_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: Result<Json<OrderJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (request, pool) = body(input)?.request()?;
    read(&state, &headers, move |s, role| {
        permit(role, &[Grant::Admin, Grant::Enterprise(request.enterprise)], &request.enterprise.to_string())?;
        match pool {
            Some(pool) => s.pinned_choice(&request, pool),
            None => s.choose_pool(&request),
        }
    })
    .await
}

pub(crate) async fn place_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: Result<Json<OrderJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (request, pool) = body(input)?.request()?;
    run(&state, &headers, move |s, role| {
        permit(role, &[Grant::Admin, Grant::Enterprise(request.enterprise)], &request.enterprise.to_string())?;
        let id = match pool {
            Some(pool) => {
                let input = s.pinned(&request, pool)?;
                s.place_order_for(&actor(role), input, None, request.needs.work.clone())?
            }
            None => s.place_order_anywhere(&actor(role), &request)?,
        };
        s.order(id).cloned()
    })
    .await
}

/// An order's enterprise, provider and programme authority.
pub(crate) async fn show_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(order): Path<String>,
) -> Result<Response, ApiError> {
    let id = id("order", &order, OrderId::parse)?;
    let role = authenticate(&state, &headers)?;
    Ok(Json(seen_order(&state, role, id).await?).into_response())
}

/// An order, to those who may see it: its enterprise, its provider, its programme's authority
/// and the platform's overseers. From memory, or from storage's archive once it was archived.
pub(crate) async fn seen_order(
    state: &AppState,
    role: Role,
    id: OrderId,
) -> Result<suanli_service::model::Order, ApiError> {
    let view = state.writer.view();
    let live = view.state().orders.get(&id).cloned();
    let order = match live {
        Some(order) => order,
        None => {
            let view = view.clone();
            state.writer.read_log(move |reader| Ok(view.find_order(id, reader))).await???
        }
    };
    let authority = view.program(order.program)?.authority;
    let grants = [
        Grant::Admin,
        Grant::Auditor,
        Grant::Authority(authority),
        Grant::Enterprise(order.enterprise),
        Grant::Provider(order.provider),
    ];
    permit(role, &grants, &id.to_string())?;
    Ok(order)
}

pub(crate) async fn order_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((order, action)): Path<(String, String)>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    known_action(&action, &["start", "complete", "cancel", "extend"])?;
    let id = id("order", &order, OrderId::parse)?;
    authenticate(&state, &headers)?;
    // Only `extend` has a body: {"hours": N}.
    let extension = match action.as_str() {
        "extend" => Some(
            serde_json::from_slice::<ExtendJson>(&raw)
                .map_err(|e| ApiError::field("body", format!("expected {{\"hours\": N}}: {e}")))?
                .hours,
        ),
        _ => None,
    };
    run(&state, &headers, move |s, role| {
        act_on_order(s, role, id, &action, extension)?;
        s.order(id).cloned()
    })
    .await
}

/// Who may act on an order: the provider starts it, the enterprise cancels or extends it, either
/// completes it, and the platform admin may do all; the order's other readers are told they may
/// not, everyone else that it does not exist. The API and the console both go through here.
pub(crate) fn act_on_order(
    s: &mut Service,
    role: Role,
    id: OrderId,
    action: &str,
    extension: Option<u32>,
) -> Result<(), ServiceError> {
    let (enterprise, provider, program) = s.order_parties(id)?;
    let authority = s.program(program)?.authority;
    let readers = [
        Grant::Admin,
        Grant::Auditor,
        Grant::Authority(authority),
        Grant::Enterprise(enterprise),
        Grant::Provider(provider),
    ];
    let who = actor(role);
    let what = id.to_string();
    match action {
        "start" => {
            permit_seen(role, &[Grant::Admin, Grant::Provider(provider)], &readers, &what)?;
            s.start_order(&who, id)?;
        }
        "complete" => {
            let grants = [Grant::Admin, Grant::Provider(provider), Grant::Enterprise(enterprise)];
            permit_seen(role, &grants, &readers, &what)?;
            s.complete_order(&who, id)?;
        }
        "cancel" => {
            permit_seen(role, &[Grant::Admin, Grant::Enterprise(enterprise)], &readers, &what)?;
            s.cancel_order(&who, id)?;
        }
        "extend" => {
            permit_seen(role, &[Grant::Admin, Grant::Enterprise(enterprise)], &readers, &what)?;
            s.extend_order(&who, id, extension.unwrap_or(0))?;
        }
        other => return Err(ServiceError::not_found(format!("action {other:?}"))),
    }
    Ok(())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendJson {
    #[schemars(range(min = 1, max = 8784))]
    hours: u32,
}

/// Orders within the caller's scope (paged; filter by program and state).
pub(crate) async fn list_orders(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    let role = authenticate(&state, &headers)?;
    let view = state.writer.view();
    let wanted = page.state_in(crate::lifecycle::ORDER_STATES)?;
    let program = page.program.as_ref().map(|p| view.find_program(p)).transpose()?;
    let limit = page.limit()?;
    let query = order_query(role, program, wanted);
    let offset = page.offset;
    let found =
        state.writer.read_log(move |reader| Ok(view.orders_page(&query, offset as u64, limit, reader))).await???;
    Ok(Json(Paged { total: found.total as u64, offset: offset as u64, limit, items: found.orders }).into_response())
}
