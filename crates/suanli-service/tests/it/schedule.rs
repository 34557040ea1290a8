//! The scheduling loop: requests wait, a round places them together, and what a round cannot
//! place waits for the next or is refused with the reason once its wait is over. Every figure is
//! worked out by hand from the prices set here.

use suanli_domain::{ApplicantKind, Fen};
use suanli_service::model::{OperatorKind, Purpose};
use suanli_service::requests::RequestState;
use suanli_service::{ErrorCode, Needs, PoolRequest, RoundSettings, State};

use crate::{SHANGHAI_LIKE, World, op};

fn yuan(amount: i64) -> Fen {
    Fen::from_yuan(amount).unwrap()
}

/// A world on `program`, an enterprise holding a ¥1M voucher, and a request of 8 GPUs for 10
/// hours of training.
fn world(program: &str) -> (World, PoolRequest) {
    let mut w = World::start();
    let program = w.program(program);
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let app = w.service.create_application(&op(), enterprise, program, yuan(1_000_000), "").unwrap();
    w.service.submit_application(&op(), app).unwrap();
    let voucher = w.service.approve_application(&op(), app, yuan(1_000_000)).unwrap();
    // Rounds reproduce: a fixed iteration cap, a budget no test reaches.
    w.service.set_round_settings(RoundSettings { wait_s: 600, solve_ms_max: 60_000, search_iterations_max: 2_000 });
    let request = PoolRequest {
        enterprise,
        voucher,
        chip: None,
        gpu_count: 8,
        hours: 10,
        purpose: Purpose::Training,
        needs: Needs::default(),
    };
    (w, request)
}

fn near_east() -> Needs {
    Needs { origin_hub: Some("east".into()), rtt_ms_max: Some(10.0), ..Needs::default() }
}

#[test]
fn a_round_places_requests_together_where_one_at_a_time_would_strand_one() {
    let (mut w, request) = world(SHANGHAI_LIKE);
    // Two 8-GPU pools: Shanghai at ¥10.00, Ningxia (26 ms away) at ¥11.00.
    let (_, east) = w.provider_at(1, "310000", OperatorKind::Government, "H100", false, 1_000, ("east", 31.2, 121.5));
    let (_, west) = w.provider_at(2, "640500", OperatorKind::Government, "H100", false, 1_100, ("west", 37.5, 105.2));
    for pool in [east, west] {
        w.service.change_pool(&op(), pool, Some(8), None).unwrap();
    }
    // The first request goes anywhere; the second must stay within 10 ms of the east. One at a
    // time, the first takes the cheaper east pool and the second finds nothing.
    let anywhere = w.service.submit_request(&op(), &request, None).unwrap();
    let near = PoolRequest { needs: near_east(), ..request.clone() };
    let bound = w.service.submit_request(&op(), &near, None).unwrap();
    assert_eq!(w.service.request(anywhere).unwrap().state, RequestState::Waiting);
    assert_eq!(w.service.choose_pool(&request).unwrap().chosen.pool, east, "alone, the first would take the east");

    let report = w.service.run_round(&op()).unwrap();
    assert_eq!((report.round, report.waiting_before, report.still_waiting), (1, 2, 0), "{report:?}");
    assert!(report.refused.is_empty(), "{report:?}");
    let placed = |w: &World, id| w.service.request(id).unwrap().decision.clone().unwrap();
    let (first, second) = (placed(&w, anywhere), placed(&w, bound));
    assert_eq!((first.state, first.pool, second.pool), (RequestState::Placed, Some(west), Some(east)));
    // 8 GPUs × 10 hours: ¥880.00 in the west, ¥800.00 in the east.
    assert_eq!((first.list_cost_fen.fen(), second.list_cost_fen.fen()), (88_000, 80_000));
    assert_eq!(report.list_cost_fen.fen(), 168_000);
    // Both sites were idle (under the 60% target): ¥0.50 per GPU-hour each, 80 GPU-hours.
    assert_eq!((first.underused_credit_fen, second.underused_credit_fen), (-4_000, -4_000));
    assert_eq!(report.underused_credit_fen, -8_000);
    // The orders exist, placed, with the voucher's 80% held.
    let order = w.service.order(first.order.unwrap()).unwrap();
    assert_eq!((order.pool, order.hold_fen.fen()), (west, 70_400));
    assert_eq!(order.request, Some(anywhere), "the order names the request it was placed for");
    // An empty round does nothing.
    let idle = w.service.run_round(&op()).unwrap();
    assert_eq!((idle.round, idle.waiting_before), (0, 0));
    // What the loop decided is rebuilt from the log, and a checkpoint keeps it.
    let before = w.service.state().requests.clone();
    w.restart();
    assert_eq!(w.service.state().requests, before);
    assert_eq!(w.service.state().rounds, 1);
    let kept = State::from_checkpoint(&w.service.state().to_checkpoint()).unwrap();
    assert_eq!(kept.requests, before);
}

