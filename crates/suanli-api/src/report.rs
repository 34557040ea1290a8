//! `GET /api/v1/programs/{program}/outcome`: what a programme's money achieved
//! (`View::outcome`), for its authority and the platform's overseers.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use suanli_service::outcome::Outcome;
use suanli_service::{Role, ServiceError, View};

use crate::lifecycle::{Grant, PUBLIC, permit_seen, read};
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/programs/{program}/outcome", get(outcome))
}

/// A programme's outcome, to its authority (admin or reviewer), the admin and the auditor;
/// everyone may know the programme exists, so the others are told they may not read this.
pub(crate) fn seen_outcome(s: &View, role: Role, program: &str) -> Result<Outcome, ServiceError> {
    let id = s.find_program(program)?;
    let authority = s.program(id)?.authority;
    permit_seen(role, &[Grant::Admin, Grant::Auditor, Grant::Authority(authority)], PUBLIC, &id.to_string())?;
    s.outcome(id)
}

async fn outcome(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(program): Path<String>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, role| seen_outcome(s, role, &program)).await
}
