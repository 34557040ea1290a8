//! The market between hub nodes in the console (`/market`): the offers open and coming, and the
//! latest clearings with their prices, trades and welfare against the LP optimum. A provider
//! offers GPUs of its pools and withdraws what is unsold; the platform admin may clear the market
//! at once (the server clears it every `clearing_interval_seconds`).

// A page's early answer (a redirect, a refusal) is a whole response, returned once per request.
#![allow(clippy::result_large_err)]

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use suanli_domain::{Fen, OfferId, PoolId};
use suanli_service::market::OfferState;
use suanli_service::{Actor, OfferInput, Role};

use super::i18n::{when, yuan};
use super::pages::{open, post_change, refuse};
use super::{Ctx, html};
use crate::AppState;
use crate::lifecycle::{Grant, permit, permit_endpoint, permit_seen};

/// The clearings and closed offers a page shows, newest first.
const ROWS: usize = 50;

pub struct OfferRow {
    pub id: String,
    pub provider: String,
    pub pool: String,
    pub region: String,
    pub gpus: u32,
    pub sold: u32,
    pub opens: String,
    pub closes: String,
    pub reserve: String,
    pub state: String,
    /// The caller may withdraw it (its provider, or the admin, while it is open or upcoming).
    pub withdrawable: bool,
}

pub struct ClearingRow {
    pub clearing: u64,
    pub at: String,
    pub bids: u32,
    pub trades: usize,
    pub welfare_share: String,
    pub prices: String,
}

#[derive(Template)]
#[template(path = "market.html")]
struct MarketPage {
    ctx: Ctx,
    offers: Vec<OfferRow>,
    clearings: Vec<ClearingRow>,
    /// The caller's pools it may offer (a provider's own).
    pools: Vec<String>,
    may_clear: bool,
}

