//! The outcome report on a small world built by hand: every figure below is worked out here from
//! the prices, rates and records the test chose, not read back from the service.

use suanli_domain::{ApplicantKind, Fen};
use suanli_service::model::{OperatorKind, Purpose, UsageInput};
use suanli_service::{OrderInput, outcome};

use crate::{SHANGHAI_LIKE, World, op};

#[test]
fn the_report_of_a_hand_made_programme() {
    let mut w = World::start();
    let program = w.program(SHANGHAI_LIKE);
    // Three enterprises, three vouchers: ¥10,000, ¥10,000 and ¥5,000 (the last never spent).
    let e1 = w.enterprise(1, 9_000_000, ApplicantKind::Sme, &[]);
    let e2 = w.enterprise(2, 100_000, ApplicantKind::Startup, &["a research project"]);
    let e3 = w.enterprise(3, 9_000_000, ApplicantKind::Sme, &[]);
    let mut vouchers = Vec::new();
    for (enterprise, yuan) in [(e1, 10_000), (e2, 10_000), (e3, 5_000)] {
        let amount = Fen::from_yuan(yuan).unwrap();
        let app = w.service.create_application(&op(), enterprise, program, amount, "").unwrap();
        w.service.submit_application(&op(), app).unwrap();
        vouchers.push(w.service.approve_application(&op(), app, amount).unwrap());
    }
    // H100 at ¥10/GPU-hour, government-run (80%); a domestic chip at ¥5, commercial (90%).
    let (p1, pool1) = w.provider(1, "310000", OperatorKind::Government, "H100", false, 1_000);
    let (p2, pool2) = w.provider(2, "640500", OperatorKind::Commercial, "Ascend-910B", true, 500);
    let order = |w: &mut World, enterprise, voucher, pool, gpus| {
        let input = OrderInput {
            enterprise,
            voucher,
            pool,
            chip: None,
            gpu_count: gpus,
            hours: 10,
            purpose: Purpose::Training,
        };
        let id = w.service.place_order(&op(), input).unwrap();
        w.service.start_order(&op(), id).unwrap();
        id
    };
    let o1 = order(&mut w, e1, vouchers[0], pool1, 2);
    let o2 = order(&mut w, e2, vouchers[1], pool2, 4);
    let start = w.service.now_s();
    w.clock.set(start + 4 * 3600);
    let hours = |order, gpus: i64, n: i64, prefix: &str| -> Vec<UsageInput> {
        (0..n)
            .map(|h| UsageInput {
                id: format!("{prefix}-{h}"),
                order,
                gpu_seconds: gpus * 3600,
                period_start_s: start + h * 3600,
                period_end_s: start + (h + 1) * 3600,
            })
            .collect()
    };
    // Order 1: 2 GPUs × 3 h = 6 GPU-hours × ¥10 = ¥60.00; voucher 80% = ¥48.00, own ¥12.00.
    w.service.record_usage(&op(), p1, &hours(o1, 2, 3, "a")).unwrap();
    // Order 2: 4 GPUs × 2 h = 8 GPU-hours × ¥5 = ¥40.00; voucher 90% = ¥36.00, own ¥4.00.
    w.service.record_usage(&op(), p2, &hours(o2, 4, 2, "b")).unwrap();

    let report = w.service.outcome(program).unwrap();
    assert_eq!(report.funded_fen, Fen::new(5_000_000_00));
    assert_eq!(report.issued_fen, Fen::new(25_000_00));
    assert_eq!(report.spent_fen, Fen::new(84_00));
    let v = &report.vouchers;
    assert_eq!((v.issued, v.used, v.partly_used, v.unused, v.expired, v.revoked), (3, 0, 2, 1, 0, 0));
    // 6 + 8 = 14 GPU-hours; ¥100 listed, ¥84 by voucher, ¥16 by the enterprises.
    assert_eq!(report.usage.gpu_seconds, 14 * 3600);
    assert_eq!(
        (report.usage.cost_fen, report.usage.voucher_fen, report.enterprise_fen),
        (Fen::new(10_000), Fen::new(8_400), Fen::new(1_600))
    );
    // ¥84 / 14 h = ¥6.00 a subsidized GPU-hour; 84% of the price cut; 8 / 14 on domestic chips.
    assert_eq!(report.usage.voucher_fen_per_gpu_hour, Some(600));
    assert_eq!(report.cost_cut_bp, Some(8_400));
    assert_eq!(report.domestic_share_bp, Some(5_714));
    let rate = |groups: &[outcome::Group], key: &str| {
        groups.iter().find(|g| g.key == key).and_then(|g| g.voucher_fen_per_gpu_hour)
    };
    assert_eq!(rate(&report.by_chip, "H100"), Some(800), "¥48 / 6 h");
    assert_eq!(rate(&report.by_chip, "Ascend-910B"), Some(450), "¥36 / 8 h");
    assert_eq!(rate(&report.by_operator, "government"), Some(800));
    assert_eq!(rate(&report.by_operator, "commercial"), Some(450));
    assert_eq!(rate(&report.served.by_kind, "sme"), Some(800));
    assert_eq!(rate(&report.served.by_kind, "startup"), Some(450));
    assert_eq!(report.served.by_region.len(), 1, "all three are registered in Shanghai");
    // Spent: ¥48, ¥36, ¥0. Top ten hold it all; Gini of (0, 36, 48) = 2·(2·36 + 3·48)/(3·84) − 4/3 = 8/21.
    assert_eq!(report.served.enterprises, 3);
    assert_eq!(report.served.top10_share_bp, Some(10_000));
    assert!((report.served.gini.unwrap() - 8.0 / 21.0).abs() < 1e-12, "{:?}", report.served.gini);
}

