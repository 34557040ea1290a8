//! Utilization telemetry over HTTP: a provider posts each pool's busy GPUs, signed like usage
//! (`POST /api/v1/providers/{provider}/utilization`, header `Suanli-Signature` over
//! `suanli_wire::utilization_signing_bytes`), and overseers read the series of a pool, a site or a hub
//! (`GET /api/v1/utilization`) from storage beside the writer. NATS takes the same batches
//! (`nats`, a message with header `Suanli-Kind: utilization`).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use suanli_domain::{PoolId, ProviderId, SiteId};
use suanli_service::access::verify_utilization;
use suanli_service::calendar::{format_timestamp, parse_timestamp};
use suanli_service::model::{UtilizationInput, UtilizationOutcome};
use suanli_service::service::UTILIZATION_BATCH_SAMPLES_MAX;
use suanli_service::{Actor, ErrorCode, Role, ServiceError, View};
use suanli_store::utilization::{DAY_S, HOUR_S, merge};
use suanli_wire::{SampleResult, UtilizationAnswer};

use crate::writer::Writer;
use crate::{ApiError, AppState, authenticate};

/// The batch a provider sends, defined once in `suanli-wire` for the server and connectors.
pub use suanli_wire::UtilizationBatch;

/// Checks a utilization batch as it arrives, by HTTP or through NATS: 1 to 4,000 well-formed
/// samples and the provider's Ed25519 signature over them.
pub fn check_utilization_batch(
    writer: &Writer,
    provider: ProviderId,
    batch: &UtilizationBatch,
    signature: Option<&str>,
) -> Result<Vec<UtilizationInput>, ApiError> {
    if batch.samples.is_empty() || batch.samples.len() > UTILIZATION_BATCH_SAMPLES_MAX {
        return Err(ApiError::field("samples", format!("must hold 1 to {UTILIZATION_BATCH_SAMPLES_MAX} samples")));
    }
    let samples: Vec<UtilizationInput> =
        batch.samples.iter().enumerate().map(|(i, s)| s.to_input(i)).collect::<Result<_, _>>()?;
    let signature = signature.ok_or_else(|| {
        ApiError::from(ServiceError::new(
            ErrorCode::SignatureInvalid,
            "signature: the Suanli-Signature header is missing",
        ))
    })?;
    let view = writer.view();
    let key = view.state().providers.get(&provider).and_then(|p| p.public_key_hex.as_deref());
    verify_utilization(key, provider, &samples, signature)?;
    Ok(samples)
}

pub(crate) fn results(outcomes: Vec<UtilizationOutcome>) -> UtilizationAnswer {
    let results = outcomes
        .into_iter()
        .map(|o| SampleResult {
            pool: o.pool.to_string(),
            at: format_timestamp(o.at_s),
            status: o.status.to_owned(),
            code: o.code,
            message: o.message,
        })
        .collect();
    UtilizationAnswer { results }
}

pub(crate) async fn post_utilization(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(provider): Path<String>,
    body: Result<Json<UtilizationBatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    let role = authenticate(&state, &headers)?;
    let provider = ProviderId::parse(&provider).map_err(|e| ApiError::field("provider", e))?;
    if role != Role::Provider(provider) {
        return Err(ApiError::forbidden(format!("{role} may not send utilization for {provider}")));
    }
    let Json(batch) = body.map_err(ApiError::from_json)?;
    let signature = headers.get("suanli-signature").and_then(|v| v.to_str().ok());
    let samples = match check_utilization_batch(&state.writer, provider, &batch, signature) {
        Ok(samples) => samples,
        Err(error) => {
            crate::flag_bad_signature(&state.writer, provider, &error).await;
            return Err(error);
        }
    };
    let actor = Actor::of(role);
    let outcomes = state.writer.call(move |s| s.record_utilization(&actor, provider, &samples)).await??;
    Ok(Json(results(outcomes)).into_response())
}

/// `GET /api/v1/utilization?pool=|site=|hub=&from=&to=&step=hour|day`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    /// Name exactly one of pool, site or hub.
    #[schemars(with = "Option<suanli_domain::PoolId>")]
    pool: Option<String>,
    #[schemars(with = "Option<SiteId>")]
    site: Option<String>,
    #[schemars(length(min = 1, max = 500))]
    hub: Option<String>,
    /// RFC 3339 [default: a week before `to`].
    #[schemars(extend("format" = "date-time"))]
    from: Option<String>,
    /// RFC 3339 [default: now].
    #[schemars(extend("format" = "date-time"))]
    to: Option<String>,
    #[schemars(with = "Option<Step>")]
    step: Option<String>,
}

