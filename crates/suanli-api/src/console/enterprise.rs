//! An enterprise's own way in: registering itself (its USCC checked on the server as it is typed),
//! quoting an order with a map of where it would run, placing it, and following the order.

// A page's early answer (a redirect, a refusal) is a whole response, returned once per request.
#![allow(clippy::result_large_err)]

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Json, Redirect, Response};
use serde::Deserialize;
use suanli_domain::{ApplicantKind, EnterpriseId, Fen, OrderId, PoolId, Uscc, UsccError, VoucherId};
use suanli_service::model::{Purpose, Quote, VoucherState};
use suanli_service::{Actor, EnterpriseInput, PoolRequest, Role, View};

use super::i18n::{Tr, percent, when, yuan};
use super::map::{Mark, MarkKind};
use super::pages::{error_page, open, post_change, refuse, refused, state_text};
use super::{Ctx, Session, html};
use crate::login::ClientAddress;
use crate::{ApiError, AppState};

// ------------------------------------------------------------------ registering

/// What the registration form shows again after a refusal (never the password).
#[derive(Default, Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    form_token: String,
    #[serde(default)]
    uscc: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    headcount: String,
    #[serde(default)]
    revenue: String,
    #[serde(default)]
    research_projects: String,
    #[serde(default)]
    username: String,
    #[serde(default, skip_serializing)]
    password: String,
}

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage {
    ctx: Ctx,
    visitor: String,
    form: RegisterForm,
    kinds: Vec<(&'static str, &'static str)>,
}

const KINDS: [(&str, &str); 3] = [
    ("sme", "register.kind_sme"),
    ("startup", "register.kind_startup"),
    ("research_institute", "register.kind_research"),
];

/// The shortest password a registration accepts.
pub const PASSWORD_CHARS_MIN: usize = 10;

fn register_page(state: &AppState, ctx: Ctx, status: StatusCode, visitor: String, mut form: RegisterForm) -> Response {
    form.password.clear();
    let kinds = KINDS.iter().map(|(code, key)| (*code, ctx.tr.t(key))).collect();
    let mut response = html(status, &RegisterPage { ctx, visitor: visitor.clone(), form, kinds });
    super::add_visitor_cookie(&mut response, state, &visitor);
    response
}

/// `GET /register`: the form, open to anyone.
pub async fn register_form(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri, None, "register.title");
    let Some(visitor) = super::visitor_token(&headers) else {
        return error_page(ctx, StatusCode::INTERNAL_SERVER_ERROR, "no randomness from the operating system".into());
    };
    register_page(&state, ctx, StatusCode::OK, visitor, RegisterForm::default())
}

/// A USCC's verdict in the reader's language: empty when the code is valid.
pub fn uscc_reason(tr: Tr, error: &UsccError) -> String {
    match error {
        UsccError::WrongLength(n) => tr.fill("uscc.length", &[("n", &n.to_string())]),
        UsccError::InvalidCharacter { position, found } => {
            tr.fill("uscc.character", &[("position", &position.to_string()), ("found", &found.to_string())])
        }
        UsccError::UnknownRegistrationAuthority(c) => tr.fill("uscc.authority", &[("found", &c.to_string())]),
        UsccError::UnknownOrganisationKind { authority, kind } => {
            tr.fill("uscc.kind", &[("authority", &authority.to_string()), ("found", &kind.to_string())])
        }
        UsccError::Region(_) => tr.t("uscc.region").to_owned(),
        UsccError::OrganisationCodeCheck { expected, found } => {
            tr.fill("uscc.organisation", &[("expected", &expected.to_string()), ("found", &found.to_string())])
        }
        UsccError::CheckCharacter { expected, found } => {
            tr.fill("uscc.check", &[("expected", &expected.to_string()), ("found", &found.to_string())])
        }
    }
}

#[derive(Deserialize)]
pub struct CheckQuery {
    #[serde(default)]
    value: String,
}

