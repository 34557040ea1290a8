//! Issue 16 (the scheduling loop, policy weights, the hierarchy) tested from its requirements:
//! conservation of GPUs and of voucher money through rounds, programmes of different tiers and
//! weights in one round, the edge of a request's wait, the waiting limit, refusals that change
//! nothing, restarts between rounds, unverified sites and a seeded random property.

use std::collections::BTreeMap;

use proptest::prelude::*;
use suanli_domain::{ApplicantKind, EnterpriseId, Fen, PoolId, ProgramId, RegionCode, RequestId, VoucherId};
use suanli_service::model::{OperatorKind, OrderState, Purpose};
use suanli_service::requests::RequestState;
use suanli_service::{ErrorCode, Needs, PoolInput, PoolRequest, RoundSettings, ServiceError, SiteSpec, State, Work};
use suanli_store::FsyncMode;

use crate::{SHANGHAI_LIKE, World, op, uscc};

fn yuan(amount: i64) -> Fen {
    Fen::from_yuan(amount).unwrap()
}

/// Rounds that reproduce: a fixed iteration cap and a time budget no test reaches.
fn settle(w: &mut World) {
    w.service.set_round_settings(RoundSettings { wait_s: 600, solve_ms_max: 60_000, search_iterations_max: 2_000 });
}

/// A voucher of `amount` yuan for `enterprise` in `program`.
fn voucher(w: &mut World, enterprise: EnterpriseId, program: ProgramId, amount: i64) -> VoucherId {
    let app = w.service.create_application(&op(), enterprise, program, yuan(amount), "").unwrap();
    w.service.submit_application(&op(), app).unwrap();
    w.service.approve_application(&op(), app, yuan(amount)).unwrap()
}

fn ask(enterprise: EnterpriseId, voucher: VoucherId, gpu_count: u32, hours: u32) -> PoolRequest {
    PoolRequest {
        enterprise,
        voucher,
        chip: None,
        gpu_count,
        hours,
        purpose: Purpose::Training,
        needs: Needs::default(),
    }
}

/// A second Shanghai-like programme under its own key.
fn shanghai_two(extra: &str) -> String {
    SHANGHAI_LIKE
        .replace("shanghai-like", "shanghai-two")
        .replace("voucher_validity_days = 180", &format!("{extra}\nvoucher_validity_days = 180"))
}

/// Chengdu's programme with tiers from the city up to `highest` (the tier tests' own), under a
/// key of its own.
fn chengdu(highest: &str) -> String {
    crate::tiers::chengdu(highest).replace("chengdu-tiers", "chengdu-outside")
}

/// Everything: the harness's fingerprint and the whole state as a checkpoint keeps it.
fn snapshot(w: &World) -> String {
    format!("{}\n{}", w.fingerprint(), w.service.state().comparable_checkpoint())
}

/// Refused with `code`, and neither the log, the ledger nor any of the state (requests and
/// rounds included) changed.
fn refused_whole<T: std::fmt::Debug>(
    w: &mut World,
    code: ErrorCode,
    command: impl FnOnce(&mut suanli_service::Service) -> Result<T, ServiceError>,
) -> String {
    let before = snapshot(w);
    let message = w.refused(code, command);
    assert_eq!(snapshot(w), before, "refused ({message}) but the state changed");
    message
}

fn is_open(state: OrderState) -> bool {
    matches!(state, OrderState::Placed | OrderState::Running)
}

/// The invariants every round must keep: no pool over its GPUs, each pool's reservation the sum
/// of its open orders, each voucher's hold the sum of its open orders' holds and its face value
/// accounted for, every placed request backed by its order, the waiting counts right, the books
/// agreeing with the ledger.
fn invariants(w: &World) {
    let state = w.service.state();
    for pool in state.pools.values() {
        let open: u32 =
            state.orders.values().filter(|o| o.pool == pool.id && is_open(o.state)).map(|o| o.quote.gpu_count).sum();
        assert!(pool.gpus_reserved <= pool.gpu_count, "{} over capacity: {pool:?}", pool.id);
        assert_eq!(pool.gpus_reserved, open, "{}: reserved is not the open orders' GPUs", pool.id);
    }
    for voucher in state.vouchers.values() {
        let held: i64 = state
            .orders
            .values()
            .filter(|o| o.voucher == voucher.id && is_open(o.state))
            .map(|o| o.hold_remaining_fen.fen())
            .sum();
        assert_eq!(voucher.held_fen.fen(), held, "{}: held is not its open orders' holds", voucher.id);
        assert!(voucher.available_fen.fen() >= 0, "{voucher:?}");
        assert_eq!(
            voucher.face_value_fen.fen(),
            voucher.available_fen.fen() + voucher.held_fen.fen() + voucher.spent_fen.fen() + voucher.returned_fen.fen(),
            "{voucher:?}"
        );
    }
    let mut waiting: BTreeMap<EnterpriseId, u32> = BTreeMap::new();
    for request in state.requests.values() {
        match request.state {
            RequestState::Waiting => {
                *waiting.entry(request.enterprise).or_default() += 1;
                assert!(request.decision.is_none(), "{request:?}");
            }
            RequestState::Placed => {
                let decision = request.decision.as_ref().expect("a placed request has its decision");
                let order = &state.orders[&decision.order.expect("a placed request names its order")];
                assert_eq!(Some(order.pool), decision.pool, "{request:?}");
                assert_eq!((order.enterprise, order.voucher), (request.enterprise, request.voucher));
                assert_eq!(order.quote.gpu_count, request.gpu_count, "{request:?}");
                assert_eq!(decision.hours, Some(order.quote.hours), "{request:?}");
                assert_eq!(decision.list_cost_fen, order.quote.list_cost_fen, "{request:?}");
            }
            RequestState::Refused => {
                let decision = request.decision.as_ref().expect("a refused request has its decision");
                assert!(decision.order.is_none() && decision.reason.is_some(), "{request:?}");
            }
            RequestState::Withdrawn => {
                assert!(request.decision.as_ref().is_none_or(|d| d.order.is_none()), "{request:?}");
            }
        }
    }
    for (enterprise, count) in &waiting {
        assert_eq!(state.requests_waiting.get(enterprise).copied().unwrap_or(0), *count, "{enterprise}");
    }
    for (enterprise, count) in state.requests_waiting.iter() {
        assert_eq!(waiting.get(enterprise).copied().unwrap_or(0), *count, "{enterprise} counted waiting");
    }
    assert_eq!(w.service.check_books(), Vec::<String>::new());
}

