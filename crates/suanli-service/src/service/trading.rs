//! The market between hub nodes (`crate::market`): offers posted and withdrawn by providers, and
//! the clearing that matches the bids a round of the scheduling loop left waiting to the capacity
//! offered outside their programmes' highest tiers.

use std::collections::HashMap;

use suanli_domain::OfferId;
use suanli_placement::market::{Bid, Fit, Offer, clear};
use suanli_placement::{Exclusion, Problem};

use super::choose::weighed;
use super::*;
use crate::market::{
    CLEARING_BIDS_MAX, CLEARING_BIDS_PER_ENTERPRISE_MAX, CapacityOffer, Clearing, LIMIT_FEN_PER_GPU_HOUR_MAX,
    OFFER_WINDOW_MAX_S, OFFERS_PER_POOL_MAX, OfferPrice, OfferState, Trade,
};
use crate::requests::{Decision, OrderRequest, RequestState, RoundReport};

/// An offer as a provider posts it.
#[derive(Clone, Debug)]
pub struct OfferInput {
    pub pool: PoolId,
    pub gpus: u32,
    pub opens_at_s: i64,
    pub closes_at_s: i64,
    pub reserve_fen_per_gpu_hour: Fen,
}

impl Service {
    /// A provider offers GPUs of one of its pools to the market for a window, at no less than a
    /// reserve price per GPU-hour. The pool's site must be verified: the trade is settled by its
    /// region.
    pub fn post_offer(&mut self, actor: &Actor, provider: ProviderId, input: &OfferInput) -> Result<OfferId> {
        let now = self.now_s();
        let pool = self.state.pools.get(&input.pool).ok_or_else(|| ServiceError::not_found(input.pool))?;
        let (site, owner) = self.provider_of_pool(pool);
        if owner.id != provider {
            // As for a pool that does not exist: no provider learns of another's pools this way.
            return Err(ServiceError::not_found(input.pool));
        }
        if pool.retired_at_s.is_some() {
            return Err(ServiceError::new(ErrorCode::PoolRetired, format!("pool: {} is retired", pool.id)));
        }
        if site.verified_at_s.is_none() {
            return Err(ServiceError::new(
                ErrorCode::SiteNotVerified,
                format!(
                    "pool: {} is at {}, whose region the platform has not verified; trades are settled by region",
                    pool.id, site.id
                ),
            ));
        }
        let standing = self
            .state
            .offers
            .values()
            .filter(|o| o.pool == pool.id && matches!(o.state_at(now), OfferState::Open | OfferState::Upcoming))
            .count();
        if standing >= OFFERS_PER_POOL_MAX {
            return Err(ServiceError::new(
                ErrorCode::OffersMax,
                format!(
                    "pool: {} has {standing} open or upcoming offers, the most one pool may; withdraw one or let it close",
                    pool.id
                ),
            ));
        }
        if input.gpus == 0 {
            return Err(ServiceError::field("gpus", "must be at least 1"));
        }
        if input.gpus > pool.gpu_count {
            return Err(ServiceError::new(
                ErrorCode::PoolCapacityExceeded,
                format!("gpus: {} asked, but {} has {} GPUs", input.gpus, pool.id, pool.gpu_count),
            ));
        }
        if !(1..=LIMIT_FEN_PER_GPU_HOUR_MAX).contains(&input.reserve_fen_per_gpu_hour.fen()) {
            return Err(ServiceError::field(
                "reserve_fen_per_gpu_hour",
                format!("must be between 1 and {LIMIT_FEN_PER_GPU_HOUR_MAX}"),
            ));
        }
        // Times each well formed, but not a window the market takes: refused with their own code.
        let window = |why: String| ServiceError::new(ErrorCode::OfferWindow, why);
        if input.closes_at_s <= input.opens_at_s || input.closes_at_s - input.opens_at_s > OFFER_WINDOW_MAX_S {
            return Err(window(format!(
                "closes_at: must be after opens_at, by at most {} days",
                OFFER_WINDOW_MAX_S / 86_400
            )));
        }
        if input.closes_at_s - input.opens_at_s.max(now) < 3_600 {
            return Err(window("closes_at: the window must leave at least an hour from now".to_owned()));
        }
        if input.opens_at_s > now.saturating_add(OFFER_WINDOW_MAX_S) {
            return Err(window(format!("opens_at: must be within {} days from now", OFFER_WINDOW_MAX_S / 86_400)));
        }
        let offer = CapacityOffer {
            id: self.state.next_offer(),
            provider,
            pool: pool.id,
            region: site.spec.region.province(),
            gpus: input.gpus,
            opens_at_s: input.opens_at_s,
            closes_at_s: input.closes_at_s,
            reserve_fen_per_gpu_hour: input.reserve_fen_per_gpu_hour,
            posted_at_s: now,
            gpus_sold: 0,
            withdrawn_at_s: None,
        };
        let id = offer.id;
        let mut change = self.begin();
        self.record(&mut change, Event::OfferPosted { offer: Box::new(offer) }, now);
        self.commit(actor, now, change)?;
        Ok(id)
    }