#[test]
fn a_programme_wide_annual_total_is_checked_at_each_approval() {
    let mut w = World::start();
    // ¥30,000 a year across every enterprise, ¥20,000 each at most.
    let source = SHANGHAI_LIKE
        .replace("annual_cap_fen = 1_500_000_00", "annual_cap_fen = 1_500_000_00\nprogram_annual_cap_fen = 30_000_00")
        .replace("applications_close = 2026-12-31", "applications_close = 2027-12-31");
    let program = w.program(&source);
    assert_eq!(w.service.program(program).unwrap().terms.program_annual_cap_fen, Some(Fen::new(30_000_00)));
    let mut apps = Vec::new();
    for n in 1..=3 {
        let e = w.enterprise(n, 9_000_000, ApplicantKind::Sme, &[]);
        let app = w.service.create_application(&op(), e, program, Fen::from_yuan(20_000).unwrap(), "").unwrap();
        w.service.submit_application(&op(), app).unwrap();
        apps.push(app);
    }
    w.service.approve_application(&op(), apps[0], Fen::from_yuan(20_000).unwrap()).unwrap();
    // ¥20,000 issued: another ¥20,000 would pass ¥30,000; ¥10,000 fits exactly.
    let message = w.refused(suanli_service::ErrorCode::ProgramAnnualCapExceeded, |s| {
        s.approve_application(&op(), apps[1], Fen::from_yuan(20_000).unwrap())
    });
    assert!(message.contains("exceeds its annual total"), "{message}");
    w.service.approve_application(&op(), apps[1], Fen::from_yuan(10_000).unwrap()).unwrap();
    w.refused(suanli_service::ErrorCode::ProgramAnnualCapExceeded, |s| {
        s.approve_application(&op(), apps[2], Fen::new(1))
    });
    // A new year starts a new total.
    w.clock.set(crate::at(2027, 1, 2));
    w.service.approve_application(&op(), apps[2], Fen::from_yuan(20_000).unwrap()).unwrap();
}

#[test]
fn a_voucher_approved_below_the_programmes_maximum_rate_pays_its_own_rate() {
    let mut w = World::start();
    let program = w.program(SHANGHAI_LIKE);
    let e = w.enterprise(1, 9_000_000, ApplicantKind::Sme, &[]);
    let amount = Fen::from_yuan(10_000).unwrap();
    let app = w.service.create_application(&op(), e, program, amount, "").unwrap();
    w.service.submit_application(&op(), app).unwrap();
    // Up to 80%: 90% is refused and changes nothing; 50% is given.
    let above = suanli_domain::RateBp::new(9_000).unwrap();
    w.refused(suanli_service::ErrorCode::InvalidField, |s| s.approve_application_at(&op(), app, amount, Some(above)));
    let half = suanli_domain::RateBp::new(5_000).unwrap();
    let voucher = w.service.approve_application_at(&op(), app, amount, Some(half)).unwrap();
    assert_eq!(w.service.voucher(voucher).unwrap().rate_bp, Some(half));
    // H100 at ¥10: 2 GPUs × 10 h = ¥200 listed, ¥100 by the voucher at 50%.
    let (_, pool) = w.provider(1, "310000", OperatorKind::Government, "H100", false, 1_000);
    let input =
        OrderInput { enterprise: e, voucher, pool, chip: None, gpu_count: 2, hours: 10, purpose: Purpose::Training };
    let order = w.service.place_order(&op(), input).unwrap();
    let quote = &w.service.order(order).unwrap().quote;
    assert_eq!(
        (quote.rate_bp, quote.voucher_share_fen, quote.enterprise_share_fen),
        (half, Fen::new(100_00), Fen::new(100_00))
    );
    // On a domestic chip the programme's 10-point bonus comes on top: 60%.
    let (_, domestic) = w.provider(2, "640500", OperatorKind::Commercial, "Ascend-910B", true, 1_000);
    let input = OrderInput {
        enterprise: e,
        voucher,
        pool: domestic,
        chip: None,
        gpu_count: 1,
        hours: 10,
        purpose: Purpose::Training,
    };
    let order = w.service.place_order(&op(), input).unwrap();
    assert_eq!(w.service.order(order).unwrap().quote.rate_bp.basis_points(), 6_000);
}
