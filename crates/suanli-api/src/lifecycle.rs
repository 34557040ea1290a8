//! The voucher lifecycle over HTTP: programmes, enterprises, applications, vouchers, providers,
//! sites, pools and the audit log (orders are in `orders`, statements in `statements`, tokens in
//! `tokens`).
//!
//! Every handler authenticates and then runs one closure on the writer thread. The closure
//! resolves who owns the object (its enterprise, provider or authority), checks the caller's role
//! against the grants of that endpoint, and only then acts, so a refused call changes nothing.
//! Authentication comes first, before any part of the request is read or checked (the
//! `require_token` layer), so a caller without a token learns nothing from a validation error.
//! A caller refused on an object is told `not_found` with the words a missing object gets, so
//! no answer tells it that the object exists; an endpoint that names no object answers
//! `forbidden`.

// Endpoints that take no body still read it (`_unused_body: Bytes`, bounded by the body limit),
// so a client that sent one can reuse the connection.
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use suanli_domain::{
    ApplicantKind, ApplicationId, AuthorityId, EnterpriseId, Fen, ProgramId, ProviderId, RateBp, RegionCode, SiteId,
    Uscc, VoucherId,
};
use suanli_service::model::OperatorKind;
use suanli_service::{Actor, EnterpriseInput, ErrorCode, PoolInput, Role, Service, ServiceError, SiteSpec, View};

pub(crate) use crate::scope::{may_administer, may_review, order_query, visible_statements};
pub(crate) use crate::statements::act_on_statement;
use crate::{ApiError, AppState, authenticate};

/// Who may use an endpoint on a given object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    Anyone,
    Admin,
    /// Read-only endpoints.
    Auditor,
    /// The authority's admin or reviewer.
    Authority(AuthorityId),
    /// The authority's admin only.
    AuthorityAdmin(AuthorityId),
    Enterprise(EnterpriseId),
    Provider(ProviderId),
}

/// An action name is checked before the object is looked up, so an unknown action answers the
/// same whether the object exists or not.
pub(crate) fn known_action(action: &str, known: &[&str]) -> Result<(), ApiError> {
    if known.contains(&action) {
        return Ok(());
    }
    Err(ApiError::not_found(format!("action {action:?} does not exist; it is one of {}", known.join(", "))))
}

/// Whether `role` holds one of `grants`.
pub(crate) fn granted(role: Role, grants: &[Grant]) -> bool {
    grants.iter().any(|grant| match (*grant, role) {
        (Grant::Anyone, _) | (Grant::Admin, Role::PlatformAdmin) | (Grant::Auditor, Role::Auditor) => true,
        (Grant::Authority(a), Role::AuthorityAdmin(b) | Role::AuthorityReviewer(b)) => a == b,
        (Grant::AuthorityAdmin(a), Role::AuthorityAdmin(b)) => a == b,
        (Grant::Enterprise(a), Role::Enterprise(b)) => a == b,
        (Grant::Provider(a), Role::Provider(b)) => a == b,
        _ => false,
    })
}

/// Checks `role` against `grants` for the object `what`, which only those granted, the platform
/// admin and auditors can see. A caller refused answers exactly as if the object did not exist
/// (`not_found`, the same message), whatever its role: no answer tells a caller that an object
/// it could not see exists.
pub fn permit(role: Role, grants: &[Grant], what: &str) -> Result<(), ServiceError> {
    permit_seen(role, grants, &[Grant::Admin, Grant::Auditor], what)
}

/// Like [`permit`] for an object that `readers` (as well as those granted) can see: they are
/// told `forbidden`, everyone else `not_found`.
pub fn permit_seen(role: Role, grants: &[Grant], readers: &[Grant], what: &str) -> Result<(), ServiceError> {
    if granted(role, grants) {
        return Ok(());
    }
    if granted(role, readers) {
        return Err(ServiceError::new(ErrorCode::Forbidden, format!("{role} may not do this to {what}")));
    }
    Err(ServiceError::not_found(what))
}

/// Programmes, providers, sites and pools are public: anyone may see them.
pub(crate) const PUBLIC: &[Grant] = &[Grant::Anyone];

/// Checks `role` against `grants` for an endpoint that names no object (loading a programme,
/// the audit log, the sweep): `forbidden`.
pub fn permit_endpoint(role: Role, grants: &[Grant], what: &str) -> Result<(), ServiceError> {
    if granted(role, grants) {
        return Ok(());
    }
    Err(ServiceError::new(ErrorCode::Forbidden, format!("{role} may not use {what}")))
}

