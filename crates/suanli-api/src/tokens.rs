//! Machine tokens: the admin issues one for a role (its secret is answered once and kept only
//! hashed) and revokes one by its number. `operate` lists them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use suanli_service::{ErrorCode, Role, ServiceError};

use crate::lifecycle::{Grant, actor, body, permit_endpoint, run};
use crate::{ApiError, AppState};

/// A role as tokens and people are given one.
pub const ROLE_PATTERN: &str = "^(admin|auditor|(authority-admin|authority-reviewer):ath-[1-9][0-9]{0,17}|enterprise:ent-[1-9][0-9]{0,17}|provider:prv-[1-9][0-9]{0,17})$";

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenJson {
    #[schemars(regex(pattern = crate::tokens::ROLE_PATTERN))]
    role: String,
    /// Seconds the token lasts [default: 90 days; at most 366 days].
    #[schemars(range(min = 60, max = 31_622_400))]
    expires_in_s: Option<i64>,
}

/// `POST /api/v1/tokens`: the platform admin issues a machine token for a role; the secret is
/// answered once and kept only hashed.
pub(crate) async fn issue_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: Result<Json<TokenJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = body(input)?;
    let role_for = Role::parse(&input.role)?;
    let secret = crate::login::new_secret().map_err(|e| ApiError::from(ServiceError::new(ErrorCode::Internal, e)))?;
    let hash = suanli_service::access::sha256_hex(&secret);
    run(&state, &headers, move |s, role| {
        permit_endpoint(role, &[Grant::Admin], "tokens")?;
        let ttl = input.expires_in_s.unwrap_or(suanli_service::access::TOKEN_TTL_DEFAULT_S);
        let id = s.issue_token_for(&actor(role), role_for, &hash, ttl)?;
        let expires_at = s.state().tokens[&id].expires_at_s.map(suanli_service::calendar::format_timestamp);
        Ok(IssuedToken { token: secret, token_id: format!("token-{id}"), role: role_for.to_string(), expires_at })
    })
    .await
}

/// A token just issued: its secret, shown this once.
#[derive(Serialize, schemars::JsonSchema)]
pub struct IssuedToken {
    pub token: String,
    /// `token-N`, as tokens are listed and revoked.
    pub token_id: String,
    pub role: String,
    /// RFC 3339.
    #[schemars(extend("format" = "date-time"))]
    pub expires_at: Option<String>,
}

/// A token revoked.
#[derive(Serialize, schemars::JsonSchema)]
pub struct RevokedToken {
    /// `token-N`, as tokens are listed and revoked.
    pub token_id: String,
    pub revoked: bool,
}

pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    _unused_body: Bytes,
) -> Result<Response, ApiError> {
    let id: u64 = token
        .strip_prefix("token-")
        .unwrap_or(&token)
        .parse()
        .map_err(|_| ApiError::field("token", "must be token-N"))?;
    run(&state, &headers, move |s, role| {
        permit_endpoint(role, &[Grant::Admin], "tokens")?;
        s.revoke_token(&actor(role), id)?;
        Ok(RevokedToken { token_id: format!("token-{id}"), revoked: true })
    })
    .await
}
