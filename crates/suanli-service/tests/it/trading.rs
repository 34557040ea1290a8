//! The market between hub nodes: a Chengdu programme that trades, whose region is full, buys
//! capacity offered in Inner Mongolia at the clearing's price, the order is priced and held at
//! that price, and the trade is booked between the two regions so that the ledger balances.

use suanli_domain::{Fen, PoolId, ProviderId, RegionCode};
use suanli_service::OfferInput;
use suanli_service::model::OperatorKind;
use suanli_service::requests::RequestState;
use suanli_service::{ErrorCode, PoolRequest};

use crate::{World, op};

const HOUR: i64 = 3_600;

struct Market {
    w: World,
    request: PoolRequest,
    seller: ProviderId,
    mongolia: PoolId,
    chongqing: PoolId,
}

/// Chengdu's programme (city up to the Chengdu–Chongqing region, trading), its region's two
/// pools of 8 GPUs already full, and a seller in Inner Mongolia with 256 GPUs at ¥9.00.
fn market(trade: bool) -> Market {
    let source = crate::tiers::chengdu("region")
        .replace(r#"highest = "region" }"#, &format!(r#"highest = "region", trade = {trade} }}"#));
    let (mut w, request, _, chongqing) = crate::tiers::chengdu_world(&source);
    let (seller, mongolia) =
        w.provider_at(3, "150100", OperatorKind::StateOwned, "H100", false, 900, ("Inner Mongolia", 40.8, 111.7));
    // The region's two pools taken by two orders.
    for _ in 0..2 {
        w.service.place_order_anywhere(&op(), &request).unwrap();
    }
    Market { w, request, seller, mongolia, chongqing }
}

fn offer(pool: PoolId, opens_at_s: i64, gpus: u32, reserve: i64) -> OfferInput {
    OfferInput {
        pool,
        gpus,
        opens_at_s,
        closes_at_s: opens_at_s + 10 * HOUR,
        reserve_fen_per_gpu_hour: Fen::new(reserve),
    }
}

/// The hand-computed market of `suanli_placement::market`'s first test, through the service:
/// 8 GPUs for 10 h at a reserve of ¥10.00, bids of ¥30.00 and ¥20.00 per GPU-hour for 8 GPUs ×
/// 10 h. The higher bid wins at ¥20.00: an order of 80 GPU-hours at 2,000 fen is 160,000 fen, half
/// of it held on the voucher (the programme's 50%). Its usage, 6 of the 10 hours, costs 96,000
/// fen, which Sichuan then owes Inner Mongolia.
#[test]
fn a_clearing_matches_what_the_region_cannot_serve_and_books_the_trade_between_regions() {
    let Market { mut w, request, seller, mongolia, .. } = market(true);
    let now = w.service.now_s();
    let posted = w.service.post_offer(&op(), seller, &offer(mongolia, now, 8, 1_000)).unwrap();
    let high = w.service.submit_bid(&op(), &request, None, Some(Fen::new(3_000))).unwrap();
    let low = w.service.submit_bid(&op(), &request, None, Some(Fen::new(2_000))).unwrap();

    let (round, clearing) = w.service.run_clearing(&op()).unwrap();
    assert!(round.placed.is_empty(), "the region is full: {round:?}");
    assert_eq!(clearing.clearing, 1);
    assert_eq!((clearing.bids, clearing.trades.len()), (2, 1), "{clearing:?}");
    let trade = &clearing.trades[0];
    assert_eq!((trade.offer, trade.request, trade.gpus, trade.hours), (posted, high, 8, 10));
    assert_eq!(trade.price_fen_per_gpu_hour, Fen::new(2_000));
    assert_eq!(trade.paid_fen, Fen::new(160_000));
    assert_eq!(
        (trade.surplus_fen, clearing.welfare_fen, clearing.lp_welfare_fen, clearing.gap_bp),
        (160_000, 160_000, 160_000, 0)
    );
    assert_eq!(
        (trade.buyer_region, trade.seller_region),
        (RegionCode::parse("510000").unwrap(), RegionCode::parse("150000").unwrap())
    );
    // The GPU's price for the window: what the lower bid would gain from it, 80,000 fen over 8.
    assert_eq!(clearing.prices[0].gpu_price_fen, Fen::new(10_000));

    // The order: on the Inner Mongolia pool at the clearing's price, the voucher's half held.
    let order = w.service.order(trade.order).unwrap().clone();
    assert_eq!((order.pool, order.quote.price_fen_per_gpu_hour), (mongolia, Fen::new(2_000)));
    assert_eq!((order.quote.list_cost_fen, order.hold_fen), (Fen::new(160_000), Fen::new(80_000)));
    let decided = w.service.request(high).unwrap();
    assert_eq!(decided.state, RequestState::Placed);
    let tier = decided.decision.as_ref().unwrap().tier.clone().unwrap();
    assert!(tier.contains("market between hub nodes") && tier.contains(&posted.to_string()), "{tier}");
    assert_eq!(w.service.request(low).unwrap().state, RequestState::Waiting);
    let state = w.service.state();
    assert_eq!(state.offers[&posted].gpus_sold, 8);

    // The settlement between regions follows the usage delivered: nothing yet, then what the
    // provider reports, booked between the two regions in the ledger, and the books agree.
    let sichuan = RegionCode::parse("510000").unwrap();
    let mongolia_region = RegionCode::parse("150000").unwrap();
    assert_eq!((state.region_trade_fen[&sichuan], state.region_trade_fen[&mongolia_region]), (0, 0));
    w.service.start_order(&op(), trade.order).unwrap();
    let start = w.service.now_s();
    w.clock.advance(6 * HOUR);
    let usage = suanli_service::model::UsageInput {
        id: "six-hours".into(),
        order: trade.order,
        gpu_seconds: 8 * 6 * HOUR,
        period_start_s: start,
        period_end_s: start + 6 * HOUR,
    };
    w.service.record_usage(&op(), seller, &[usage]).unwrap();
    let state = w.service.state();
    assert_eq!(state.region_trade_fen[&sichuan], -96_000);
    assert_eq!(state.region_trade_fen[&mongolia_region], 96_000);
    assert_eq!(state.region_trade_fen.values().sum::<i128>(), 0);
    assert!(w.service.check_books().is_empty(), "{:?}", w.service.check_books());
    // Cancelled hours are not owed: completing it leaves the balance at what was used.
    w.service.complete_order(&op(), trade.order).unwrap();
    assert_eq!(w.service.state().region_trade_fen[&sichuan], -96_000);

    // Sold out: the next clearing has no offer, so it clears nothing and records nothing.
    let (_, next) = w.service.run_clearing(&op()).unwrap();
    assert_eq!((next.clearing, next.trades.len()), (0, 0));

    // A restart replays the log to the same state, books included.
    let before = w.service.state().comparable_checkpoint();
    w.restart();
    assert_eq!(w.service.state().comparable_checkpoint(), before);
    assert!(w.service.check_books().is_empty());
}

/// Only a request with a limit, of a programme that trades, is a bid; only capacity above the
/// programme's highest tier is offered to it; nothing trades below the reserve.
#[test]
fn what_is_not_a_bid_and_what_is_not_for_sale() {
    let Market { mut w, request, seller, mongolia, .. } = market(false);
    let now = w.service.now_s();
    w.service.post_offer(&op(), seller, &offer(mongolia, now, 8, 1_000)).unwrap();
    w.service.submit_bid(&op(), &request, None, Some(Fen::new(3_000))).unwrap();
    let (_, clearing) = w.service.run_clearing(&op()).unwrap();
    assert_eq!((clearing.bids, clearing.trades.len()), (0, 0), "a programme that does not trade bids nothing");

    let Market { mut w, request, seller, mongolia, .. } = market(true);
    w.service.post_offer(&op(), seller, &offer(mongolia, now, 8, 1_000)).unwrap();
    // No limit: it waits for its tiers. A limit under the reserve: a request that could never
    // trade takes no place among a clearing's bids (so such requests cannot crowd others out).
    w.service.submit_request(&op(), &request, None).unwrap();
    w.service.submit_bid(&op(), &request, None, Some(Fen::new(999))).unwrap();
    let (_, clearing) = w.service.run_clearing(&op()).unwrap();
    assert_eq!((clearing.clearing, clearing.bids, clearing.trades.len()), (0, 0, 0), "{clearing:?}");
    assert_eq!(w.service.state().clearings_done, 0, "nothing to clear is not recorded");
    // A limit that just clears the reserve is a bid, and buys at the reserve.
    w.service.submit_bid(&op(), &request, None, Some(Fen::new(1_001))).unwrap();
    let (_, clearing) = w.service.run_clearing(&op()).unwrap();
    assert_eq!((clearing.clearing, clearing.bids, clearing.trades.len()), (1, 1, 1), "{clearing:?}");
    assert_eq!(clearing.trades[0].price_fen_per_gpu_hour, Fen::new(1_000));
    assert!(w.service.check_books().is_empty());
}

/// A bid's hours must fit what is left of the offer's window; an upcoming offer is not for sale
/// yet; a withdrawn one no longer.
#[test]
fn windows_upcoming_and_withdrawn_offers() {
    let Market { mut w, request, seller, mongolia, .. } = market(true);
    let now = w.service.now_s();
    let later = w.service.post_offer(&op(), seller, &offer(mongolia, now + 2 * HOUR, 8, 1_000)).unwrap();
    let short = OfferInput { closes_at_s: now + 5 * HOUR, ..offer(mongolia, now, 8, 1_000) };
    let short = w.service.post_offer(&op(), seller, &short).unwrap();
    let bid = w.service.submit_bid(&op(), &request, Some(4 * HOUR), Some(Fen::new(3_000))).unwrap();
    let (_, clearing) = w.service.run_clearing(&op()).unwrap();
    assert!(clearing.trades.is_empty(), "10 h do not fit 5 h, and the other offer has not begun: {clearing:?}");
    w.service.withdraw_offer(&op(), short).unwrap();
    w.refused(ErrorCode::OfferState, |s| s.withdraw_offer(&op(), short));
    w.clock.advance(2 * HOUR);
    let (_, clearing) = w.service.run_clearing(&op()).unwrap();
    assert_eq!(clearing.trades.len(), 1, "{clearing:?}");
    assert_eq!((clearing.trades[0].offer, clearing.trades[0].request), (later, bid));
    // Nobody else bid: the reserve.
    assert_eq!(clearing.trades[0].price_fen_per_gpu_hour, Fen::new(1_000));
    assert!(w.service.check_books().is_empty());
}

#[test]
fn bad_offers_are_refused_and_change_nothing() {
    let Market { mut w, request, seller, mongolia, chongqing } = market(true);
    let now = w.service.now_s();
    let good = offer(mongolia, now, 8, 1_000);
    // Another provider's pool answers as a pool that does not exist.
    w.refused(ErrorCode::NotFound, |s| s.post_offer(&op(), seller, &OfferInput { pool: chongqing, ..good.clone() }));
    let window = ErrorCode::OfferWindow;
    for (input, code, field) in [
        (OfferInput { gpus: 0, ..good.clone() }, ErrorCode::InvalidField, "gpus"),
        (OfferInput { gpus: 257, ..good.clone() }, ErrorCode::PoolCapacityExceeded, "gpus"),
        (OfferInput { reserve_fen_per_gpu_hour: Fen::ZERO, ..good.clone() }, ErrorCode::InvalidField, "reserve"),
        (
            OfferInput { reserve_fen_per_gpu_hour: Fen::new(10_000_001), ..good.clone() },
            ErrorCode::InvalidField,
            "reserve",
        ),
        (OfferInput { closes_at_s: now, ..good.clone() }, window, "closes_at"),
        (OfferInput { closes_at_s: now + 32 * 86_400, ..good.clone() }, window, "closes_at"),
        (OfferInput { opens_at_s: now - 10 * HOUR, closes_at_s: now + 1_800, ..good.clone() }, window, "closes_at"),
        (
            OfferInput { opens_at_s: now + 40 * 86_400, closes_at_s: now + 41 * 86_400, ..good.clone() },
            window,
            "opens_at",
        ),
    ] {
        let message = w.refused(code, |s| s.post_offer(&op(), seller, &input));
        assert!(message.starts_with(field), "{field}: {message}");
    }
    let message = w.refused(ErrorCode::InvalidField, |s| s.submit_bid(&op(), &request, None, Some(Fen::new(0))));
    assert!(message.starts_with("limit_fen_per_gpu_hour"), "{message}");
    w.refused(ErrorCode::NotFound, |s| s.withdraw_offer(&op(), suanli_domain::OfferId::new(99).unwrap()));

    // A site the platform has not verified cannot sell: trades are settled by its region.
    let provider =
        w.service.register_provider(&op(), crate::uscc("520100", 950), "Unverified", OperatorKind::StateOwned).unwrap();
    let site = w
        .service
        .add_site(
            &op(),
            suanli_service::SiteSpec {
                provider,
                name: "Guiyang".into(),
                hub: "Guizhou".into(),
                region: RegionCode::parse("520100").unwrap(),
                latitude: 26.6,
                longitude: 106.7,
                operator: OperatorKind::StateOwned,
                power_price_fen_per_kwh: None,
                pue: None,
            },
        )
        .unwrap();
    let pool = w
        .service
        .add_pool(
            &op(),
            suanli_service::PoolInput {
                site,
                chip: "H100".into(),
                gpu_count: 8,
                domestic: false,
                price_fen_per_gpu_hour: Fen::new(900),
            },
        )
        .unwrap();
    w.refused(ErrorCode::SiteNotVerified, |s| s.post_offer(&op(), provider, &offer(pool, now, 8, 1_000)));
}

/// Two offers on one pool share its free GPUs: with 12 free, offers of 8 and 8 sell one bid of
/// 8 GPUs, not two. A pool takes at most 16 standing offers.
#[test]
fn offers_on_one_pool_never_sell_more_than_it_has() {
    let Market { mut w, request, seller, mongolia, .. } = market(true);
    w.service.change_pool(&op(), mongolia, Some(12), None).unwrap();
    let now = w.service.now_s();
    for _ in 0..2 {
        w.service.post_offer(&op(), seller, &offer(mongolia, now, 8, 1_000)).unwrap();
    }
    for _ in 0..3 {
        w.service.submit_bid(&op(), &request, None, Some(Fen::new(3_000))).unwrap();
    }
    let (_, clearing) = w.service.run_clearing(&op()).unwrap();
    assert_eq!(clearing.trades.len(), 1, "{clearing:?}");
    assert_eq!(clearing.prices.iter().map(|p| p.gpus_offered).collect::<Vec<_>>(), [8, 4]);
    assert!(w.service.check_books().is_empty());

    // The first offer sold out (closed); the second stands, and fourteen more make sixteen.
    for _ in 2..suanli_service::market::OFFERS_PER_POOL_MAX + 1 {
        w.service.post_offer(&op(), seller, &offer(mongolia, now + HOUR, 1, 1_000)).unwrap();
    }
    w.refused(ErrorCode::OffersMax, |s| s.post_offer(&op(), seller, &offer(mongolia, now + HOUR, 1, 1_000)));
}

/// One enterprise's many waiting bids take at most 50 places in a clearing: another enterprise's
/// bid, submitted after all of them, still gets in.
#[test]
fn one_enterprise_cannot_crowd_the_others_out_of_a_clearing() {
    let Market { mut w, request, seller, mongolia, .. } = market(true);
    let now = w.service.now_s();
    w.service.post_offer(&op(), seller, &offer(mongolia, now, 8, 1_000)).unwrap();
    let crowd = suanli_service::market::CLEARING_BIDS_PER_ENTERPRISE_MAX + 10;
    for _ in 0..crowd {
        w.service
            .submit_bid(&op(), &PoolRequest { gpu_count: 1, ..request.clone() }, None, Some(Fen::new(1_500)))
            .unwrap();
    }
    let program = w.service.voucher(request.voucher).unwrap().program;
    let other = w.enterprise(2, 8_000_000, suanli_domain::ApplicantKind::Sme, &[]);
    let amount = Fen::from_yuan(1_000_000).unwrap();
    let app = w.service.create_application(&op(), other, program, amount, "").unwrap();
    w.service.submit_application(&op(), app).unwrap();
    let voucher = w.service.approve_application(&op(), app, amount).unwrap();
    let late = PoolRequest { enterprise: other, voucher, ..request };
    let theirs = w.service.submit_bid(&op(), &late, None, Some(Fen::new(5_000))).unwrap();
    let (_, clearing) = w.service.run_clearing(&op()).unwrap();
    assert_eq!(clearing.bids as usize, suanli_service::market::CLEARING_BIDS_PER_ENTERPRISE_MAX + 1);
    assert!(clearing.trades.iter().any(|t| t.request == theirs), "{clearing:?}");
}
