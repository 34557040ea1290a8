//! The console's pages: each reads the published view (never the writer) or, for a change, makes
//! the same service call as the API.

// A page's early answer (a redirect, a refusal) is a whole response, returned once per request.
#![allow(clippy::result_large_err)]

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use suanli_domain::{ApplicationId, Fen, StatementId, VoucherId};
use suanli_service::calendar::YearMonth;
use suanli_service::model::{ApplicationState, ProgramState, StatementState, VoucherState};
use suanli_service::{Actor, Role, View};

use super::chart::Burn;
use super::filter::Filter;
use super::i18n::{percent, when, yuan};
use super::{Ctx, SESSION_COOKIE, Session, html, local_path};
use crate::lifecycle::{
    act_on_application, act_on_statement, act_on_voucher, may_administer, may_review, order_query,
    visible_applications, visible_statements, visible_vouchers,
};
use crate::login::ClientAddress;
use crate::{ApiError, AppState};

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    ctx: Ctx,
}

/// A page that could not be shown: the frame, the reason, the status.
pub(super) fn error_page(ctx: Ctx, status: StatusCode, message: String) -> Response {
    html(status, &ErrorPage { ctx: ctx.with_error(message) })
}

/// A page refused for a reason the console words itself (`error.forbidden`, `error.amount`...).
pub(super) fn refuse(ctx: Ctx, status: StatusCode, key: &'static str) -> Response {
    let message = ctx.tr.t(key).to_owned();
    error_page(ctx, status, message)
}

pub(super) fn refused(ctx: Ctx, error: &ApiError) -> Response {
    let message = ctx.explain(error);
    error_page(ctx, error.status, message)
}

/// The session, or a redirect to the login page that comes back here.
pub(super) fn require(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<Session, Response> {
    Session::from_headers(state, headers).ok_or_else(|| {
        let here = uri.path_and_query().map_or("/", |p| p.as_str());
        Redirect::to(&format!("/login?next={}", super::percent_encode(here))).into_response()
    })
}

/// The session and the frame of a page titled `title`, or the redirect to log in.
pub(super) fn open(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    title: &'static str,
) -> Result<(Session, Ctx), Response> {
    let session = require(state, headers, uri)?;
    let ctx = Ctx::new(headers, uri, Some(&session), title);
    Ok((session, ctx))
}

/// Rows per page of a console list.
pub const ROWS_PER_PAGE: usize = 100;

/// Links to the neighbouring pages of a list and where this page stands (`101–200 / 2,345`).
pub struct Pager {
    pub previous: Option<String>,
    pub next: Option<String>,
    pub shown: String,
    /// Whether the list has any row at all (an empty list shows no pager).
    pub any: bool,
}

/// The page of `items` the URI asks for (`?page=N`, from 0; anything else is the first page), and
/// its pager. Only the page's rows are drawn, whatever the list's length.
pub(super) fn window<T>(items: Vec<T>, uri: &Uri) -> (Vec<T>, Pager) {
    let total = items.len();
    let start = page_number(uri).saturating_mul(ROWS_PER_PAGE).min(total);
    let rows: Vec<T> = items.into_iter().skip(start).take(ROWS_PER_PAGE).collect();
    let pager = pager(uri, total, rows.len());
    (rows, pager)
}

/// The page a list's `?page=` asks for (from 0).
fn page_number(uri: &Uri) -> usize {
    uri.query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("page=")))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
}

/// The links around page `?page=` of a list of `total` rows that shows `shown` of them.
fn pager(uri: &Uri, total: usize, shown: usize) -> Pager {
    let page = page_number(uri);
    let start = page.saturating_mul(ROWS_PER_PAGE).min(total);
    // The other parameters (a filter) stay on the neighbouring pages.
    let kept: String = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("page=") && !pair.starts_with("done="))
        .map(|pair| format!("&{pair}"))
        .collect();
    let link = |n: usize| format!("{}?page={n}{kept}", uri.path());
    Pager {
        previous: (page > 0 && total > 0).then(|| link((page - 1).min((total - 1) / ROWS_PER_PAGE))),
        next: (start + shown < total).then(|| link(page + 1)),
        any: total > 0,
        shown: if shown == 0 { format!("0 / {total}") } else { format!("{}–{} / {total}", start + 1, start + shown) },
    }
}

/// A post must carry the form token of its session.
pub(super) fn check_form(session: &Session, token: &str) -> bool {
    let expected = session.form_token();
    expected.len() == token.len() && expected.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

// ------------------------------------------------------------------ login

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    ctx: Ctx,
    next: String,
    name: String,
    visitor: String,
}

