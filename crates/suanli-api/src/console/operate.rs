//! The running of the platform in the console: a provider's sites and pools (size and price for
//! new orders, retire), and the platform admin's people (add, disable, enable, set a password),
//! tokens (revoke) and health. Every change is the API's own function (`operate::act_on_pool`,
//! `operate::act_on_user`, the service's `revoke_token`).

// A page's early answer (a redirect, a refusal) is a whole response, returned once per request.
#![allow(clippy::result_large_err)]

use std::sync::atomic::Ordering;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use suanli_domain::{Fen, PoolId};
use suanli_service::Role;

use super::i18n::{when, yuan};
use super::pages::{Pager, open, post_change, refuse, refused, window};
use super::{Ctx, html};
use crate::AppState;

// ------------------------------------------------------------------ sites and pools

pub struct PoolRow {
    pub id: String,
    pub chip: String,
    pub domestic: bool,
    pub gpus: u32,
    pub reserved: u32,
    pub load: String,
    pub price: String,
    pub price_yuan: String,
    pub retired: Option<String>,
}

pub struct SiteRow {
    pub id: String,
    pub name: String,
    pub provider: String,
    pub place: String,
    pub hub: String,
    pub verified: bool,
    pub pools: Vec<PoolRow>,
    pub can_change: bool,
}

#[derive(Template)]
#[template(path = "sites.html")]
struct SitesPage {
    ctx: Ctx,
    sites: Vec<SiteRow>,
}

/// `GET /sites`: a provider's own sites and pools with their load; the platform admin's and
/// auditor's view of all of them.
pub async fn sites(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "site.title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    let mine = match session.role {
        Role::Provider(p) => Some(p),
        Role::PlatformAdmin | Role::Auditor => None,
        _ => return refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden"),
    };
    let view = state.writer.view();
    let s = view.state();
    let chinese = ctx.tr.lang == super::Lang::Zh;
    let sites = s
        .sites
        .values()
        .filter(|site| mine.is_none_or(|p| site.spec.provider == p))
        .map(|site| SiteRow {
            id: site.id.to_string(),
            name: site.spec.name.clone(),
            provider: s
                .providers
                .get(&site.spec.provider)
                .map_or_else(|| site.spec.provider.to_string(), |p| p.name.clone()),
            place: site.spec.region.name().map_or_else(
                || site.spec.region.to_string(),
                |n| if chinese { n.chinese.to_owned() } else { n.english.to_owned() },
            ),
            hub: site.spec.hub.clone(),
            verified: site.verified_at_s.is_some(),
            can_change: matches!(session.role, Role::PlatformAdmin | Role::Provider(_)),
            pools: s
                .pools
                .values()
                .filter(|p| p.site == site.id)
                .map(|p| PoolRow {
                    id: p.id.to_string(),
                    chip: p.chip.clone(),
                    domestic: p.domestic,
                    gpus: p.gpu_count,
                    reserved: p.gpus_reserved,
                    load: format!("{:.0}%", f64::from(p.gpus_reserved) * 100.0 / f64::from(p.gpu_count.max(1))),
                    price: yuan(p.price_fen_per_gpu_hour),
                    price_yuan: format!(
                        "{}.{:02}",
                        p.price_fen_per_gpu_hour.fen() / 100,
                        p.price_fen_per_gpu_hour.fen() % 100
                    ),
                    retired: p.retired_at_s.map(when),
                })
                .collect(),
        })
        .collect();
    html(StatusCode::OK, &SitesPage { ctx, sites })
}

#[derive(Deserialize)]
pub struct PoolForm {
    form_token: String,
    gpus: Option<String>,
    price: Option<String>,
}

/// `POST /pools/{id}/{change|retire}`.
pub async fn pool_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<PoolForm>,
) -> Response {
    let ctx = || Ctx::new(&headers, &uri, None, "site.title");
    let Ok(pool) = PoolId::parse(&id) else {
        return refuse(ctx(), StatusCode::NOT_FOUND, "error.not_found");
    };
    let change = match action.as_str() {
        "retire" => None,
        "change" => {
            let gpus = match form.gpus.as_deref().map(str::trim).filter(|g| !g.is_empty()) {
                None => None,
                Some(text) => match text.parse::<u32>() {
                    Ok(n) => Some(n),
                    Err(_) => return refuse(ctx(), StatusCode::BAD_REQUEST, "site.bad_gpus"),
                },
            };
            let price = match form.price.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
                None => None,
                Some(text) => match Fen::parse_positive(text) {
                    Ok(fen) => Some(fen),
                    Err(_) => return refuse(ctx(), StatusCode::BAD_REQUEST, "error.amount"),
                },
            };
            Some((gpus, price))
        }
        _ => return refuse(ctx(), StatusCode::NOT_FOUND, "error.not_found"),
    };
    let done = if change.is_some() { "/sites?done=pool_changed" } else { "/sites?done=pool_retired" };
    match post_change(&state, &headers, &uri, &form.form_token, "site.title", move |s, role| {
        crate::operate::act_on_pool(s, role, pool, change)
    })
    .await
    {
        Ok(_) => Redirect::to(done).into_response(),
        Err(response) => response,
    }
}