    /// The offer's unsold GPUs leave the market (what was sold stays sold).
    pub fn withdraw_offer(&mut self, actor: &Actor, id: OfferId) -> Result<()> {
        let now = self.now_s();
        let offer = self.offer(id)?;
        let state = offer.state_at(now);
        if !matches!(state, OfferState::Open | OfferState::Upcoming) {
            return Err(ServiceError::new(
                ErrorCode::OfferState,
                format!("offer: {id} is {}; only an open or upcoming offer can be withdrawn", state.as_str()),
            ));
        }
        let mut change = self.begin();
        self.record(&mut change, Event::OfferWithdrawn { offer: id }, now);
        self.commit(actor, now, change)
    }

    /// Clears the market: a round of the scheduling loop first (so what a programme's tiers can
    /// serve is served there), then every request still waiting with a limit price, of a
    /// programme that trades, is a bid against the offers open now outside its highest tier.
    /// Each trade becomes an order at its offer's price and is booked between the two regions.
    /// Answers the round and the clearing (numbered 0 when there was nothing to clear).
    pub fn run_clearing(&mut self, actor: &Actor) -> Result<(RoundReport, Clearing)> {
        let clock = self.view.clock.clone();
        self.view.clock = Arc::new(crate::clock::ManualClock::new(clock.now_s()));
        let result = self.run_round(actor).and_then(|round| Ok((round, self.clear_at(actor)?)));
        self.view.clock = clock;
        result
    }