/// The login page with its visitor token, set in its cookie.
fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    ctx: Ctx,
    next: String,
    name: String,
) -> Response {
    let visitor = super::visitor_token(headers).unwrap_or_default();
    let mut response = html(status, &LoginPage { ctx, next, name, visitor: visitor.clone() });
    super::add_visitor_cookie(&mut response, state, &visitor);
    response
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn home(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let session = match require(&state, &headers, &uri) {
        Ok(session) => session,
        Err(redirect) => return redirect,
    };
    let start = match session.role {
        Role::Enterprise(_) => "/vouchers",
        Role::Provider(_) => "/orders",
        _ => "/programs",
    };
    Redirect::to(start).into_response()
}

pub async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<NextQuery>,
) -> Response {
    let ctx = Ctx::new(&headers, &uri, None, "login.title");
    login_page(&state, &headers, StatusCode::OK, ctx, local_path(query.next.as_deref()), String::new())
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    form_token: String,
    name: String,
    password: String,
    next: Option<String>,
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    address: Option<Extension<ClientAddress>>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let ctx = Ctx::new(&headers, &uri, None, "login.title");
    let Ok(Form(form)) = form else {
        let message = ctx.tr.t("error.login_failed").to_owned();
        return login_page(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            ctx.with_error(message),
            "/".into(),
            String::new(),
        );
    };
    let next = local_path(form.next.as_deref());
    // A login posted from another site would put the visitor in the other site's account.
    if !super::visitor_form_ok(&headers, &form.form_token) {
        let message = ctx.tr.t("error.csrf").to_owned();
        return login_page(&state, &headers, StatusCode::FORBIDDEN, ctx.with_error(message), next, form.name);
    }
    let address = address.map(|Extension(ClientAddress(ip))| ip);
    match crate::login::log_in(&state, address, &form.name, &form.password).await {
        Ok(done) => super::logged_in(&state, &next, &done),
        Err(error) => {
            let message = match error.code {
                "too_many_attempts" => ctx.tr.t("error.too_many_attempts").to_owned(),
                "unauthenticated" => ctx.tr.t("error.login_failed").to_owned(),
                _ => ctx.explain(&error),
            };
            login_page(&state, &headers, error.status, ctx.with_error(message), next, form.name)
        }
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    pub(super) form_token: String,
}

/// Revokes the session's token and forgets the cookie.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if let Some(session) = Session::from_headers(&state, &headers)
        && form.is_ok_and(|Form(f)| check_form(&session, &f.form_token))
    {
        let hash = suanli_service::access::sha256_hex(&session.secret);
        let role = session.role;
        let _ = state
            .writer
            .call(move |s| {
                let id = s.state().token_by_hash.get(&hash).copied();
                match id {
                    Some(id) => s.revoke_token(&Actor::of(role), id),
                    None => Ok(()),
                }
            })
            .await;
    }
    let mut response = Redirect::to("/login").into_response();
    super::add_cookie(
        &mut response,
        &state,
        &format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

// ------------------------------------------------------------------ programmes

pub struct ProgramRow {
    pub id: String,
    pub key: String,
    pub name: String,
    pub state: String,
    pub funded: String,
    pub issued: String,
    pub spent: String,
    pub settled: String,
    pub returned: String,
}

#[derive(Template)]
#[template(path = "programs.html")]
struct ProgramsPage {
    ctx: Ctx,
    rows: Vec<ProgramRow>,
    can_create: bool,
}

pub(super) fn state_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// What was put into the budget: what remains, plus what went out, less what came back.
fn funded(program: &suanli_service::model::Program) -> Fen {
    let out = program.budget_remaining_fen.checked_add(program.issued_fen).unwrap_or(Fen::new(i64::MAX));
    out.checked_sub(program.returned_fen).unwrap_or(Fen::ZERO)
}

pub async fn programs(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "program.list_title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    let view = state.writer.view();
    let rows = view
        .state()
        .programs
        .values()
        .map(|p| ProgramRow {
            id: p.id.to_string(),
            key: p.terms.key.clone(),
            name: p.terms.name.clone(),
            state: ctx.tr.state(&state_text(&p.state)),
            funded: yuan(funded(p)),
            issued: yuan(p.issued_fen),
            spent: yuan(p.spent_fen),
            settled: yuan(p.settled_fen),
            returned: yuan(p.returned_fen),
        })
        .collect();
    html(StatusCode::OK, &ProgramsPage { ctx, rows, can_create: session.role == Role::PlatformAdmin })
}

pub struct MonthRow {
    pub month: String,
    pub spent: String,
    pub cumulative: String,
    pub settled: String,
}

#[derive(Template)]
#[template(path = "program.html")]
struct ProgramPage {
    ctx: Ctx,
    row: ProgramRow,
    terms: Vec<(String, String)>,
    rules: Vec<(String, String)>,
    chart: String,
    months: Vec<MonthRow>,
    csv_href: String,
    /// The state changes the reader may make now (`open`, `close`, `finish`), and whether it may
    /// edit the draft.
    actions: Vec<(&'static str, &'static str)>,
    editable: bool,
    /// Whether the reader may see the outcome report (its authority and the overseers).
    oversees: bool,
    /// A lottery programme's rounds (round, state in words) and what its admin may do now:
    /// commit a round (none open) or draw the open one.
    lottery: Option<LotteryPanel>,
}

pub struct LotteryPanel {
    pub rounds: Vec<(u32, String)>,
    pub may_commit: bool,
    pub may_draw: bool,
}

/// Per month of recording: the voucher parts spent and the part of them on approved statements.
fn spend_by_month(view: &View, program: suanli_domain::ProgramId) -> Vec<(YearMonth, i64, i64)> {
    let mut months: std::collections::BTreeMap<YearMonth, (i64, i64)> = Default::default();
    let state = view.state();
    for statement in state.statements.values().filter(|s| s.program == program) {
        if let Some(month) = YearMonth::parse(&statement.month) {
            let entry = months.entry(month).or_default();
            entry.0 = entry.0.saturating_add(statement.voucher_total_fen.fen());
            if statement.state == StatementState::Approved {
                entry.1 = entry.1.saturating_add(statement.voucher_total_fen.fen());
            }
        }
    }
    for ((_, p, month), lines) in state.unsettled.iter() {
        if *p == program {
            let entry = months.entry(*month).or_default();
            for line in lines.values() {
                entry.0 = entry.0.saturating_add(line.voucher_part_fen.fen());
            }
        }
    }
    months.into_iter().map(|(m, (spent, settled))| (m, spent, settled)).collect()
}

fn find_program(view: &View, text: &str) -> Result<suanli_domain::ProgramId, ApiError> {
    view.find_program(text).map_err(ApiError::from)
}

pub async fn program(State(state): State<AppState>, headers: HeaderMap, uri: Uri, Path(id): Path<String>) -> Response {
    let session = match require(&state, &headers, &uri) {
        Ok(session) => session,
        Err(redirect) => return redirect,
    };
    let mut ctx = Ctx::new(&headers, &uri, Some(&session), "program.list_title");
    let view = state.writer.view();
    let program = match find_program(&view, &id).and_then(|id| view.program(id).map_err(ApiError::from)) {
        Ok(program) => program,
        Err(error) => return refused(ctx, &error),
    };
    let tr = ctx.tr;
    ctx.title = program.terms.name.clone();
    let terms = &program.terms;
    let mut summary = vec![
        (tr.t("program.subsidy_rate").to_owned(), percent(terms.subsidy_rate_bp.basis_points())),
        (tr.t("program.enterprise_cap").to_owned(), yuan(terms.enterprise_cap_fen)),
        (tr.t("program.validity").to_owned(), terms.voucher_validity_days.to_string()),
        (
            tr.t("program.applications_window").to_owned(),
            format!("{} – {}", when(terms.applications_open_s), when(terms.applications_close_s)),
        ),
        (tr.t("program.providers").to_owned(), terms.providers.to_string()),
        (tr.t("program.remaining").to_owned(), yuan(program.budget_remaining_fen)),
    ];
    if let Some(cap) = terms.annual_cap_fen {
        summary.insert(2, (tr.t("program.annual_cap").to_owned(), yuan(cap)));
    }
    let rules = terms.eligibility.iter().map(|r| (r.name.clone(), r.rule.clone())).collect();
    let mut cumulative = 0i64;
    let mut points = Vec::new();
    let mut months = Vec::new();
    for (month, spent, settled) in spend_by_month(&view, program.id) {
        cumulative = cumulative.saturating_add(spent);
        points.push((month.to_string(), cumulative));
        months.push(MonthRow {
            month: month.to_string(),
            spent: yuan(Fen::new(spent)),
            cumulative: yuan(Fen::new(cumulative)),
            settled: yuan(Fen::new(settled)),
        });
    }
    // Spending is measured against what was issued (the budget funded is in the figures above: on
    // its scale a first month's spending would not show).
    let issued_label = format!("{} {}", tr.t("program.issued"), yuan(program.issued_fen));
    let references = [(issued_label.as_str(), program.issued_fen.fen())];
    let chart = Burn { points: &points, references: &references, title: tr.t("program.chart_alt") }.svg();
    let row = ProgramRow {
        id: program.id.to_string(),
        key: terms.key.clone(),
        name: terms.name.clone(),
        state: tr.state(&state_text(&program.state)),
        funded: yuan(funded(program)),
        issued: yuan(program.issued_fen),
        spent: yuan(program.spent_fen),
        settled: yuan(program.settled_fen),
        returned: yuan(program.returned_fen),
    };
    let csv_href = format!("/programs/{}/spend.csv", program.id);
    let administers = may_administer(session.role, program.authority);
    let actions = match (administers, program.state) {
        (false, _) => vec![],
        (true, ProgramState::Draft) => vec![("open", "program.open")],
        (true, ProgramState::Open) => vec![("close", "program.close")],
        (true, ProgramState::Closed) => vec![("finish", "program.finish")],
        (true, ProgramState::Finished) => vec![],
    };
    let editable = administers && program.state == ProgramState::Draft;
    let oversees = match session.role {
        Role::PlatformAdmin | Role::Auditor => true,
        Role::AuthorityAdmin(a) | Role::AuthorityReviewer(a) => a == program.authority,
        _ => false,
    };
    let lottery = (program.terms.allocation == suanli_service::model::Allocation::Lottery).then(|| {
        let open = program.lotteries.iter().any(|r| r.drawn_at_s.is_none());
        LotteryPanel {
            rounds: program
                .lotteries
                .iter()
                .map(|r| {
                    let text = match r.drawn_at_s {
                        None => tr.fill("lottery.committed", &[("closes", &when(r.closes_at_s))]),
                        Some(at) => tr.fill(
                            "lottery.drawn",
                            &[
                                ("at", &when(at)),
                                ("drawn", &r.drawn.len().to_string()),
                                ("of", &r.participants.len().to_string()),
                            ],
                        ),
                    };
                    (r.round, text)
                })
                .collect(),
            may_commit: administers && program.state == ProgramState::Open && !open,
            may_draw: administers && open,
        }
    });
    let page =
        ProgramPage { ctx, row, terms: summary, rules, chart, months, csv_href, actions, editable, oversees, lottery };
    html(StatusCode::OK, &page)
}

/// The burn chart's numbers, for a spreadsheet: month, spent, spent to date, settled (fen).
pub async fn program_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    if let Err(redirect) = require(&state, &headers, &uri) {
        return redirect;
    }
    let view = state.writer.view();
    let program = match find_program(&view, &id) {
        Ok(program) => program,
        Err(error) => return error.into_response(),
    };
    let mut text = String::from("month,spent_fen,spent_to_date_fen,settled_fen\n");
    let mut cumulative = 0i64;
    for (month, spent, settled) in spend_by_month(&view, program) {
        cumulative = cumulative.saturating_add(spent);
        text.push_str(&format!("{month},{spent},{cumulative},{settled}\n"));
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{program}-spend.csv\"")),
        ],
        text,
    )
        .into_response()
}

