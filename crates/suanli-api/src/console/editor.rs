//! The programme editor: a programme file written in the browser, checked exactly as loading it
//! checks it, previewed against every registered enterprise (which of them each eligibility rule
//! admits), then saved as a new draft or as a draft's new terms; and a programme's opening,
//! closing and finishing. Every check and change is the API's (`View::preview_program`,
//! `operate::preview`, `lifecycle::act_on_program`).

// A page's early answer (a redirect, a refusal) is a whole response, returned once per request.
#![allow(clippy::result_large_err)]

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use suanli_domain::ProgramId;
use suanli_service::Role;

use super::pages::{check_form, error_page, open, post_change, refuse, refused};
use super::{Ctx, html};
use crate::AppState;
use crate::operate::PreviewJson;

/// Where a new programme starts: a complete file to change.
const STARTER: &str = include_str!("../../../../programs/shanghai-compute.toml");

/// Enterprises listed by name in a preview (the counts cover all of them).
const PREVIEW_ROWS: usize = 100;

#[derive(Template)]
#[template(path = "program_editor.html")]
struct EditorPage {
    ctx: Ctx,
    /// The draft amended, or empty for a new programme.
    program: String,
    source: String,
    preview: Option<PreviewJson>,
    shown: usize,
}

fn may_create(role: Role) -> bool {
    role == Role::PlatformAdmin
}

/// `GET /programs/new`: the editor with a complete example file. Platform admin.
pub async fn new_program(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "editor.new_title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    if !may_create(session.role) {
        return refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden");
    }
    html(
        StatusCode::OK,
        &EditorPage { ctx, program: String::new(), source: STARTER.to_owned(), preview: None, shown: 0 },
    )
}

/// `GET /programs/{id}/edit`: a draft's terms as a programme file. Its authority's admin or the
/// platform admin.
pub async fn edit_program(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "editor.edit_title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    let view = state.writer.view();
    let Some(program) = ProgramId::parse(&id).ok().and_then(|id| view.state().programs.get(&id)) else {
        return refuse(ctx, StatusCode::NOT_FOUND, "error.not_found");
    };
    if !crate::lifecycle::may_administer(session.role, program.authority) {
        return refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden");
    }
    if program.state != suanli_service::model::ProgramState::Draft {
        return refuse(ctx, StatusCode::CONFLICT, "editor.not_draft");
    }
    let source = suanli_service::program_file::to_toml(&program.terms);
    html(StatusCode::OK, &EditorPage { ctx, program: program.id.to_string(), source, preview: None, shown: 0 })
}

#[derive(Deserialize)]
pub struct EditorForm {
    form_token: String,
    #[serde(default)]
    program: String,
    #[serde(default)]
    toml: String,
    /// `preview` or `save`.
    #[serde(default)]
    intent: String,
}

