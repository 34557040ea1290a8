//! Lists of the collections that had none: settlement statements, enterprises, providers,
//! sites, authorities, the network's clusters and an order's usage records. Each is paged
//! (`limit`, `offset`) and holds what the caller may see, as the other lists do; a role that may
//! see none of a collection is refused the list (403).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use suanli_domain::{Fen, OrderId};
use suanli_service::calendar::format_timestamp;
use suanli_service::model::Statement;
use suanli_service::state::{UsageEntry, UsageFacts};
use suanli_service::{ErrorCode, Role, ServiceError};

use crate::lifecycle::{Grant, Page, Paged, granted, read, state_name};
use crate::scope::visible_statements;
use crate::{ApiError, AppState};

/// A statement in a list: the statement without its lines (`GET /api/v1/statements/{id}` has
/// them).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct StatementSummary {
    pub id: suanli_domain::StatementId,
    pub provider: suanli_domain::ProviderId,
    pub program: suanli_domain::ProgramId,
    pub month: String,
    pub cost_fen: suanli_domain::Fen,
    pub voucher_total_fen: suanli_domain::Fen,
    pub enterprise_total_fen: suanli_domain::Fen,
    pub voucher_total_uppercase: String,
    pub state: suanli_service::model::StatementState,
    pub issued_at_s: i64,
    pub approved_at_s: Option<i64>,
}

fn without_lines(s: &Statement) -> StatementSummary {
    StatementSummary {
        id: s.id,
        provider: s.provider,
        program: s.program,
        month: s.month.clone(),
        cost_fen: s.cost_fen,
        voucher_total_fen: s.voucher_total_fen,
        enterprise_total_fen: s.enterprise_total_fen,
        voucher_total_uppercase: s.voucher_total_uppercase.clone(),
        state: s.state,
        issued_at_s: s.issued_at_s,
        approved_at_s: s.approved_at_s,
    }
}

fn refused(role: Role, what: &str) -> ServiceError {
    ServiceError::new(ErrorCode::Forbidden, format!("{role} may not list {what}"))
}

/// Statements of the caller's programmes (an authority), of itself (a provider) or all (the
/// admin, the auditor); filter by `program` and `state` (`issued`, `approved`). Not enterprises.
pub(crate) async fn list_statements(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, role| {
        if matches!(role, Role::Enterprise(_)) {
            return Err(refused(role, "statements"));
        }
        let wanted = page.state_in(crate::lifecycle::STATEMENT_STATES)?;
        let program = page.program.as_ref().map(|p| s.find_program(p)).transpose()?;
        let items = visible_statements(s, role)
            .into_iter()
            .filter(|st| program.is_none_or(|p| st.program == p))
            .filter(|st| wanted.is_none_or(|wanted| state_name(&st.state) == wanted))
            .map(without_lines)
            .collect::<Vec<_>>();
        page.window(items)
    })
    .await
}

/// Every enterprise (the admin, the auditor) or the caller itself (an enterprise). Not
/// authorities or providers, who may not read an enterprise's record either.
pub(crate) async fn list_enterprises(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, role| {
        let all = granted(role, &[Grant::Admin, Grant::Auditor]);
        if !all && !matches!(role, Role::Enterprise(_)) {
            return Err(refused(role, "enterprises"));
        }
        let items: Vec<_> =
            s.state().enterprises.values().filter(|e| all || granted(role, &[Grant::Enterprise(e.id)])).collect();
        page.window(items).map(Paged::owned)
    })
    .await
}

/// Every provider, for any role (a provider's name, operator kind and public key are public, as
/// its pools are).
pub(crate) async fn list_providers(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, _| page.window(s.state().providers.values().collect()).map(Paged::owned)).await
}

/// Every site with its hub, region, place and whether the platform verified it, for any role.
pub(crate) async fn list_sites(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, _| page.window(s.state().sites.values().collect()).map(Paged::owned)).await
}

/// A usage record an order received, as its batch was first answered: recorded (`ok`, with the
/// cost and its split) or refused (`error`, with the code and reason).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct UsageLine {
    pub id: String,
    pub order: OrderId,
    pub gpu_seconds: i64,
    /// RFC 3339.
    #[schemars(extend("format" = "date-time"))]
    pub period_start: String,
    /// RFC 3339.
    #[schemars(extend("format" = "date-time"))]
    pub period_end: String,
    /// `ok` or `error`.
    pub status: &'static str,
    pub cost_fen: Option<Fen>,
    pub voucher_part_fen: Option<Fen>,
    pub enterprise_part_fen: Option<Fen>,
    pub code: Option<String>,
    pub message: Option<String>,
}

fn usage_line(id: String, entry: &str) -> Result<UsageLine, ServiceError> {
    let entry: UsageEntry = serde_json::from_str(entry)
        .map_err(|e| ServiceError::new(ErrorCode::Internal, format!("usage record {id:?} as stored: {e}")))?;
    let UsageFacts(order, gpu_seconds, start_s, end_s) = entry.facts();
    let mut line = UsageLine {
        id,
        order,
        gpu_seconds,
        period_start: format_timestamp(start_s),
        period_end: format_timestamp(end_s),
        status: "ok",
        cost_fen: None,
        voucher_part_fen: None,
        enterprise_part_fen: None,
        code: None,
        message: None,
    };
    match entry {
        UsageEntry::Recorded(_, cost, voucher, own) => {
            (line.cost_fen, line.voucher_part_fen, line.enterprise_part_fen) = (Some(cost), Some(voucher), Some(own));
        }
        UsageEntry::Refused(_, code, message) => {
            (line.status, line.code, line.message) = ("error", Some(code), Some(message));
        }
    }
    Ok(line)
}

/// The usage records an order received, in the order of their periods (paged), read from
/// storage beside the writer. Whoever may see the order.
pub(crate) async fn list_order_usage(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(order): Path<String>,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    let order = crate::lifecycle::id("order", &order, OrderId::parse)?;
    let role = crate::authenticate(&state, &headers)?;
    crate::orders::seen_order(&state, role, order).await?;
    let limit = page.limit()?;
    let offset = u64::from(page.offset);
    let (rows, total) = state.writer.read_log(move |reader| reader.order_usage(order.get(), offset, limit)).await??;
    let items = rows.into_iter().map(|(id, entry)| usage_line(id, &entry)).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(Paged { total, offset, limit, items }).into_response())
}

/// Every authority (who runs programmes, and the region it answers for), for any role.
pub(crate) async fn list_authorities(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, _| page.window(s.state().authorities.values().collect()).map(Paged::owned)).await
}

/// The national network's clusters as this deployment registered them (`suanli network
/// import`), for any role: a site is verified only near a cluster of its hub.
pub(crate) async fn list_network(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, _| page.window(s.state().network.iter().collect()).map(Paged::owned)).await
}