// ------------------------------------------------------------------ applications

pub struct Verdict {
    pub rule: String,
    pub passed: bool,
    pub reason: String,
}

pub struct ApplicationRow {
    pub id: String,
    pub enterprise: String,
    pub program: String,
    pub requested: String,
    pub requested_yuan: String,
    /// The programme's rate, the most an approval may give (a number of percent).
    pub max_rate: String,
    pub state: String,
    pub submitted: String,
    pub verdicts: Vec<Verdict>,
    pub blocked: Option<String>,
    pub decidable: bool,
}

#[derive(Template)]
#[template(path = "applications.html")]
struct ApplicationsPage {
    ctx: Ctx,
    rows: Vec<ApplicationRow>,
    pager: Pager,
    filter: Filter,
}

fn applications_page(state: &AppState, ctx: Ctx, role: Role, uri: &Uri) -> Response {
    let view = state.writer.view();
    let filter = Filter::read(&view, ctx.tr, uri, &["draft", "submitted", "approved", "rejected", "withdrawn"]);
    let (page, pager) = window(visible_applications(&view, role, filter.program, filter.state.as_deref()), uri);
    let rows = page
        .into_iter()
        .map(|a| {
            let program = &view.state().programs[&a.program];
            let enterprise = view.state().enterprises.get(&a.enterprise);
            let verdicts = view
                .eligibility_worded(a.enterprise, a.program, ctx.tr.wording())
                .unwrap_or_default()
                .into_iter()
                .map(|(rule, v)| Verdict { rule, passed: v.passed, reason: v.reason })
                .collect();
            let submitted = a.state == ApplicationState::Submitted;
            ApplicationRow {
                id: a.id.to_string(),
                enterprise: enterprise.map_or_else(|| a.enterprise.to_string(), |e| e.name.clone()),
                program: program.terms.name.clone(),
                requested: yuan(a.requested_fen),
                requested_yuan: format!("{}.{:02}", a.requested_fen.fen() / 100, a.requested_fen.fen() % 100),
                max_rate: percent(program.terms.subsidy_rate_bp.basis_points()).trim_end_matches('%').to_owned(),
                state: ctx.tr.state(&state_text(&a.state)),
                submitted: a.submitted_at_s.map(when).unwrap_or_default(),
                verdicts,
                blocked: submitted.then(|| view.blocked_reason(a, program)).flatten(),
                decidable: submitted && may_review(role, program.authority),
            }
        })
        .collect();
    let ctx = match filter.error.clone() {
        Some(error) => ctx.with_error(error),
        None => ctx,
    };
    html(StatusCode::OK, &ApplicationsPage { ctx, rows, pager, filter })
}

