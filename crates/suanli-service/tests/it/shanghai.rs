//! A Shanghai-like programme from funding to settlement and expiry, with every balance checked
//! against a calculation made here, independently of the service.

use suanli_domain::{ApplicantKind, Fen, OrderId};
use suanli_service::calendar::YearMonth;
use suanli_service::model::{OperatorKind, Purpose, UsageInput, UsageOutcome, VoucherState};
use suanli_service::{ErrorCode, OrderInput};

use crate::{SHANGHAI_LIKE, World, at, op};

/// What the test expects for one order, computed here from the records it sends.
#[derive(Default, Debug)]
struct Expected {
    cost: i64,
    voucher: i64,
    enterprise: i64,
    hold_left: i64,
    gpu_seconds: i64,
}

impl Expected {
    /// The rules written down in DESIGN.md §4: cost rounded half up per record, the voucher part
    /// `min(floor(cost × rate), hold left)`, the enterprise the rest.
    fn add(&mut self, gpu_seconds: i64, price_fen_per_gpu_hour: i64, rate_bp: i64) {
        let cost = (gpu_seconds * price_fen_per_gpu_hour * 2 + 3600) / 7200;
        let voucher = (cost * rate_bp / 10_000).min(self.hold_left);
        self.cost += cost;
        self.voucher += voucher;
        self.enterprise += cost - voucher;
        self.hold_left -= voucher;
        self.gpu_seconds += gpu_seconds;
    }
}

/// A deterministic stream of GPU-second readings between 70% and 100% of a period's capacity.
fn readings(seed: u64, gpus: i64, period_s: i64) -> impl Iterator<Item = i64> {
    let mut state = seed;
    std::iter::from_fn(move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let capacity = gpus * period_s;
        Some(capacity * 7 / 10 + (state >> 33) as i64 % (capacity * 3 / 10 + 1))
    })
}

#[test]
fn a_shanghai_like_programme_end_to_end() {
    shanghai_like(&mut World::start());
}

/// The same programme on PostgreSQL: the conformance run of the backend (skipped, with a
/// message, when `SUANLI_TEST_POSTGRES` is unset; `.ci/run` sets it).
#[test]
fn a_shanghai_like_programme_end_to_end_on_postgres() {
    match World::start_postgres() {
        Some(mut w) => shanghai_like(&mut w),
        None => eprintln!("SUANLI_TEST_POSTGRES is unset: the PostgreSQL conformance run is skipped"),
    }
}