/// `GET /register/uscc?value=...`: the server's verdict on a USCC, for the form to show as it is
/// typed (`{"ok": bool, "message": "..."}`); the registration itself checks it again.
pub async fn check_uscc(headers: HeaderMap, Query(query): Query<CheckQuery>) -> Response {
    let tr = Tr { lang: super::language(&headers) };
    let value = query.value.trim();
    let (ok, message) = match Uscc::parse(value) {
        Ok(uscc) => {
            let region = uscc.region().name().map(|n| if tr.lang == super::Lang::Zh { n.chinese } else { n.english });
            (true, tr.fill("uscc.valid", &[("region", region.unwrap_or("?"))]))
        }
        Err(error) => (false, uscc_reason(tr, &error)),
    };
    ([(header::CACHE_CONTROL, "no-store")], Json(serde_json::json!({ "ok": ok, "message": message }))).into_response()
}

/// The registration's fields, checked in the order of the form; the first wrong one is named.
fn registration(tr: Tr, form: &RegisterForm) -> Result<EnterpriseInput, String> {
    let field = |key: &'static str, reason: String| format!("{}: {reason}", tr.t(key));
    let uscc = Uscc::parse(form.uscc.trim()).map_err(|e| field("register.uscc", uscc_reason(tr, &e)))?;
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(field("register.name", tr.t("register.bad_name").to_owned()));
    }
    let kind =
        ApplicantKind::parse(&form.kind).map_err(|_| field("register.kind", tr.t("register.bad_kind").into()))?;
    let headcount: u32 =
        form.headcount.trim().parse().map_err(|_| field("register.headcount", tr.t("register.bad_count").into()))?;
    let revenue_fen = match form.revenue.trim() {
        "" => Fen::ZERO,
        text => Fen::parse(text)
            .ok()
            .filter(|f| f.fen() >= 0)
            .ok_or_else(|| field("register.revenue", tr.t("error.amount").into()))?,
    };
    let research_projects: Vec<String> =
        form.research_projects.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    if research_projects.len() > 50 {
        return Err(field("register.research_projects", tr.t("register.bad_projects").into()));
    }
    let username = form.username.trim();
    let name_ok = !username.is_empty()
        && username.len() <= 64
        && username.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if !name_ok {
        return Err(field("register.username", tr.t("register.bad_username").into()));
    }
    let length = form.password.chars().count();
    if !(PASSWORD_CHARS_MIN..=256).contains(&length) {
        return Err(field("register.password", tr.t("register.bad_password").into()));
    }
    Ok(EnterpriseInput {
        region: uscc.region(),
        uscc,
        name: name.to_owned(),
        kind,
        headcount,
        revenue_fen,
        research_projects,
        related_parties: Vec::new(),
    })
}

/// `POST /register`: the enterprise and its login, then a session, then the eligibility
/// pre-check. Everything is checked before anything is written.
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    address: Option<Extension<ClientAddress>>,
    form: Result<Form<RegisterForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let ctx = Ctx::new(&headers, &uri, None, "register.title");
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let Some(visitor) = Some(form.form_token.clone()).filter(|t| super::visitor_form_ok(&headers, t)) else {
        let message = ctx.tr.t("error.csrf").to_owned();
        return error_page(ctx, StatusCode::FORBIDDEN, message);
    };
    let address = address.map(|Extension(ClientAddress(ip))| ip);
    if state.logins.registration(address).is_err() {
        return refuse(ctx, StatusCode::TOO_MANY_REQUESTS, "register.too_many");
    }
    let input = match registration(ctx.tr, &form) {
        Ok(input) => input,
        Err(message) => return register_page(&state, ctx.with_error(message), StatusCode::BAD_REQUEST, visitor, form),
    };
    let password = form.password.clone();
    let phc = match tokio::task::spawn_blocking(move || crate::login::hash_password(&password)).await {
        Ok(Ok(phc)) => phc,
        _ => return error_page(ctx, StatusCode::INTERNAL_SERVER_ERROR, "password hashing failed".into()),
    };
    let username = form.username.trim().to_owned();
    let login = username.clone();
    let created = state
        .writer
        // The enterprise and its login in one commit: both, or neither.
        .call(move |s| s.register_with_login(&Actor::visitor(), input, &login, &phc))
        .await;
    match created {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            let message = ctx.explain(&ApiError::from(error));
            return register_page(&state, ctx.with_error(message), StatusCode::CONFLICT, visitor, form);
        }
        Err(refusal) => return refused(ctx, &ApiError::from(refusal)),
    }
    match crate::login::log_in(&state, address, &username, &form.password).await {
        Ok(done) => super::logged_in(&state, "/apply?done=registered", &done),
        Err(_) => Redirect::to("/login?next=/apply").into_response(),
    }
}

