//! Order requests in the console: an enterprise submits a quoted order to the scheduling loop
//! instead of placing it now, then follows it on `/requests` — waiting, placed (with its order,
//! pool and the tier that served it) or refused with the reason — and may withdraw it while it
//! waits. Authorities, the admin and auditors see the requests within their scope.

// A page's early answer (a redirect, a refusal) is a whole response, returned once per request.
#![allow(clippy::result_large_err)]

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use suanli_domain::RequestId;
use suanli_service::requests::RequestState;
use suanli_service::{Actor, Role};

use super::enterprise::{QuoteQuery, request as order_request};
use super::i18n::{when, yuan};
use super::pages::{open, post_change, refuse};
use super::{Ctx, Session, html};
use crate::AppState;

/// The newest requests a page shows.
const ROWS: usize = 200;

pub struct RequestRow {
    pub id: String,
    pub enterprise: String,
    pub gpus_hours: String,
    pub submitted: String,
    pub until: String,
    pub state: String,
    pub waiting: bool,
    pub order: String,
    pub pool: String,
    pub list_cost: String,
    pub tier: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    ctx: Ctx,
    rows: Vec<RequestRow>,
    may_withdraw: bool,
}

/// `GET /requests`: the newest order requests the caller may see, newest first.
pub async fn requests(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "request.title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    let view = state.writer.view();
    let tr = ctx.tr;
    let rows = crate::requests::visible_requests(&view, session.role, None, None)
        .into_iter()
        .rev()
        .take(ROWS)
        .map(|r| {
            let decision = r.decision.as_ref();
            let mut reason = decision.and_then(|d| d.reason.clone()).unwrap_or_default();
            if reason.is_empty() {
                reason = decision.map(|d| d.escalated.join(" | ")).unwrap_or_default();
            }
            RequestRow {
                id: r.id.to_string(),
                enterprise: r.enterprise.to_string(),
                gpus_hours: format!("{} × {}", r.gpu_count, r.hours),
                submitted: when(r.submitted_at_s),
                until: when(r.expires_at_s),
                state: tr.t(state_key(r.state)).to_owned(),
                waiting: r.state == RequestState::Waiting,
                order: decision.and_then(|d| d.order).map(|o| o.to_string()).unwrap_or_default(),
                pool: decision.and_then(|d| d.pool).map(|p| p.to_string()).unwrap_or_default(),
                list_cost: decision.filter(|d| d.order.is_some()).map(|d| yuan(d.list_cost_fen)).unwrap_or_default(),
                tier: decision.and_then(|d| d.tier.clone()).unwrap_or_default(),
                reason,
            }
        })
        .collect();
    let may_withdraw = matches!(session.role, Role::Enterprise(_) | Role::PlatformAdmin);
    html(StatusCode::OK, &RequestsPage { ctx, rows, may_withdraw })
}

fn state_key(state: RequestState) -> &'static str {
    match state {
        RequestState::Waiting => "request.waiting",
        RequestState::Placed => "request.placed",
        RequestState::Refused => "request.refused",
        RequestState::Withdrawn => "request.withdrawn",
    }
}

#[derive(Deserialize)]
pub struct SubmitForm {
    form_token: String,
    /// The most paid per GPU-hour for capacity bought between hub nodes, in yuan (empty: none).
    #[serde(default)]
    limit_yuan: String,
    #[serde(flatten)]
    order: QuoteQuery,
}

/// `POST /quote/submit`: the quoted order, submitted to the scheduling loop.
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<SubmitForm>,
) -> Response {
    let ctx = || Ctx::new(&headers, &uri, None, "quote.title");
    let Some(Role::Enterprise(enterprise)) = Session::from_headers(&state, &headers).map(|s| s.role) else {
        return refuse(ctx(), StatusCode::FORBIDDEN, "error.forbidden");
    };
    let request = match order_request(enterprise, &form.order) {
        Ok(request) => request,
        Err(key) => return refuse(ctx(), StatusCode::BAD_REQUEST, key),
    };
    let limit = match form.limit_yuan.trim() {
        "" => None,
        text => match suanli_domain::Fen::parse(text) {
            Ok(fen) if fen > suanli_domain::Fen::ZERO => Some(fen),
            _ => return refuse(ctx(), StatusCode::BAD_REQUEST, "quote.bad_limit"),
        },
    };
    let submitted = post_change(&state, &headers, &uri, &form.form_token, "quote.title", move |s, role| {
        crate::lifecycle::permit(role, &[crate::lifecycle::Grant::Enterprise(enterprise)], &enterprise.to_string())?;
        s.submit_bid(&Actor::of(role), &request, None, limit)
    })
    .await;
    match submitted {
        Ok((_, id)) => Redirect::to(&format!("/requests?done=request_submitted#{id}")).into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
pub struct WithdrawForm {
    form_token: String,
}

/// `POST /requests/{id}/withdraw`: the enterprise (or the admin) withdraws a waiting request.
pub async fn withdraw(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Form(form): Form<WithdrawForm>,
) -> Response {
    let Ok(id) = RequestId::parse(&id) else {
        return refuse(Ctx::new(&headers, &uri, None, "request.title"), StatusCode::NOT_FOUND, "error.not_found");
    };
    let withdrawn = post_change(&state, &headers, &uri, &form.form_token, "request.title", move |s, role| {
        let request = s.request(id)?;
        let authority = s.program(request.program)?.authority;
        let readers = [
            crate::lifecycle::Grant::Admin,
            crate::lifecycle::Grant::Auditor,
            crate::lifecycle::Grant::Authority(authority),
            crate::lifecycle::Grant::Enterprise(request.enterprise),
        ];
        let grants = [crate::lifecycle::Grant::Admin, crate::lifecycle::Grant::Enterprise(request.enterprise)];
        crate::lifecycle::permit_seen(role, &grants, &readers, &id.to_string())?;
        s.withdraw_request(&Actor::of(role), id)
    })
    .await;
    match withdrawn {
        Ok(_) => Redirect::to("/requests?done=request_withdrawn").into_response(),
        Err(response) => response,
    }
}