#[test]
fn a_request_waits_for_capacity_then_is_placed_or_refused_with_the_reason_after_its_wait() {
    let (mut w, request) = world(SHANGHAI_LIKE);
    let (_, pool) = w.provider_at(1, "310000", OperatorKind::Government, "H100", false, 1_000, ("east", 31.2, 121.5));
    w.service.change_pool(&op(), pool, Some(8), None).unwrap();
    let holding = w.service.place_order_anywhere(&op(), &request).unwrap();
    // The pool is full: the request waits through a round.
    let waiting = w.service.submit_request(&op(), &request, None).unwrap();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!((report.round, report.still_waiting), (0, 1), "{report:?}");
    assert_eq!(w.service.request(waiting).unwrap().state, RequestState::Waiting);
    // The order ends; the next round places the request.
    w.service.cancel_order(&op(), holding).unwrap();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!(report.placed.len(), 1, "{report:?}");
    assert_eq!(w.service.request(waiting).unwrap().state, RequestState::Placed);
    // A request that cannot fit waits until its wait is over, then is refused with each pool's
    // reason.
    let big = PoolRequest { gpu_count: 16, ..request.clone() };
    let stranded = w.service.submit_request(&op(), &big, Some(300)).unwrap();
    assert_eq!(w.service.run_round(&op()).unwrap().still_waiting, 1);
    w.clock.advance(300);
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!(report.refused.len(), 1, "{report:?}");
    let decided = w.service.request(stranded).unwrap();
    assert_eq!(decided.state, RequestState::Refused);
    let reason = decided.decision.as_ref().unwrap().reason.clone().unwrap();
    assert!(reason.contains(&pool.to_string()) && reason.contains("GPUs free"), "{reason}");
    // A decided request cannot be withdrawn; nothing changes.
    let message = w.refused(ErrorCode::RequestState, |s| s.withdraw_request(&op(), stranded));
    assert!(message.contains("refused"), "{message}");
}

#[test]
fn a_withdrawn_request_is_left_out_and_bad_requests_are_refused_at_submission() {
    let (mut w, request) = world(SHANGHAI_LIKE);
    w.provider_at(1, "310000", OperatorKind::Government, "H100", false, 1_000, ("east", 31.2, 121.5));
    let withdrawn = w.service.submit_request(&op(), &request, None).unwrap();
    w.service.withdraw_request(&op(), withdrawn).unwrap();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!((report.round, report.waiting_before), (0, 0));
    assert_eq!(w.service.request(withdrawn).unwrap().state, RequestState::Withdrawn);
    // Checked as an order is, and by the wait it asks for: refused, nothing recorded.
    let zero = PoolRequest { gpu_count: 0, ..request.clone() };
    w.refused(ErrorCode::InvalidField, |s| s.submit_request(&op(), &zero, None));
    w.refused(ErrorCode::InvalidField, |s| s.submit_request(&op(), &request, Some(8 * 86_400)));
    let nowhere = PoolRequest { needs: Needs { origin_hub: Some("moon".into()), ..Needs::default() }, ..request };
    w.refused(ErrorCode::NotFound, |s| s.submit_request(&op(), &nowhere, None));
}

#[test]
fn a_voucher_revoked_while_waiting_refuses_the_request_at_the_round() {
    let (mut w, request) = world(SHANGHAI_LIKE);
    w.provider_at(1, "310000", OperatorKind::Government, "H100", false, 1_000, ("east", 31.2, 121.5));
    let id = w.service.submit_request(&op(), &request, None).unwrap();
    w.service.revoke_voucher(&op(), request.voucher, "audit finding").unwrap();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!(report.refused.len(), 1, "{report:?}");
    let reason = w.service.request(id).unwrap().decision.clone().unwrap().reason.unwrap();
    assert!(reason.contains("revoked"), "{reason}");
}

