//! `GET /api/v1/programs/{program}/outcome`: what a programme's money achieved
//! (`View::outcome`), for its authority and the platform's overseers.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use suanli_service::evaluation::WINDOW_DAYS_DEFAULT;
use suanli_service::outcome::Outcome;
use suanli_service::{Role, ServiceError, View};

use crate::lifecycle::{Grant, PUBLIC, permit_seen};
use crate::{ApiError, AppState, authenticate};

/// A programme's outcome, to its authority (admin or reviewer), the admin and the auditor;
/// everyone may know the programme exists, so the others are told they may not read this.
pub(crate) fn seen_outcome(s: &View, role: Role, program: &str) -> Result<Outcome, ServiceError> {
    let id = s.find_program(program)?;
    let authority = s.program(id)?.authority;
    permit_seen(role, &[Grant::Admin, Grant::Auditor, Grant::Authority(authority)], PUBLIC, &id.to_string())?;
    s.outcome(id)
}

/// `?window_days=` (1–366, default 28): the weeks the load comparison covers on each side.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeQuery {
    /// Days the load comparison covers on each side [default: 28].
    #[schemars(range(min = 1, max = 366))]
    window_days: Option<i64>,
}

/// The outcome with the load of the sites served, read from storage beside the writer.
pub(crate) async fn outcome_with_load(
    state: &AppState,
    role: Role,
    program: String,
    window_days: i64,
) -> Result<Outcome, ApiError> {
    let view = state.writer.view();
    let id = {
        seen_outcome(&view, role, &program)?;
        view.find_program(&program)?
    };
    let outcome = state.writer.read_log(move |reader| Ok(view.outcome_with_load(id, window_days, reader))).await??;
    Ok(outcome?)
}

pub(crate) async fn outcome(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(program): Path<String>,
    query: Result<Query<OutcomeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let role = authenticate(&state, &headers)?;
    let Query(query) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
    let window_days = query.window_days.unwrap_or(WINDOW_DAYS_DEFAULT);
    if !(1..=366).contains(&window_days) {
        return Err(ApiError::field("window_days", "must be 1 to 366 days"));
    }
    Ok(Json(outcome_with_load(&state, role, program, window_days).await?).into_response())
}