#[test]
fn competing_requests_of_several_enterprises_and_programmes_never_overfill_a_pool() {
    let mut w = World::start();
    settle(&mut w);
    let one = w.program(SHANGHAI_LIKE);
    let two = w.program(&shanghai_two(""));
    let mut asks = Vec::new();
    for n in 1..=4u32 {
        let enterprise = w.enterprise(n, 8_000_000, ApplicantKind::Sme, &[]);
        let program = if n % 2 == 0 { one } else { two };
        let v = voucher(&mut w, enterprise, program, 200_000);
        asks.push((enterprise, v));
    }
    // Three pools of 16 GPUs: 48 in all, far less than asked.
    let mut pools = Vec::new();
    for (n, price) in [(1, 1_000), (2, 1_050), (3, 1_100)] {
        let (_, pool) = w.provider(n, "310000", OperatorKind::Government, "H100", false, price);
        w.service.change_pool(&op(), pool, Some(16), None).unwrap();
        pools.push(pool);
    }
    let mut ids = Vec::new();
    let mut asked = 0;
    for i in 0..20u32 {
        let (enterprise, v) = asks[(i % 4) as usize];
        let gpus = 3 + (i * 7) % 10;
        asked += gpus;
        ids.push(w.service.submit_request(&op(), &ask(enterprise, v, gpus, 2 + i % 5), Some(0)).unwrap());
    }
    assert!(asked > 48);
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!(report.waiting_before, 20);
    // Every request had waited as long as it may: each is placed or refused, none left waiting.
    assert_eq!((report.placed.len() + report.refused.len(), report.still_waiting), (20, 0), "{report:?}");
    assert!(!report.placed.is_empty() && !report.refused.is_empty(), "{report:?}");
    invariants(&w);
    let placed_gpus: u32 = report.placed.iter().map(|(id, _)| w.service.request(*id).unwrap().gpu_count).sum();
    let reserved: u32 = pools.iter().map(|p| w.service.state().pools[p].gpus_reserved).sum();
    assert_eq!(placed_gpus, reserved);
    assert!(reserved <= 48);
    // The report's sums are the decisions' sums, and each placed request is in the report once.
    let decisions: Vec<_> = ids.iter().map(|id| w.service.request(*id).unwrap().decision.clone().unwrap()).collect();
    let placed: Vec<_> = decisions.iter().filter(|d| d.state == RequestState::Placed).collect();
    assert_eq!(placed.len(), report.placed.len());
    assert_eq!(report.list_cost_fen.fen(), placed.iter().map(|d| d.list_cost_fen.fen()).sum::<i64>());
    assert_eq!(report.underused_credit_fen, placed.iter().map(|d| d.underused_credit_fen).sum::<i64>());
    for d in &decisions {
        assert_eq!(d.round, 1, "{d:?}");
    }
    for (id, order) in &report.placed {
        assert_eq!(w.service.request(*id).unwrap().decision.as_ref().unwrap().order, Some(*order));
    }
    // Each refused one names pools in its reason.
    for (id, reason) in &report.refused {
        assert!(pools.iter().any(|p| reason.contains(&p.to_string())), "{id}: {reason}");
        assert_eq!(w.service.request(*id).unwrap().decision.as_ref().unwrap().reason.as_deref(), Some(reason.as_str()));
    }
}

#[test]
fn a_voucher_that_runs_out_mid_round_holds_no_more_than_it_had() {
    let mut w = World::start();
    settle(&mut w);
    let program = w.program(SHANGHAI_LIKE);
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    // ¥1,000: one 80% share of ¥800 (8 GPUs × 10 h at ¥10.00) is ¥640; two are more than it has.
    let small = voucher(&mut w, enterprise, program, 1_000);
    let (_, pool) = w.provider(1, "310000", OperatorKind::Government, "H100", false, 1_000);
    let ids: Vec<RequestId> =
        (0..4).map(|_| w.service.submit_request(&op(), &ask(enterprise, small, 8, 10), Some(0)).unwrap()).collect();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!(report.still_waiting, 0, "{report:?}");
    invariants(&w);
    let v = w.service.voucher(small).unwrap().clone();
    assert!(v.held_fen.fen() <= 100_000, "{v:?}");
    // The voucher's holds are exactly the voucher shares of the orders placed for it, each share
    // within the 80% rate of its list cost, and the enterprise pays the rest.
    let mut shares = 0;
    for id in &ids {
        let request = w.service.request(*id).unwrap();
        if request.state != RequestState::Placed {
            continue;
        }
        let order = w.service.order(request.decision.as_ref().unwrap().order.unwrap()).unwrap();
        assert_eq!(order.pool, pool);
        assert_eq!(order.quote.price_fen_per_gpu_hour.fen(), 1_000, "price locked at the pool's");
        assert_eq!(order.quote.list_cost_fen.fen(), 80_000);
        assert_eq!(order.hold_fen, order.quote.voucher_share_fen);
        assert!(order.quote.voucher_share_fen.fen() <= 64_000, "{order:?}");
        assert_eq!(order.quote.voucher_share_fen.fen() + order.quote.enterprise_share_fen.fen(), 80_000);
        shares += order.quote.voucher_share_fen.fen();
    }
    assert_eq!(v.held_fen.fen(), shares);
    assert_eq!(v.available_fen.fen(), 100_000 - shares);
    // At least the first full share was held.
    assert!(shares >= 64_000, "{shares}");
}

