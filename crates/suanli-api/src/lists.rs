//! Lists of the collections that had none: settlement statements, enterprises, providers and
//! sites. Each is paged (`limit`, `offset`) and holds what the caller may see, as the other lists
//! do; a role that may see none of a collection is refused the list (403).

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use suanli_service::model::Statement;
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
        let program = page.program.as_ref().map(|p| s.find_program(p)).transpose()?;
        let items = visible_statements(s, role)
            .into_iter()
            .filter(|st| program.is_none_or(|p| st.program == p))
            .filter(|st| page.state.as_deref().is_none_or(|wanted| state_name(&st.state) == wanted))
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
