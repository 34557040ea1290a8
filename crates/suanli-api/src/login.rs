//! People log in with a name and password (argon2id, default parameters); a successful login
//! issues an ordinary API token for the user's role. Hashing and checking run on the blocking
//! pool, never on the writer or the async workers.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use suanli_service::Role;
use suanli_service::access::{hex, sha256_hex};

use crate::{ApiError, AppState};

/// An argon2id PHC string for `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness from the operating system: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// A new random token secret: 32 bytes from the operating system, in hex.
pub fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness from the operating system: {e}"))?;
    Ok(format!("sl_{}", hex(&bytes)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginJson {
    name: String,
    password: String,
}

/// `POST /api/v1/login`: the one endpoint without a token.
pub async fn login(
    State(state): State<AppState>,
    input: Result<Json<LoginJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(input) = input.map_err(ApiError::from_json)?;
    let name = input.name.clone();
    let user = state.writer.call(move |s| Ok(s.state().users.get(&name).cloned())).await??;
    // The same answer, and about the same work, whether the name or the password is wrong.
    let phc = user.as_ref().map(|u| u.password_phc.clone()).unwrap_or_else(|| DUMMY_PHC.to_owned());
    let password = input.password.clone();
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &phc)).await.unwrap_or(false);
    let Some(user) = user.filter(|_| matches) else {
        return Err(ApiError::unauthenticated_with("name or password: no such user, or the password is wrong"));
    };
    let role = Role::parse(&user.role)?;
    let secret = new_secret()
        .map_err(|e| ApiError::from(suanli_service::ServiceError::new(suanli_service::ErrorCode::Internal, e)))?;
    let hash = sha256_hex(&secret);
    let actor = suanli_service::Actor::of(role);
    let id = state.writer.call(move |s| s.issue_token(&actor, role, &hash)).await??;
    Ok(Json(serde_json::json!({ "token": secret, "token_id": id, "role": role.to_string() })).into_response())
}

/// A valid argon2id hash of a random string, checked against when the user does not exist.
pub const DUMMY_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2Ar0rZ3ME3YK7XKBEdU9+Tz39L8nvXUQWpCkeJb7cE0";