#[test]
fn programmes_with_and_without_tiers_share_one_round_each_served_where_it_may_go() {
    let mut w = World::start();
    settle(&mut w);
    let chengdu_program = w.program(&chengdu("region"));
    let national = w.program(SHANGHAI_LIKE);
    let local = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let anywhere = w.enterprise(2, 8_000_000, ApplicantKind::Sme, &[]);
    let local_voucher = voucher(&mut w, local, chengdu_program, 1_000_000);
    let anywhere_voucher = voucher(&mut w, anywhere, national, 1_000_000);
    let hub = "Chengdu-Chongqing";
    let (_, tianfu) = w.provider_at(1, "510100", OperatorKind::Government, "H100", false, 1_200, (hub, 30.6, 104.1));
    let (_, chongqing) = w.provider_at(2, "500000", OperatorKind::Government, "H100", false, 1_100, (hub, 29.6, 106.5));
    let (_, shanghai) =
        w.provider_at(3, "310000", OperatorKind::Commercial, "H100", false, 900, ("Yangtze River Delta", 31.2, 121.5));
    for pool in [tianfu, chongqing, shanghai] {
        w.service.change_pool(&op(), pool, Some(8), None).unwrap();
    }
    // The national programme's requests come first and want the cheapest pools; Chengdu's are
    // served from its city up and never leave the region.
    let far: Vec<_> = (0..2)
        .map(|_| w.service.submit_request(&op(), &ask(anywhere, anywhere_voucher, 8, 10), None).unwrap())
        .collect();
    let near: Vec<_> =
        (0..2).map(|_| w.service.submit_request(&op(), &ask(local, local_voucher, 8, 10), None).unwrap()).collect();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!((report.placed.len(), report.still_waiting), (3, 1), "{report:?}");
    invariants(&w);
    let decision = |id: &RequestId| w.service.request(*id).unwrap().decision.clone();
    let near: Vec<_> = near.iter().map(|id| decision(id).unwrap()).collect();
    let city = near.iter().find(|d| d.pool == Some(tianfu)).expect("one of Chengdu's served in its city");
    assert_eq!(city.tier.as_deref(), Some("city (Chengdu)"));
    assert!(city.escalated.is_empty(), "{city:?}");
    let region = near.iter().find(|d| d.pool == Some(chongqing)).expect("the other in its region");
    assert_eq!(region.tier.as_deref(), Some("region (Chengdu–Chongqing)"));
    assert_eq!(region.escalated.len(), 2, "{region:?}");
    // The national programme got Shanghai, and its second waits: nothing was left for it.
    let far: Vec<_> = far.iter().map(decision).collect();
    let placed: Vec<_> = far.iter().flatten().collect();
    assert_eq!(placed.len(), 1, "{far:?}");
    assert_eq!(placed[0].pool, Some(shanghai));
    assert_eq!(w.service.state().requests.values().filter(|r| r.state == RequestState::Waiting).count(), 1);
    assert_eq!(
        w.service.state().requests.values().find(|r| r.state == RequestState::Waiting).unwrap().enterprise,
        anywhere
    );
}

#[test]
fn each_programmes_own_weights_apply_in_a_shared_round_and_each_decision_says_what_they_weighed() {
    let mut w = World::start();
    settle(&mut w);
    // Shanghai-like: 80%, 90% on domestic chips; the deployment weighs the extra 10% at half.
    let default = w.program(SHANGHAI_LIKE);
    let own = w.program(&shanghai_two(
        "placement = { underused_credit_fen_per_gpu_hour = 20, domestic_weight_bp = 10000, utilization_target_bp = 6000 }",
    ));
    let first = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let second = w.enterprise(2, 8_000_000, ApplicantKind::Sme, &[]);
    let v1 = voucher(&mut w, first, default, 1_000_000);
    let v2 = voucher(&mut w, second, own, 1_000_000);
    // One idle domestic pool, the only one: 256 GPUs, ¥10.00.
    let (_, pool) = w.provider(1, "640500", OperatorKind::Government, "Ascend-910B", true, 1_000);
    let a = w.service.submit_request(&op(), &ask(first, v1, 8, 10), None).unwrap();
    let b = w.service.submit_request(&op(), &ask(second, v2, 8, 10), None).unwrap();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!(report.placed.len(), 2, "{report:?}");
    let da = w.service.request(a).unwrap().decision.clone().unwrap();
    let db = w.service.request(b).unwrap().decision.clone().unwrap();
    assert_eq!((da.pool, db.pool), (Some(pool), Some(pool)));
    // 80 GPU-hours at ¥10.00: ¥800 list; the extra domestic 10% is ¥80.
    assert_eq!((da.list_cost_fen.fen(), db.list_cost_fen.fen()), (80_000, 80_000));
    // Deployment: ¥0.50 per idle GPU-hour, the extra domestic subsidy at 50%.
    assert_eq!((da.underused_credit_fen, da.domestic_credit_fen), (-4_000, -4_000), "{da:?}");
    // The programme's own: ¥0.20 per idle GPU-hour, the extra domestic subsidy in full.
    assert_eq!((db.underused_credit_fen, db.domestic_credit_fen), (-1_600, -8_000), "{db:?}");
    assert_eq!((da.egress_fen, db.egress_fen), (0, 0));
    assert_eq!(report.underused_credit_fen, -5_600);
    assert_eq!(report.domestic_credit_fen, -12_000);
    assert_eq!(report.list_cost_fen.fen(), 160_000);
    // A weight out of its range is refused with the file, nothing loaded.
    let bad = shanghai_two("placement = { domestic_weight_bp = 10001 }").replace("shanghai-two", "shanghai-three");
    let message = refused_whole(&mut w, ErrorCode::ProgramFileInvalid, |s| s.load_program(&op(), &bad));
    assert!(message.contains("domestic_weight_bp"), "{message}");
}