pub async fn applications(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let session = match require(&state, &headers, &uri) {
        Ok(session) => session,
        Err(redirect) => return redirect,
    };
    if matches!(session.role, Role::Provider(_)) {
        let ctx = Ctx::new(&headers, &uri, Some(&session), "application.title");
        return refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden");
    }
    let ctx = Ctx::new(&headers, &uri, Some(&session), "application.title");
    applications_page(&state, ctx, session.role, &uri)
}

#[derive(Deserialize)]
pub struct DecisionForm {
    form_token: String,
    amount: Option<String>,
    rate: Option<String>,
    reason: Option<String>,
}

/// A form's post: the session, its form token, then the change on the writer. On success the
/// browser goes to `done` (a fresh page, so a reload does not post again); on a refusal the
/// page is drawn again with the reason.
pub(super) async fn post_change<T: Send + 'static>(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    token: &str,
    title: &'static str,
    change: impl FnOnce(&mut suanli_service::Service, Role) -> Result<T, suanli_service::ServiceError> + Send + 'static,
) -> Result<(Session, T), Response> {
    let session = require(state, headers, uri)?;
    let ctx = Ctx::new(headers, uri, Some(&session), title);
    if !check_form(&session, token) {
        let message = ctx.tr.t("error.csrf").to_owned();
        return Err(error_page(ctx, StatusCode::FORBIDDEN, message));
    }
    let role = session.role;
    match state.writer.call(move |s| change(s, role)).await {
        Ok(Ok(done)) => Ok((session, done)),
        Ok(Err(error)) => Err(refused(ctx, &ApiError::from(error))),
        Err(refusal) => Err(refused(ctx, &ApiError::from(refusal))),
    }
}

