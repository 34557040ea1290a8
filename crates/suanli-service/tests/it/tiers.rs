//! The scheduling hierarchy: a programme with tiers is served in its home city when it can, and
//! escalates tier by tier, each tier below named with why it could not; never above the highest
//! tier it allows. Prices are set so that the cheapest pool is always outside the home tiers.

use suanli_domain::{ApplicantKind, Fen, PoolId};
use suanli_service::model::{OperatorKind, Purpose};
use suanli_service::requests::RequestState;
use suanli_service::{ErrorCode, Needs, PoolRequest};

use crate::{World, op};

/// Chengdu's programme with tiers from the city up to `highest`, any provider allowed.
pub(crate) fn chengdu(highest: &str) -> String {
    format!(
        r#"
key = "chengdu-tiers"
name = "Chengdu compute vouchers through the hierarchy"
authority = {{ region = "510100", name = "Chengdu Municipal Bureau of Economy and Information Technology" }}
budget_fen = 100_000_000_00
subsidy_rate_bp = 5000
enterprise_cap_fen = 5_000_000_00
tiers = {{ home = "city", highest = "{highest}" }}
voucher_validity_days = 365
applications_open = 2026-01-01
applications_close = 2026-12-31
applicant_kinds = ["sme", "startup"]
purposes = ["training", "inference", "fine_tuning"]
providers = {{ rule = "any" }}
stacking = {{ allowed = true }}
"#
    )
}

struct Scene {
    w: World,
    request: PoolRequest,
    tianfu: PoolId,
    chongqing: PoolId,
    shanghai: PoolId,
}

/// A world with the Chengdu programme of `source`, an enterprise holding a ¥1M voucher of it, the
/// Tianfu (Chengdu, ¥12.00) and Chongqing (¥11.00) pools of 8 GPUs, and a request for 8 GPUs × 10 h.
pub(crate) fn chengdu_world(source: &str) -> (World, PoolRequest, PoolId, PoolId) {
    let mut w = World::start();
    let program = w.program(source);
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let amount = Fen::from_yuan(1_000_000).unwrap();
    let app = w.service.create_application(&op(), enterprise, program, amount, "").unwrap();
    w.service.submit_application(&op(), app).unwrap();
    let voucher = w.service.approve_application(&op(), app, amount).unwrap();
    let hub = "Chengdu-Chongqing";
    let (_, tianfu) = w.provider_at(1, "510100", OperatorKind::Government, "H100", false, 1_200, (hub, 30.6, 104.1));
    let (_, chongqing) = w.provider_at(2, "500000", OperatorKind::Government, "H100", false, 1_100, (hub, 29.6, 106.5));
    for pool in [tianfu, chongqing] {
        w.service.change_pool(&op(), pool, Some(8), None).unwrap();
    }
    let request = PoolRequest {
        enterprise,
        voucher,
        chip: None,
        gpu_count: 8,
        hours: 10,
        purpose: Purpose::Training,
        needs: Needs::default(),
    };
    (w, request, tianfu, chongqing)
}

/// Tianfu (Chengdu) at ¥12.00, Chongqing at ¥11.00, Shanghai at ¥9.00; 8 GPUs each.
fn scene(highest: &str) -> Scene {
    let (mut w, request, tianfu, chongqing) = chengdu_world(&chengdu(highest));
    let (_, shanghai) =
        w.provider_at(3, "310000", OperatorKind::Commercial, "H100", false, 900, ("Yangtze River Delta", 31.2, 121.5));
    w.service.change_pool(&op(), shanghai, Some(8), None).unwrap();
    Scene { w, request, tianfu, chongqing, shanghai }
}

#[test]
fn an_order_is_served_in_its_city_first_then_escalates_with_the_reason_of_each_tier_below() {
    let Scene { mut w, request, tianfu, chongqing, shanghai } = scene("region");
    // Shanghai is cheapest, but the city can serve it: served in Chengdu.
    let choice = w.service.choose_pool(&request).unwrap();
    assert_eq!((choice.chosen.pool, choice.tier.as_deref()), (tianfu, Some("city (Chengdu)")), "{choice:?}");
    assert!(choice.escalated.is_empty());
    w.service.place_order_anywhere(&op(), &request).unwrap();
    // Chengdu is full: the metropolitan area has no site beyond the city's, the region has
    // Chongqing.
    let choice = w.service.choose_pool(&request).unwrap();
    assert_eq!((choice.chosen.pool, choice.tier.as_deref()), (chongqing, Some("region (Chengdu–Chongqing)")));
    assert_eq!(
        choice.escalated,
        [
            format!("city (Chengdu): {tianfu}: only 0 GPUs free, 8 needed"),
            "metro (Chengdu metropolitan area): no site beyond those of city (Chengdu)".to_owned(),
        ]
    );
    w.service.place_order_anywhere(&op(), &request).unwrap();
    // The region is full too, and the programme goes no higher: Shanghai's free pool is not
    // offered, and the refusal names every tier.
    let message = w.refused(ErrorCode::NoPoolAvailable, |s| s.place_order_anywhere(&op(), &request));
    assert!(message.contains("region (Chengdu–Chongqing)") && message.contains(&chongqing.to_string()), "{message}");
    assert!(!message.contains(&shanghai.to_string()), "{message}");
}