fn shanghai_like(world: &mut World) {
    let w = world;
    let program = w.program(SHANGHAI_LIKE);
    let budget = 5_000_000_00;
    assert_eq!(w.service.program(program).unwrap().budget_remaining_fen, Fen::new(budget));

    // Three enterprises apply: one eligible by revenue, one not eligible, one eligible through a
    // research project that then asks for more than its cap allows.
    let by_revenue = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let ineligible = w.enterprise(2, 1_000_000, ApplicantKind::Startup, &[]);
    let by_research = w.enterprise(3, 500_000, ApplicantKind::Startup, &["MOST 2025 large-model project"]);
    let apply = |w: &mut World, enterprise, yuan| {
        let app = w.service.create_application(&op(), enterprise, program, Fen::from_yuan(yuan).unwrap(), "").unwrap();
        w.service.submit_application(&op(), app).unwrap();
        app
    };
    let app_revenue = apply(w, by_revenue, 2_000_000);
    let app_ineligible = apply(w, ineligible, 1_000_000);
    let app_research = apply(w, by_research, 1_500_000);

    let verdicts = w.service.eligibility(ineligible, program).unwrap();
    let failed: Vec<_> = verdicts.iter().filter(|(_, v)| !v.passed).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].1.reason,
        "annual revenue ¥1,000,000.00 is below ¥5,000,000.00; and takes part in no government-sponsored research project"
    );
    let message =
        w.refused(ErrorCode::NotEligible, |s| s.approve_application(&op(), app_ineligible, Fen::from_yuan(1).unwrap()));
    assert!(message.contains("revenue-or-research"), "{message}");
    w.service.reject_application(&op(), app_ineligible, "annual revenue below the programme's threshold").unwrap();

    let voucher_a = w.service.approve_application(&op(), app_revenue, Fen::from_yuan(2_000_000).unwrap()).unwrap();
    let voucher_c = w.service.approve_application(&op(), app_research, Fen::from_yuan(1_500_000).unwrap()).unwrap();
    let second = apply(w, by_research, 1_000_000);
    let message = w.refused(ErrorCode::EnterpriseCapExceeded, |s| {
        s.approve_application(&op(), second, Fen::from_yuan(1_000_000).unwrap())
    });
    assert!(message.contains("per-enterprise cap ¥2,000,000.00"), "{message}");
    w.service.reject_application(&op(), second, "over the per-enterprise cap").unwrap();
    let issued = 3_500_000_00;
    assert_eq!(w.service.program(program).unwrap().budget_remaining_fen, Fen::new(budget - issued));

    // Orders on two providers: a government-run Shanghai site with imported GPUs at 80%, a
    // western state-owned site with domestic chips at the 90% rate.
    let (east, east_pool) = w.provider(1, "310000", OperatorKind::Government, "H100", false, 1_800);
    let (west, west_pool) = w.provider(2, "640500", OperatorKind::StateOwned, "Ascend-910B", true, 1_200);
    let order_a = w
        .service
        .place_order(
            &op(),
            OrderInput {
                enterprise: by_revenue,
                voucher: voucher_a,
                pool: east_pool,
                chip: Some("H100".into()),
                gpu_count: 64,
                hours: 60,
                purpose: Purpose::Training,
            },
        )
        .unwrap();
    let order_c = w
        .service
        .place_order(
            &op(),
            OrderInput {
                enterprise: by_research,
                voucher: voucher_c,
                pool: west_pool,
                chip: None,
                gpu_count: 32,
                hours: 200,
                purpose: Purpose::FineTuning,
            },
        )
        .unwrap();
    let hold_a = 64 * 60 * 1_800 * 8_000 / 10_000;
    let hold_c = 32 * 200 * 1_200 * 9_000 / 10_000;
    assert_eq!(w.service.order(order_a).unwrap().hold_fen, Fen::new(hold_a));
    assert_eq!(w.service.order(order_c).unwrap().hold_fen, Fen::new(hold_c));
    assert_eq!(w.service.voucher(voucher_a).unwrap().available_fen, Fen::new(2_000_000_00 - hold_a));

    let started = w.service.now_s();
    w.service.start_order(&op(), order_a).unwrap();
    w.service.start_order(&op(), order_c).unwrap();

    // Usage may not run past the hours ordered: order A buys 30 more while its voucher is
    // suspended, so the extension holds nothing.
    w.service.suspend_voucher(&op(), voucher_a, "a review").unwrap();
    assert_eq!(w.service.extend_order(&op(), order_a, 30).unwrap(), Fen::ZERO);
    w.service.reinstate_voucher(&op(), voucher_a).unwrap();
    assert_eq!(w.service.order(order_a).unwrap().hours_ordered(), 90);

    // 10,000 one-minute usage records, 5,000 per order. Order A runs past its first 60 hours,
    // so its hold runs out and the enterprise pays the rest.
    let period_s = 60;
    let per_order = 5_000;
    let mut expected_a = Expected { hold_left: hold_a, ..Expected::default() };
    let mut expected_c = Expected { hold_left: hold_c, ..Expected::default() };
    let make = |order: OrderId, prefix: &str, gpus: i64, seed: u64| -> Vec<UsageInput> {
        readings(seed, gpus, period_s)
            .take(per_order)
            .enumerate()
            .map(|(i, gpu_seconds)| UsageInput {
                id: format!("{prefix}-{i:05}"),
                order,
                gpu_seconds,
                period_start_s: started + i as i64 * period_s,
                period_end_s: started + (i as i64 + 1) * period_s,
            })
            .collect()
    };
    let records_a = make(order_a, "east", 64, 1);
    let records_c = make(order_c, "west", 32, 2);
    w.clock.set(started + per_order as i64 * period_s + 1);
    for chunk in records_a.chunks(1_000) {
        let outcomes = w.service.record_usage(&op(), east, chunk).unwrap();
        assert!(
            outcomes.iter().all(|o| matches!(o, UsageOutcome::Recorded { .. })),
            "{:?}",
            outcomes.iter().find(|o| !matches!(o, UsageOutcome::Recorded { .. }))
        );
    }
    for record in &records_a {
        expected_a.add(record.gpu_seconds, 1_800, 8_000);
    }
    for chunk in records_c.chunks(1_000) {
        let outcomes = w.service.record_usage(&op(), west, chunk).unwrap();
        assert!(outcomes.iter().all(|o| matches!(o, UsageOutcome::Recorded { .. })));
    }
    for record in &records_c {
        expected_c.add(record.gpu_seconds, 1_200, 9_000);
    }
    assert_eq!(expected_a.hold_left, 0, "the test means order A to exhaust its hold");
    assert!(expected_a.enterprise > expected_a.cost / 5, "after the hold ran out the enterprise paid in full");

    // Retries of records already recorded answer with their first result and change nothing.
    let before = w.fingerprint();
    let outcomes = w.service.record_usage(&op(), east, &records_a[100..200]).unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, UsageOutcome::Duplicate { .. })));
    assert_eq!(w.fingerprint(), before);
    // The same id with a different body is refused.
    let mut replay = records_a[7].clone();
    replay.gpu_seconds -= 1;
    let outcomes = w.service.record_usage(&op(), east, &[replay]).unwrap();
    assert!(
        matches!(&outcomes[0], UsageOutcome::Refused { code, .. } if code == "usage_record_conflict"),
        "{outcomes:?}"
    );
    // The books are as they were; the conflicting replay is kept as evidence, with both bodies.
    let books = |w: &World| suanli_ledger::to_hex(&suanli_ledger::state_hash(w.service.durable().ledger()));
    assert_eq!(before.split(' ').nth(1), Some(books(w).as_str()));
    let anomaly = w.service.state().anomalies.back().unwrap().clone();
    assert_eq!(anomaly.kind, "usage_record_conflict");
    assert!(anomaly.detail.contains("replayed as"), "{}", anomaly.detail);

    for (order, expected) in [(order_a, &expected_a), (order_c, &expected_c)] {
        let order = w.service.order(order).unwrap();
        assert_eq!(order.gpu_seconds, expected.gpu_seconds);
        assert_eq!(order.cost_fen, Fen::new(expected.cost));
        assert_eq!(order.voucher_paid_fen, Fen::new(expected.voucher));
        assert_eq!(order.enterprise_paid_fen, Fen::new(expected.enterprise));
        assert_eq!(order.hold_remaining_fen, Fen::new(expected.hold_left));
        assert_eq!(order.usage_records, per_order as u32);
    }

    // Completing the orders releases what is left of the holds to the vouchers.
    assert_eq!(w.service.complete_order(&op(), order_a).unwrap(), Fen::ZERO);
    assert_eq!(w.service.complete_order(&op(), order_c).unwrap(), Fen::new(expected_c.hold_left));
    let voucher = w.service.voucher(voucher_a).unwrap();
    assert_eq!(voucher.available_fen, Fen::new(2_000_000_00 - expected_a.voucher));
    assert_eq!(voucher.spent_fen, Fen::new(expected_a.voucher));
    let voucher = w.service.voucher(voucher_c).unwrap();
    assert_eq!(voucher.available_fen, Fen::new(1_500_000_00 - expected_c.voucher));
    assert_eq!(w.service.enterprise(by_revenue).unwrap().paid_fen, Fen::new(expected_a.enterprise));

    // Settlement for March: one statement per provider, approved by the authority.
    let march = YearMonth { year: 2026, month: 3 };
    w.refused(ErrorCode::MonthNotEnded, |s| s.issue_statement(&op(), east, program, march));
    w.clock.set(at(2026, 4, 2));
    let statement_east = w.service.issue_statement(&op(), east, program, march).unwrap();
    let statement_west = w.service.issue_statement(&op(), west, program, march).unwrap();
    let statement = &w.service.state().statements[&statement_east];
    assert_eq!(statement.voucher_total_fen, Fen::new(expected_a.voucher));
    assert_eq!(statement.enterprise_total_fen, Fen::new(expected_a.enterprise));
    assert_eq!(statement.cost_fen, Fen::new(expected_a.cost));
    assert_eq!(statement.lines.len(), 1);
    assert_eq!(statement.voucher_total_uppercase, Fen::new(expected_a.voucher).to_chinese_uppercase());
    w.service.approve_statement(&op(), statement_east).unwrap();
    w.service.approve_statement(&op(), statement_west).unwrap();
    w.refused(ErrorCode::StatementState, |s| s.approve_statement(&op(), statement_east));
    w.refused(ErrorCode::StatementExists, |s| s.issue_statement(&op(), east, program, march));
    assert_eq!(w.service.program(program).unwrap().settled_fen, Fen::new(expected_a.voucher + expected_c.voucher));

    // Expiry: 180 days after issue, the sweep returns every unspent fen to the budget.
    assert!(w.service.sweep(&op()).unwrap().expired.is_empty());
    w.clock.set(at(2026, 9, 1));
    let report = w.service.sweep(&op()).unwrap();
    assert_eq!(report.expired, vec![voucher_a, voucher_c]);
    let unspent = issued - expected_a.voucher - expected_c.voucher;
    assert_eq!(report.returned_fen, Fen::new(unspent));
    assert_eq!(w.service.voucher(voucher_a).unwrap().state, VoucherState::Expired);
    let program_now = w.service.program(program).unwrap();
    assert_eq!(program_now.budget_remaining_fen, Fen::new(budget - issued + unspent));
    assert_eq!(program_now.spent_fen, Fen::new(expected_a.voucher + expected_c.voucher));

    // The ledger agrees with the service everywhere, the audit passes, and a restart rebuilds
    // the same state from the log.
    assert_eq!(w.service.check_books(), Vec::<String>::new());
    let before_restart = w.fingerprint();
    w.restart();
    assert_eq!(w.fingerprint(), before_restart);
    assert_eq!(w.service.check_books(), Vec::<String>::new());
    if w.postgres.is_none() {
        let mut store = suanli_store::SqliteStore::open_existing(&w.path).unwrap();
        let report = suanli_store::audit(&mut store).unwrap();
        assert!(report.passed(), "{:?}", report.violations);
        assert!(report.log_entries > 10_000);
    }
}