pub async fn decide_application(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Response {
    let ctx = || Ctx::new(&headers, &uri, None, "application.title");
    let Ok(id) = ApplicationId::parse(&id) else {
        let ctx = ctx();
        return refuse(ctx, StatusCode::NOT_FOUND, "error.not_found");
    };
    if action != "approve" && action != "reject" {
        let ctx = ctx();
        return refuse(ctx, StatusCode::NOT_FOUND, "error.not_found");
    }
    let amount = match form.amount.as_deref().filter(|_| action == "approve").map(|a| Fen::parse_positive(a.trim())) {
        Some(Err(_)) => {
            let ctx = ctx();
            return refuse(ctx, StatusCode::BAD_REQUEST, "error.amount");
        }
        Some(Ok(amount)) => Some(amount),
        None => None,
    };
    // A rate in percent (`62.5`), at most the programme's; empty for the programme's own.
    let rate = match form.rate.as_deref().map(str::trim).filter(|r| !r.is_empty() && action == "approve") {
        None => None,
        Some(text) => match text.parse::<f64>().ok().filter(|p| p.is_finite() && *p > 0.0 && *p <= 100.0) {
            Some(percent) => suanli_domain::RateBp::new((percent * 100.0).round() as i64).ok(),
            None => return refuse(ctx(), StatusCode::BAD_REQUEST, "application.bad_rate"),
        },
    };
    let decision = crate::lifecycle::Decision { amount, rate, reason: form.reason.clone() };
    let done = if action == "approve" { "approved" } else { "rejected" };
    match post_change(&state, &headers, &uri, &form.form_token, "application.title", move |s, role| {
        act_on_application(s, role, id, &action, &decision)
    })
    .await
    {
        Ok(_) => Redirect::to(&format!("/applications?done={done}")).into_response(),
        Err(response) => response,
    }
}

// ------------------------------------------------------------------ vouchers

pub struct VoucherRow {
    pub id: String,
    pub enterprise: String,
    pub program: String,
    pub face_value: String,
    pub available: String,
    pub held: String,
    pub spent: String,
    pub state: String,
    pub expires: String,
    pub reason: String,
    pub can_suspend: bool,
    pub can_reinstate: bool,
    pub can_revoke: bool,
}

#[derive(Template)]
#[template(path = "vouchers.html")]
struct VouchersPage {
    ctx: Ctx,
    rows: Vec<VoucherRow>,
    pager: Pager,
    filter: Filter,
    caps: Vec<CapRow>,
}

/// What an enterprise may still receive and spend under a programme's caps.
pub struct CapRow {
    pub program: String,
    pub cap: String,
    pub issued: String,
    pub cap_left: String,
    pub annual: String,
    pub annual_used: String,
    pub annual_left: String,
}

/// An enterprise's caps left, one row per programme it holds a voucher of.
fn caps_left(view: &View, enterprise: suanli_domain::EnterpriseId) -> Vec<CapRow> {
    let s = view.state();
    let mut programs: Vec<_> = s.vouchers.values().filter(|v| v.enterprise == enterprise).map(|v| v.program).collect();
    programs.sort_unstable();
    programs.dedup();
    programs
        .into_iter()
        .filter_map(|id| {
            let program = s.programs.get(&id)?;
            let issued = view.issued_to(enterprise, id).ok()?;
            let used = s.annual_used(enterprise, id, view.now_s());
            let annual = program.terms.annual_cap_fen;
            Some(CapRow {
                program: program.terms.name.clone(),
                cap: yuan(program.terms.enterprise_cap_fen),
                issued: yuan(issued),
                cap_left: yuan(
                    program.terms.enterprise_cap_fen.checked_sub(issued).unwrap_or(Fen::ZERO).max(Fen::ZERO),
                ),
                annual: annual.map_or_else(|| "—".to_owned(), yuan),
                annual_used: yuan(used),
                annual_left: annual.map_or_else(
                    || "—".to_owned(),
                    |cap| yuan(cap.checked_sub(used).unwrap_or(Fen::ZERO).max(Fen::ZERO)),
                ),
            })
        })
        .collect()
}

pub async fn vouchers(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "voucher.title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    if matches!(session.role, Role::Provider(_)) {
        return refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden");
    }
    let view = state.writer.view();
    let filter = Filter::read(&view, ctx.tr, &uri, &["active", "exhausted", "suspended", "revoked", "expired"]);
    let (page, pager) = window(visible_vouchers(&view, session.role, filter.program, filter.state.as_deref()), &uri);
    let rows = page
        .into_iter()
        .map(|v| {
            let program = &view.state().programs[&v.program];
            let administer = may_administer(session.role, program.authority);
            VoucherRow {
                id: v.id.to_string(),
                enterprise: view
                    .state()
                    .enterprises
                    .get(&v.enterprise)
                    .map_or_else(|| v.enterprise.to_string(), |e| e.name.clone()),
                program: program.terms.name.clone(),
                face_value: yuan(v.face_value_fen),
                available: yuan(v.available_fen),
                held: yuan(v.held_fen),
                spent: yuan(v.spent_fen),
                state: ctx.tr.state(v.state_name()),
                expires: when(v.expires_at_s),
                reason: v.reason.clone().unwrap_or_default(),
                can_suspend: administer && v.state == VoucherState::Active,
                can_reinstate: administer && v.state == VoucherState::Suspended,
                can_revoke: administer && matches!(v.state, VoucherState::Active | VoucherState::Suspended),
            }
        })
        .collect();
    let ctx = match filter.error.clone() {
        Some(error) => ctx.with_error(error),
        None => ctx,
    };
    let caps = match session.role {
        Role::Enterprise(enterprise) => caps_left(&view, enterprise),
        _ => Vec::new(),
    };
    html(StatusCode::OK, &VouchersPage { ctx, rows, pager, filter, caps })
}