#[test]
fn a_wait_ends_at_its_last_second_and_not_before() {
    let mut w = World::start();
    settle(&mut w);
    let program = w.program(SHANGHAI_LIKE);
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let v = voucher(&mut w, enterprise, program, 1_000_000);
    let (_, pool) = w.provider(1, "310000", OperatorKind::Government, "H100", false, 1_000);
    w.service.change_pool(&op(), pool, Some(8), None).unwrap();
    let request = ask(enterprise, v, 8, 10);
    let holding = w.service.place_order_anywhere(&op(), &request).unwrap();
    let ends_now = w.service.submit_request(&op(), &request, Some(300)).unwrap();
    let one_more = w.service.submit_request(&op(), &request, Some(301)).unwrap();
    let a_week = w.service.submit_request(&op(), &request, Some(604_800)).unwrap();
    assert_eq!(
        w.service.request(a_week).unwrap().expires_at_s - w.service.request(a_week).unwrap().submitted_at_s,
        604_800
    );
    // A second before the first wait ends, nothing is decided and nothing is recorded.
    w.clock.advance(299);
    let before = snapshot(&w);
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!((report.round, report.waiting_before, report.still_waiting), (0, 3, 3), "{report:?}");
    assert_eq!(snapshot(&w), before, "a round that decided nothing changed something");
    // At the instant the first wait ends, it is refused; the one with a second left waits.
    w.clock.advance(1);
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!(report.refused.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [ends_now], "{report:?}");
    assert_eq!((report.round, report.still_waiting), (1, 2));
    assert_eq!(w.service.request(one_more).unwrap().state, RequestState::Waiting);
    // Capacity comes back after the second's wait ended too: placed, not refused.
    w.clock.advance(10);
    w.service.cancel_order(&op(), holding).unwrap();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!(report.placed.len(), 1, "{report:?}");
    assert_eq!(report.round, 2);
    let placed = report.placed[0].0;
    assert!(placed == one_more || placed == a_week, "{report:?}");
    invariants(&w);
    // Waits outside 0..=604800 are refused by field.
    for wait in [-1, 604_801, i64::MAX, i64::MIN] {
        let message = refused_whole(&mut w, ErrorCode::InvalidField, |s| s.submit_request(&op(), &request, Some(wait)));
        assert!(message.contains("wait_s"), "{message}");
    }
}

#[test]
fn refused_submissions_and_withdrawals_change_nothing_and_a_withdrawn_request_is_left_out() {
    let mut w = World::start();
    settle(&mut w);
    let program = w.program(SHANGHAI_LIKE);
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let other = w.enterprise(2, 8_000_000, ApplicantKind::Sme, &[]);
    let v = voucher(&mut w, enterprise, program, 1_000_000);
    let other_voucher = voucher(&mut w, other, program, 1_000_000);
    w.provider(1, "310000", OperatorKind::Government, "H100", false, 1_000);
    let request = ask(enterprise, v, 8, 10);
    // Checked as an order is: nothing recorded, not even a request number taken.
    refused_whole(&mut w, ErrorCode::InvalidField, |s| s.submit_request(&op(), &ask(enterprise, v, 8, 0), None));
    refused_whole(&mut w, ErrorCode::InvalidField, |s| s.submit_request(&op(), &ask(enterprise, v, 8, 8_785), None));
    refused_whole(&mut w, ErrorCode::InvalidField, |s| s.submit_request(&op(), &ask(enterprise, v, 0, 10), None));
    // Another enterprise's voucher is answered as one that does not exist (no enterprise learns
    // which vouchers others hold).
    refused_whole(&mut w, ErrorCode::NotFound, |s| {
        s.submit_request(&op(), &ask(enterprise, other_voucher, 8, 10), None)
    });
    let data = PoolRequest { purpose: Purpose::Data, ..request.clone() };
    refused_whole(&mut w, ErrorCode::PurposeNotAllowed, |s| s.submit_request(&op(), &data, None));
    let weather = PoolRequest {
        needs: Needs { work: Some(Work { class: "weather".into(), reference_gpu_hours: 10 }), ..Needs::default() },
        ..request.clone()
    };
    refused_whole(&mut w, ErrorCode::InvalidField, |s| s.submit_request(&op(), &weather, None));
    let moon = PoolRequest { needs: Needs { origin_hub: Some("moon".into()), ..Needs::default() }, ..request.clone() };
    refused_whole(&mut w, ErrorCode::NotFound, |s| s.submit_request(&op(), &moon, None));
    refused_whole(&mut w, ErrorCode::NotFound, |s| s.withdraw_request(&op(), RequestId::new(1).unwrap()));
    // A year and a day is the longest hours may be.
    let longest = w.service.submit_request(&op(), &ask(enterprise, v, 1, 8_784), None).unwrap();
    assert_eq!(longest, RequestId::new(1).unwrap(), "refusals took no request number");
    // A suspended voucher is refused at submission.
    w.service.suspend_voucher(&op(), v, "review").unwrap();
    refused_whole(&mut w, ErrorCode::VoucherState, |s| s.submit_request(&op(), &request, None));
    w.service.reinstate_voucher(&op(), v).unwrap();

    let kept = w.service.submit_request(&op(), &request, None).unwrap();
    let withdrawn = w.service.submit_request(&op(), &request, None).unwrap();
    w.service.withdraw_request(&op(), withdrawn).unwrap();
    invariants(&w);
    let message = refused_whole(&mut w, ErrorCode::RequestState, |s| s.withdraw_request(&op(), withdrawn));
    assert!(message.contains("withdrawn"), "{message}");
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!((report.waiting_before, report.placed.len()), (2, 2), "{report:?}");
    assert!(report.placed.iter().all(|(id, _)| *id != withdrawn));
    let left = w.service.request(withdrawn).unwrap();
    assert_eq!(left.state, RequestState::Withdrawn);
    assert!(left.decision.is_none(), "{left:?}");
    assert_eq!(w.service.request(kept).unwrap().state, RequestState::Placed);
    // Only the two placed orders exist.
    assert_eq!(w.service.state().orders.len(), 2);
    let message = refused_whole(&mut w, ErrorCode::RequestState, |s| s.withdraw_request(&op(), kept));
    assert!(message.contains("placed"), "{message}");
    invariants(&w);
    // An empty round changes nothing.
    let before = snapshot(&w);
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!((report.round, report.waiting_before), (0, 0));
    assert_eq!(snapshot(&w), before);
}