/// Authenticates, then runs `work` on what the last commit left, beside the writer (it never
/// queues), and answers its JSON.
pub(crate) async fn read<T: Serialize + Send + 'static>(
    state: &AppState,
    headers: &HeaderMap,
    work: impl FnOnce(&View, Role) -> Result<T, ServiceError> + Send + 'static,
) -> Result<Response, ApiError> {
    let role = authenticate(state, headers)?;
    let view = state.writer.view();
    let value = work(&view, role)?;
    Ok(Json(value).into_response())
}

/// Authenticates, then runs `work` on the writer with the caller's role and answers its JSON.
pub(crate) async fn run<T: Serialize + Send + 'static>(
    state: &AppState,
    headers: &HeaderMap,
    work: impl FnOnce(&mut Service, Role) -> Result<T, ServiceError> + Send + 'static,
) -> Result<Response, ApiError> {
    let role = authenticate(state, headers)?;
    let value = state.writer.call(move |service| work(service, role)).await??;
    Ok(Json(value).into_response())
}

pub(crate) fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(value)| value).map_err(ApiError::from_json)
}

/// A body that may be left out: none (or only white space) reads as `T::default()`; anything else
/// must be JSON, sent as `application/json`.
pub(crate) fn optional_body<T: serde::de::DeserializeOwned + Default>(
    headers: &HeaderMap,
    raw: &Bytes,
) -> Result<T, ApiError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
    if !json {
        return Err(ApiError::with_status(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_json",
            "content-type: must be application/json",
        ));
    }
    serde_json::from_slice(raw)
        .map_err(|e| ApiError::with_status(axum::http::StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))
}

pub(crate) fn id<T>(
    field: &str,
    text: &str,
    parse: fn(&str) -> Result<T, suanli_domain::IdError>,
) -> Result<T, ApiError> {
    parse(text).map_err(|e| ApiError::field(field, e))
}

pub(crate) fn fen(field: &str, amount: i64) -> Result<Fen, ApiError> {
    Fen::positive(amount).map_err(|e| ApiError::field(field, e))
}

pub(crate) fn actor(role: Role) -> Actor {
    Actor::of(role)
}

/// Paging on lists: `limit` (at most 500, default 100) and `offset`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Page {
    #[serde(default)]
    #[schemars(range(max = 4_294_967_295u32))]
    pub offset: u32,
    /// The page's size [default: 100].
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<usize>,
    /// Filters some lists by programme.
    pub program: Option<String>,
    /// Filters some lists by state (`open`, `submitted`, ...).
    pub state: Option<String>,
    /// Filters anomalies by kind (`usage_exceeds_order_gpus`, `signature_invalid`, ...).
    pub kind: Option<String>,
    /// Filters anomalies by the object they are about.
    pub object: Option<String>,
}

pub const PAGE_LIMIT_MAX: usize = 500;

/// The states each list filters by (`?state=`), as its items spell them.
pub const PROGRAM_STATES: &[&str] = &["draft", "open", "closed", "finished"];
pub const APPLICATION_STATES: &[&str] = &["draft", "submitted", "approved", "rejected", "withdrawn"];
/// `exhausted`: active, with nothing left to spend.
pub const VOUCHER_STATES: &[&str] = &["active", "exhausted", "suspended", "revoked", "expired"];
pub const ORDER_STATES: &[&str] = &["placed", "running", "completed", "cancelled"];
pub const STATEMENT_STATES: &[&str] = &["issued", "approved"];

impl Page {
    /// The state filtered by, one of `known`: a state no item can have is refused, not
    /// answered with an empty page.
    pub(crate) fn state_in(&self, known: &[&str]) -> Result<Option<&str>, ServiceError> {
        match self.state.as_deref() {
            Some(state) if !known.contains(&state) => {
                Err(ServiceError::field("state", format!("{state:?} is not one of {}", known.join(", "))))
            }
            state => Ok(state),
        }
    }

    /// The page's size, checked.
    pub(crate) fn limit(&self) -> Result<usize, ServiceError> {
        let limit = self.limit.unwrap_or(100);
        if limit == 0 || limit > PAGE_LIMIT_MAX {
            return Err(ServiceError::field("limit", format!("must be between 1 and {PAGE_LIMIT_MAX}")));
        }
        Ok(limit)
    }

