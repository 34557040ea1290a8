//! The web console at `/`: server-rendered pages (askama templates, compiled in), in Simplified
//! Chinese by default and English one click away, with no script. Each role sees its own pages,
//! filtered by the same rules as the API (`lifecycle::visible_*`, `permit`), and every change goes
//! through the same service call as the API's.
//!
//! A login sets an `HttpOnly`, `SameSite=Strict` session cookie holding an ordinary login token
//! (12 hours); logging out revokes it. Every form carries a token derived from the session
//! secret, checked on each post, so a page of another site cannot post in the user's name.

mod chart;
mod editor;
mod enterprise;
mod filter;
pub mod i18n;
mod insight;
mod map;
mod market;
mod operate;
mod oversight;
mod pages;
mod requests;
mod usage;

use askama::Template;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use suanli_service::Role;
use suanli_service::access::sha256_hex;

use crate::{ApiError, AppState};
pub use i18n::{Lang, Tr};

pub const SESSION_COOKIE: &str = "suanli_session";
pub const LANG_COOKIE: &str = "suanli_lang";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/lang/{code}", get(choose_language))
        .route("/static/console.css", get(stylesheet))
        .route("/static/console.js", get(script))
        .route("/programs", get(pages::programs))
        .route("/programs/new", get(editor::new_program))
        .route("/programs/editor", post(editor::submit))
        .route("/programs/{program}", get(pages::program))
        .route("/programs/{program}/edit", get(editor::edit_program))
        .route("/programs/{program}/state/{action}", post(editor::change_state))
        .route("/programs/{program}/lottery/{action}", post(editor::lottery))
        .route("/programs/{program}/spend.csv", get(pages::program_csv))
        .route("/programs/{program}/outcome", get(insight::outcome_page))
        .route("/programs/{program}/outcome.csv", get(insight::outcome_csv))
        .route("/apply", get(pages::apply_page))
        .route("/apply/{program}", post(pages::apply))
        .route("/applications", get(pages::applications))
        .route("/applications/{application}/{action}", post(pages::decide_application))
        .route("/vouchers", get(pages::vouchers))
        .route("/vouchers/{voucher}/{action}", post(pages::voucher_action))
        .route("/register", get(enterprise::register_form).post(enterprise::register))
        .route("/register/uscc", get(enterprise::check_uscc))
        .route("/quote", get(enterprise::quote))
        .route("/quote/place", post(enterprise::place))
        .route("/quote/submit", post(requests::submit))
        .route("/requests", get(requests::requests))
        .route("/market", get(market::market))
        .route("/market/offers", post(market::post_offer))
        .route("/market/offers/{offer}/withdraw", post(market::withdraw_offer))
        .route("/market/clear", post(market::clear))
        .route("/requests/{request}/withdraw", post(requests::withdraw))
        .route("/orders", get(pages::orders))
        .route("/orders/{order}", get(enterprise::order))
        .route("/orders/{order}/{action}", post(enterprise::order_action))
        .route("/statements", get(pages::statements))
        .route("/statements/issue", post(oversight::issue_statement))
        .route("/statements/{statement}/approve", post(pages::approve_statement))
        .route("/audit", get(pages::audit))
        .route("/audit/run", post(oversight::run_audit))
        .route("/anomalies", get(oversight::anomalies))
        .route("/sites", get(operate::sites))
        .route("/pools/{pool}/{action}", post(operate::pool_action))
        .route("/users", get(operate::users).post(operate::add_user))
        .route("/users/{name}/{action}", post(operate::user_action))
        .route("/tokens", get(operate::tokens))
        .route("/tokens/{token}/revoke", post(operate::revoke_token))
        .route("/health", get(operate::health))
        .route("/bill", get(insight::bill_page))
        .route("/bill.csv", get(insight::bill_csv))
        .route("/network", get(insight::network_page))
        .route("/network.csv", get(insight::network_csv))
}

/// Who is logged in: the role of the session's token, and the token's secret (for the form token
/// and for logging out).
pub struct Session {
    pub role: Role,
    pub secret: String,
}

impl Session {
    pub fn from_headers(state: &AppState, headers: &HeaderMap) -> Option<Session> {
        let secret = cookie(headers, SESSION_COOKIE)?;
        let role = state.writer.view().authenticate(secret)?;
        Some(Session { role, secret: secret.to_owned() })
    }

    /// The token every form of this session carries.
    pub fn form_token(&self) -> String {
        sha256_hex(&format!("suanli-console-form:{}", self.secret))[..32].to_owned()
    }
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The language: the one chosen (cookie), else the browser's (`Accept-Language`), else Chinese.
pub fn language(headers: &HeaderMap) -> Lang {
    if let Some(lang) = cookie(headers, LANG_COOKIE).and_then(Lang::parse) {
        return lang;
    }
    headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).map_or(Lang::Zh, Lang::from_accept_language)
}

