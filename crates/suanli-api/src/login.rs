//! People log in with a name and password (argon2id, default parameters); a successful login
//! issues an ordinary API token for the user's role. Hashing and checking run on the blocking
//! pool, never on the writer or the async workers.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
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

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginJson {
    /// At most 256 bytes of UTF-8.
    #[schemars(length(min = 1, max = 256))]
    name: String,
    #[schemars(length(min = 1, max = 256))]
    password: String,
}

/// The client's address, put on each request by the server's accept loop.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress(pub std::net::IpAddr);

/// Wrong passwords allowed within [`WINDOW`]: per user name from one client address, per
/// client address, and per user name from anywhere (a guesser spread over many addresses).
pub const FAILURES_PER_NAME_MAX: u32 = 5;
pub const FAILURES_PER_ADDRESS_MAX: u32 = 20;
pub const FAILURES_PER_NAME_ANYWHERE_MAX: u32 = 50;
/// The window failures are counted in, and how long a key is then refused.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
pub const LOCKOUT: Duration = Duration::from_secs(5 * 60);
/// The most keys tracked at once. Past it, windows that are over are forgotten; if that is not
/// enough, new attempts are refused (never are lockouts dropped to make room).
const TRACKED_MAX: usize = 100_000;
/// Password checks (argon2, about 19 MiB each) running at once.
const VERIFICATIONS_MAX: usize = 4;
/// The longest name and password read.
const NAME_BYTES_MAX: usize = 256;
const PASSWORD_BYTES_MAX: usize = 1_024;

struct Failures {
    count: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

/// Logins counted per key. Each attempt is counted *before* its password is checked (a success
/// gives it back), so concurrent guesses cannot slip past the limit; past it the key is refused
/// 429 with `Retry-After` for [`LOCKOUT`], whatever the password, and the lockout is kept as an
/// anomaly.
pub struct Throttle {
    keys: Mutex<HashMap<String, Failures>>,
    verifications: tokio::sync::Semaphore,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle { keys: Mutex::default(), verifications: tokio::sync::Semaphore::new(VERIFICATIONS_MAX) }
    }
}

/// The keys one attempt counts against, with their limits.
/// Registrations from one address (or /64) in a window before it must wait out the lockout.
pub const REGISTRATIONS_PER_ADDRESS_MAX: u32 = 10;

/// The throttle's name for an address: an IPv6 client holds a whole /64, so count the network,
/// not the address.
fn network(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        v4 => v4.to_string(),
    }
}

impl Throttle {
    /// Counts a self-registration from `address` (every one counts, whatever its outcome);
    /// `Err(seconds)` while the address must wait.
    pub fn registration(&self, address: Option<std::net::IpAddr>) -> Result<(), u64> {
        let key = format!("register:{}", address.map_or_else(|| "unknown".to_owned(), network));
        self.attempt(&[(key, REGISTRATIONS_PER_ADDRESS_MAX)], Instant::now()).map(|_| ())
    }
}

fn keys(name: &str, address: Option<std::net::IpAddr>) -> Vec<(String, u32)> {
    let name = sha256_hex(name);
    let mut keys = vec![(format!("name:{name}"), FAILURES_PER_NAME_ANYWHERE_MAX)];
    if let Some(ip) = address {
        let network = network(ip);
        keys.push((format!("pair:{name}:{network}"), FAILURES_PER_NAME_MAX));
        keys.push((format!("address:{network}"), FAILURES_PER_ADDRESS_MAX));
    } else {
        keys.push((format!("pair:{name}:unknown"), FAILURES_PER_NAME_MAX));
    }
    keys
}

impl Throttle {
    /// Counts an attempt against every key, or refuses it with the seconds a lockout has left.
    /// Answers the keys this attempt locked (kept as anomalies).
    fn attempt(&self, keys: &[(String, u32)], now: Instant) -> Result<Vec<String>, u64> {
        let mut map = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() + keys.len() > TRACKED_MAX {
            map.retain(|_, f| now.duration_since(f.since) < WINDOW || f.locked_until.is_some_and(|u| u > now));
            if map.len() + keys.len() > TRACKED_MAX {
                return Err(LOCKOUT.as_secs());
            }
        }
        let locked = keys
            .iter()
            .filter_map(|(key, _)| map.get(key)?.locked_until.filter(|until| *until > now))
            .map(|until| (until - now).as_secs().max(1))
            .max();
        if let Some(seconds) = locked {
            return Err(seconds);
        }
        let mut newly = Vec::new();
        for (key, limit) in keys {
            let entry = map.entry(key.clone()).or_insert(Failures { count: 0, since: now, locked_until: None });
            if now.duration_since(entry.since) >= WINDOW {
                *entry = Failures { count: 0, since: now, locked_until: None };
            }
            entry.count += 1;
            if entry.count >= *limit {
                entry.locked_until = Some(now + LOCKOUT);
                entry.count = 0;
                entry.since = now;
                newly.push(key.clone());
            }
        }
        Ok(newly)
    }