    /// One page of `items` (references into the published state: only the page is serialized,
    /// nothing is copied).
    pub(crate) fn window<T: Serialize>(&self, items: Vec<T>) -> Result<Paged<T>, ServiceError> {
        let limit = self.limit()?;
        let total = items.len() as u64;
        let items: Vec<T> = items.into_iter().skip(self.offset as usize).take(limit).collect();
        Ok(Paged { total, offset: u64::from(self.offset), limit, items })
    }
}

/// One page of a list: how many there are in all, where the page starts, its size, its items.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Paged<T> {
    pub total: u64,
    pub offset: u64,
    pub limit: usize,
    pub items: Vec<T>,
}

impl<T: Clone> Paged<&T> {
    /// The page's items copied out of the published state (only the page, at most 500).
    pub(crate) fn owned(self) -> Paged<T> {
        let Paged { total, offset, limit, items } = self;
        Paged { total, offset, limit, items: items.into_iter().cloned().collect() }
    }
}

pub(crate) fn state_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

// ------------------------------------------------------------------ programmes

pub(crate) async fn list_programs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, _| {
        let wanted = page.state_in(PROGRAM_STATES)?;
        let items: Vec<_> = s
            .state()
            .programs
            .values()
            .filter(|p| wanted.is_none_or(|wanted| state_name(&p.state) == wanted))
            .collect();
        page.window(items).map(Paged::owned)
    })
    .await
}

pub(crate) async fn show_program(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(program): Path<String>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, _| s.find_program(&program).and_then(|id| s.program(id).cloned())).await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramFileJson {
    /// The programme file's TOML text.
    pub(crate) toml: String,
}

pub(crate) async fn load_program(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: Result<Json<ProgramFileJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = body(input)?;
    run(&state, &headers, move |s, role| {
        permit_endpoint(role, &[Grant::Admin], "programmes")?;
        let id = s.load_program(&actor(role), &input.toml)?;
        s.program(id).cloned()
    })
    .await
}

pub(crate) async fn program_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((program, action)): Path<(String, String)>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    known_action(&action, &["open", "close", "finish", "amend"])?;
    // Only `amend` has a body: {"toml": "..."}.
    let source = match action.as_str() {
        "amend" => Some(
            serde_json::from_slice::<ProgramFileJson>(&raw)
                .map_err(|e| ApiError::field("body", format!("expected {{\"toml\": \"...\"}}: {e}")))?
                .toml,
        ),
        _ => None,
    };
    run(&state, &headers, move |s, role| {
        let id = s.find_program(&program)?;
        act_on_program(s, role, id, &action, source.as_deref())?;
        s.program(id).cloned()
    })
    .await
}

/// A programme's admin (or the platform's) opens, closes, finishes or amends it; the API and the
/// console both go through here.
pub(crate) fn act_on_program(
    s: &mut Service,
    role: Role,
    id: ProgramId,
    action: &str,
    source: Option<&str>,
) -> Result<(), ServiceError> {
    let authority = s.program(id)?.authority;
    permit_seen(role, &[Grant::Admin, Grant::AuthorityAdmin(authority)], PUBLIC, &id.to_string())?;
    match action {
        "amend" => s.amend_program(&actor(role), id, source.unwrap_or_default()),
        "open" => s.open_program(&actor(role), id),
        "close" => s.close_program(&actor(role), id),
        "finish" => s.finish_program(&actor(role), id).map(|_| ()),
        other => Err(ServiceError::not_found(format!("action {other:?}"))),
    }
}

// ------------------------------------------------------------------ enterprises

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseJson {
    #[schemars(with = "suanli_domain::Uscc")]
    uscc: String,
    /// At most 500 bytes of UTF-8.
    #[schemars(length(min = 1, max = 500))]
    name: String,
    /// Defaults to the region in the credit code.
    #[schemars(with = "Option<RegionCode>")]
    region: Option<String>,
    #[schemars(with = "ApplicantKind")]
    kind: String,
    headcount: u32,
    #[schemars(range(min = 0))]
    revenue_fen: i64,
    #[serde(default)]
    research_projects: Vec<String>,
    #[serde(default)]
    related_parties: Vec<String>,
}