pub async fn voucher_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Response {
    let known = ["suspend", "reinstate", "revoke"];
    let (Ok(id), true) = (VoucherId::parse(&id), known.contains(&action.as_str())) else {
        let ctx = Ctx::new(&headers, &uri, None, "voucher.title");
        return refuse(ctx, StatusCode::NOT_FOUND, "error.not_found");
    };
    let done = match action.as_str() {
        "suspend" => "suspended",
        "reinstate" => "reinstated",
        _ => "revoked",
    };
    let reason = form.reason.clone();
    match post_change(&state, &headers, &uri, &form.form_token, "voucher.title", move |s, role| {
        act_on_voucher(s, role, id, &action, reason.as_deref())
    })
    .await
    {
        Ok(_) => Redirect::to(&format!("/vouchers?done={done}")).into_response(),
        Err(response) => response,
    }
}

// ------------------------------------------------------------------ orders

pub struct OrderRow {
    pub id: String,
    pub enterprise: String,
    pub provider: String,
    pub chip: String,
    pub gpus: u32,
    pub hours: u32,
    pub state: String,
    pub gpu_hours: String,
    pub cost: String,
    pub voucher_paid: String,
    pub enterprise_paid: String,
    pub usage_records: u32,
}

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    ctx: Ctx,
    rows: Vec<OrderRow>,
    pager: Pager,
    filter: Filter,
}