#[test]
fn a_programme_may_set_its_own_policy_weights_and_each_answer_says_what_they_weighed() {
    // Shanghai at ¥10.00 on a busy site, Ningxia at ¥10.20 on an idle one.
    let scene = |program: &str| {
        let (mut w, request) = world(program);
        let (_, busy) =
            w.provider_at(1, "310000", OperatorKind::Government, "H100", false, 1_000, ("east", 31.2, 121.5));
        let (_, idle) =
            w.provider_at(2, "640500", OperatorKind::Government, "H100", false, 1_020, ("west", 37.5, 105.2));
        // 200 of the busy site's 256 GPUs held: 78% load, over the 60% target.
        let filler = PoolRequest { gpu_count: 200, hours: 1, ..request.clone() };
        w.service.place_order(&op(), w.service.pinned(&filler, busy).unwrap()).unwrap();
        let id = w.service.submit_request(&op(), &request, None).unwrap();
        w.service.run_round(&op()).unwrap();
        let decision = w.service.request(id).unwrap().decision.clone().unwrap();
        (decision, busy, idle)
    };
    // The deployment's weights: ¥0.50 per GPU-hour on the idle site outweighs its ¥0.20 more.
    let (decision, _, idle) = scene(SHANGHAI_LIKE);
    assert_eq!(decision.pool, Some(idle));
    assert_eq!((decision.underused_credit_fen, decision.list_cost_fen.fen()), (-4_000, 81_600));
    // A programme that switches the credit off takes the cheaper busy site.
    let own = SHANGHAI_LIKE.replace(
        "voucher_validity_days = 180",
        "placement = { underused_credit_fen_per_gpu_hour = 0 }\nvoucher_validity_days = 180",
    );
    let (decision, busy, _) = scene(&own);
    assert_eq!(decision.pool, Some(busy));
    assert_eq!((decision.underused_credit_fen, decision.list_cost_fen.fen()), (0, 80_000));
}

/// A clock that moves a second every time it is read, as a busy server's does.
struct Ticking(suanli_service::ManualClock);

impl suanli_service::Clock for Ticking {
    fn now_s(&self) -> i64 {
        let now = self.0.now_s();
        self.0.advance(1);
        now
    }
}

#[test]
fn a_round_runs_on_the_time_it_began_while_the_clock_moves() {
    let (mut w, request) = world(SHANGHAI_LIKE);
    w.provider_at(1, "310000", OperatorKind::Government, "H100", false, 1_000, ("east", 31.2, 121.5));
    assert!(w.postgres.is_none(), "this test reopens the SQLite file");
    let clock = std::sync::Arc::new(Ticking(w.clock.clone()));
    let placeholder = suanli_service::Service::open(&w.path.with_extension("placeholder.db"), clock.clone()).unwrap();
    drop(std::mem::replace(&mut w.service, placeholder));
    w.service = suanli_service::Service::open(&w.path, clock).unwrap();
    let ids: Vec<_> = (0..3).map(|_| w.service.submit_request(&op(), &request, None).unwrap()).collect();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!(report.placed.len(), 3, "{report:?}");
    let decided: Vec<i64> =
        ids.iter().map(|id| w.service.request(*id).unwrap().decision.as_ref().unwrap().decided_at_s).collect();
    assert!(decided.windows(2).all(|pair| pair[0] == pair[1]), "one time for the whole round: {decided:?}");
    // The clock moves again once the round is over.
    let after = w.service.now_s();
    assert!(after > decided[0] && w.service.now_s() > after);
}

#[test]
fn absurd_requests_leave_a_round_whole_and_the_engine_without_overflow() {
    let (mut w, request) = world(SHANGHAI_LIKE);
    w.provider_at(1, "310000", OperatorKind::Government, "H100", false, 1_000, ("east", 31.2, 121.5));
    // A billion GB to move for one GPU-hour, beside a million GPUs for a year.
    let heavy = PoolRequest {
        gpu_count: 1,
        hours: 1,
        needs: Needs { origin_hub: Some("east".into()), data_gb: 1e9, ..Needs::default() },
        ..request.clone()
    };
    let huge = PoolRequest { gpu_count: 1_000_000, hours: 8_784, ..request.clone() };
    for r in [&heavy, &huge, &request] {
        w.service.submit_request(&op(), r, None).unwrap();
    }
    let report = w.service.run_round(&op()).unwrap();
    // The two that fit are placed (the data stays in its hub); no pool holds a million GPUs.
    assert_eq!((report.placed.len(), report.still_waiting), (2, 1), "{report:?}");
}