// ------------------------------------------------------------------ people and tokens

pub struct UserRow {
    pub name: String,
    pub role: String,
    pub created: String,
    pub disabled: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    ctx: Ctx,
    users: Vec<UserRow>,
    roles: Vec<String>,
    pager: Pager,
}

/// Before any costly work on a form (hashing a password): the session is the platform admin's
/// and the form carries its token.
fn admin_form(state: &AppState, headers: &HeaderMap, uri: &Uri, token: &str) -> Result<(), Response> {
    let ctx = open_as_admin(state, headers, uri, "user.title")?;
    let session = super::pages::require(state, headers, uri)?;
    if super::pages::check_form(&session, token) {
        Ok(())
    } else {
        let message = ctx.tr.t("error.csrf").to_owned();
        Err(super::pages::error_page(ctx, StatusCode::FORBIDDEN, message))
    }
}

/// The frame of a page for the platform admin only: the redirect to log in, or the refusal.
fn open_as_admin(state: &AppState, headers: &HeaderMap, uri: &Uri, title: &'static str) -> Result<Ctx, Response> {
    let (session, ctx) = open(state, headers, uri, title)?;
    if session.role == Role::PlatformAdmin {
        Ok(ctx)
    } else {
        Err(refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden"))
    }
}

/// `GET /users`: the people who log in, and a form to add one. Admin.
pub async fn users(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = match open_as_admin(&state, &headers, &uri, "user.title") {
        Ok(ctx) => ctx,
        Err(answer) => return answer,
    };
    let view = state.writer.view();
    let (users, pager) = window(crate::operate::users(&view), &uri);
    let users = users
        .into_iter()
        .map(|u| UserRow { name: u.name, role: u.role, created: when(u.created_at_s), disabled: u.disabled })
        .collect();
    // The roles a person may be given: the fixed ones and each scope that exists.
    let s = view.state();
    let mut roles = vec!["admin".to_owned(), "auditor".to_owned()];
    for authority in s.authorities.keys() {
        roles.push(Role::AuthorityAdmin(*authority).to_string());
        roles.push(Role::AuthorityReviewer(*authority).to_string());
    }
    roles.extend(s.enterprises.keys().map(|e| Role::Enterprise(*e).to_string()));
    roles.extend(s.providers.keys().map(|p| Role::Provider(*p).to_string()));
    html(StatusCode::OK, &UsersPage { ctx, users, roles, pager })
}

#[derive(Deserialize)]
pub struct UserForm {
    form_token: String,
    name: Option<String>,
    role: Option<String>,
    password: Option<String>,
}

/// `POST /users` (add) and `POST /users/{name}/{disable|enable|password}`.
pub async fn add_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<UserForm>,
) -> Response {
    if let Err(refusal) = admin_form(&state, &headers, &uri, &form.form_token) {
        return refusal;
    }
    let ctx = Ctx::new(&headers, &uri, None, "user.title");
    let Ok(role_for) = Role::parse(form.role.as_deref().unwrap_or_default()) else {
        return refuse(ctx, StatusCode::BAD_REQUEST, "user.bad_role");
    };
    let phc = match crate::operate::new_password_hash(form.password.unwrap_or_default()).await {
        Ok(phc) => phc,
        Err(_) => return refuse(ctx, StatusCode::BAD_REQUEST, "register.bad_password"),
    };
    let name = form.name.unwrap_or_default().trim().to_owned();
    match post_change(&state, &headers, &uri, &form.form_token, "user.title", move |s, role| {
        crate::lifecycle::permit_endpoint(role, &[crate::lifecycle::Grant::Admin], "users")?;
        s.add_user(&suanli_service::Actor::of(role), &name, role_for, &phc)
    })
    .await
    {
        Ok(_) => Redirect::to("/users?done=user_added").into_response(),
        Err(response) => response,
    }
}