pub async fn orders(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "order.title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    let view = state.writer.view();
    let filter = Filter::read(&view, ctx.tr, &uri, &["placed", "running", "completed", "cancelled"]);
    let query = order_query(session.role, filter.program, filter.state.as_deref());
    let offset = (page_number(&uri).saturating_mul(ROWS_PER_PAGE)) as u64;
    let reading = view.clone();
    let found = match state.writer.read_log(move |r| Ok(reading.orders_page(&query, offset, ROWS_PER_PAGE, r))).await {
        Ok(Ok(Ok(found))) => found,
        Ok(Ok(Err(error)) | Err(error)) => return refused(ctx, &ApiError::from(error)),
        Err(refusal) => return refused(ctx, &ApiError::from(refusal)),
    };
    let pager = pager(&uri, found.total as usize, found.orders.len());
    let s = view.state();
    let rows = found
        .orders
        .iter()
        .map(|o| OrderRow {
            id: o.id.to_string(),
            enterprise: s.enterprises.get(&o.enterprise).map_or_else(|| o.enterprise.to_string(), |e| e.name.clone()),
            provider: s.providers.get(&o.provider).map_or_else(|| o.provider.to_string(), |p| p.name.clone()),
            chip: s.pools.get(&o.pool).map_or_else(|| o.pool.to_string(), |p| format!("{} · {}", p.chip, p.id)),
            gpus: o.quote.gpu_count,
            hours: o.hours_ordered(),
            state: ctx.tr.state(&state_text(&o.state)),
            gpu_hours: format!("{:.1}", o.gpu_seconds as f64 / 3600.0),
            cost: yuan(o.cost_fen),
            voucher_paid: yuan(o.voucher_paid_fen),
            enterprise_paid: yuan(o.enterprise_paid_fen),
            usage_records: o.usage_records,
        })
        .collect();
    let ctx = match filter.error.clone() {
        Some(error) => ctx.with_error(error),
        None => ctx,
    };
    html(StatusCode::OK, &OrdersPage { ctx, rows, pager, filter })
}

// ------------------------------------------------------------------ statements

pub struct StatementRow {
    pub id: String,
    pub provider: String,
    pub program: String,
    pub month: String,
    pub cost: String,
    pub voucher_total: String,
    pub uppercase: String,
    pub state: String,
    pub can_approve: bool,
}

#[derive(Template)]
#[template(path = "statements.html")]
struct StatementsPage {
    ctx: Ctx,
    rows: Vec<StatementRow>,
    pager: Pager,
    issue: Option<IssueChoices>,
}

/// What an authority may issue a statement for: its programmes, the providers, last month.
pub struct IssueChoices {
    pub programs: Vec<(String, String)>,
    pub providers: Vec<(String, String)>,
    pub month: String,
}

fn issue_choices(view: &View, role: Role) -> Option<IssueChoices> {
    let s = view.state();
    let programs: Vec<(String, String)> = s
        .programs
        .values()
        .filter(|p| p.state != suanli_service::model::ProgramState::Draft && may_administer(role, p.authority))
        .map(|p| (p.id.to_string(), p.terms.name.clone()))
        .collect();
    if programs.is_empty() {
        return None;
    }
    let providers = s.providers.values().map(|p| (p.id.to_string(), format!("{} · {}", p.id, p.name))).collect();
    let now = YearMonth::of(view.now_s());
    let last = if now.month == 1 {
        YearMonth { year: now.year - 1, month: 12 }
    } else {
        YearMonth { year: now.year, month: now.month - 1 }
    };
    Some(IssueChoices { programs, providers, month: last.to_string() })
}

pub async fn statements(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "statement.title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    if matches!(session.role, Role::Enterprise(_)) {
        return refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden");
    }
    let view = state.writer.view();
    let s = view.state();
    let (page, pager) = window(visible_statements(&view, session.role), &uri);
    let rows = page
        .into_iter()
        .map(|st| {
            let program = &s.programs[&st.program];
            StatementRow {
                id: st.id.to_string(),
                provider: s.providers.get(&st.provider).map_or_else(|| st.provider.to_string(), |p| p.name.clone()),
                program: program.terms.name.clone(),
                month: st.month.clone(),
                cost: yuan(st.cost_fen),
                voucher_total: yuan(st.voucher_total_fen),
                uppercase: st.voucher_total_uppercase.clone(),
                state: ctx.tr.state(&state_text(&st.state)),
                can_approve: st.state == StatementState::Issued && may_administer(session.role, program.authority),
            }
        })
        .collect();
    let issue = issue_choices(&view, session.role);
    html(StatusCode::OK, &StatementsPage { ctx, rows, pager, issue })
}

pub async fn approve_statement(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    let Ok(id) = StatementId::parse(&id) else {
        let ctx = Ctx::new(&headers, &uri, None, "statement.title");
        return refuse(ctx, StatusCode::NOT_FOUND, "error.not_found");
    };
    match post_change(&state, &headers, &uri, &form.form_token, "statement.title", move |s, role| {
        act_on_statement(s, role, id)
    })
    .await
    {
        Ok(_) => Redirect::to("/statements?done=statement_approved").into_response(),
        Err(response) => response,
    }
}

// ------------------------------------------------------------------ audit log

pub struct LogRow {
    pub sequence: u64,
    pub time: String,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub hash: String,
    pub previous: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    ctx: Ctx,
    rows: Vec<LogRow>,
    recent: Recent,
}

#[derive(Deserialize)]
pub struct AuditQuery {
    /// The first sequence of the page (newest first: the page holds this entry and older ones).
    from: Option<u64>,
}

/// Links of a list drawn newest first (the audit log, anomalies): to newer and to older entries,
/// and how many there are.
pub struct Recent {
    pub newer: Option<String>,
    pub older: Option<String>,
    pub total: u64,
}