/// `GET /market`.
pub async fn market(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let (session, ctx) = match open(&state, &headers, &uri, "market.title") {
        Ok(opened) => opened,
        Err(redirect) => return redirect,
    };
    let view = state.writer.view();
    let now = view.now_s();
    let tr = ctx.tr;
    let mine = |provider| session.role == Role::PlatformAdmin || session.role == Role::Provider(provider);
    let offers = view
        .state()
        .offers
        .values()
        .rev()
        .take(ROWS)
        .map(|o| {
            let state = o.state_at(now);
            OfferRow {
                id: o.id.to_string(),
                provider: o.provider.to_string(),
                pool: o.pool.to_string(),
                region: o.region.to_string(),
                gpus: o.gpus,
                sold: o.gpus_sold,
                opens: when(o.opens_at_s),
                closes: when(o.closes_at_s),
                reserve: yuan(o.reserve_fen_per_gpu_hour),
                state: tr.t(state_key(state)).to_owned(),
                withdrawable: mine(o.provider) && matches!(state, OfferState::Open | OfferState::Upcoming),
            }
        })
        .collect();
    let clearings = view
        .clearings()
        .take(ROWS)
        .map(|c| ClearingRow {
            clearing: c.clearing,
            at: when(c.cleared_at_s),
            bids: c.bids,
            trades: c.trades.len(),
            welfare_share: if c.lp_welfare_fen > 0 {
                format!("{:.2}%", c.welfare_fen as f64 * 100.0 / c.lp_welfare_fen as f64)
            } else {
                "—".to_owned()
            },
            prices: c
                .prices
                .iter()
                .map(|p| {
                    format!(
                        "{} {}/{} @ {} + {}",
                        p.offer,
                        p.gpus_sold,
                        p.gpus_offered,
                        yuan(p.reserve_fen_per_gpu_hour),
                        yuan(p.gpu_price_fen)
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        })
        .collect();
    let pools = match session.role {
        Role::Provider(provider) => view
            .state()
            .pools
            .values()
            .filter(|p| p.retired_at_s.is_none() && view.state().sites[&p.site].spec.provider == provider)
            .map(|p| format!("{} ({}, {})", p.id, p.chip, p.gpu_count))
            .collect(),
        _ => Vec::new(),
    };
    let may_clear = session.role == Role::PlatformAdmin;
    html(StatusCode::OK, &MarketPage { ctx, offers, clearings, pools, may_clear })
}

fn state_key(state: OfferState) -> &'static str {
    match state {
        OfferState::Upcoming => "market.upcoming",
        OfferState::Open => "market.open",
        OfferState::Closed => "market.closed",
        OfferState::Withdrawn => "market.withdrawn",
    }
}

#[derive(Deserialize)]
pub struct OfferForm {
    form_token: String,
    /// `pol-N (chip, GPUs)` as the page lists it, or `pol-N`.
    pool: String,
    gpus: String,
    /// Days from now the offer stays open (1 to 31).
    days: String,
    /// Yuan per GPU-hour, at most two decimals.
    reserve_yuan: String,
}

/// `POST /market/offers`: a provider offers GPUs of one of its pools from now for some days.
pub async fn post_offer(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<OfferForm>,
) -> Response {
    let ctx = || Ctx::new(&headers, &uri, None, "market.title");
    let pool = form.pool.split_whitespace().next().and_then(|p| PoolId::parse(p).ok());
    let gpus = form.gpus.trim().parse::<u32>().ok().filter(|g| *g > 0);
    let days = form.days.trim().parse::<i64>().ok().filter(|d| (1..=31).contains(d));
    let reserve = Fen::parse(form.reserve_yuan.trim()).ok().filter(|f| *f > Fen::ZERO);
    let (Some(pool), Some(gpus), Some(days), Some(reserve)) = (pool, gpus, days, reserve) else {
        return refuse(ctx(), StatusCode::BAD_REQUEST, "market.bad_offer");
    };
    let posted = post_change(&state, &headers, &uri, &form.form_token, "market.title", move |s, role| {
        let Role::Provider(provider) = role else {
            return Err(suanli_service::ServiceError::new(
                suanli_service::ErrorCode::Forbidden,
                format!("{role} may not offer capacity; a provider offers its own pools"),
            ));
        };
        permit(role, &[Grant::Provider(provider)], &provider.to_string())?;
        let now = s.now_s();
        // The last minute of the window is left out so a 31-day offer stays within the limit.
        let input = OfferInput {
            pool,
            gpus,
            opens_at_s: now,
            closes_at_s: now + days * 86_400 - if days == 31 { 60 } else { 0 },
            reserve_fen_per_gpu_hour: reserve,
        };
        s.post_offer(&Actor::of(role), provider, &input)
    })
    .await;
    match posted {
        Ok((_, id)) => Redirect::to(&format!("/market?done=offer_posted#{id}")).into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    form_token: String,
}

/// `POST /market/offers/{id}/withdraw`: its provider (or the admin) withdraws an offer.
pub async fn withdraw_offer(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    let Ok(id) = OfferId::parse(&id) else {
        return refuse(Ctx::new(&headers, &uri, None, "market.title"), StatusCode::NOT_FOUND, "error.not_found");
    };
    let withdrawn = post_change(&state, &headers, &uri, &form.form_token, "market.title", move |s, role| {
        let provider = s.offer(id)?.provider;
        permit_seen(role, &[Grant::Admin, Grant::Provider(provider)], crate::lifecycle::PUBLIC, &id.to_string())?;
        s.withdraw_offer(&Actor::of(role), id)
    })
    .await;
    match withdrawn {
        Ok(_) => Redirect::to("/market?done=offer_withdrawn").into_response(),
        Err(response) => response,
    }
}

/// `POST /market/clear`: the admin clears the market now.
pub async fn clear(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<TokenForm>,
) -> Response {
    let cleared = post_change(&state, &headers, &uri, &form.form_token, "market.title", move |s, role| {
        permit_endpoint(role, &[Grant::Admin], "the market")?;
        s.run_clearing(&Actor::of(role))
    })
    .await;
    match cleared {
        Ok(_) => Redirect::to("/market?done=market_cleared").into_response(),
        Err(response) => response,
    }
}