pub async fn user_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<UserForm>,
) -> Response {
    let ctx = || Ctx::new(&headers, &uri, None, "user.title");
    if !["disable", "enable", "password"].contains(&action.as_str()) {
        return refuse(ctx(), StatusCode::NOT_FOUND, "error.not_found");
    }
    if let Err(refusal) = admin_form(&state, &headers, &uri, &form.form_token) {
        return refusal;
    }
    let phc = if action == "password" {
        match crate::operate::new_password_hash(form.password.unwrap_or_default()).await {
            Ok(phc) => Some(phc),
            Err(_) => return refuse(ctx(), StatusCode::BAD_REQUEST, "register.bad_password"),
        }
    } else {
        None
    };
    let done = format!("/users?done=user_{action}");
    match post_change(&state, &headers, &uri, &form.form_token, "user.title", move |s, role| {
        crate::operate::act_on_user(s, role, &name, &action, phc.as_deref())
    })
    .await
    {
        Ok(_) => Redirect::to(&done).into_response(),
        Err(response) => response,
    }
}

pub struct TokenRow {
    pub id: u64,
    pub role: String,
    pub user: String,
    pub issued: String,
    pub expires: String,
    pub live: bool,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    ctx: Ctx,
    rows: Vec<TokenRow>,
    pager: Pager,
}

/// `GET /tokens`: every token, newest first, live ones with a revoke button. Admin.
pub async fn tokens(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = match open_as_admin(&state, &headers, &uri, "token.title") {
        Ok(ctx) => ctx,
        Err(answer) => return answer,
    };
    let view = state.writer.view();
    let now = view.now_s();
    let all: Vec<_> = view.state().tokens.values().rev().collect();
    let (page, pager) = window(all, &uri);
    let rows = page
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            role: t.role.clone(),
            user: t.user.clone().unwrap_or_default(),
            issued: when(t.issued_at_s),
            expires: t.expires_at_s.map_or_else(|| "—".to_owned(), when),
            live: !t.revoked && t.expires_at_s.is_none_or(|e| e > now),
        })
        .collect();
    html(StatusCode::OK, &TokensPage { ctx, rows, pager })
}

#[derive(Deserialize)]
pub struct RevokeForm {
    form_token: String,
}

pub async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<u64>,
    Form(form): Form<RevokeForm>,
) -> Response {
    match post_change(&state, &headers, &uri, &form.form_token, "token.title", move |s, role| {
        crate::lifecycle::permit_endpoint(role, &[crate::lifecycle::Grant::Admin], "tokens")?;
        s.revoke_token(&suanli_service::Actor::of(role), id)
    })
    .await
    {
        Ok(_) => Redirect::to("/tokens?done=token_revoked").into_response(),
        Err(response) => response,
    }
}

// ------------------------------------------------------------------ health

#[derive(Template)]
#[template(path = "health.html")]
struct HealthPage {
    ctx: Ctx,
    ready: bool,
    figures: Vec<(&'static str, String)>,
}

/// `GET /health`: whether storage takes writes, the writer's queue and commits, the log's
/// length, and what the service holds. Admin and auditor.
pub async fn health(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "health.title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    if !matches!(session.role, Role::PlatformAdmin | Role::Auditor) {
        return refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden");
    }
    let log_entries = match state.writer.log_page(0, 1).await {
        Ok(Ok((_, total))) => total,
        Ok(Err(error)) => return refused(ctx, &crate::ApiError::from(error)),
        Err(refusal) => return refused(ctx, &crate::ApiError::from(refusal)),
    };
    let stats = &state.writer.stats;
    let view = state.writer.view();
    let s = view.state();
    let figures = vec![
        ("health.now", when(view.now_s())),
        ("health.queue", stats.queue_depth.load(Ordering::Relaxed).to_string()),
        ("health.commits", stats.commits.load(Ordering::Relaxed).to_string()),
        ("health.records", stats.records_applied.load(Ordering::Relaxed).to_string()),
        ("health.checkpoints", stats.checkpoints.load(Ordering::Relaxed).to_string()),
        ("health.log_entries", log_entries.to_string()),
        ("health.usage", (s.usage_recorded + s.usage_refused).to_string()),
        ("health.programs", s.programs.len().to_string()),
        ("health.enterprises", s.enterprises.len().to_string()),
        ("health.orders", format!("{} + {}", s.orders.len(), s.orders_archived)),
        ("health.tokens", s.tokens.len().to_string()),
    ];
    html(StatusCode::OK, &HealthPage { ctx, ready: state.writer.is_ready(), figures })
}