/// A link of the navigation bar.
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// What every page's frame shows.
pub struct Ctx {
    pub tr: Tr,
    pub title: String,
    pub nav: Vec<NavItem>,
    pub who: Option<String>,
    pub switch_href: String,
    pub error: Option<String>,
    pub notice: Option<String>,
    pub form_token: String,
}

impl Ctx {
    pub fn new(headers: &HeaderMap, uri: &Uri, session: Option<&Session>, title: &'static str) -> Ctx {
        let tr = Tr { lang: language(headers) };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let nav = session.map(|s| navigation(tr, s.role, uri.path())).unwrap_or_default();
        let who = session.map(|s| role_label(tr, s.role));
        let notice = uri
            .query()
            .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("done=")))
            .and_then(|key| NOTICES.iter().find(|(k, _)| *k == key))
            .map(|(_, text)| tr.t(text).to_owned());
        Ctx {
            tr,
            title: tr.t(title).to_owned(),
            nav,
            who,
            switch_href: format!("/lang/{}?next={}", tr.lang.other().code(), percent_encode(path)),
            error: None,
            notice,
            form_token: session.map(Session::form_token).unwrap_or_default(),
        }
    }

    pub fn with_error(mut self, error: String) -> Ctx {
        self.error = Some(error);
        self
    }

    /// An error in the reader's language: the translation of its code where there is one, and
    /// the service's own message (which names the field).
    pub fn explain(&self, error: &ApiError) -> String {
        let key = format!("error.{}", error.code);
        match self.tr.get(&key) {
            Some(text) if error.code == "not_found" || error.code == "forbidden" => text.to_owned(),
            Some(text) => format!("{text} ({})", error.message),
            None => error.message.clone(),
        }
    }
}

/// The notices a redirect after a change may ask for (`?done=approved`): only these keys are
/// shown, so a link cannot put words on the page.
const NOTICES: &[(&str, &str)] = &[
    ("submitted", "notice.submitted"),
    ("approved", "notice.approved"),
    ("rejected", "notice.rejected"),
    ("suspended", "notice.suspended"),
    ("reinstated", "notice.reinstated"),
    ("revoked", "notice.revoked"),
    ("statement_approved", "notice.statement_approved"),
    ("registered", "notice.registered"),
    ("placed", "notice.placed"),
    ("request_submitted", "notice.request_submitted"),
    ("request_withdrawn", "notice.request_withdrawn"),
    ("offer_posted", "notice.offer_posted"),
    ("offer_withdrawn", "notice.offer_withdrawn"),
    ("market_cleared", "notice.market_cleared"),
    ("statement_issued", "notice.statement_issued"),
    ("order_start", "notice.order_start"),
    ("order_complete", "notice.order_complete"),
    ("order_cancel", "notice.order_cancel"),
    ("pool_changed", "notice.pool_changed"),
    ("pool_retired", "notice.pool_retired"),
    ("user_added", "notice.user_added"),
    ("user_disable", "notice.user_disable"),
    ("user_enable", "notice.user_enable"),
    ("user_password", "notice.user_password"),
    ("token_revoked", "notice.token_revoked"),
    ("program_saved", "notice.program_saved"),
    ("program_open", "notice.program_open"),
    ("program_close", "notice.program_close"),
    ("program_finish", "notice.program_finish"),
    ("lottery_commit", "notice.lottery_commit"),
    ("lottery_draw", "notice.lottery_draw"),
];

fn role_label(tr: Tr, role: Role) -> String {
    let (key, id) = match role {
        Role::PlatformAdmin => ("role.admin", String::new()),
        Role::Auditor => ("role.auditor", String::new()),
        Role::AuthorityAdmin(a) => ("role.authority_admin", a.to_string()),
        Role::AuthorityReviewer(a) => ("role.authority_reviewer", a.to_string()),
        Role::Enterprise(e) => ("role.enterprise", e.to_string()),
        Role::Provider(p) => ("role.provider", p.to_string()),
    };
    if id.is_empty() { tr.t(key).to_owned() } else { format!("{} {id}", tr.t(key)) }
}

/// Who a page of the navigation bar is for.
#[derive(Clone, Copy)]
enum For {
    Everyone,
    /// The platform's admin and auditor, and authorities.
    Overseers,
    /// The platform's admin and auditor.
    Platform,
    Admin,
    Enterprises,
    Providers,
    /// Authorities, the platform's overseers and providers (statements).
    NotEnterprises,
    /// Everyone but providers (applications, vouchers).
    NotProviders,
}

impl For {
    fn admits(self, role: Role) -> bool {
        let platform = matches!(role, Role::PlatformAdmin | Role::Auditor);
        let authority = matches!(role, Role::AuthorityAdmin(_) | Role::AuthorityReviewer(_));
        match self {
            For::Everyone => true,
            For::Overseers => platform || authority,
            For::Platform => platform,
            For::Admin => role == Role::PlatformAdmin,
            For::Enterprises => matches!(role, Role::Enterprise(_)),
            For::Providers => matches!(role, Role::Provider(_)),
            For::NotEnterprises => !matches!(role, Role::Enterprise(_)),
            For::NotProviders => !matches!(role, Role::Provider(_)),
        }
    }
}