    /// A successful login: its attempt is given back, and its name's count from its address
    /// starts again.
    fn succeeded(&self, keys: &[(String, u32)]) {
        let mut map = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        for (key, _) in keys {
            if key.starts_with("pair:") {
                map.remove(key);
            } else if let Some(entry) = map.get_mut(key) {
                entry.count = entry.count.saturating_sub(1);
            }
        }
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
    let address = address.map(|Extension(ClientAddress(ip))| ip);
    let done = log_in(&state, address, &input.name, &input.password).await?;
    Ok(Json(LoginAnswer {
        token: done.secret,
        token_id: format!("token-{}", done.token_id),
        role: done.role.to_string(),
        expires_in_s: done.ttl_s,
    })
    .into_response())
}

/// A login's answer: the bearer token (shown this once), its id, the role and its lifetime.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct LoginAnswer {
    pub token: String,
    /// `token-N`, as tokens are listed and revoked.
    pub token_id: String,
    pub role: String,
    pub expires_in_s: i64,
}

/// A successful login: a new token for the user's role.
pub struct LoggedIn {
    pub secret: String,
    pub token_id: u64,
    pub role: Role,
    pub ttl_s: i64,
}

/// Checks a name and password (throttled, argon2 off the async workers) and issues a login
/// token: the API's login and the console's share it.
pub async fn log_in(
    state: &AppState,
    address: Option<std::net::IpAddr>,
    name: &str,
    password: &str,
) -> Result<LoggedIn, ApiError> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(ApiError::field("name", format!("must be 1-{NAME_BYTES_MAX} bytes")));
    }
    if password.len() > PASSWORD_BYTES_MAX {
        return Err(ApiError::field("password", format!("must be at most {PASSWORD_BYTES_MAX} bytes")));
    }
    let keys = keys(name, address);
    let locked_now = state.logins.attempt(&keys, Instant::now()).map_err(too_many)?;
    for key in locked_now {
        let detail = format!("too many failed logins ({key}); refused for {} s", LOCKOUT.as_secs());
        let _ = state
            .writer
            .call(move |s| s.flag_anomaly(&suanli_service::Actor::server(), "login_throttled", &key, &detail))
            .await;
    }
    // Read beside the writer: a login never queues on it.
    let user = state.writer.view().state().users.get(name).cloned();
    // The same answer, and about the same work, whether the name or the password is wrong.
    let phc = user.as_ref().map(|u| u.password_phc.clone()).unwrap_or_else(|| DUMMY_PHC.to_owned());
    let password = password.to_owned();
    let matches = {
        let _permit = state.logins.verifications.acquire().await.map_err(|_| ApiError::overloaded("shutting down"))?;
        tokio::task::spawn_blocking(move || verify_password(&password, &phc)).await.unwrap_or(false)
    };
    let Some(user) = user.filter(|_| matches) else {
        return Err(ApiError::unauthenticated_with("name or password: no such user, or the password is wrong"));
    };
    if user.disabled {
        return Err(ApiError::unauthenticated_with("name: this login is disabled; ask the platform's operator"));
    }
    state.logins.succeeded(&keys);
    let secret = new_secret()
        .map_err(|e| ApiError::from(suanli_service::ServiceError::new(suanli_service::ErrorCode::Internal, e)))?;
    let hash = sha256_hex(&secret);
    let ttl_s = suanli_service::access::LOGIN_TOKEN_TTL_S;
    let (token_id, role) = state.writer.call(move |s| s.issue_login_token(&user.name, &hash, ttl_s)).await??;
    Ok(LoggedIn { secret, token_id, role, ttl_s })
}

/// A valid argon2id hash of a random string, checked against when the user does not exist.
pub const DUMMY_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2Ar0rZ3ME3YK7XKBEdU9+Tz39L8nvXUQWpCkeJb7cE0";