#[test]
fn an_enterprise_may_have_ten_thousand_waiting_and_deciding_or_withdrawing_frees_room() {
    let mut w = World::start_with(FsyncMode::Off);
    settle(&mut w);
    let program = w.program(SHANGHAI_LIKE);
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let other = w.enterprise(2, 8_000_000, ApplicantKind::Sme, &[]);
    let v = voucher(&mut w, enterprise, program, 1_000_000);
    let other_voucher = voucher(&mut w, other, program, 1_000_000);
    w.provider(1, "310000", OperatorKind::Government, "H100", false, 1_000);
    // More GPUs than the pool has: these wait, whatever a round does.
    let too_big = ask(enterprise, v, 300, 1);
    let ids: Vec<_> = w
        .service
        .in_one_commit(&op(), |s| (0..10_000).map(|_| s.submit_request(&op(), &too_big, Some(3_600))).collect())
        .unwrap();
    let _ = ids;
    let message = refused_whole(&mut w, ErrorCode::RequestsWaitingMax, |s| s.submit_request(&op(), &too_big, None));
    assert!(message.contains("10000"), "{message}");
    // Another enterprise is not held back.
    w.service.submit_request(&op(), &ask(other, other_voucher, 1, 1), None).unwrap();
    // The count survives a restart.
    w.restart();
    settle(&mut w);
    refused_whole(&mut w, ErrorCode::RequestsWaitingMax, |s| s.submit_request(&op(), &too_big, None));
    // A round that leaves them waiting frees no room; withdrawing one frees one.
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!(report.placed.len(), 1, "the other enterprise's request");
    refused_whole(&mut w, ErrorCode::RequestsWaitingMax, |s| s.submit_request(&op(), &too_big, None));
    let first = RequestId::new(1).unwrap();
    w.service.withdraw_request(&op(), first).unwrap();
    let again = w.service.submit_request(&op(), &ask(enterprise, v, 1, 1), Some(0)).unwrap();
    refused_whole(&mut w, ErrorCode::RequestsWaitingMax, |s| s.submit_request(&op(), &too_big, None));
    // A round that places it frees its place again.
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!(report.placed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [again]);
    w.service.submit_request(&op(), &too_big, None).unwrap();
    assert_eq!(w.service.state().requests_waiting.get(&enterprise).copied(), Some(10_000));
    assert_eq!(w.service.check_books(), Vec::<String>::new());
}

/// A script of submissions and rounds, run with a checkpoint and a restart between steps or not.
fn scripted(restart_at: Option<usize>) -> World {
    let mut w = World::start();
    settle(&mut w);
    let program = w.program(SHANGHAI_LIKE);
    let tiered = w.program(&chengdu("national"));
    let a = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let b = w.enterprise(2, 8_000_000, ApplicantKind::Sme, &[]);
    let va = voucher(&mut w, a, program, 5_000);
    let vb = voucher(&mut w, b, tiered, 1_000_000);
    let (_, east) = w.provider_at(1, "310000", OperatorKind::Government, "H100", false, 1_000, ("east", 31.2, 121.5));
    let (_, chengdu_pool) =
        w.provider_at(2, "510100", OperatorKind::Government, "H100", false, 1_300, ("Chengdu-Chongqing", 30.6, 104.1));
    for pool in [east, chengdu_pool] {
        w.service.change_pool(&op(), pool, Some(16), None).unwrap();
    }
    let mut orders = Vec::new();
    for step in 0..6 {
        if restart_at == Some(step) {
            w.service.checkpoint().unwrap();
            w.clock.advance(1);
            let r = w.service.submit_request(&op(), &ask(a, va, 2, 2), Some(60)).unwrap();
            w.restart();
            settle(&mut w);
            assert_eq!(w.service.request(r).unwrap().state, RequestState::Waiting);
            invariants(&w);
        } else {
            w.clock.advance(1);
            w.service.submit_request(&op(), &ask(a, va, 2, 2), Some(60)).unwrap();
        }
        for (i, gpus) in [(0, 6), (1, 10), (2, 12)] {
            let (e, v) = if (step + i) % 2 == 0 { (a, va) } else { (b, vb) };
            w.service.submit_request(&op(), &ask(e, v, gpus, 1 + step as u32), Some(120 * i as i64)).unwrap();
        }
        let report = w.service.run_round(&op()).unwrap();
        orders.extend(report.placed.iter().map(|(_, o)| *o));
        w.clock.advance(100);
        // Every other step an order ends, freeing its GPUs for the next round.
        if step % 2 == 1
            && let Some(order) = orders.first().copied()
        {
            w.service.cancel_order(&op(), order).unwrap();
            orders.remove(0);
        }
        invariants(&w);
    }
    w
}

