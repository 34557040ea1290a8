//! Settlement statements over the API: a programme's admin issues one for a provider and a
//! month, and approves it; its provider, authority and the platform's overseers read it (an
//! approved statement's lines read back from storage once archived).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use suanli_domain::{AuthorityId, ProviderId, StatementId};
use suanli_service::calendar::YearMonth;
use suanli_service::{Role, Service, ServiceError, View};

use crate::lifecycle::{Grant, PUBLIC, actor, body, id, permit, permit_seen, run};
use crate::{ApiError, AppState, authenticate};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatementJson {
    #[schemars(with = "ProviderId")]
    provider: String,
    /// The programme's id or key.
    #[schemars(length(min = 1))]
    program: String,
    /// `2026-03`.
    #[schemars(regex(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$"))]
    month: String,
}

pub(crate) async fn issue_statement(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: Result<Json<StatementJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = body(input)?;
    let provider = id("provider", &input.provider, ProviderId::parse)?;
    let month = YearMonth::parse(&input.month).ok_or_else(|| ApiError::field("month", "must look like 2026-03"))?;
    run(&state, &headers, move |s, role| {
        let program = s.find_program(&input.program)?;
        let authority = s.program(program)?.authority;
        permit_seen(role, &[Grant::Admin, Grant::AuthorityAdmin(authority)], PUBLIC, &program.to_string())?;
        let id = s.issue_statement(&actor(role), provider, program, month)?;
        Ok(s.state().statements[&id].clone())
    })
    .await
}

fn statement_scope(s: &View, id: StatementId) -> Result<(ProviderId, AuthorityId), ServiceError> {
    let statement = s.state().statements.get(&id).ok_or_else(|| ServiceError::not_found(id))?;
    Ok((statement.provider, s.program(statement.program)?.authority))
}

pub(crate) async fn show_statement(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(statement): Path<String>,
) -> Result<Response, ApiError> {
    let id = id("statement", &statement, StatementId::parse)?;
    let role = authenticate(&state, &headers)?;
    let view = state.writer.view();
    let (provider, authority) = statement_scope(&view, id)?;
    permit(
        role,
        &[Grant::Admin, Grant::Auditor, Grant::Authority(authority), Grant::Provider(provider)],
        &id.to_string(),
    )?;
    // An approved statement's lines are read back from storage once archived.
    let statement = state.writer.read_log(move |reader| Ok(view.statement_with_lines(id, reader))).await???;
    Ok(Json(statement).into_response())
}

pub(crate) async fn approve_statement(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(statement): Path<String>,
) -> Result<Response, ApiError> {
    let id = id("statement", &statement, StatementId::parse)?;
    run(&state, &headers, move |s, role| act_on_statement(s, role, id)).await
}

/// Approves a statement as `role` (the API and the console).
pub(crate) fn act_on_statement(
    s: &mut Service,
    role: Role,
    id: StatementId,
) -> Result<suanli_service::model::Statement, ServiceError> {
    let (provider, authority) = statement_scope(s, id)?;
    let readers = [Grant::Admin, Grant::Auditor, Grant::Authority(authority), Grant::Provider(provider)];
    permit_seen(role, &[Grant::Admin, Grant::AuthorityAdmin(authority)], &readers, &id.to_string())?;
    s.approve_statement(&actor(role), id)?;
    Ok(s.state().statements[&id].clone())
}