pub(crate) async fn register_enterprise(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: Result<Json<EnterpriseJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = body(input)?;
    let uscc = Uscc::parse(&input.uscc).map_err(|e| ApiError::field("uscc", e))?;
    let region = match &input.region {
        Some(text) => RegionCode::parse(text).map_err(|e| ApiError::field("region", e))?,
        None => uscc.region(),
    };
    let kind = ApplicantKind::parse(&input.kind).map_err(|e| ApiError::field("kind", e))?;
    let revenue_fen = Fen::non_negative(input.revenue_fen).map_err(|e| ApiError::field("revenue_fen", e))?;
    let related_parties = input
        .related_parties
        .iter()
        .enumerate()
        .map(|(i, text)| Uscc::parse(text).map_err(|e| ApiError::field(&format!("related_parties[{i}]"), e)))
        .collect::<Result<Vec<_>, _>>()?;
    let enterprise = EnterpriseInput {
        uscc,
        name: input.name,
        region,
        kind,
        headcount: input.headcount,
        revenue_fen,
        research_projects: input.research_projects,
        related_parties,
    };
    run(&state, &headers, move |s, role| {
        permit_endpoint(role, &[Grant::Admin], "enterprises")?;
        let id = s.register_enterprise(&actor(role), enterprise)?;
        s.enterprise(id).cloned()
    })
    .await
}

pub(crate) async fn show_enterprise(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(enterprise): Path<String>,
) -> Result<Response, ApiError> {
    let id = id("enterprise", &enterprise, EnterpriseId::parse)?;
    read(&state, &headers, move |s, role| {
        permit(role, &[Grant::Admin, Grant::Auditor, Grant::Enterprise(id)], &id.to_string())?;
        s.enterprise(id).cloned()
    })
    .await
}

// ------------------------------------------------------------------ applications

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationJson {
    #[schemars(with = "EnterpriseId")]
    enterprise: String,
    /// The programme's id or key.
    #[schemars(length(min = 1))]
    program: String,
    #[schemars(range(min = 1))]
    amount_fen: i64,
    #[serde(default)]
    note: String,
}

pub(crate) async fn create_application(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: Result<Json<ApplicationJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = body(input)?;
    let enterprise = id("enterprise", &input.enterprise, EnterpriseId::parse)?;
    let amount = fen("amount_fen", input.amount_fen)?;
    run(&state, &headers, move |s, role| {
        permit(role, &[Grant::Admin, Grant::Enterprise(enterprise)], &enterprise.to_string())?;
        let program = s.find_program(&input.program)?;
        let id = s.create_application(&actor(role), enterprise, program, amount, &input.note)?;
        s.application(id).cloned()
    })
    .await
}

/// An application's enterprise and its programme's authority.
fn application_scope(s: &View, id: ApplicationId) -> Result<(EnterpriseId, AuthorityId), ServiceError> {
    let application = s.application(id)?;
    Ok((application.enterprise, s.program(application.program)?.authority))
}

pub(crate) async fn list_applications(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, role| {
        let wanted = page.state_in(APPLICATION_STATES)?;
        let program = page.program.as_ref().map(|p| s.find_program(p)).transpose()?;
        page.window(visible_applications(s, role, program, wanted)).map(Paged::owned)
    })
    .await
}

/// The applications `role` may see, in submission order per programme.
pub(crate) fn visible_applications<'a>(
    s: &'a View,
    role: Role,
    program: Option<ProgramId>,
    state: Option<&str>,
) -> Vec<&'a suanli_service::model::Application> {
    let mut items: Vec<_> = s
        .state()
        .applications
        .values()
        .filter(|a| program.is_none_or(|p| a.program == p))
        .filter(|a| state.is_none_or(|wanted| state_name(&a.state) == wanted))
        .filter(|a| {
            let authority = s.state().programs[&a.program].authority;
            granted(role, &[Grant::Admin, Grant::Auditor, Grant::Authority(authority), Grant::Enterprise(a.enterprise)])
        })
        .collect();
    items.sort_by_key(|a| (a.program, a.submitted_at_s.unwrap_or(i64::MAX), a.id));
    items
}