#[test]
fn a_restart_between_rounds_ends_in_the_state_an_uninterrupted_run_reaches() {
    let straight = scripted(None);
    let expected = straight.service.state().comparable_checkpoint();
    assert!(straight.service.state().rounds >= 3, "the script decided in several rounds");
    let states: Vec<_> = straight.service.state().requests.values().map(|r| r.state).collect();
    for state in [RequestState::Waiting, RequestState::Placed, RequestState::Refused] {
        assert!(states.contains(&state), "the script leaves some {state:?}: {states:?}");
    }
    for restart_at in [1, 3, 5] {
        let mut w = scripted(Some(restart_at));
        assert_eq!(w.service.state().comparable_checkpoint(), expected, "restarted before step {restart_at}");
        // And the end state itself survives a restart and a checkpoint.
        let before = snapshot(&w);
        w.restart();
        assert_eq!(snapshot(&w), before);
        let kept = State::from_checkpoint(&w.service.state().to_checkpoint()).unwrap();
        assert_eq!(kept.requests, w.service.state().requests);
        assert_eq!(kept.rounds, w.service.state().rounds);
        assert_eq!(kept.requests_waiting, w.service.state().requests_waiting);
    }
}

/// A site the provider claims is in Chengdu, not verified by the platform, with one pool.
fn unverified_pool(w: &mut World, n: u32, region: &str, price: i64) -> PoolId {
    let provider = w
        .service
        .register_provider(&op(), uscc(region, 900 + n), &format!("Provider {n}"), OperatorKind::Government)
        .unwrap();
    let site = w
        .service
        .add_site(
            &op(),
            SiteSpec {
                provider,
                name: format!("Site {n}"),
                hub: "Chengdu-Chongqing".into(),
                region: RegionCode::parse(region).unwrap(),
                latitude: 30.6,
                longitude: 104.1,
                operator: OperatorKind::Government,
                power_price_fen_per_kwh: Some(Fen::new(60)),
                pue: Some(1.25),
            },
        )
        .unwrap();
    w.service
        .add_pool(
            &op(),
            PoolInput {
                site,
                chip: "H100".into(),
                gpu_count: 8,
                domestic: false,
                price_fen_per_gpu_hour: Fen::new(price),
            },
        )
        .unwrap()
}

#[test]
fn an_unverified_site_in_the_home_city_is_in_no_tier() {
    let mut w = World::start();
    settle(&mut w);
    let program = w.program(&chengdu("region"));
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let v = voucher(&mut w, enterprise, program, 1_000_000);
    // The cheapest pool claims Chengdu, unverified; Chongqing is verified and dearer.
    let claimed = unverified_pool(&mut w, 1, "510100", 500);
    let (_, chongqing) =
        w.provider_at(2, "500000", OperatorKind::Government, "H100", false, 1_100, ("Chengdu-Chongqing", 29.6, 106.5));
    w.service.change_pool(&op(), chongqing, Some(8), None).unwrap();
    let request = ask(enterprise, v, 8, 10);
    let choice = w.service.choose_pool(&request).unwrap();
    assert_eq!(
        (choice.chosen.pool, choice.tier.as_deref()),
        (chongqing, Some("region (Chengdu–Chongqing)")),
        "{choice:?}"
    );
    assert!(choice.escalated.first().is_some_and(|e| e.starts_with("city (Chengdu)")), "{choice:?}");
    // Pinned on it, it is above what the programme allows: it is in no area it may use.
    let pinned = w.service.pinned(&request, claimed);
    if let Ok(input) = pinned {
        refused_whole(&mut w, ErrorCode::ProviderNotAllowed, |s| s.place_order(&op(), input));
    } else {
        assert_eq!(pinned.unwrap_err().code, ErrorCode::ProviderNotAllowed);
    }
    // A round places two requests: one in the region, the other nowhere it may go (the
    // unverified pool's 8 free GPUs are not offered).
    let ids: Vec<_> = (0..2).map(|_| w.service.submit_request(&op(), &request, Some(0)).unwrap()).collect();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!((report.placed.len(), report.refused.len()), (1, 1), "{report:?}");
    for id in &ids {
        let d = w.service.request(*id).unwrap().decision.clone().unwrap();
        assert_ne!(d.pool, Some(claimed), "{d:?}");
    }
    assert_eq!(w.service.state().pools[&claimed].gpus_reserved, 0);
    invariants(&w);
    // Once the platform verifies it, the city serves.
    let site = w.service.state().pools[&claimed].site;
    w.service.verify_site(&op(), site).unwrap();
    let choice = w.service.choose_pool(&request).unwrap();
    assert_eq!((choice.chosen.pool, choice.tier.as_deref()), (claimed, Some("city (Chengdu)")), "{choice:?}");
}

#[derive(Clone, Debug)]
enum Step {
    Submit { who: usize, gpus: u32, hours: u32, wait: i64 },
    Withdraw(usize),
    Round,
    Advance(i64),
    Cancel(usize),
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0usize..4, 1u32..=8, 1u32..=12, prop::sample::select(vec![0i64, 60, 600, 3_600]))
            .prop_map(|(who, gpus, hours, wait)| Step::Submit { who, gpus, hours, wait }),
        2 => (0usize..64).prop_map(Step::Withdraw),
        3 => Just(Step::Round),
        2 => (0i64..=900).prop_map(Step::Advance),
        1 => (0usize..64).prop_map(Step::Cancel),
        1 => Just(Step::Restart),
    ]
}

