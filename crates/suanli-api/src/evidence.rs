//! Evidence: the anomalies kept (paged from storage) and the control enterprises and providers
//! declare, matched to find related parties.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use suanli_domain::{ApplicationId, OrderId, Uscc, VoucherId};
use suanli_service::{ErrorCode, Role, ServiceError};

use crate::lifecycle::{Grant, PAGE_LIMIT_MAX, Page, actor, body, permit, run};
use crate::{ApiError, AppState, authenticate};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnershipJson {
    /// `ent-N` or `prv-N`.
    #[schemars(regex(pattern = "^(ent|prv)-[1-9][0-9]{0,17}$"))]
    party: String,
    /// An identity or passport number: 6 to 64 letters and digits (only its hash is kept).
    #[schemars(regex(pattern = "^\\s*[0-9A-Za-z]{6,64}\\s*$"))]
    legal_representative_id: Option<String>,
    #[serde(default)]
    #[schemars(with = "Vec<Uscc>")]
    shareholders: Vec<String>,
}

/// `POST /api/v1/ownership`: an enterprise or a provider declares who controls it, so related
/// parties are found by matching both sides' declarations. Admin or the party itself.
pub(crate) async fn declare_ownership(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: Result<Json<OwnershipJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = body(input)?;
    let shareholders = input
        .shareholders
        .iter()
        .enumerate()
        .map(|(i, text)| Uscc::parse(text).map_err(|e| ApiError::field(&format!("shareholders[{i}]"), e)))
        .collect::<Result<Vec<_>, _>>()?;
    run(&state, &headers, move |s, role| {
        let own = match role {
            Role::Enterprise(me) => me.to_string() == input.party,
            Role::Provider(me) => me.to_string() == input.party,
            _ => false,
        };
        if !own {
            permit(role, &[Grant::Admin], &input.party)?;
        }
        s.declare_ownership(&actor(role), &input.party, input.legal_representative_id.as_deref(), shareholders)?;
        s.state().ownership.get(&input.party).cloned().ok_or_else(|| ServiceError::not_found(&input.party))
    })
    .await
}

/// `GET /api/v1/anomalies`: the evidence kept (refused usage, forged signatures, conflicting
/// replays, clock skew, stacking attempts, throttled logins, related parties), oldest first,
/// paged from storage and filtered by kind and object. The platform admin and auditors see all;
/// an authority the anomalies about its programmes' orders, vouchers and applications.
pub(crate) async fn list_anomalies(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    let role = authenticate(&state, &headers)?;
    let authority = match role {
        Role::PlatformAdmin | Role::Auditor => None,
        Role::AuthorityAdmin(a) | Role::AuthorityReviewer(a) => Some(a),
        _ => return Err(ServiceError::new(ErrorCode::Forbidden, format!("{role} may not use anomalies")).into()),
    };
    let limit = page.limit.unwrap_or(100);
    if limit == 0 || limit > PAGE_LIMIT_MAX {
        return Err(ApiError::field("limit", format!("must be between 1 and {PAGE_LIMIT_MAX}")));
    }
    let filter = suanli_store::AnomalyFilter { kind: page.kind.clone(), object: page.object.clone() };
    let offset = page.offset as u64;
    let (items, total) = visible_anomalies(&state, authority, filter, offset, limit).await?;
    let items: Vec<AnomalyJson> = items
        .into_iter()
        .map(|(sequence, a)| AnomalyJson {
            sequence,
            time_s: a.time_s,
            kind: a.kind,
            object: a.object,
            detail: a.detail,
        })
        .collect();
    Ok(Json(crate::lifecycle::Paged { total, offset, limit, items }).into_response())
}

/// An anomaly kept as evidence, with its place in the audit log.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct AnomalyJson {
    pub sequence: u64,
    pub time_s: i64,
    pub kind: String,
    pub object: String,
    pub detail: String,
}

/// One page of the anomalies kept in the log (sequence and anomaly, oldest first) and how many
/// there are: all of them for the platform's overseers (`authority` none), else those about the
/// authority's programmes' orders, vouchers and applications. The API and the console share it.
pub(crate) async fn visible_anomalies(
    state: &AppState,
    authority: Option<suanli_domain::AuthorityId>,
    filter: suanli_store::AnomalyFilter,
    offset: u64,
    limit: usize,
) -> Result<(Vec<(u64, suanli_service::model::Anomaly)>, u64), ApiError> {
    let view = state.writer.view();
    let in_scope = move |anomaly: &suanli_service::model::Anomaly| {
        authority.is_none_or(|mine| {
            let program = if let Ok(id) = OrderId::parse(&anomaly.object) {
                view.order(id).ok().map(|o| o.program)
            } else if let Ok(id) = VoucherId::parse(&anomaly.object) {
                view.voucher(id).ok().map(|v| v.program)
            } else {
                ApplicationId::parse(&anomaly.object).ok().and_then(|id| view.application(id).ok()).map(|a| a.program)
            };
            program.and_then(|p| view.program(p).ok()).is_some_and(|p| p.authority == mine)
        })
    };
    Ok(state
        .writer
        .read_log(move |reader| {
            let mut items = Vec::new();
            // The platform's overseers page straight from storage; an authority's scope is
            // applied as the anomalies are read.
            if authority.is_none() {
                let (entries, total) = reader.anomalies(&filter, offset, limit)?;
                items.extend(entries.iter().filter_map(anomaly_json));
                return Ok((items, total));
            }
            let (mut seen, mut visible) = (0u64, 0u64);
            loop {
                let (entries, _) = reader.anomalies(&filter, seen, suanli_store::LOG_PAGE_ENTRIES_MAX)?;
                if entries.is_empty() {
                    break;
                }
                seen += entries.len() as u64;
                for item in entries.iter().filter_map(anomaly_json) {
                    if in_scope(&item.1) {
                        if visible >= offset && items.len() < limit {
                            items.push(item);
                        }
                        visible += 1;
                    }
                }
            }
            Ok((items, visible))
        })
        .await??)
}

/// An anomaly log entry as (sequence, anomaly).
fn anomaly_json(entry: &suanli_store::LogEntry) -> Option<(u64, suanli_service::model::Anomaly)> {
    let event = suanli_service::event::Event::from_body(&entry.body).ok()?;
    event.anomaly(entry.time_s).map(|a| (entry.sequence, a))
}