/// `POST /programs/editor`: preview (nothing written) or save.
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<EditorForm>,
) -> Response {
    let title = if form.program.is_empty() { "editor.new_title" } else { "editor.edit_title" };
    let (session, ctx) = match open(&state, &headers, &uri, title) {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    if !check_form(&session, &form.form_token) {
        let message = ctx.tr.t("error.csrf").to_owned();
        return error_page(ctx, StatusCode::FORBIDDEN, message);
    }
    let amended = match form.program.as_str() {
        "" => None,
        text => match ProgramId::parse(text) {
            Ok(id) => Some(id),
            Err(_) => return refuse(ctx, StatusCode::NOT_FOUND, "error.not_found"),
        },
    };
    if amended.is_none() && !may_create(session.role) {
        return refuse(ctx, StatusCode::FORBIDDEN, "error.forbidden");
    }
    let source = form.toml.replace("\r\n", "\n");
    if form.intent == "save" {
        let toml = source.clone();
        let saved = post_change(&state, &headers, &uri, &form.form_token, title, move |s, role| match amended {
            Some(id) => crate::lifecycle::act_on_program(s, role, id, "amend", Some(&toml)).map(|()| id),
            None => {
                crate::lifecycle::permit_endpoint(role, &[crate::lifecycle::Grant::Admin], "programmes")?;
                s.load_program(&suanli_service::Actor::of(role), &toml)
            }
        })
        .await;
        return match saved {
            Ok((_, id)) => Redirect::to(&format!("/programs/{id}?done=program_saved")).into_response(),
            Err(response) => response,
        };
    }
    let view = state.writer.view();
    let program = form.program.clone();
    match crate::operate::preview(&view, session.role, &source, ctx.tr.wording()) {
        Ok(preview) => {
            let shown = preview.enterprises.len().min(PREVIEW_ROWS);
            html(StatusCode::OK, &EditorPage { ctx, program, source, preview: Some(preview), shown })
        }
        Err(error) => {
            let error = crate::ApiError::from(error);
            if error.status == StatusCode::FORBIDDEN {
                return refused(ctx, &error);
            }
            let message = ctx.explain(&error);
            html(error.status, &EditorPage { ctx: ctx.with_error(message), program, source, preview: None, shown: 0 })
        }
    }
}

#[derive(Deserialize)]
pub struct StateForm {
    form_token: String,
}

/// `POST /programs/{id}/state/{open|close|finish}`.
pub async fn change_state(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<StateForm>,
) -> Response {
    let ctx = || Ctx::new(&headers, &uri, None, "program.list_title");
    let (Ok(id), true) = (ProgramId::parse(&id), ["open", "close", "finish"].contains(&action.as_str())) else {
        return refuse(ctx(), StatusCode::NOT_FOUND, "error.not_found");
    };
    let done = format!("/programs/{id}?done=program_{action}");
    match post_change(&state, &headers, &uri, &form.form_token, "program.list_title", move |s, role| {
        crate::lifecycle::act_on_program(s, role, id, &action, None)
    })
    .await
    {
        Ok(_) => Redirect::to(&done).into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
pub struct LotteryForm {
    form_token: String,
    /// Commit: the seed's SHA-256 in hex, and the date the round closes (Asia/Shanghai midnight).
    seed_sha256: Option<String>,
    closes_on: Option<String>,
    /// Draw: the seed itself.
    seed: Option<String>,
}

/// `POST /programs/{id}/lottery/{commit|draw}`: the authority's admin commits a round's seed
/// (only its hash reaches the server) or reveals it to draw; the same checks as the API's.
pub async fn lottery(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<LotteryForm>,
) -> Response {
    let ctx = || Ctx::new(&headers, &uri, None, "program.list_title");
    let (Ok(id), true) = (ProgramId::parse(&id), ["commit", "draw"].contains(&action.as_str())) else {
        return refuse(ctx(), StatusCode::NOT_FOUND, "error.not_found");
    };
    let done = format!("/programs/{id}?done=lottery_{action}");
    let program = id.to_string();
    let result = post_change(&state, &headers, &uri, &form.form_token, "program.list_title", move |s, role| {
        let id = crate::lottery::permit_admin(s, role, &program)?;
        let actor = suanli_service::Actor::of(role);
        if action == "commit" {
            let date = form.closes_on.unwrap_or_default();
            let closes = suanli_service::calendar::parse_timestamp(&format!("{date}T00:00:00+08:00"))
                .ok_or_else(|| suanli_service::ServiceError::field("closes_on", "must be a date, YYYY-MM-DD"))?;
            s.commit_lottery(&actor, id, form.seed_sha256.unwrap_or_default().trim(), closes).map(|_| ())
        } else {
            s.draw_lottery(&actor, id, &form.seed.unwrap_or_default()).map(|_| ())
        }
    })
    .await;
    match result {
        Ok(_) => Redirect::to(&done).into_response(),
        Err(response) => response,
    }
}