// ------------------------------------------------------------------ quoting

#[derive(Default, Deserialize)]
pub struct QuoteQuery {
    #[serde(default)]
    voucher: String,
    #[serde(default)]
    chip: String,
    #[serde(default)]
    gpus: String,
    #[serde(default)]
    hours: String,
    #[serde(default)]
    purpose: String,
}

/// A pool as a quote shows it: where it is and what it costs.
pub struct QuotedPool {
    pub pool: String,
    pub site: String,
    pub place: String,
    pub hub: String,
    pub chip: String,
    pub speed: String,
    pub price: String,
    pub list_cost: String,
    pub voucher_share: String,
    pub own_share: String,
    pub limited_by: String,
}

pub struct Answer {
    /// The tier that served the quote and why each tier below could not (a programme with tiers).
    pub tier: String,
    pub escalated: Vec<String>,
    pub chosen: QuotedPool,
    pub alternatives: Vec<QuotedPool>,
    pub excluded: Vec<(String, String)>,
    pub map: String,
    pub rate: String,
    pub credits: String,
}

#[derive(Template)]
#[template(path = "quote.html")]
struct QuotePage {
    ctx: Ctx,
    vouchers: Vec<(String, String)>,
    chips: Vec<String>,
    purposes: Vec<(&'static str, &'static str)>,
    query: QuoteQuery,
    answer: Option<Answer>,
}

/// The engine's speed class for a purpose (`data/speed.csv`), relative to an A800.
fn speed_class(purpose: Purpose) -> Option<&'static str> {
    match purpose {
        Purpose::Training => Some("llm-train"),
        Purpose::Inference => Some("llm-inference"),
        Purpose::FineTuning => Some("fine-tune"),
        Purpose::Data => None,
    }
}

fn quoted(tr: Tr, view: &View, quote: &Quote, purpose: Purpose) -> (QuotedPool, Option<(f64, f64)>) {
    let s = view.state();
    let pool = s.pools.get(&quote.pool);
    let site = pool.and_then(|p| s.sites.get(&p.site));
    let chip = pool.map_or_else(String::new, |p| p.chip.clone());
    let speed = speed_class(purpose)
        .and_then(|class| {
            let table = suanli_placement::network::speed_table();
            let registry = suanli_service::chips::find(&chip).map_or(chip.to_ascii_lowercase(), |c| c.name.clone());
            table.get(class)?.get(&registry.to_ascii_lowercase()).copied()
        })
        .map_or_else(|| "—".to_owned(), |speed| format!("{speed:.1}×"));
    let place = site.map_or_else(String::new, |site| {
        site.spec.region.name().map_or_else(
            || site.spec.region.to_string(),
            |n| if tr.lang == super::Lang::Zh { n.chinese.to_owned() } else { n.english.to_owned() },
        )
    });
    let answer = QuotedPool {
        pool: quote.pool.to_string(),
        site: site.map_or_else(String::new, |site| site.spec.name.clone()),
        place,
        hub: site.map_or_else(String::new, |site| site.spec.hub.clone()),
        chip,
        speed,
        price: yuan(quote.price_fen_per_gpu_hour),
        list_cost: yuan(quote.list_cost_fen),
        voucher_share: yuan(quote.voucher_share_fen),
        own_share: yuan(quote.enterprise_share_fen),
        limited_by: quote.limited_by.as_deref().map(|why| limit_words(tr, why)).unwrap_or_default(),
    };
    (answer, site.map(|site| (site.spec.longitude, site.spec.latitude)))
}

pub(super) fn request(enterprise: EnterpriseId, query: &QuoteQuery) -> Result<PoolRequest, &'static str> {
    Ok(PoolRequest {
        enterprise,
        voucher: VoucherId::parse(query.voucher.trim()).map_err(|_| "quote.bad_voucher")?,
        chip: Some(query.chip.trim()).filter(|c| !c.is_empty()).map(str::to_owned),
        gpu_count: query.gpus.trim().parse().ok().filter(|n| *n > 0).ok_or("quote.bad_gpus")?,
        hours: query.hours.trim().parse().ok().filter(|n| *n > 0).ok_or("quote.bad_hours")?,
        purpose: Purpose::parse(query.purpose.trim()).ok_or("quote.bad_purpose")?,
        needs: Default::default(),
    })
}