pub(crate) async fn show_application(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(application): Path<String>,
) -> Result<Response, ApiError> {
    let id = id("application", &application, ApplicationId::parse)?;
    read(&state, &headers, move |s, role| {
        let (enterprise, authority) = application_scope(s, id)?;
        permit(
            role,
            &[Grant::Admin, Grant::Auditor, Grant::Authority(authority), Grant::Enterprise(enterprise)],
            &id.to_string(),
        )?;
        let application = s.application(id)?.clone();
        let eligibility: Vec<_> = s
            .eligibility(application.enterprise, application.program)?
            .into_iter()
            .map(|(rule, v)| crate::operate::VerdictJson { rule, passed: v.passed, reason: v.reason })
            .collect();
        // A submitted application that cannot be approved as things stand says why; it holds
        // back no later application.
        let blocked = (application.state == suanli_service::model::ApplicationState::Submitted)
            .then(|| s.program(application.program).ok().and_then(|p| s.blocked_reason(&application, p)))
            .flatten();
        Ok(ApplicationDetail { application, eligibility, blocked })
    })
    .await
}

/// An application with every eligibility verdict and, for a submitted one that cannot be
/// approved as things stand, why.
#[derive(Serialize, schemars::JsonSchema)]
pub struct ApplicationDetail {
    pub application: suanli_service::model::Application,
    pub eligibility: Vec<crate::operate::VerdictJson>,
    pub blocked: Option<String>,
}

/// Approving an application: the amount, and a rate at most the programme's.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveJson {
    #[schemars(range(min = 1))]
    amount_fen: i64,
    /// Approve at this rate [default: the programme's].
    #[schemars(range(min = 0, max = 10000))]
    rate_bp: Option<i64>,
}

/// Why an application is rejected or a voucher suspended or revoked.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonJson {
    #[schemars(length(min = 1, max = 500))]
    reason: String,
}

/// The body an action requires: JSON of type `T`, sent as `application/json`.
fn action_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, raw: &Bytes) -> Result<T, ApiError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::field("body", "this action needs a JSON body"));
    }
    optional_body::<Option<T>>(headers, raw)?.ok_or_else(|| ApiError::field("body", "must be a JSON object"))
}

pub(crate) async fn application_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((application, action)): Path<(String, String)>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    known_action(&action, &["submit", "withdraw", "approve", "reject"])?;
    let id = id("application", &application, ApplicationId::parse)?;
    // Submitting and withdrawing need no body.
    let decision = match action.as_str() {
        "approve" => {
            let input: ApproveJson = action_body(&headers, &raw)?;
            let rate = input.rate_bp.map(|r| RateBp::new(r).map_err(|e| ApiError::field("rate_bp", e))).transpose()?;
            Decision { amount: Some(fen("amount_fen", input.amount_fen)?), rate, reason: None }
        }
        "reject" => Decision { reason: Some(action_body::<ReasonJson>(&headers, &raw)?.reason), ..Decision::default() },
        _ => Decision::default(),
    };
    run(&state, &headers, move |s, role| act_on_application(s, role, id, &action, &decision)).await
}

/// Submits, withdraws, approves or rejects an application as `role` (the API and the console).
/// What an authority decides on an application: an amount (and a rate) to approve with, or the
/// reason it is rejected.
#[derive(Default)]
pub(crate) struct Decision {
    pub amount: Option<Fen>,
    pub rate: Option<RateBp>,
    pub reason: Option<String>,
}

pub(crate) fn act_on_application(
    s: &mut Service,
    role: Role,
    id: ApplicationId,
    action: &str,
    decision: &Decision,
) -> Result<suanli_service::model::Application, ServiceError> {
    let (enterprise, authority) = application_scope(s, id)?;
    let readers = [Grant::Admin, Grant::Auditor, Grant::Authority(authority), Grant::Enterprise(enterprise)];
    let who = actor(role);
    match action {
        "submit" | "withdraw" => {
            permit_seen(role, &[Grant::Admin, Grant::Enterprise(enterprise)], &readers, &id.to_string())?;
            if action == "submit" {
                let submitted = s.submit_application(&who, id);
                flag_stacking(s, id, submitted)?
            } else {
                s.withdraw_application(&who, id)?
            }
        }
        "approve" => {
            permit_seen(role, &[Grant::Admin, Grant::Authority(authority)], &readers, &id.to_string())?;
            let amount = decision.amount.ok_or_else(|| ServiceError::field("amount_fen", "is required to approve"))?;
            let approved = s.approve_application_at(&who, id, amount, decision.rate);
            flag_stacking(s, id, approved)?;
        }
        "reject" => {
            permit_seen(role, &[Grant::Admin, Grant::Authority(authority)], &readers, &id.to_string())?;
            s.reject_application(&who, id, decision.reason.as_deref().unwrap_or_default())?;
        }
        other => return Err(ServiceError::not_found(format!("action {other:?}"))),
    }
    s.application(id).cloned()
}