#[test]
fn the_annual_cap_stops_the_subsidy_until_the_new_year() {
    let mut w = World::start();
    let source = SHANGHAI_LIKE
        .replace("annual_cap_fen = 1_500_000_00", "annual_cap_fen = 100_00")
        .replace("applications_close = 2026-12-31", "applications_close = 2027-12-31")
        .replace("voucher_validity_days = 180", "voucher_validity_days = 720");
    let program = w.program(&source);
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let app = w.service.create_application(&op(), enterprise, program, Fen::from_yuan(10_000).unwrap(), "").unwrap();
    w.service.submit_application(&op(), app).unwrap();
    let voucher = w.service.approve_application(&op(), app, Fen::from_yuan(10_000).unwrap()).unwrap();
    let (provider, pool) = w.provider(1, "310000", OperatorKind::Commercial, "H100", false, 3_600);
    w.clock.set(at(2026, 12, 31) + 20 * 3600);
    let place = |w: &mut World| {
        let input =
            OrderInput { enterprise, voucher, pool, chip: None, gpu_count: 1, hours: 100, purpose: Purpose::Inference };
        let order = w.service.place_order(&op(), input).unwrap();
        w.service.start_order(&op(), order).unwrap();
        order
    };
    let (first, second) = (place(&mut w), place(&mut w));
    // Each quote is bounded by the ¥100 left of this year's cap.
    assert_eq!(w.service.order(first).unwrap().hold_fen, Fen::new(100_00));
    assert_eq!(w.service.order(second).unwrap().hold_fen, Fen::new(100_00));
    let start = w.service.now_s();
    let hour = |order, id: &str, n: i64| UsageInput {
        id: id.to_owned(),
        order,
        gpu_seconds: 3600,
        period_start_s: start + n * 3600,
        period_end_s: start + (n + 1) * 3600,
    };
    let voucher_parts = |outcomes: Vec<UsageOutcome>| -> Vec<Fen> {
        outcomes
            .into_iter()
            .map(|o| match o {
                UsageOutcome::Recorded { voucher_part_fen, .. } => voucher_part_fen,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    // An hour at ¥36 costs ¥36.00 and the voucher pays ¥28.80; the third hour of 2026 reaches
    // the ¥100 cap, and the fourth gets nothing although its order still holds ¥100.
    w.clock.set(start + 2 * 3600);
    let records = [hour(first, "a", 0), hour(first, "b", 1), hour(second, "c", 0), hour(second, "d", 1)];
    let parts = voucher_parts(w.service.record_usage(&op(), provider, &records).unwrap());
    assert_eq!(parts, vec![Fen::new(28_80), Fen::new(28_80), Fen::new(28_80), Fen::new(13_60)]);
    // In 2027 the cap starts again.
    w.clock.set(start + 5 * 3600);
    assert!(w.service.now_s() >= at(2027, 1, 1));
    let parts = voucher_parts(w.service.record_usage(&op(), provider, &[hour(second, "e", 4)]).unwrap());
    assert_eq!(parts, vec![Fen::new(28_80)]);
    assert_eq!(w.service.check_books(), Vec::<String>::new());
}

/// PostgreSQL's refusals: a second writer, a newer schema, an unreachable server.
#[test]
fn postgres_refuses_a_second_writer_a_newer_schema_and_an_unreachable_server() {
    let Some(mut w) = World::start_postgres() else {
        eprintln!("SUANLI_TEST_POSTGRES is unset: the PostgreSQL refusal checks are skipped");
        return;
    };
    let url = w.postgres.as_ref().unwrap().url.clone();
    let clock = std::sync::Arc::new(w.clock.clone());
    let second = suanli_service::Service::open_database(&url, clock.clone()).err().expect("a second writer is refused");
    assert!(second.message.contains("another suanli writer holds the database"), "{second}");
    assert!(!second.message.contains("password"), "no secret in the message");
    // A reader opens beside the writer, sees what it committed, and cannot change anything.
    w.program(crate::SHANGHAI_LIKE);
    let mut reader = suanli_service::Service::open_reader(&url, clock.clone()).unwrap();
    assert_eq!(reader.state().programs.len(), 1);
    assert_eq!(reader.durable().log_count(), w.service.durable().log_count());
    let refused = reader.issue_token(&op(), suanli_service::Role::Auditor, &"0".repeat(64)).err().unwrap();
    assert!(refused.message.contains("open for reading only"), "{refused}");
    assert_eq!(reader.check_books(), Vec::<String>::new());
    drop(reader);
    drop(w.service);
    // A database of a newer schema is refused, and not touched.
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client.batch_execute("UPDATE suanli_schema SET version = 99").unwrap();
    drop(client);
    let newer = suanli_service::Service::open_database(&url, clock.clone()).err().expect("a newer schema is refused");
    assert!(newer.message.contains("newer than this program's"), "{newer}");
    let newer = suanli_service::Service::open_reader(&url, clock.clone()).err().expect("by a reader too");
    assert!(newer.message.contains("newer than this program's"), "{newer}");
    let unreachable =
        suanli_service::Service::open_database("postgres://postgres@127.0.0.1:1/none", clock).err().unwrap();
    assert!(unreachable.message.contains("PostgreSQL at postgres://postgres@127.0.0.1:1/none"), "{unreachable}");
}