/// Entries per page of a list drawn newest first.
pub(super) const NEWEST_FIRST_ROWS: u64 = 50;

pub async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<AuditQuery>,
) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "audit.title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    if !matches!(session.role, Role::PlatformAdmin | Role::Auditor) {
        return refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden");
    }
    // Newest first: find the size, then read the page that ends at `from`.
    let total = match state.writer.log_page(0, 1).await {
        Ok(Ok((_, total))) => total,
        Ok(Err(error)) => return refused(ctx, &ApiError::from(error)),
        Err(refusal) => return refused(ctx, &ApiError::from(refusal)),
    };
    let last = query.from.unwrap_or(total).min(total);
    let first = last.saturating_sub(NEWEST_FIRST_ROWS - 1).max(1);
    let entries = if last == 0 {
        Vec::new()
    } else {
        match state.writer.log_page(first - 1, (last - first + 1) as usize).await {
            Ok(Ok((entries, _))) => entries,
            Ok(Err(error)) => return refused(ctx, &ApiError::from(error)),
            Err(refusal) => return refused(ctx, &ApiError::from(refusal)),
        }
    };
    let hex = |bytes: &[u8]| suanli_service::access::hex(bytes);
    let rows = entries
        .into_iter()
        .rev()
        .map(|e| LogRow {
            sequence: e.sequence,
            time: when(e.time_s),
            actor: e.actor,
            action: e.action,
            object: e.object,
            hash: hex(&e.hash),
            previous: hex(&e.previous_hash),
        })
        .collect();
    let older = (first > 1).then(|| format!("/audit?from={}", first - 1));
    let newer = (last < total).then(|| format!("/audit?from={}", (last + NEWEST_FIRST_ROWS).min(total)));
    html(StatusCode::OK, &AuditPage { ctx, rows, recent: Recent { newer, older, total } })
}

// ------------------------------------------------------------------ applying

pub struct OpenProgram {
    pub id: String,
    pub name: String,
    pub rate: String,
    pub cap: String,
    pub window: String,
    pub verdicts: Vec<Verdict>,
    pub eligible: bool,
}

#[derive(Template)]
#[template(path = "apply.html")]
struct ApplyPage {
    ctx: Ctx,
    programs: Vec<OpenProgram>,
}

/// An enterprise's pre-check: every programme open for applications, with each eligibility rule's
/// verdict for this enterprise, and the application form where it is eligible.
pub async fn apply_page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "apply.title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    let Role::Enterprise(enterprise) = session.role else {
        return refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden");
    };
    let view = state.writer.view();
    let programs = view
        .state()
        .programs
        .values()
        .filter(|p| p.state == suanli_service::model::ProgramState::Open)
        .map(|p| {
            let verdicts: Vec<Verdict> = view
                .eligibility_worded(enterprise, p.id, ctx.tr.wording())
                .unwrap_or_default()
                .into_iter()
                .map(|(rule, v)| Verdict { rule, passed: v.passed, reason: v.reason })
                .collect();
            OpenProgram {
                id: p.id.to_string(),
                name: p.terms.name.clone(),
                rate: percent(p.terms.subsidy_rate_bp.basis_points()),
                cap: yuan(p.terms.enterprise_cap_fen),
                window: format!("{} – {}", when(p.terms.applications_open_s), when(p.terms.applications_close_s)),
                eligible: verdicts.iter().all(|v| v.passed),
                verdicts,
            }
        })
        .collect();
    html(StatusCode::OK, &ApplyPage { ctx, programs })
}

#[derive(Deserialize)]
pub struct ApplyForm {
    form_token: String,
    amount: String,
    note: Option<String>,
}

/// Drafts and submits an application in the enterprise's name.
pub async fn apply(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(program): Path<String>,
    Form(form): Form<ApplyForm>,
) -> Response {
    let ctx = || Ctx::new(&headers, &uri, None, "apply.title");
    let Ok(program) = suanli_domain::ProgramId::parse(&program) else {
        let ctx = ctx();
        return refuse(ctx, StatusCode::NOT_FOUND, "error.not_found");
    };
    let Ok(amount) = Fen::parse_positive(form.amount.trim()) else {
        let ctx = ctx();
        return refuse(ctx, StatusCode::BAD_REQUEST, "error.amount");
    };
    let note = form.note.clone().unwrap_or_default();
    match post_change(&state, &headers, &uri, &form.form_token, "apply.title", move |s, role| {
        let Role::Enterprise(enterprise) = role else {
            return Err(suanli_service::ServiceError::new(
                suanli_service::ErrorCode::Forbidden,
                format!("{role} may not apply; an enterprise applies in its own name"),
            ));
        };
        // Drafted and submitted in one commit: a refused submission leaves no draft behind.
        s.apply(&Actor::of(role), enterprise, program, amount, &note)
    })
    .await
    {
        Ok(_) => Redirect::to("/applications?done=submitted").into_response(),
        Err(response) => response,
    }
}