fn random_run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut w = World::start_with(FsyncMode::Off);
    settle(&mut w);
    let one = w.program(SHANGHAI_LIKE);
    let two = w.program(&shanghai_two("placement = { underused_credit_fen_per_gpu_hour = 0 }"));
    let mut who = Vec::new();
    let tiered = w.program(&chengdu("national"));
    for (n, program, amount) in [(1, one, 1_000_000), (2, one, 2_000), (3, two, 500_000), (4, tiered, 500_000)] {
        let enterprise = w.enterprise(n, 8_000_000, ApplicantKind::Sme, &[]);
        who.push((enterprise, voucher(&mut w, enterprise, program, amount)));
    }
    for (n, domestic, chip, price) in
        [(1, false, "H100", 1_000), (2, true, "Ascend-910B", 1_100), (3, false, "H100", 900)]
    {
        let (_, pool) = w.provider(n, "310000", OperatorKind::Government, chip, domestic, price);
        w.service.change_pool(&op(), pool, Some(8), None).unwrap();
    }
    // And one in Chengdu, the home city of the tiered programme.
    let (_, chengdu_pool) =
        w.provider_at(4, "510100", OperatorKind::Government, "H100", false, 1_300, ("Chengdu-Chongqing", 30.6, 104.1));
    w.service.change_pool(&op(), chengdu_pool, Some(8), None).unwrap();
    for step in steps {
        match step {
            Step::Submit { who: n, gpus, hours, wait } => {
                let (e, v) = who[*n];
                w.service.submit_request(&op(), &ask(e, v, *gpus, *hours), Some(*wait)).unwrap();
            }
            Step::Withdraw(k) => {
                let ids: Vec<_> = w.service.state().requests.keys().copied().collect();
                if let Some(id) = ids.get(k % ids.len().max(1)).copied() {
                    if w.service.request(id).unwrap().state == RequestState::Waiting {
                        w.service.withdraw_request(&op(), id).unwrap();
                        prop_assert_eq!(w.service.request(id).unwrap().state, RequestState::Withdrawn);
                    } else {
                        refused_whole(&mut w, ErrorCode::RequestState, |s| s.withdraw_request(&op(), id));
                    }
                }
            }
            Step::Round => {
                let waiting = w.service.state().requests.values().filter(|r| r.state == RequestState::Waiting).count();
                let rounds = w.service.state().rounds;
                let report = w.service.run_round(&op()).unwrap();
                prop_assert_eq!(report.waiting_before as usize, waiting);
                prop_assert_eq!(report.placed.len() + report.refused.len() + report.still_waiting as usize, waiting);
                let decided = !report.placed.is_empty() || !report.refused.is_empty();
                prop_assert_eq!(w.service.state().rounds, rounds + u64::from(decided));
                // The tiered programme's requests say where they were served: the city for
                // Chengdu's pool, the nation (with the tiers below named) for Shanghai's.
                for request in w.service.state().requests.values().filter(|r| r.program == tiered) {
                    let Some(d) = request.decision.as_ref().filter(|d| d.state == RequestState::Placed) else {
                        continue;
                    };
                    if d.pool == Some(chengdu_pool) {
                        prop_assert_eq!(d.tier.as_deref(), Some("city (Chengdu)"));
                    } else {
                        prop_assert_eq!(d.tier.as_deref(), Some("national (the national network)"));
                        prop_assert_eq!(d.escalated.len(), 3, "{:?}", d);
                    }
                }
                // Nothing whose wait is over is left waiting.
                let now = w.service.now_s();
                prop_assert!(
                    w.service
                        .state()
                        .requests
                        .values()
                        .all(|r| r.state != RequestState::Waiting || r.expires_at_s > now),
                    "a request past its wait still waits"
                );
            }
            Step::Advance(s) => w.clock.advance(*s),
            Step::Cancel(k) => {
                let open: Vec<_> =
                    w.service.state().orders.values().filter(|o| is_open(o.state)).map(|o| o.id).collect();
                if let Some(order) = open.get(k % open.len().max(1)).copied() {
                    w.service.cancel_order(&op(), order).unwrap();
                }
            }
            Step::Restart => {
                let before = snapshot(&w);
                w.restart();
                settle(&mut w);
                prop_assert_eq!(snapshot(&w), before);
            }
        }
        invariants(&w);
    }
    let before = snapshot(&w);
    w.service.checkpoint().unwrap();
    w.restart();
    prop_assert_eq!(snapshot(&w), before);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_submissions_withdrawals_and_rounds_keep_capacity_and_books_and_replay(
        steps in proptest::collection::vec(step(), 1..40)
    ) {
        random_run(&steps)?;
    }
}

#[test]
fn a_round_places_on_the_network_as_it_is_then_not_as_it_was_at_submission() {
    let mut w = World::start();
    settle(&mut w);
    let program = w.program(SHANGHAI_LIKE);
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let v = voucher(&mut w, enterprise, program, 1_000_000);
    let (_, cheap) = w.provider(1, "310000", OperatorKind::Government, "H100", false, 500);
    let (_, other) = w.provider(2, "310000", OperatorKind::Government, "H100", false, 1_000);
    let id = w.service.submit_request(&op(), &ask(enterprise, v, 8, 10), Some(600)).unwrap();
    // Before the round: the cheap pool retires, the other shrinks to 4 GPUs.
    w.service.retire_pool(&op(), cheap).unwrap();
    w.service.change_pool(&op(), other, Some(4), None).unwrap();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!((report.placed.len(), report.still_waiting), (0, 1), "{report:?}");
    assert_eq!(w.service.state().pools[&cheap].gpus_reserved, 0);
    invariants(&w);
    // It grows back with a new price: placed there, at the price of the round's time, locked.
    w.service.change_pool(&op(), other, Some(16), Some(Fen::new(1_200))).unwrap();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!(report.placed.len(), 1, "{report:?}");
    let decision = w.service.request(id).unwrap().decision.clone().unwrap();
    assert_eq!((decision.pool, decision.list_cost_fen.fen()), (Some(other), 96_000));
    let order = decision.order.unwrap();
    w.service.change_pool(&op(), other, None, Some(Fen::new(2_000))).unwrap();
    let order = w.service.order(order).unwrap();
    assert_eq!((order.quote.price_fen_per_gpu_hour.fen(), order.hold_fen.fen()), (1_200, 76_800));
    invariants(&w);
}