    fn clear_at(&mut self, actor: &Actor) -> Result<Clearing> {
        let now = self.now_s();
        let number = self.state.clearings_done + 1;
        let (offers, offer_ids, bids, requests) = self.market_book(now)?;
        let mut clearing = Clearing {
            clearing: 0,
            cleared_at_s: now,
            bids: bids.len() as u32,
            prices: Vec::new(),
            trades: Vec::new(),
            welfare_fen: 0,
            lp_welfare_fen: 0,
            lp_dual_fen: 0,
            gap_bp: 0,
        };
        if offers.is_empty() || bids.is_empty() {
            return Ok(clearing);
        }
        let cleared = clear(&offers, &bids);
        clearing.clearing = number;
        clearing.lp_welfare_fen = cleared.lp_welfare_fen.round() as i64;
        clearing.lp_dual_fen = cleared.lp_dual_fen.round() as i64;
        clearing.gap_bp = cleared.gap_bp;
        let tier = |offer: OfferId, price: Fen| {
            format!("market between hub nodes (clearing {number}): {offer} at {price} per GPU-hour")
        };
        self.in_one_commit(actor, |service| {
            for trade in &cleared.trades {
                let request: &OrderRequest = &requests[trade.bid];
                let offer = &service.state.offers[&offer_ids[trade.offer]];
                let (offer_id, pool, seller) = (offer.id, offer.pool, offer.region);
                let price = Fen::new(trade.price_fen_per_gpu_hour);
                // Refused at placing (a voucher drawn down by an earlier trade): the request waits on.
                let Ok(input) = service.pinned(&request.pool_request(), pool) else { continue };
                let input = OrderInput { hours: trade.hours, ..input };
                let Ok(order) =
                    service.place_order_at(actor, input, Some(request.id), request.work.clone(), Some(price))
                else {
                    continue;
                };
                let program = service.state.orders[&order].program;
                let buyer = service.program(program)?.terms.authority_region.province();
                let paid = service.state.orders[&order].quote.list_cost_fen;
                let decision = Decision {
                    round: service.state.rounds,
                    decided_at_s: now,
                    state: RequestState::Placed,
                    order: Some(order),
                    pool: Some(pool),
                    hours: Some(trade.hours),
                    reason: None,
                    list_cost_fen: paid,
                    underused_credit_fen: 0,
                    domestic_credit_fen: 0,
                    egress_fen: trade.egress_fen,
                    tier: Some(tier(offer_id, price)),
                    escalated: Vec::new(),
                };
                // The two regions' accounts: each usage record of the order moves its cost from the
                // buyer's to the seller's.
                let mut change = service.begin();
                service.ensure_account(&mut change, AccountKind::RegionTrade, u64::from(buyer.code()), 0);
                service.ensure_account(&mut change, AccountKind::RegionTrade, u64::from(seller.code()), 0);
                let event = Event::RequestDecided {
                    request: request.id,
                    round: service.state.rounds,
                    gap_bp: cleared.gap_bp,
                    decision: Box::new(decision),
                };
                service.record(&mut change, event, now);
                service.commit(actor, now, change)?;
                clearing.welfare_fen = clearing.welfare_fen.saturating_add(trade.surplus_fen);
                clearing.trades.push(Trade {
                    offer: offer_id,
                    request: request.id,
                    order,
                    program,
                    gpus: trade.gpus,
                    hours: trade.hours,
                    price_fen_per_gpu_hour: price,
                    paid_fen: paid,
                    egress_fen: trade.egress_fen,
                    surplus_fen: trade.surplus_fen,
                    capped: trade.capped,
                    buyer_region: buyer,
                    seller_region: seller,
                });
            }
            clearing.prices = offers
                .iter()
                .zip(&offer_ids)
                .zip(&cleared.gpu_price_fen)
                .map(|((offer, &id), &price)| OfferPrice {
                    offer: id,
                    gpus_offered: offer.gpus,
                    gpus_sold: clearing.trades.iter().filter(|t| t.offer == id).map(|t| t.gpus).sum(),
                    gpu_price_fen: Fen::new(price),
                    reserve_fen_per_gpu_hour: Fen::new(offer.reserve_fen_per_gpu_hour),
                })
                .collect();
            let mut change = service.begin();
            service.record(&mut change, Event::MarketCleared { clearing: Box::new(clearing.clone()) }, now);
            service.commit(actor, now, change)?;
            Ok(clearing)
        })
    }
}

impl View {
    pub fn offer(&self, id: OfferId) -> Result<&CapacityOffer> {
        self.state.offers.get(&id).ok_or_else(|| ServiceError::not_found(id))
    }

    /// The clearings the state keeps, newest first.
    pub fn clearings(&self) -> impl Iterator<Item = &Clearing> {
        self.state.clearings.iter().rev()
    }