/// `GET /quote`: the form, and with its fields the engine's answer — the chosen pool on a map of
/// the national network, the alternatives, and why each other pool was left out.
pub async fn quote(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<QuoteQuery>,
) -> Response {
    let (session, mut ctx) = match open(&state, &headers, &uri, "quote.title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    let Role::Enterprise(enterprise) = session.role else {
        return refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden");
    };
    let view = state.writer.view();
    let s = view.state();
    let vouchers = s
        .vouchers
        .values()
        .filter(|v| v.enterprise == enterprise && v.state == VoucherState::Active)
        .map(|v| {
            let program = s.programs.get(&v.program).map_or_else(|| v.program.to_string(), |p| p.terms.name.clone());
            (v.id.to_string(), format!("{} · {program} · {}", v.id, yuan(v.available_fen)))
        })
        .collect();
    let mut chips: Vec<String> = s.pools.values().map(|p| p.chip.clone()).collect();
    chips.sort();
    chips.dedup();
    let purposes = Purpose::ALL.iter().map(|p| (p.as_str(), ctx.tr.t(purpose_key(*p)))).collect();
    let mut answer = None;
    if !query.voucher.is_empty() {
        match request(enterprise, &query) {
            Err(key) => {
                let message = ctx.tr.t(key).to_owned();
                ctx = ctx.with_error(message);
            }
            Ok(request) => match view.choose_pool(&request) {
                Err(error) => {
                    let message = ctx.explain(&ApiError::from(error));
                    ctx = ctx.with_error(message);
                }
                Ok(choice) => {
                    let tr = ctx.tr;
                    let mut marks = super::map::clusters(tr.lang == super::Lang::Zh);
                    let (chosen, at) = quoted(tr, &view, &choice.chosen, request.purpose);
                    if let Some((lon, lat)) = at {
                        marks.push(Mark { lon, lat, label: chosen.site.clone(), kind: MarkKind::Chosen });
                    }
                    let mut alternatives = Vec::new();
                    for alternative in &choice.alternatives {
                        let (pool, at) = quoted(tr, &view, alternative, request.purpose);
                        if let Some((lon, lat)) = at {
                            marks.push(Mark { lon, lat, label: pool.site.clone(), kind: MarkKind::Alternative });
                        }
                        alternatives.push(pool);
                    }
                    let credits =
                        yuan(Fen::new(choice.underused_credit_fen.saturating_add(choice.domestic_credit_fen)));
                    let excluded = match tr.lang {
                        super::Lang::En => choice.excluded,
                        super::Lang::Zh => {
                            choice.excluded_why.iter().map(|(pool, why)| (pool.clone(), exclusion_zh(why))).collect()
                        }
                    };
                    answer = Some(Answer {
                        tier: choice.tier.clone().unwrap_or_default(),
                        escalated: choice.escalated.clone(),
                        map: super::map::svg(tr.t("quote.map_title"), &marks),
                        rate: percent(choice.chosen.rate_bp.basis_points()),
                        chosen,
                        alternatives,
                        excluded,
                        credits,
                    });
                }
            },
        }
    }
    html(StatusCode::OK, &QuotePage { ctx, vouchers, chips, purposes, query, answer })
}

/// What bounded a voucher share, in the reader's language (the service words it in English,
/// with its figures: `the voucher's available balance ¥1.00`, `the annual cap: ¥1.00 left of
/// ¥2.00 in 2026`); anything else is shown as it is.
fn limit_words(tr: Tr, why: &str) -> String {
    if tr.lang == super::Lang::En {
        return why.to_owned();
    }
    if let Some(balance) = why.strip_prefix("the voucher's available balance ") {
        return format!("算力券可用余额 {balance}");
    }
    let annual = why.strip_prefix("the annual cap: ").and_then(|rest| {
        let (left, rest) = rest.split_once(" left of ")?;
        let (cap, year) = rest.split_once(" in ")?;
        Some(format!("年度上限 {cap}，{year} 年剩余 {left}"))
    });
    annual.unwrap_or_else(|| why.to_owned())
}