/// An application refused by the stacking rule is kept as an anomaly (the refusal itself changed
/// nothing): an enterprise trying to hold more than the programmes allow is evidence.
fn flag_stacking<T>(s: &mut Service, id: ApplicationId, result: Result<T, ServiceError>) -> Result<T, ServiceError> {
    if let Err(error) = &result
        && matches!(error.code, ErrorCode::StackingNotAllowed | ErrorCode::StackingCapExceeded)
    {
        let _ = s.flag_anomaly(&Actor::server(), "stacking_attempt", &id.to_string(), &error.message);
    }
    result
}

// ------------------------------------------------------------------ vouchers

/// A voucher's enterprise and its programme's authority.
pub fn voucher_scope(s: &View, id: VoucherId) -> Result<(EnterpriseId, AuthorityId), ServiceError> {
    let voucher = s.voucher(id)?;
    Ok((voucher.enterprise, s.program(voucher.program)?.authority))
}

pub(crate) async fn voucher_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((voucher, action)): Path<(String, String)>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let id = id("voucher", &voucher, VoucherId::parse)?;
    known_action(&action, &["suspend", "reinstate", "revoke"])?;
    // Reinstating needs no body.
    let reason = match action.as_str() {
        "reinstate" => None,
        _ => Some(action_body::<ReasonJson>(&headers, &raw)?.reason),
    };
    run(&state, &headers, move |s, role| act_on_voucher(s, role, id, &action, reason.as_deref())).await
}

/// Suspends, reinstates or revokes a voucher as `role` (the API and the console).
pub(crate) fn act_on_voucher(
    s: &mut Service,
    role: Role,
    id: VoucherId,
    action: &str,
    reason: Option<&str>,
) -> Result<suanli_service::model::Voucher, ServiceError> {
    let (enterprise, authority) = voucher_scope(s, id)?;
    let readers = [Grant::Admin, Grant::Auditor, Grant::Authority(authority), Grant::Enterprise(enterprise)];
    permit_seen(role, &[Grant::Admin, Grant::AuthorityAdmin(authority)], &readers, &id.to_string())?;
    let reason = reason.unwrap_or_default();
    match action {
        "suspend" => s.suspend_voucher(&actor(role), id, reason)?,
        "reinstate" => s.reinstate_voucher(&actor(role), id)?,
        "revoke" => {
            s.revoke_voucher(&actor(role), id, reason)?;
        }
        other => return Err(ServiceError::not_found(format!("action {other:?}"))),
    }
    s.voucher(id).cloned()
}

// ------------------------------------------------------------------ providers

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderJson {
    #[schemars(with = "suanli_domain::Uscc")]
    uscc: String,
    /// At most 500 bytes of UTF-8.
    #[schemars(length(min = 1, max = 500))]
    name: String,
    #[schemars(with = "OperatorKind")]
    operator: String,
}

fn operator(text: &str) -> Result<OperatorKind, ApiError> {
    OperatorKind::parse(text)
        .ok_or_else(|| ApiError::field("operator", "must be government, state_owned or commercial"))
}