/// Every page of the navigation bar, in the order the work goes, and who has it.
const NAVIGATION: &[(&str, &str, For)] = &[
    ("/programs", "nav.programs", For::Everyone),
    ("/apply", "nav.apply", For::Enterprises),
    ("/applications", "nav.applications", For::NotProviders),
    ("/vouchers", "nav.vouchers", For::NotProviders),
    ("/quote", "nav.quote", For::Enterprises),
    ("/sites", "nav.sites", For::Providers),
    ("/orders", "nav.orders", For::Everyone),
    ("/requests", "nav.requests", For::NotProviders),
    ("/market", "nav.market", For::Everyone),
    ("/bill", "nav.bill", For::Enterprises),
    ("/statements", "nav.statements", For::NotEnterprises),
    ("/network", "nav.network", For::Overseers),
    ("/sites", "nav.sites", For::Platform),
    ("/anomalies", "nav.anomalies", For::Overseers),
    ("/audit", "nav.audit", For::Platform),
    ("/users", "nav.users", For::Admin),
    ("/tokens", "nav.tokens", For::Admin),
    ("/health", "nav.health", For::Platform),
];

/// The pages a role has, in the order its work goes.
fn navigation(tr: Tr, role: Role, path: &str) -> Vec<NavItem> {
    NAVIGATION
        .iter()
        .filter(|(_, _, who)| who.admits(role))
        .map(|(href, key, _)| NavItem {
            href,
            label: tr.t(key),
            current: path == *href || path.starts_with(&format!("{href}/")),
        })
        .collect()
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A `next` target that stays on this site: a path, never `//host` or a scheme.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        // Only plain path characters: a tab or a newline would be dropped by the browser and
        // `/\t/host` would become `//host`.
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_.~?=&%-".contains(&b)) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[derive(serde::Deserialize)]
struct Next {
    next: Option<String>,
}

/// `GET /lang/{zh|en}?next=/path`: remembers the language for a year and goes back.
async fn choose_language(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path(code): axum::extract::Path<String>,
    axum::extract::Query(next): axum::extract::Query<Next>,
) -> Response {
    let Some(lang) = Lang::parse(&code) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = Redirect::to(&local_path(next.next.as_deref())).into_response();
    let cookie = format!("{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax", lang.code());
    add_cookie(&mut response, &state, &cookie);
    response
}

/// The cookie that pairs a visitor's form (logging in, registering) with its browser before there
/// is a session: a page of another site cannot read it, so cannot post in the visitor's name (nor
/// log the visitor into the other site's account).
pub const VISITOR_COOKIE: &str = "suanli_visitor";

/// The visitor's token: the one its cookie holds, or a new one (`None` if the system has no
/// randomness to give).
pub fn visitor_token(headers: &HeaderMap) -> Option<String> {
    let held = cookie(headers, VISITOR_COOKIE).filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()));
    match held {
        Some(token) => Some(token.to_owned()),
        None => crate::login::new_secret().ok().map(|secret| sha256_hex(&secret)[..32].to_owned()),
    }
}

/// Whether a visitor's form carries the token its cookie holds.
pub fn visitor_form_ok(headers: &HeaderMap, token: &str) -> bool {
    cookie(headers, VISITOR_COOKIE).is_some_and(|held| held.len() == 32 && held == token)
}

/// Sets the visitor cookie on a page that carries its token.
pub fn add_visitor_cookie(response: &mut Response, state: &AppState, token: &str) {
    add_cookie(response, state, &format!("{VISITOR_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600"));
}

/// Adds a cookie to the answer, marked `Secure` when the deployment is served over TLS
/// (`serve --secure-cookies`), so the browser never sends it over plain HTTP.
pub fn add_cookie(response: &mut Response, state: &AppState, cookie: &str) {
    let text = if state.secure_cookies { format!("{cookie}; Secure") } else { cookie.to_owned() };
    if let Ok(value) = HeaderValue::from_str(&text) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The answer to a login: the session cookie (the login token, `HttpOnly`, `SameSite=Strict`,
/// as long as the token lives) and the way on.
pub fn logged_in(state: &AppState, next: &str, done: &crate::login::LoggedIn) -> Response {
    let mut response = Redirect::to(next).into_response();
    let cookie = format!("{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", done.secret, done.ttl_s);
    add_cookie(&mut response, state, &cookie);
    response
}

/// The console's only script: the USCC checked on the server as it is typed. Every form works
/// without it.
async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../templates/console.js"),
    )
        .into_response()
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../templates/console.css"),
    )
        .into_response()
}

/// A rendered page, with the headers every console page carries: no caching of what a user saw,
/// no framing by other sites, no script or outside asset.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::X_FRAME_OPTIONS, "DENY"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                ),
                (header::REFERRER_POLICY, "same-origin"),
            ],
            body,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("the page could not be drawn: {error}")).into_response(),
    }
}