/// Why the engine left a pool out, in Chinese (the service words it in English).
fn exclusion_zh(why: &suanli_placement::Exclusion) -> String {
    use suanli_placement::Exclusion;
    match why {
        Exclusion::ChipNotAccepted { chip } => format!("芯片为 {chip}，不是所选芯片"),
        Exclusion::NoSpeed { class, chip } => format!("芯片 {chip} 没有 {class} 类任务的速度数据"),
        Exclusion::TooFar { rtt_ms, rtt_ms_max } => {
            format!("往返时延 {rtt_ms:.1} 毫秒，超过 {rtt_ms_max:.1} 毫秒的上限")
        }
        Exclusion::SiteNotAllowed { .. } => "项目的服务商规则不允许此站点".to_owned(),
        Exclusion::TooSlow { hours, deadline_hours } => {
            format!("需运行 {hours:.2} 小时，超过 {deadline_hours:.2} 小时的期限")
        }
        Exclusion::TooBig { gpus, gpus_free } => format!("仅 {gpus_free} 张 GPU 空闲，需要 {gpus} 张"),
    }
}

fn purpose_key(purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::Training => "purpose.training",
        Purpose::Inference => "purpose.inference",
        Purpose::FineTuning => "purpose.fine_tuning",
        Purpose::Data => "purpose.data",
    }
}

#[derive(Deserialize)]
pub struct PlaceForm {
    form_token: String,
    pool: String,
    #[serde(flatten)]
    order: QuoteQuery,
}

/// `POST /quote/place`: places the order on the pool the quote chose, at that quote's terms.
pub async fn place(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<PlaceForm>,
) -> Response {
    let ctx = || Ctx::new(&headers, &uri, None, "quote.title");
    let Ok(pool) = PoolId::parse(form.pool.trim()) else {
        return refuse(ctx(), StatusCode::BAD_REQUEST, "quote.bad_pool");
    };
    let Some(Role::Enterprise(enterprise)) = Session::from_headers(&state, &headers).map(|s| s.role) else {
        return refuse(ctx(), StatusCode::FORBIDDEN, "error.forbidden");
    };
    let request = match request(enterprise, &form.order) {
        Ok(request) => request,
        Err(key) => return refuse(ctx(), StatusCode::BAD_REQUEST, key),
    };
    let placed = post_change(&state, &headers, &uri, &form.form_token, "quote.title", move |s, role| {
        crate::lifecycle::permit(role, &[crate::lifecycle::Grant::Enterprise(enterprise)], &enterprise.to_string())?;
        let input = s.pinned(&request, pool)?;
        s.place_order(&Actor::of(role), input)
    })
    .await;
    match placed {
        Ok((_, id)) => Redirect::to(&format!("/orders/{id}?done=placed")).into_response(),
        Err(response) => response,
    }
}

// ------------------------------------------------------------------ one order

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    ctx: Ctx,
    id: String,
    actions: Vec<(&'static str, &'static str)>,
    facts: Vec<(&'static str, String)>,
    usage: Vec<super::usage::UsageRow>,
    usage_pager: super::usage::UsagePager,
}