pub(crate) async fn register_provider(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: Result<Json<ProviderJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = body(input)?;
    let uscc = Uscc::parse(&input.uscc).map_err(|e| ApiError::field("uscc", e))?;
    let kind = operator(&input.operator)?;
    run(&state, &headers, move |s, role| {
        permit_endpoint(role, &[Grant::Admin], "providers")?;
        let id = s.register_provider(&actor(role), uscc, &input.name, kind)?;
        Ok(s.state().providers[&id].clone())
    })
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteJson {
    /// At most 500 bytes of UTF-8.
    #[schemars(length(min = 1, max = 500))]
    name: String,
    #[schemars(length(min = 1, max = 500))]
    hub: String,
    #[schemars(with = "RegionCode")]
    region: String,
    #[schemars(range(min = -90.0, max = 90.0))]
    latitude: f64,
    #[schemars(range(min = -180.0, max = 180.0))]
    longitude: f64,
    /// Defaults to the provider's.
    #[schemars(with = "Option<OperatorKind>")]
    operator: Option<String>,
    #[schemars(range(min = 1))]
    power_price_fen_per_kwh: Option<i64>,
    #[schemars(range(min = 1.0, max = 3.0))]
    pue: Option<f64>,
}

pub(crate) async fn add_site(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(provider): Path<String>,
    input: Result<Json<SiteJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let provider = id("provider", &provider, ProviderId::parse)?;
    let input = body(input)?;
    let region = RegionCode::parse(&input.region).map_err(|e| ApiError::field("region", e))?;
    let kind = input.operator.as_deref().map(operator).transpose()?;
    let power = input.power_price_fen_per_kwh.map(|p| fen("power_price_fen_per_kwh", p)).transpose()?;
    run(&state, &headers, move |s, role| {
        permit_seen(role, &[Grant::Admin, Grant::Provider(provider)], PUBLIC, &provider.to_string())?;
        let operator_kind = match kind {
            Some(kind) => kind,
            None => s.state().providers.get(&provider).ok_or_else(|| ServiceError::not_found(provider))?.operator,
        };
        let spec = SiteSpec {
            provider,
            name: input.name,
            hub: input.hub,
            region,
            latitude: input.latitude,
            longitude: input.longitude,
            operator: operator_kind,
            power_price_fen_per_kwh: power,
            pue: input.pue,
        };
        let id = s.add_site(&actor(role), spec)?;
        Ok(s.state().sites[&id].clone())
    })
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyJson {
    /// The Ed25519 public key, 64 lower-case hex characters.
    #[schemars(regex(pattern = "^[0-9a-fA-F]{64}$"))]
    public_key_hex: String,
}

pub(crate) async fn set_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(provider): Path<String>,
    input: Result<Json<KeyJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let provider = id("provider", &provider, ProviderId::parse)?;
    let input = body(input)?;
    run(&state, &headers, move |s, role| {
        permit_seen(role, &[Grant::Admin, Grant::Provider(provider)], PUBLIC, &provider.to_string())?;
        s.register_provider_key(&actor(role), provider, &input.public_key_hex)?;
        Ok(s.state().providers[&provider].clone())
    })
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolJson {
    /// A registered chip, in any case, or an alias.
    #[schemars(length(min = 1, max = 64), regex(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"))]
    chip: String,
    #[schemars(range(min = 1, max = 1_000_000))]
    gpus: u32,
    /// Optional: the chip registry decides; a declaration that disagrees is refused.
    domestic: Option<bool>,
    #[schemars(range(min = 1))]
    price_fen_per_gpu_hour: i64,
}

/// `POST /api/v1/sites/{site}/verify`: the platform admin confirms the site's operator kind and
/// region; only a verified site counts as government-run or within a region.
pub(crate) async fn verify_site(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    _unused_body: Bytes,
) -> Result<Response, ApiError> {
    let site = id("site", &site, SiteId::parse)?;
    run(&state, &headers, move |s, role| {
        s.state().sites.get(&site).ok_or_else(|| ServiceError::not_found(site))?;
        permit_seen(role, &[Grant::Admin], PUBLIC, &site.to_string())?;
        s.verify_site(&actor(role), site)?;
        Ok(s.state().sites[&site].clone())
    })
    .await
}

pub(crate) async fn add_pool(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    input: Result<Json<PoolJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let site = id("site", &site, SiteId::parse)?;
    let input = body(input)?;
    let price = fen("price_fen_per_gpu_hour", input.price_fen_per_gpu_hour)?;
    run(&state, &headers, move |s, role| {
        let provider = s.state().sites.get(&site).ok_or_else(|| ServiceError::not_found(site))?.spec.provider;
        permit_seen(role, &[Grant::Admin, Grant::Provider(provider)], PUBLIC, &site.to_string())?;
        let pool = PoolInput {
            site,
            domestic: input
                .domestic
                .unwrap_or_else(|| suanli_service::chips::find(&input.chip).is_some_and(|c| c.domestic)),
            chip: input.chip,
            gpu_count: input.gpus,
            price_fen_per_gpu_hour: price,
        };
        let id = s.add_pool(&actor(role), pool)?;
        Ok(s.state().pools[&id].clone())
    })
    .await
}

pub(crate) async fn list_pools(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, _| page.window(s.state().pools.values().collect()).map(Paged::owned)).await
}

// ------------------------------------------------------------------ sweep, audit

pub(crate) async fn sweep(
    State(state): State<AppState>,
    headers: HeaderMap,
    _unused_body: Bytes,
) -> Result<Response, ApiError> {
    run(&state, &headers, move |s, role| {
        permit_endpoint(role, &[Grant::Admin], "the expiry sweep")?;
        s.sweep(&actor(role))
    })
    .await
}

#[derive(Serialize, Clone, schemars::JsonSchema)]
pub struct LogEntryJson {
    sequence: u64,
    time_s: i64,
    actor: String,
    action: String,
    object: String,
    /// The ledger batch committed with the entry, whose hash the entry's hash covers.
    ledger_batch: Option<u64>,
    /// The event as written (JSON).
    body: serde_json::Value,
    previous_hash: String,
    hash: String,
}

/// What an entry's body never shows over HTTP: a password's hash (argon2, open to guessing
/// offline) and a token's. The entry's `hash` still proves its place in the log (the inclusion
/// proof is over it); recomputing the hash itself takes the stored body (`suanli log`, `audit
/// verify`, with the database).
const SECRETS: &[&str] = &["password_phc", "secret_sha256_hex"];

fn redacted(mut body: serde_json::Value) -> serde_json::Value {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(object) => {
                for (key, inner) in object.iter_mut() {
                    if SECRETS.contains(&key.as_str()) {
                        *inner = serde_json::Value::String("[redacted]".into());
                    } else {
                        walk(inner);
                    }
                }
            }
            serde_json::Value::Array(values) => values.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut body);
    body
}