    /// The market as a clearing at `now` sees it: the offers open (each with the GPUs it can
    /// still sell, and its pool's free GPUs at most), and the bids (requests still waiting with a
    /// limit, of programmes that trade, the oldest first), each with the offers it fits.
    #[allow(clippy::type_complexity)]
    fn market_book(&self, now: i64) -> Result<(Vec<Offer>, Vec<OfferId>, Vec<Bid>, Vec<OrderRequest>)> {
        let state = &self.state;
        let mut offers = Vec::new();
        let mut offer_ids = Vec::new();
        // A pool's free GPUs, shared by its offers in the order they were posted: two offers on
        // one pool never sell more than it has.
        let mut pool_free: HashMap<PoolId, u32> = HashMap::new();
        for offer in state.offers.values().filter(|o| o.state_at(now) == OfferState::Open) {
            let pool = &state.pools[&offer.pool];
            let left = pool_free.entry(pool.id).or_insert(pool.gpu_count - pool.gpus_reserved);
            let free = (offer.gpus - offer.gpus_sold).min(*left);
            if free == 0 || pool.retired_at_s.is_some() || offer.hours_left(now) == 0 {
                continue;
            }
            *left -= free;
            offers.push(Offer {
                id: offer.id.to_string(),
                gpus: free,
                hours: offer.hours_left(now),
                reserve_fen_per_gpu_hour: offer.reserve_fen_per_gpu_hour.fen(),
            });
            offer_ids.push(offer.id);
        }
        if offers.is_empty() {
            return Ok((offers, offer_ids, Vec::new(), Vec::new()));
        }
        let market = self.market();
        let index: HashMap<PoolId, usize> =
            market.network.pool_ids.iter().enumerate().map(|(index, id)| (*id, index)).collect();
        let mut bids = Vec::new();
        let mut requests = Vec::new();
        let mut per_enterprise: HashMap<suanli_domain::EnterpriseId, usize> = HashMap::new();
        for request in state.requests.values().filter(|r| r.state == RequestState::Waiting) {
            if bids.len() == CLEARING_BIDS_MAX {
                break;
            }
            // No enterprise takes more than its share of a clearing's bids: its others wait.
            if per_enterprise.get(&request.enterprise).is_some_and(|&n| n >= CLEARING_BIDS_PER_ENTERPRISE_MAX) {
                continue;
            }
            let Some(limit) = request.limit_fen_per_gpu_hour else { continue };
            let Ok(program) = self.program(request.program) else { continue };
            if !program.terms.tiers.is_some_and(|tiers| tiers.trade) {
                continue;
            }
            let pool_request = request.pool_request();
            // A request that no longer passes an order's checks is left to the next round.
            let Ok(order) = self.engine_order(&pool_request, &market.network, request.id.to_string(), None) else {
                continue;
            };
            let problem: Problem = market.problem(vec![order], self.placement_policy);
            let order = &problem.orders[0];
            let home = program.terms.authority_region.province();
            let mut fits = Vec::new();
            for (k, id) in offer_ids.iter().enumerate() {
                let pool = &state.pools[&state.offers[id].pool];
                let site = &state.sites[&pool.site];
                // The market is between regions: capacity above the programme's highest tier, in
                // another province, that its provider rule allows.
                if self.within_highest_tier(program, pool).is_ok()
                    || site.spec.region.province() == home
                    || self.provider_allowed(program, pool).is_err()
                {
                    continue;
                }
                let Some(&p) = index.get(&pool.id) else { continue };
                if matches!(
                    problem.exclusion(order, p),
                    Some(Exclusion::ChipNotAccepted { .. } | Exclusion::NoSpeed { .. } | Exclusion::TooFar { .. })
                ) {
                    continue;
                }
                let Ok(hours) = pool_request.hours_on(&pool.chip) else { continue };
                let (_, egress_fen) = weighed(&problem, order, &problem.pools[p]);
                fits.push(Fit { offer: k, hours, egress_fen });
            }
            // A bid too large to value fits no offer anyway; one that fits none, or none above its
            // reserve, takes no place among the bids a clearing takes.
            let Some(value) = limit
                .fen()
                .checked_mul(i64::from(request.gpu_count))
                .and_then(|v| v.checked_mul(i64::from(request.hours)))
            else {
                continue;
            };
            let bid = Bid { id: request.id.to_string(), gpus: request.gpu_count, value_fen: value, fits };
            if !bid.fits.iter().any(|fit| suanli_placement::market::surplus(&offers, &bid, fit).is_some()) {
                continue;
            }
            bids.push(bid);
            requests.push(request.clone());
            *per_enterprise.entry(request.enterprise).or_default() += 1;
        }
        Ok((offers, offer_ids, bids, requests))
    }
}
