//! Lottery rounds over HTTP (`allocation = "lottery"` programmes): the authority's admin commits
//! a seed's SHA-256 before the round closes, reveals the seed to draw after it, and anyone who may
//! read the outcome sees each round redone from its seed (`suanli_service::lottery`).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use suanli_service::calendar::parse_timestamp;
use suanli_service::model::LotteryRound;
use suanli_service::{Actor, Role, Service, ServiceError, View};

use crate::lifecycle::{Grant, PUBLIC, body, permit_seen, read, run};
use crate::{ApiError, AppState};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitJson {
    /// The hex SHA-256 of the seed's UTF-8 bytes.
    #[schemars(regex(pattern = "^[0-9a-f]{64}$"))]
    seed_sha256: String,
    /// RFC 3339: applications submitted before it take part; the draw comes after it.
    #[schemars(extend("format" = "date-time"))]
    closes_at: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrawJson {
    /// 1 to 200 characters, none a control character.
    #[schemars(length(min = 1, max = 200), regex(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"))]
    seed: String,
}

/// A programme's lottery rounds.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Rounds {
    program: suanli_domain::ProgramId,
    rounds: Vec<RoundJson>,
}

/// A round with the result of redoing it from its seed.
#[derive(Serialize, schemars::JsonSchema)]
pub struct RoundJson {
    #[serde(flatten)]
    round: LotteryRound,
    /// For a drawn round: the seed matches the commitment and the draw redone from it is the one
    /// made.
    verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

/// The programme's admins act; everyone may know the programme exists.
pub(crate) fn permit_admin(s: &View, role: Role, program: &str) -> Result<suanli_domain::ProgramId, ServiceError> {
    let id = s.find_program(program)?;
    let authority = s.program(id)?.authority;
    permit_seen(role, &[Grant::Admin, Grant::AuthorityAdmin(authority)], PUBLIC, &id.to_string())?;
    Ok(id)
}

pub(crate) async fn commit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(program): Path<String>,
    input: Result<Json<CommitJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = body(input)?;
    let closes_at =
        parse_timestamp(&input.closes_at).ok_or_else(|| ApiError::field("closes_at", "must be an RFC 3339 time"))?;
    run(&state, &headers, move |s: &mut Service, role| {
        let id = permit_admin(s, role, &program)?;
        let round = s.commit_lottery(&Actor::of(role), id, &input.seed_sha256, closes_at)?;
        Ok(s.program(id)?.lotteries[round as usize - 1].clone())
    })
    .await
}

pub(crate) async fn draw(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(program): Path<String>,
    input: Result<Json<DrawJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = body(input)?;
    run(&state, &headers, move |s: &mut Service, role| {
        let id = permit_admin(s, role, &program)?;
        s.draw_lottery(&Actor::of(role), id, &input.seed)
    })
    .await
}

pub(crate) async fn rounds(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(program): Path<String>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, role| {
        let id = s.find_program(&program)?;
        let authority = s.program(id)?.authority;
        permit_seen(role, &[Grant::Admin, Grant::Auditor, Grant::Authority(authority)], PUBLIC, &id.to_string())?;
        let rounds: Vec<RoundJson> = s
            .program(id)?
            .lotteries
            .iter()
            .map(|round| {
                let check = round.drawn_at_s.map(|_| suanli_service::lottery::check_round(round));
                RoundJson {
                    round: round.clone(),
                    verified: check.as_ref().map(Result::is_ok),
                    problem: check.and_then(Result::err),
                }
            })
            .collect();
        Ok(Rounds { program: id, rounds })
    })
    .await
}
