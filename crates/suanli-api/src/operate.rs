//! The platform's running: a provider changes or retires its pools; the platform admin keeps the
//! people who log in (add, disable, enable, set a password) and sees the tokens issued.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use suanli_domain::PoolId;
use suanli_service::{Role, Service, ServiceError};

use crate::lifecycle::{Grant, PUBLIC, Page, body, fen, id, known_action, permit_endpoint, permit_seen, read, run};
use crate::{ApiError, AppState};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("minProperties" = 1))]
pub struct PoolChangeJson {
    #[schemars(range(min = 1, max = 1_000_000))]
    pub gpus: Option<u32>,
    #[schemars(range(min = 1))]
    pub price_fen_per_gpu_hour: Option<i64>,
}

/// The pool's provider, who alone (with the admin) changes it; pools are public to read.
fn permit_pool(s: &Service, role: Role, pool: PoolId) -> Result<(), ServiceError> {
    let site = s.state().pools.get(&pool).ok_or_else(|| ServiceError::not_found(pool))?.site;
    let provider = s.state().sites[&site].spec.provider;
    permit_seen(role, &[Grant::Admin, Grant::Provider(provider)], PUBLIC, &pool.to_string())
}

/// Changes a pool's size or list price for new orders, or retires it; the API and the console
/// both go through here.
pub(crate) fn act_on_pool(
    s: &mut Service,
    role: Role,
    pool: PoolId,
    change: Option<(Option<u32>, Option<suanli_domain::Fen>)>,
) -> Result<(), ServiceError> {
    permit_pool(s, role, pool)?;
    let actor = suanli_service::Actor::of(role);
    match change {
        Some((gpus, price)) => s.change_pool(&actor, pool, gpus, price),
        None => s.retire_pool(&actor, pool),
    }
}

pub(crate) async fn change_pool(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(pool): Path<String>,
    input: Result<Json<PoolChangeJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let pool = id("pool", &pool, PoolId::parse)?;
    let input = body(input)?;
    let price = input.price_fen_per_gpu_hour.map(|p| fen("price_fen_per_gpu_hour", p)).transpose()?;
    run(&state, &headers, move |s, role| {
        act_on_pool(s, role, pool, Some((input.gpus, price)))?;
        Ok(s.state().pools[&pool].clone())
    })
    .await
}

pub(crate) async fn retire_pool(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(pool): Path<String>,
    _unused_body: Bytes,
) -> Result<Response, ApiError> {
    let pool = id("pool", &pool, PoolId::parse)?;
    run(&state, &headers, move |s, role| {
        act_on_pool(s, role, pool, None)?;
        Ok(s.state().pools[&pool].clone())
    })
    .await
}

/// A person who logs in, as the admin sees it: never the password's hash.
#[derive(Serialize, schemars::JsonSchema)]
pub struct UserJson {
    pub name: String,
    pub role: String,
    pub created_at_s: i64,
    pub disabled: bool,
}

pub(crate) fn users(s: &suanli_service::View) -> Vec<UserJson> {
    s.state()
        .users
        .values()
        .map(|u| UserJson {
            name: u.name.clone(),
            role: u.role.clone(),
            created_at_s: u.created_at_s,
            disabled: u.disabled,
        })
        .collect()
}

pub(crate) async fn list_users(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, role| {
        permit_endpoint(role, &[Grant::Admin], "users")?;
        page.window(users(s))
    })
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInputJson {
    #[schemars(regex(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$"))]
    name: String,
    #[schemars(regex(pattern = crate::tokens::ROLE_PATTERN))]
    role: String,
    #[schemars(length(min = 10, max = 256))]
    password: String,
}

/// The shortest password a person may be given.
pub const PASSWORD_CHARS_MIN: usize = 10;

/// The argon2 hash of a new password, computed off the async threads.
pub(crate) async fn new_password_hash(password: String) -> Result<String, ApiError> {
    let length = password.chars().count();
    if !(PASSWORD_CHARS_MIN..=256).contains(&length) {
        return Err(ApiError::field("password", format!("must be {PASSWORD_CHARS_MIN}-256 characters")));
    }
    tokio::task::spawn_blocking(move || crate::login::hash_password(&password))
        .await
        .map_err(|_| ApiError::from(ServiceError::new(suanli_service::ErrorCode::Internal, "hashing stopped")))?
        .map_err(|e| ApiError::from(ServiceError::new(suanli_service::ErrorCode::Internal, e)))
}

pub(crate) async fn add_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: Result<Json<UserInputJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = body(input)?;
    let role_for = Role::parse(&input.role)?;
    crate::authenticate(&state, &headers)?;
    let phc = new_password_hash(input.password).await?;
    run(&state, &headers, move |s, role| {
        permit_endpoint(role, &[Grant::Admin], "users")?;
        s.add_user(&suanli_service::Actor::of(role), &input.name, role_for, &phc)?;
        users(s).into_iter().find(|u| u.name == input.name).ok_or_else(|| ServiceError::not_found(&input.name))
    })
    .await
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordJson {
    #[schemars(length(min = 10, max = 256))]
    password: String,
}