/// `GET /orders/{id}`: an order's terms and figures, and the usage received for it with each
/// record's result, to those who may see the order.
pub async fn order(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(page): Query<super::usage::UsageQuery>,
) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "order.detail_title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    let Ok(id) = OrderId::parse(&id) else {
        return refuse(ctx, StatusCode::NOT_FOUND, "error.not_found");
    };
    let order = match crate::orders::seen_order(&state, session.role, id).await {
        Ok(order) => order,
        Err(error) => return refused(ctx, &error),
    };
    let view = state.writer.view();
    let (usage, usage_pager) = match super::usage::page(&state, ctx.tr, id, &page).await {
        Ok(found) => found,
        Err(error) => return refused(ctx, &error),
    };
    let s = view.state();
    let tr = ctx.tr;
    let (pool, _) = quoted(tr, &view, &order.quote, order.purpose);
    let enterprise =
        s.enterprises.get(&order.enterprise).map_or_else(|| order.enterprise.to_string(), |e| e.name.clone());
    let provider = s.providers.get(&order.provider).map_or_else(|| order.provider.to_string(), |p| p.name.clone());
    let program = s.programs.get(&order.program).map_or_else(|| order.program.to_string(), |p| p.terms.name.clone());
    let facts = vec![
        ("application.state", tr.state(&state_text(&order.state))),
        ("application.enterprise", enterprise),
        ("application.program", program),
        ("voucher.id", order.voucher.to_string()),
        ("order.provider", provider),
        ("quote.site", format!("{} · {} · {}", pool.site, pool.place, pool.hub)),
        ("order.chip", format!("{} · {} × {}", pool.pool, pool.chip, order.quote.gpu_count)),
        ("quote.purpose", tr.t(purpose_key(order.purpose)).to_owned()),
        ("order.hours", order.hours_ordered().to_string()),
        ("quote.price", pool.price),
        ("quote.list_cost", pool.list_cost),
        ("order.voucher_share", pool.voucher_share),
        ("order.enterprise_share", pool.own_share),
        ("order.placed_at", when(order.placed_at_s)),
        ("order.started_at", order.started_at_s.map_or_else(|| "—".to_owned(), when)),
        ("order.ended_at", order.ended_at_s.map_or_else(|| "—".to_owned(), when)),
        ("order.gpu_hours", format!("{:.1}", order.gpu_seconds as f64 / 3600.0)),
        ("order.cost", yuan(order.cost_fen)),
        ("order.voucher_paid", yuan(order.voucher_paid_fen)),
        ("order.enterprise_paid", yuan(order.enterprise_paid_fen)),
        ("order.hold_remaining", yuan(order.hold_remaining_fen)),
        ("order.usage_records", order.usage_records.to_string()),
    ];
    let actions = order_actions(session.role, &order);
    let mut ctx = ctx;
    ctx.title = format!("{} {id}", ctx.title);
    html(StatusCode::OK, &OrderPage { ctx, id: id.to_string(), actions, facts, usage, usage_pager })
}

/// The buttons a role has on an order in its state (the rule itself is `act_on_order`'s).
fn order_actions(role: Role, order: &suanli_service::model::Order) -> Vec<(&'static str, &'static str)> {
    use suanli_service::model::OrderState;
    let provider = matches!(role, Role::PlatformAdmin) || role == Role::Provider(order.provider);
    let enterprise = matches!(role, Role::PlatformAdmin) || role == Role::Enterprise(order.enterprise);
    let mut actions = Vec::new();
    match order.state {
        OrderState::Placed => {
            if provider {
                actions.push(("start", "order.start"));
            }
            if enterprise {
                actions.push(("cancel", "order.cancel"));
            }
        }
        OrderState::Running if provider || enterprise => actions.push(("complete", "order.complete")),
        _ => {}
    }
    actions
}

#[derive(Deserialize)]
pub struct OrderActionForm {
    form_token: String,
}

/// `POST /orders/{id}/{start|complete|cancel}`: the API's rule (`act_on_order`), then the page.
pub async fn order_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<OrderActionForm>,
) -> Response {
    let (Ok(id), true) = (OrderId::parse(&id), ["start", "complete", "cancel"].contains(&action.as_str())) else {
        return refuse(Ctx::new(&headers, &uri, None, "order.detail_title"), StatusCode::NOT_FOUND, "error.not_found");
    };
    let done = format!("/orders/{id}?done=order_{action}");
    match post_change(&state, &headers, &uri, &form.form_token, "order.detail_title", move |s, role| {
        crate::orders::act_on_order(s, role, id, &action, None)
    })
    .await
    {
        Ok(_) => Redirect::to(&done).into_response(),
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_bounds_a_share_is_worded_in_chinese() {
        let zh = Tr { lang: super::super::Lang::Zh };
        assert_eq!(limit_words(zh, "the voucher's available balance ¥12.00"), "算力券可用余额 ¥12.00");
        assert_eq!(limit_words(zh, "the annual cap: ¥1.00 left of ¥2.00 in 2026"), "年度上限 ¥2.00，2026 年剩余 ¥1.00");
        assert_eq!(limit_words(zh, "something new"), "something new");
        let en = Tr { lang: super::super::Lang::En };
        assert_eq!(
            limit_words(en, "the annual cap: ¥1.00 left of ¥2.00 in 2026"),
            "the annual cap: ¥1.00 left of ¥2.00 in 2026"
        );
    }
}