impl From<suanli_store::LogEntry> for LogEntryJson {
    fn from(e: suanli_store::LogEntry) -> LogEntryJson {
        LogEntryJson {
            sequence: e.sequence,
            time_s: e.time_s,
            actor: e.actor,
            action: e.action,
            object: e.object,
            ledger_batch: e.ledger_batch_id,
            body: redacted(serde_json::from_str(&e.body).unwrap_or(serde_json::Value::String(e.body))),
            previous_hash: suanli_service::access::hex(&e.previous_hash),
            hash: suanli_service::access::hex(&e.hash),
        }
    }
}

pub(crate) async fn audit_log(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    let role = authenticate(&state, &headers)?;
    permit_endpoint(role, &[Grant::Admin, Grant::Auditor], "the audit log")?;
    let limit = page.limit.unwrap_or(100);
    if limit == 0 || limit > PAGE_LIMIT_MAX {
        return Err(ApiError::field("limit", format!("must be between 1 and {PAGE_LIMIT_MAX}")));
    }
    // Sequences have no gaps, so the entries after `offset` are the page from `offset` on.
    let (entries, total) = state.writer.log_page(page.offset as u64, limit).await??;
    let items: Vec<LogEntryJson> = entries.into_iter().map(LogEntryJson::from).collect();
    Ok(Json(Paged { total, offset: page.offset as u64, limit, items }).into_response())
}

/// Vouchers within the caller's scope (paged; filter by program and state).
pub(crate) async fn list_vouchers(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, role| {
        if matches!(role, Role::Provider(_)) {
            return Err(ServiceError::new(ErrorCode::Forbidden, format!("{role} may not list vouchers")));
        }
        let wanted = page.state_in(VOUCHER_STATES)?;
        let program = page.program.as_ref().map(|p| s.find_program(p)).transpose()?;
        page.window(visible_vouchers(s, role, program, wanted)).map(Paged::owned)
    })
    .await
}

/// The vouchers `role` may see (none for a provider), in id order.
pub(crate) fn visible_vouchers<'a>(
    s: &'a View,
    role: Role,
    program: Option<ProgramId>,
    state: Option<&str>,
) -> Vec<&'a suanli_service::model::Voucher> {
    s.state()
        .vouchers
        .values()
        .filter(|v| program.is_none_or(|p| v.program == p))
        .filter(|v| state.is_none_or(|wanted| v.state_name() == wanted))
        .filter(|v| {
            let authority = s.state().programs[&v.program].authority;
            granted(role, &[Grant::Admin, Grant::Auditor, Grant::Authority(authority), Grant::Enterprise(v.enterprise)])
        })
        .collect()
}