/// `disable | enable | password {password}` on a person. Admin.
pub(crate) async fn user_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    known_action(&action, &["disable", "enable", "password"])?;
    let role = crate::authenticate(&state, &headers)?;
    permit_endpoint(role, &[Grant::Admin], "users")?;
    let phc = match action.as_str() {
        "password" => {
            let input: PasswordJson = serde_json::from_slice(&raw)
                .map_err(|e| ApiError::field("body", format!("expected {{\"password\": \"...\"}}: {e}")))?;
            Some(new_password_hash(input.password).await?)
        }
        _ => None,
    };
    run(&state, &headers, move |s, role| {
        act_on_user(s, role, &name, &action, phc.as_deref())?;
        users(s).into_iter().find(|u| u.name == name).ok_or_else(|| ServiceError::not_found(&name))
    })
    .await
}

/// The admin's actions on a person; the API and the console both go through here.
pub(crate) fn act_on_user(
    s: &mut Service,
    role: Role,
    name: &str,
    action: &str,
    password_phc: Option<&str>,
) -> Result<(), ServiceError> {
    permit_endpoint(role, &[Grant::Admin], "users")?;
    let actor = suanli_service::Actor::of(role);
    match (action, password_phc) {
        ("disable", _) => s.disable_user(&actor, name),
        ("enable", _) => s.enable_user(&actor, name),
        ("password", Some(phc)) => s.set_password(&actor, name, phc),
        _ => Err(ServiceError::not_found(format!("action {action:?}"))),
    }
}

/// A token as the admin sees it: never its secret or the secret's hash.
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "TokenListed")]
pub struct TokenJson {
    pub token_id: String,
    pub role: String,
    pub user: Option<String>,
    pub issued_at_s: i64,
    pub expires_at_s: Option<i64>,
    pub revoked: bool,
}

pub(crate) fn tokens(s: &suanli_service::View) -> Vec<TokenJson> {
    s.state()
        .tokens
        .values()
        .rev()
        .map(|t| TokenJson {
            token_id: format!("token-{}", t.id),
            role: t.role.clone(),
            user: t.user.clone(),
            issued_at_s: t.issued_at_s,
            expires_at_s: t.expires_at_s,
            revoked: t.revoked,
        })
        .collect()
}

/// Tokens, newest first (paged). Admin.
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, role| {
        permit_endpoint(role, &[Grant::Admin], "tokens")?;
        page.window(tokens(s))
    })
    .await
}

/// A programme file's preview: its checked terms, how many registered enterprises each rule
/// admits, and every enterprise's verdicts.
#[derive(Serialize, schemars::JsonSchema)]
pub struct PreviewJson {
    pub terms: suanli_service::model::ProgramTerms,
    pub enterprises_registered: usize,
    pub eligible: usize,
    pub rules: Vec<RuleCount>,
    pub enterprises: Vec<EnterpriseVerdicts>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct RuleCount {
    pub rule: String,
    pub admitted: usize,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct EnterpriseVerdicts {
    pub enterprise: String,
    pub name: String,
    pub eligible: bool,
    pub verdicts: Vec<VerdictJson>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct VerdictJson {
    pub rule: String,
    pub passed: bool,
    pub reason: String,
}

/// Who may preview a programme file: the platform admin, or the admin of the authority it names.
pub(crate) fn preview(
    s: &suanli_service::View,
    role: Role,
    source: &str,
    wording: suanli_domain::Wording,
) -> Result<PreviewJson, ServiceError> {
    if !matches!(role, Role::PlatformAdmin | Role::AuthorityAdmin(_)) {
        return Err(ServiceError::new(
            suanli_service::ErrorCode::Forbidden,
            format!("{role} may not preview programmes"),
        ));
    }
    let preview = s.preview_program(source, wording)?;
    if let Role::AuthorityAdmin(authority) = role {
        let region = s.state().authorities.get(&authority).map(|a| a.region);
        if region != Some(preview.terms.authority_region) {
            return Err(ServiceError::new(
                suanli_service::ErrorCode::Forbidden,
                format!("authority.region: {role} previews only programmes of its own region"),
            ));
        }
    }
    let names: Vec<String> = preview
        .enterprises
        .first()
        .map(|(_, verdicts)| verdicts.iter().map(|(rule, _)| rule.clone()).collect())
        .unwrap_or_else(|| {
            std::iter::once("applicant_kind".to_owned())
                .chain(preview.terms.eligibility.iter().map(|r| r.name.clone()))
                .collect()
        });
    let rules = names
        .iter()
        .enumerate()
        .map(|(i, rule)| RuleCount {
            rule: rule.clone(),
            admitted: preview.enterprises.iter().filter(|(_, v)| v.get(i).is_some_and(|(_, v)| v.passed)).count(),
        })
        .collect();
    let enterprises: Vec<EnterpriseVerdicts> = preview
        .enterprises
        .into_iter()
        .map(|(id, verdicts)| EnterpriseVerdicts {
            enterprise: id.to_string(),
            name: s.state().enterprises.get(&id).map(|e| e.name.clone()).unwrap_or_default(),
            eligible: verdicts.iter().all(|(_, v)| v.passed),
            verdicts: verdicts
                .into_iter()
                .map(|(rule, v)| VerdictJson { rule, passed: v.passed, reason: v.reason })
                .collect(),
        })
        .collect();
    Ok(PreviewJson {
        terms: preview.terms,
        enterprises_registered: enterprises.len(),
        eligible: enterprises.iter().filter(|e| e.eligible).count(),
        rules,
        enterprises,
    })
}

pub(crate) async fn preview_program(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: Result<Json<crate::lifecycle::ProgramFileJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = body(input)?;
    read(&state, &headers, move |s, role| preview(s, role, &input.toml, suanli_domain::Wording::English)).await
}