/// A series' bucket: an hour or a day.
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum Step {
    Hour,
    Day,
}

/// One bucket of a series: the sums over its samples (of every pool named) and the load,
/// `busy_sum / gpus_sum` in basis points.
#[derive(Serialize, schemars::JsonSchema)]
pub struct SeriesPoint {
    #[schemars(extend("format" = "date-time"))]
    at: String,
    load_bp: Option<u32>,
    busy_sum: i64,
    gpus_sum: i64,
    samples: i64,
}

/// The pools a query names that `role` may read: overseers every pool, a provider its own.
fn pools_of(view: &View, role: Role, query: &SeriesQuery) -> Result<(String, Vec<u64>), ServiceError> {
    let s = view.state();
    let own = |site: SiteId| match role {
        Role::Provider(p) => s.sites.get(&site).is_some_and(|site| site.spec.provider == p),
        Role::Enterprise(_) => false,
        _ => true,
    };
    if matches!(role, Role::Enterprise(_)) {
        return Err(ServiceError::new(ErrorCode::Forbidden, format!("{role} may not read site utilization")));
    }
    let named = [query.pool.is_some(), query.site.is_some(), query.hub.is_some()].iter().filter(|n| **n).count();
    if named != 1 {
        return Err(ServiceError::field("pool", "name exactly one of pool, site or hub"));
    }
    if let Some(text) = &query.pool {
        let id = PoolId::parse(text).map_err(|e| ServiceError::field("pool", e))?;
        let pool = s.pools.get(&id).filter(|p| own(p.site)).ok_or_else(|| ServiceError::not_found(id))?;
        return Ok((id.to_string(), vec![pool.id.get()]));
    }
    if let Some(text) = &query.site {
        let id = SiteId::parse(text).map_err(|e| ServiceError::field("site", e))?;
        if !s.sites.contains_key(&id) || !own(id) {
            return Err(ServiceError::not_found(id));
        }
        return Ok((id.to_string(), s.pools.values().filter(|p| p.site == id).map(|p| p.id.get()).collect()));
    }
    let hub = query.hub.clone().unwrap_or_default();
    let sites: Vec<SiteId> =
        s.sites.values().filter(|site| site.spec.hub == hub && own(site.id)).map(|x| x.id).collect();
    if sites.is_empty() {
        return Err(ServiceError::new(ErrorCode::NotFound, format!("hub: no site you may read in hub {hub:?}")));
    }
    Ok((hub, s.pools.values().filter(|p| sites.contains(&p.site)).map(|p| p.id.get()).collect()))
}

pub(crate) async fn series(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<SeriesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let role = authenticate(&state, &headers)?;
    let Query(query) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
    let view = state.writer.view();
    let (name, pools) = pools_of(&view, role, &query)?;
    let step = match query.step.as_deref() {
        None | Some("hour") => HOUR_S,
        Some("day") => DAY_S,
        Some(other) => return Err(ApiError::field("step", format!("{other:?} must be hour or day"))),
    };
    let now = view.now_s();
    let time = |field: &str, text: &Option<String>, default: i64| match text {
        None => Ok(default),
        Some(text) => parse_timestamp(text).ok_or_else(|| ApiError::field(field, "must be an RFC 3339 time")),
    };
    let to = time("to", &query.to, now + 1)?;
    let from = time("from", &query.from, to - 7 * DAY_S)?;
    if from >= to {
        return Err(ApiError::field("from", "must be before to"));
    }
    // At most 2 years of hours or 20 of days in one answer.
    if (to - from) / step > 17_568 {
        return Err(ApiError::field("from", "the range holds more than 17,568 steps; use step=day or a shorter range"));
    }
    let points = state.writer.read_log(move |reader| reader.utilization(&pools, from, to, step)).await??;
    let points: Vec<SeriesPoint> = merge(&points)
        .iter()
        .map(|p| SeriesPoint {
            at: format_timestamp(p.at_s),
            load_bp: p.load_bp(),
            busy_sum: p.busy_sum,
            gpus_sum: p.gpus_sum,
            samples: p.samples,
        })
        .collect();
    let step = if step == HOUR_S { "hour" } else { "day" };
    Ok(Json(Series { of: name, step, from: format_timestamp(from), to: format_timestamp(to), points }).into_response())
}

/// The load series of a pool, site or hub: what it is of, the step, the range (RFC 3339) and one
/// point per bucket.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Series {
    of: String,
    step: &'static str,
    #[schemars(extend("format" = "date-time"))]
    from: String,
    #[schemars(extend("format" = "date-time"))]
    to: String,
    points: Vec<SeriesPoint>,
}