#[test]
fn a_tier_that_cannot_meet_the_deadline_escalates_and_a_metro_home_serves_its_whole_area() {
    // The city's only pool is H20 (0.6 of the reference speed), the region's H100 (3.0).
    let mut w = World::start();
    settle(&mut w);
    let program = w.program(&chengdu("region"));
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let v = voucher(&mut w, enterprise, program, 1_000_000);
    let hub = "Chengdu-Chongqing";
    let (_, tianfu) = w.provider_at(1, "510100", OperatorKind::Government, "H20", false, 800, (hub, 30.6, 104.1));
    let (_, chongqing) = w.provider_at(2, "500000", OperatorKind::Government, "H100", false, 1_500, (hub, 29.6, 106.5));
    // 240 reference GPU-hours on 8 GPUs: 50 hours on H20, 10 on H100.
    let work = |deadline: u32| PoolRequest {
        needs: Needs { work: Some(Work { class: "llm-train".into(), reference_gpu_hours: 240 }), ..Needs::default() },
        ..ask(enterprise, v, 8, deadline)
    };
    let tight = w.service.submit_request(&op(), &work(20), None).unwrap();
    let loose = w.service.submit_request(&op(), &work(60), None).unwrap();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!(report.placed.len(), 2, "{report:?}");
    let tight = w.service.request(tight).unwrap().decision.clone().unwrap();
    assert_eq!((tight.pool, tight.hours), (Some(chongqing), Some(10)), "{tight:?}");
    assert_eq!(tight.tier.as_deref(), Some("region (Chengdu–Chongqing)"));
    assert!(
        tight.escalated.first().is_some_and(|e| e.starts_with("city (Chengdu)") && e.contains(&tianfu.to_string())),
        "{tight:?}"
    );
    // With time enough, the city serves, though per unit of work the region is cheaper.
    let loose = w.service.request(loose).unwrap().decision.clone().unwrap();
    assert_eq!((loose.pool, loose.hours, loose.tier.as_deref()), (Some(tianfu), Some(50), Some("city (Chengdu)")));
    invariants(&w);

    // A programme at home in the metropolitan area: Deyang (in Chengdu's metropolitan area) is
    // served as the first tier, Chongqing (cheaper) is above the highest tier.
    let mut w = World::start();
    settle(&mut w);
    let source = chengdu("metro").replace(r#"home = "city""#, r#"home = "metro""#);
    let program = w.program(&source);
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let v = voucher(&mut w, enterprise, program, 1_000_000);
    let (_, city) = w.provider_at(1, "510100", OperatorKind::Government, "H100", false, 1_200, (hub, 30.6, 104.1));
    let (_, deyang) = w.provider_at(2, "510600", OperatorKind::Government, "H100", false, 1_100, (hub, 31.1, 104.4));
    let (_, chongqing) = w.provider_at(3, "500000", OperatorKind::Government, "H100", false, 900, (hub, 29.6, 106.5));
    let request = ask(enterprise, v, 8, 10);
    let choice = w.service.choose_pool(&request).unwrap();
    assert_eq!((choice.chosen.pool, choice.tier.as_deref()), (deyang, Some("metro (Chengdu metropolitan area)")));
    assert!(choice.escalated.is_empty(), "{choice:?}");
    let pinned = w.service.pinned(&request, chongqing);
    match pinned {
        Ok(input) => {
            refused_whole(&mut w, ErrorCode::ProviderNotAllowed, |s| s.place_order(&op(), input));
        }
        Err(e) => assert_eq!(e.code, ErrorCode::ProviderNotAllowed, "{e}"),
    }
    for pool in [city, deyang] {
        w.service.change_pool(&op(), pool, Some(8), None).unwrap();
    }
    let ids: Vec<_> = (0..3).map(|_| w.service.submit_request(&op(), &request, Some(0)).unwrap()).collect();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!((report.placed.len(), report.refused.len()), (2, 1), "{report:?}");
    let pools: Vec<_> = ids.iter().map(|id| w.service.request(*id).unwrap().decision.clone().unwrap().pool).collect();
    assert!(pools.contains(&Some(city)) && pools.contains(&Some(deyang)) && !pools.contains(&Some(chongqing)));
    invariants(&w);
}

#[test]
fn a_round_too_large_for_one_commit_is_rebuilt_whole_after_a_restart() {
    let mut w = World::start_with(FsyncMode::Off);
    settle(&mut w);
    let program = w.program(SHANGHAI_LIKE);
    let mut who = Vec::new();
    for n in 1..=3 {
        let enterprise = w.enterprise(n, 8_000_000, ApplicantKind::Sme, &[]);
        who.push((enterprise, voucher(&mut w, enterprise, program, 100_000)));
    }
    // Ten pools of 256: 2,560 GPUs for 2,600 one-GPU requests, so some are refused.
    for n in 1..=10 {
        w.provider(n, "310000", OperatorKind::Government, "H100", false, 1_000 + i64::from(n));
    }
    let log_before = w.service.durable().log_count();
    w.service
        .in_one_commit(&op(), |s| {
            (0..2_600).try_for_each(|i| {
                let (e, v) = who[i % 3];
                s.submit_request(&op(), &ask(e, v, 1, 1), Some(0)).map(|_| ())
            })
        })
        .unwrap();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!((report.placed.len(), report.refused.len(), report.still_waiting), (2_560, 40, 0), "{report:?}");
    assert_eq!(w.service.state().rounds, 1, "one round, though in several commits");
    assert!(w.service.durable().log_count() > log_before + 2_600, "each decision is an entry of its own");
    invariants(&w);
    let before = snapshot(&w);
    w.restart();
    assert_eq!(snapshot(&w), before);
    w.service.checkpoint().unwrap();
    w.restart();
    assert_eq!(snapshot(&w), before);
    invariants(&w);
}
