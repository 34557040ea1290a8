//! The market between hub nodes over HTTP: providers post and withdraw capacity offers, anyone
//! with a token reads the offers and the clearings (a market's prices are public), and the
//! platform admin may clear the market at once; the server clears it every
//! `clearing_interval_seconds` on its own.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use suanli_domain::{Fen, OfferId, PoolId, ProviderId};
use suanli_service::calendar::parse_timestamp;
use suanli_service::market::{CapacityOffer, Clearing, OfferState};
use suanli_service::requests::RoundReport;
use suanli_service::{OfferInput, View};

use crate::lifecycle::{Grant, Page, Paged, actor, body, id, permit, permit_endpoint, permit_seen, read, run};
use crate::{ApiError, AppState};

/// The states of offers, as `?state=` filters them.
pub const OFFER_STATES: &[&str] = &["upcoming", "open", "closed", "withdrawn"];

/// A capacity offer as a provider posts it.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferJson {
    #[schemars(with = "ProviderId")]
    provider: String,
    #[schemars(with = "PoolId")]
    pool: String,
    #[schemars(range(min = 1, max = 1_000_000))]
    gpus: u32,
    /// When the window opens (RFC 3339) [default: now].
    #[schemars(extend("format" = "date-time"))]
    opens_at: Option<String>,
    /// When the window closes (RFC 3339): at most 31 days after it opens.
    #[schemars(extend("format" = "date-time"))]
    closes_at: String,
    /// The least the provider takes per GPU-hour, in fen.
    #[schemars(range(min = 1, max = 10_000_000))]
    reserve_fen_per_gpu_hour: i64,
}

/// An offer with its state now.
#[derive(Serialize, schemars::JsonSchema)]
pub struct OfferView {
    #[serde(flatten)]
    pub offer: CapacityOffer,
    pub state: OfferState,
}

fn view(s: &View, offer: &CapacityOffer) -> OfferView {
    OfferView { offer: offer.clone(), state: offer.state_at(s.now_s()) }
}

/// A clearing run at once: the round of the scheduling loop before it, and the clearing.
#[derive(Serialize, schemars::JsonSchema)]
pub struct ClearingRun {
    pub round: RoundReport,
    pub clearing: Clearing,
}

pub(crate) async fn post_offer(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: Result<Json<OfferJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = body(input)?;
    let provider = id("provider", &input.provider, ProviderId::parse)?;
    let pool = id("pool", &input.pool, PoolId::parse)?;
    let time = |field: &str, text: &str| {
        parse_timestamp(text).ok_or_else(|| ApiError::field(field, "must be an RFC 3339 time"))
    };
    let opens_at = input.opens_at.as_deref().map(|text| time("opens_at", text)).transpose()?;
    let closes_at_s = time("closes_at", &input.closes_at)?;
    let (gpus, reserve) = (input.gpus, Fen::new(input.reserve_fen_per_gpu_hour));
    run(&state, &headers, move |s, role| {
        permit(role, &[Grant::Admin, Grant::Provider(provider)], &provider.to_string())?;
        let offer = OfferInput {
            pool,
            gpus,
            opens_at_s: opens_at.unwrap_or_else(|| s.now_s()),
            closes_at_s,
            reserve_fen_per_gpu_hour: reserve,
        };
        let id = s.post_offer(&actor(role), provider, &offer)?;
        Ok(view(s, s.offer(id)?))
    })
    .await
}

pub(crate) async fn show_offer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(offer): Path<String>,
) -> Result<Response, ApiError> {
    let id = id("offer", &offer, OfferId::parse)?;
    read(&state, &headers, move |s, _| Ok(view(s, s.offer(id)?))).await
}

pub(crate) async fn withdraw_offer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(offer): Path<String>,
    _unused_body: Bytes,
) -> Result<Response, ApiError> {
    let id = id("offer", &offer, OfferId::parse)?;
    run(&state, &headers, move |s, role| {
        let provider = s.offer(id)?.provider;
        // Anyone may see an offer; only its provider may withdraw it.
        permit_seen(role, &[Grant::Admin, Grant::Provider(provider)], crate::lifecycle::PUBLIC, &id.to_string())?;
        s.withdraw_offer(&actor(role), id)?;
        Ok(view(s, s.offer(id)?))
    })
    .await
}

/// Offers in posting order (paged; filter by state).
pub(crate) async fn list_offers(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, _| {
        let wanted = page.state_in(OFFER_STATES)?;
        let now = s.now_s();
        let offers: Vec<OfferView> = s
            .state()
            .offers
            .values()
            .filter(|o| wanted.is_none_or(|w| o.state_at(now).as_str() == w))
            .map(|o| view(s, o))
            .collect();
        page.window(offers)
    })
    .await
}

/// The latest clearings, newest first (paged).
pub(crate) async fn list_clearings(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    read(&state, &headers, move |s, _| page.window(s.clearings().collect()).map(Paged::owned)).await
}

/// Clears the market now (the platform admin): a round of the scheduling loop, then the clearing.
pub(crate) async fn run_clearing(
    State(state): State<AppState>,
    headers: HeaderMap,
    _unused_body: Bytes,
) -> Result<Response, ApiError> {
    run(&state, &headers, move |s, role| {
        permit_endpoint(role, &[Grant::Admin], "the market")?;
        let (round, clearing) = s.run_clearing(&actor(role))?;
        Ok(ClearingRun { round, clearing })
    })
    .await
}

/// So the document's enum and the filter agree.
#[test]
fn the_filter_names_every_state() {
    let names: Vec<&str> = [OfferState::Upcoming, OfferState::Open, OfferState::Closed, OfferState::Withdrawn]
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(names, OFFER_STATES);
}
