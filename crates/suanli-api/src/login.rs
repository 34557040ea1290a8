//! People log in with a name and password (argon2id, default parameters); a successful login
//! issues an ordinary API token for the user's role. Hashing and checking run on the blocking
//! pool, never on the writer or the async workers.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::{Extension, Json};
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

/// The client's address, put on each request by the server's accept loop.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress(pub std::net::IpAddr);

/// Wrong passwords allowed per user name, and per client address, within [`WINDOW`].
pub const FAILURES_PER_NAME_MAX: u32 = 5;
pub const FAILURES_PER_ADDRESS_MAX: u32 = 20;
/// The window failures are counted in, and how long a name or address is then refused.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
pub const LOCKOUT: Duration = Duration::from_secs(5 * 60);
/// The most names and addresses tracked at once; past it, the oldest windows are forgotten.
const TRACKED_MAX: usize = 100_000;

struct Failures {
    count: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

/// Failed logins per user name and per client address: past the limit the key is refused 429
/// with `Retry-After` for [`LOCKOUT`], whatever the password, and the lockout is kept as an
/// anomaly.
#[derive(Default)]
pub struct Throttle {
    keys: Mutex<HashMap<String, Failures>>,
}

impl Throttle {
    /// Seconds left of a lockout on any of `keys`.
    fn locked(&self, keys: &[String], now: Instant) -> Option<u64> {
        let map = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|key| map.get(key)?.locked_until.filter(|until| *until > now))
            .map(|until| (until - now).as_secs().max(1))
            .max()
    }

    /// Counts a failure on each key; answers the keys that became locked now.
    fn failed(&self, keys: &[(String, u32)], now: Instant) -> Vec<String> {
        let mut map = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= TRACKED_MAX {
            map.retain(|_, f| now.duration_since(f.since) < WINDOW || f.locked_until.is_some_and(|u| u > now));
            if map.len() >= TRACKED_MAX {
                map.clear();
            }
        }
        let mut locked = Vec::new();
        for (key, limit) in keys {
            let entry = map.entry(key.clone()).or_insert(Failures { count: 0, since: now, locked_until: None });
            if now.duration_since(entry.since) >= WINDOW {
                *entry = Failures { count: 0, since: now, locked_until: None };
            }
            entry.count += 1;
            if entry.count >= *limit && entry.locked_until.is_none_or(|u| u <= now) {
                entry.locked_until = Some(now + LOCKOUT);
                entry.count = 0;
                entry.since = now;
                locked.push(key.clone());
            }
        }
        locked
    }

    fn succeeded(&self, name_key: &str) {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).remove(name_key);
    }
}

fn too_many(seconds: u64) -> ApiError {
    ApiError {
        retry_after_s: Some(u32::try_from(seconds).unwrap_or(u32::MAX)),
        ..ApiError::with_status(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("name or password: too many failed logins; try again in {seconds} s"),
        )
    }
}

/// `POST /api/v1/login`: the one endpoint without a token.
pub async fn login(
    State(state): State<AppState>,
    address: Option<Extension<ClientAddress>>,
    input: Result<Json<LoginJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(input) = input.map_err(ApiError::from_json)?;
    let name_key = format!("user:{}", input.name);
    let address_key = address.map(|Extension(ClientAddress(ip))| format!("address:{ip}"));
    let keys: Vec<String> = std::iter::once(name_key.clone()).chain(address_key.clone()).collect();
    if let Some(seconds) = state.logins.locked(&keys, Instant::now()) {
        return Err(too_many(seconds));
    }
    let name = input.name.clone();
    let user = state.writer.call(move |s| Ok(s.state().users.get(&name).cloned())).await??;
    // The same answer, and about the same work, whether the name or the password is wrong.
    let phc = user.as_ref().map(|u| u.password_phc.clone()).unwrap_or_else(|| DUMMY_PHC.to_owned());
    let password = input.password.clone();
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &phc)).await.unwrap_or(false);
    let Some(user) = user.filter(|_| matches) else {
        let mut counted = vec![(name_key, FAILURES_PER_NAME_MAX)];
        counted.extend(address_key.map(|key| (key, FAILURES_PER_ADDRESS_MAX)));
        for key in state.logins.failed(&counted, Instant::now()) {
            let detail = format!("too many failed logins for {key}; refused for {} s", LOCKOUT.as_secs());
            let _ = state
                .writer
                .call(move |s| s.flag_anomaly(&suanli_service::Actor::server(), "login_throttled", &key, &detail))
                .await;
        }
        return Err(ApiError::unauthenticated_with("name or password: no such user, or the password is wrong"));
    };
    state.logins.succeeded(&name_key);
    let role = Role::parse(&user.role)?;
    let secret = new_secret()
        .map_err(|e| ApiError::from(suanli_service::ServiceError::new(suanli_service::ErrorCode::Internal, e)))?;
    let hash = sha256_hex(&secret);
    let actor = suanli_service::Actor::of(role);
    let ttl = suanli_service::access::LOGIN_TOKEN_TTL_S;
    let id = state.writer.call(move |s| s.issue_token_for(&actor, role, &hash, ttl)).await??;
    Ok(Json(serde_json::json!({ "token": secret, "token_id": id, "role": role.to_string(), "expires_in_s": ttl }))
        .into_response())
}

/// A valid argon2id hash of a random string, checked against when the user does not exist.
pub const DUMMY_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2Ar0rZ3ME3YK7XKBEdU9+Tz39L8nvXUQWpCkeJb7cE0";