#[test]
fn a_programme_that_may_go_national_reaches_the_rest_of_the_network_last() {
    let Scene { mut w, request, tianfu, chongqing, shanghai } = scene("national");
    for _ in 0..2 {
        w.service.place_order_anywhere(&op(), &request).unwrap();
    }
    let choice = w.service.choose_pool(&request).unwrap();
    assert_eq!((choice.chosen.pool, choice.tier.as_deref()), (shanghai, Some("national (the national network)")));
    assert_eq!(choice.escalated.len(), 3, "{choice:?}");
    for (pool, order) in [(tianfu, 0), (chongqing, 1)] {
        assert_eq!(w.service.state().orders.values().nth(order).unwrap().pool, pool);
    }
}

#[test]
fn a_round_serves_each_tier_from_what_the_tiers_below_left_and_says_where() {
    let Scene { mut w, request, tianfu, chongqing, shanghai } = scene("region");
    // Three requests of 8 GPUs: one fits the city, one the region, the third nowhere it may go.
    let ids: Vec<_> = (0..3).map(|_| w.service.submit_request(&op(), &request, Some(0)).unwrap()).collect();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!((report.placed.len(), report.refused.len()), (2, 1), "{report:?}");
    let decision = |w: &World, n: usize| w.service.request(ids[n]).unwrap().decision.clone().unwrap();
    let placed: Vec<_> = (0..3).map(|n| decision(&w, n)).collect();
    let by_pool = |pool| placed.iter().find(|d| d.pool == Some(pool)).unwrap();
    assert_eq!(by_pool(tianfu).tier.as_deref(), Some("city (Chengdu)"));
    assert!(by_pool(tianfu).escalated.is_empty());
    assert_eq!(by_pool(chongqing).tier.as_deref(), Some("region (Chengdu–Chongqing)"));
    assert_eq!(by_pool(chongqing).escalated.len(), 2, "{:?}", by_pool(chongqing));
    let refused = placed.iter().find(|d| d.state == RequestState::Refused).unwrap();
    let reason = refused.reason.as_deref().unwrap();
    assert!(reason.contains("city (Chengdu)") && reason.contains("region (Chengdu–Chongqing)"), "{reason}");
    assert!(!placed.iter().any(|d| d.pool == Some(shanghai)));
}

#[test]
fn a_pinned_pool_above_the_highest_tier_is_refused() {
    let Scene { mut w, request, chongqing, shanghai, .. } = scene("region");
    let pinned = w.service.pinned(&request, shanghai).unwrap();
    let message = w.refused(ErrorCode::ProviderNotAllowed, |s| s.place_order(&op(), pinned));
    assert!(message.contains("region (Chengdu–Chongqing)"), "{message}");
    let inside = w.service.pinned(&request, chongqing).unwrap();
    w.service.place_order(&op(), inside).unwrap();
}

#[test]
fn a_city_without_a_metropolitan_area_or_region_in_the_data_escalates_to_the_nation() {
    // Hangzhou: no metropolitan area in the data; its region (the Yangtze River Delta) has no
    // site here, only Ningxia has one.
    let mut w = World::start();
    let source = chengdu("national")
        .replace(r#"region = "510100""#, r#"region = "330100""#)
        .replace("chengdu-tiers", "hangzhou-tiers");
    let program = w.program(&source);
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let amount = Fen::from_yuan(1_000_000).unwrap();
    let app = w.service.create_application(&op(), enterprise, program, amount, "").unwrap();
    w.service.submit_application(&op(), app).unwrap();
    let voucher = w.service.approve_application(&op(), app, amount).unwrap();
    let (_, ningxia) =
        w.provider_at(1, "640500", OperatorKind::Government, "H100", false, 1_000, ("Ningxia", 37.5, 105.2));
    let request = PoolRequest {
        enterprise,
        voucher,
        chip: None,
        gpu_count: 8,
        hours: 10,
        purpose: Purpose::Training,
        needs: Needs::default(),
    };
    let id = w.service.submit_request(&op(), &request, None).unwrap();
    let report = w.service.run_round(&op()).unwrap();
    assert_eq!(report.placed.len(), 1, "{report:?}");
    let decision = w.service.request(id).unwrap().decision.clone().unwrap();
    assert_eq!((decision.pool, decision.tier.as_deref()), (Some(ningxia), Some("national (the national network)")));
    assert_eq!(decision.escalated.len(), 3, "{decision:?}");
    assert!(decision.escalated[1].starts_with("metro: the data names no such area"), "{decision:?}");
    let choice = w.service.choose_pool(&request).unwrap();
    assert_eq!(choice.escalated, decision.escalated);
}

#[test]
fn a_highest_tier_below_home_is_refused_by_field() {
    let mut w = World::start();
    let source = chengdu("region").replace(r#"home = "city""#, r#"home = "national""#);
    let message = w.refused(ErrorCode::ProgramFileInvalid, |s| s.load_program(&op(), &source));
    assert!(message.starts_with("tiers.highest"), "{message}");
    let unknown = chengdu("town");
    let message = w.refused(ErrorCode::ProgramFileInvalid, |s| s.load_program(&op(), &unknown));
    assert!(message.contains("town"), "{message}");
}
