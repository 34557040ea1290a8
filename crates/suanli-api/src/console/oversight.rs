//! The overseers' actions: an auditor runs the whole audit from the console, and an authority
//! issues a provider's monthly statement for its programme.

// A page's early answer (a redirect, a refusal) is a whole response, returned once per request.
#![allow(clippy::result_large_err)]

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use suanli_domain::ProviderId;
use suanli_service::Role;
use suanli_service::calendar::YearMonth;

use super::i18n::when;
use super::pages::{
    NEWEST_FIRST_ROWS, Recent, TokenForm, check_form, error_page, open, post_change, refuse, refused, require,
};
use super::{Ctx, html};
use crate::lifecycle::{Grant, PUBLIC, permit_seen};
use crate::{ApiError, AppState};

#[derive(Template)]
#[template(path = "audit_run.html")]
struct AuditRunPage {
    ctx: Ctx,
    passed: bool,
    figures: Vec<(&'static str, String)>,
    violations: Vec<String>,
}

/// `POST /audit/run`: the checks of `suanli audit verify` over the whole database, on a
/// read-only connection beside the writer, and what they found.
pub async fn run_audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let session = match require(&state, &headers, &uri) {
        Ok(session) => session,
        Err(redirect) => return redirect,
    };
    let ctx = Ctx::new(&headers, &uri, Some(&session), "audit.run_title");
    if !form.is_ok_and(|Form(f)| check_form(&session, &f.form_token)) {
        let message = ctx.tr.t("error.csrf").to_owned();
        return error_page(ctx, StatusCode::FORBIDDEN, message);
    }
    if !matches!(session.role, Role::PlatformAdmin | Role::Auditor) {
        return refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden");
    }
    let report = match state.writer.audit().await {
        Ok(report) => report,
        Err(error) => return refused(ctx, &ApiError::from(error)),
    };
    let hex = |bytes: &[u8]| suanli_service::access::hex(bytes);
    let figures = vec![
        ("audit.batches", report.batches.to_string()),
        ("audit.accounts", report.accounts.to_string()),
        ("audit.transfers", report.transfers.to_string()),
        ("audit.holds_open", report.holds_open.to_string()),
        ("audit.log_entries", report.log_entries.to_string()),
        ("audit.journal_head", hex(&report.journal_head)),
        ("audit.log_head", hex(&report.log_head)),
        ("audit.state_hash", report.state_hash.map_or_else(|| "—".to_owned(), |h| hex(&h))),
    ];
    let status = if report.passed() { StatusCode::OK } else { StatusCode::CONFLICT };
    html(status, &AuditRunPage { ctx, passed: report.passed(), figures, violations: report.violations })
}

#[derive(Deserialize)]
pub struct IssueForm {
    form_token: String,
    program: String,
    provider: String,
    month: String,
}

/// `POST /statements/issue`: a provider's statement for one month of a programme, issued by the
/// programme's authority (the API's rule).
pub async fn issue_statement(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<IssueForm>,
) -> Response {
    let ctx = || Ctx::new(&headers, &uri, None, "statement.title");
    let Ok(provider) = ProviderId::parse(form.provider.trim()) else {
        return refuse(ctx(), StatusCode::BAD_REQUEST, "statement.bad_provider");
    };
    let Some(month) = YearMonth::parse(form.month.trim()) else {
        return refuse(ctx(), StatusCode::BAD_REQUEST, "statement.bad_month");
    };
    let program = form.program.clone();
    match post_change(&state, &headers, &uri, &form.form_token, "statement.title", move |s, role| {
        let program = s.find_program(&program)?;
        let authority = s.program(program)?.authority;
        permit_seen(role, &[Grant::Admin, Grant::AuthorityAdmin(authority)], PUBLIC, &program.to_string())?;
        s.issue_statement(&suanli_service::Actor::of(role), provider, program, month)
    })
    .await
    {
        Ok(_) => Redirect::to("/statements?done=statement_issued").into_response(),
        Err(response) => response,
    }
}

// ------------------------------------------------------------------ anomalies

pub struct AnomalyRow {
    pub sequence: u64,
    pub time: String,
    pub kind: String,
    pub object: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "anomalies.html")]
struct AnomaliesPage {
    ctx: Ctx,
    rows: Vec<AnomalyRow>,
    recent: Recent,
}

#[derive(Deserialize)]
pub struct PageQuery {
    /// Pages back from the newest (0 is the newest).
    page: Option<u64>,
}

/// The evidence kept, newest first: the platform's overseers see all of it, an authority what is
/// about its programmes (the API's rule, `evidence::visible_anomalies`).
pub async fn anomalies(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<PageQuery>,
) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "anomaly.title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    let authority = match session.role {
        Role::PlatformAdmin | Role::Auditor => None,
        Role::AuthorityAdmin(a) | Role::AuthorityReviewer(a) => Some(a),
        _ => {
            return refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden");
        }
    };
    let filter = || suanli_store::AnomalyFilter { kind: None, object: None };
    let total = match crate::evidence::visible_anomalies(&state, authority, filter(), 0, 1).await {
        Ok((_, total)) => total,
        Err(error) => return refused(ctx, &error),
    };
    let page = query.page.unwrap_or(0);
    let end = total.saturating_sub(page.saturating_mul(NEWEST_FIRST_ROWS));
    let start = end.saturating_sub(NEWEST_FIRST_ROWS);
    let items = if end == 0 {
        Vec::new()
    } else {
        match crate::evidence::visible_anomalies(&state, authority, filter(), start, (end - start) as usize).await {
            Ok((items, _)) => items,
            Err(error) => return refused(ctx, &error),
        }
    };
    let rows = items
        .into_iter()
        .rev()
        .map(|(sequence, a)| AnomalyRow {
            sequence,
            time: when(a.time_s),
            kind: a.kind,
            object: a.object,
            detail: a.detail,
        })
        .collect();
    let older = (start > 0).then(|| format!("/anomalies?page={}", page + 1));
    let newer = (page > 0).then(|| format!("/anomalies?page={}", page - 1));
    html(StatusCode::OK, &AnomaliesPage { ctx, rows, recent: Recent { newer, older, total } })
}
