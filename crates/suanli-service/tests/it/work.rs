//! Orders that buy work, not hours: chips compared by cost per unit of work (`data/speed.csv`),
//! data far from its hub costing egress, and a latency bound leaving far sites out. Each figure
//! is worked out by hand from the speed table and the prices set here.

use suanli_domain::ApplicantKind;
use suanli_service::model::{OperatorKind, Purpose};
use suanli_service::{ErrorCode, Needs, PoolRequest, Work};

use crate::{SHANGHAI_LIKE, World, op};

fn yuan(amount: i64) -> suanli_domain::Fen {
    suanli_domain::Fen::from_yuan(amount).unwrap()
}

fn world() -> (World, PoolRequest) {
    let mut w = World::start();
    let program = w.program(SHANGHAI_LIKE);
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let app = w.service.create_application(&op(), enterprise, program, yuan(1_000_000), "").unwrap();
    w.service.submit_application(&op(), app).unwrap();
    let voucher = w.service.approve_application(&op(), app, yuan(1_000_000)).unwrap();
    let request = PoolRequest {
        enterprise,
        voucher,
        chip: None,
        gpu_count: 8,
        hours: 100,
        purpose: Purpose::Training,
        needs: Needs::default(),
    };
    (w, request)
}

fn llm_train(reference_gpu_hours: u32) -> Option<Work> {
    Some(Work { class: "llm-train".into(), reference_gpu_hours })
}

#[test]
fn a_training_order_picks_the_chip_cheapest_per_unit_of_work_and_is_quoted_its_hours_there() {
    let (mut w, request) = world();
    // Per GPU-hour H20 is cheaper (¥8.00 against ¥15.00); per unit of llm-train work H100
    // (speed 3.0) costs ¥5.00 and H20 (speed 0.6) ¥13.33.
    let (_, h20) = w.provider(1, "310000", OperatorKind::Government, "H20", false, 800);
    let (_, h100) = w.provider(2, "310000", OperatorKind::Government, "H100", false, 1_500);
    // Bought in hours, every chip counts the same and H20 is cheaper.
    assert_eq!(w.service.choose_pool(&request).unwrap().chosen.pool, h20);
    // 240 reference GPU-hours on 8 GPUs: 240 / (8 × 3.0) = 10 hours on H100.
    let work = PoolRequest { needs: Needs { work: llm_train(240), ..Needs::default() }, ..request.clone() };
    let choice = w.service.choose_pool(&work).unwrap();
    assert_eq!(choice.chosen.pool, h100);
    assert_eq!(choice.chosen.hours, 10);
    assert_eq!(choice.chosen.list_cost_fen.fen(), 8 * 10 * 1_500);
    // H20 is the alternative, quoted its own hours: 240 / (8 × 0.6) = 50.
    assert_eq!(choice.alternatives[0].pool, h20);
    assert_eq!(choice.alternatives[0].hours, 50);
    // Placed, the order runs the hours of the chosen chip.
    let order = w.service.place_order_anywhere(&op(), &work).unwrap();
    assert_eq!(w.service.order(order).unwrap().quote.hours, 10);
    assert_eq!(w.service.order(order).unwrap().work, llm_train(240), "the order records the work it bought");
    // A deadline of 20 hours leaves H20 (50 hours) out: its reason names the deadline.
    let tight = PoolRequest { hours: 20, ..work.clone() };
    let choice = w.service.choose_pool(&tight).unwrap();
    assert!(choice.alternatives.is_empty(), "{choice:?}");
    assert!(
        choice.excluded.iter().any(|(pool, why)| pool == &h20.to_string() && why.contains("deadline")),
        "{choice:?}"
    );
    // Pinned on H20, the work cannot meet its deadline.
    let pinned = w.service.pinned(&tight, h20).unwrap_err();
    assert_eq!(pinned.code, ErrorCode::NoPoolAvailable, "{pinned}");
    // An unknown class is named with the known ones.
    let unknown = PoolRequest {
        needs: Needs { work: Some(Work { class: "weather".into(), reference_gpu_hours: 1 }), ..Needs::default() },
        ..request
    };
    let message = w.refused(ErrorCode::InvalidField, |s| s.choose_pool(&unknown));
    assert!(message.contains("llm-train"), "{message}");
}

#[test]
fn data_far_from_its_hub_costs_egress_and_a_latency_bound_leaves_far_sites_out() {
    let (mut w, request) = world();
    // Shanghai, and Ningxia (Zhongwei) about 1,700 km west where the same chip is cheaper.
    let (_, east) = w.provider_at(1, "310000", OperatorKind::Government, "H100", false, 1_500, ("east", 31.2, 121.5));
    let (_, west) = w.provider_at(2, "640500", OperatorKind::Government, "H100", false, 1_400, ("west", 37.5, 105.2));
    let needs = |data_gb: f64, rtt_ms_max: Option<f64>| Needs {
        origin_hub: Some("east".into()),
        data_gb,
        rtt_ms_max,
        ..Needs::default()
    };
    // 8 GPUs × 100 hours: the west saves ¥1.00 × 800 = ¥800 (80,000 fen).
    let light = PoolRequest { needs: needs(100.0, None), ..request.clone() };
    let choice = w.service.choose_pool(&light).unwrap();
    assert_eq!(choice.chosen.pool, west);
    assert_eq!(choice.egress_fen, 100 * 30, "100 GB at 30 fen");
    // Pinned, the quote says the same of the pool it pins.
    assert_eq!(w.service.pinned_choice(&light, west).unwrap().egress_fen, 100 * 30);
    assert_eq!(w.service.pinned_choice(&light, east).unwrap().egress_fen, 0);
    // 5,000 GB to move costs 150,000 fen, more than the west saves: the data's own hub wins.
    let heavy = PoolRequest { needs: needs(5_000.0, None), ..request.clone() };
    let choice = w.service.choose_pool(&heavy).unwrap();
    assert_eq!(choice.chosen.pool, east);
    assert_eq!(choice.egress_fen, 0);
    // A 10 ms round trip leaves the west out (about 26 ms away), whatever the price.
    let near = PoolRequest { needs: needs(0.0, Some(10.0)), ..request.clone() };
    let choice = w.service.choose_pool(&near).unwrap();
    assert_eq!(choice.chosen.pool, east);
    assert!(
        choice.excluded.iter().any(|(pool, why)| pool == &west.to_string() && why.contains("round trip")),
        "{choice:?}"
    );
    // A hub no site is in is not found; a bound without a hub is refused.
    let nowhere =
        PoolRequest { needs: Needs { origin_hub: Some("moon".into()), ..Needs::default() }, ..request.clone() };
    w.refused(ErrorCode::NotFound, |s| s.choose_pool(&nowhere));
    let unanchored = PoolRequest { needs: Needs { rtt_ms_max: Some(5.0), ..Needs::default() }, ..request };
    w.refused(ErrorCode::InvalidField, |s| s.choose_pool(&unanchored));
}
