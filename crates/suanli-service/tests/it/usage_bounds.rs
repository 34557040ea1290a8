//! Usage is bounded by its order: random overlapping records against one order, checked by a
//! model written from the rules (not from the service's code): at no instant do the recorded
//! records add up to more than the order's GPUs, never beyond the GPU-hours ordered, no period
//! past the order's end (late records of its run still count against the rest); every refusal
//! leaves the books as they were and an anomaly.

use proptest::prelude::*;
use suanli_domain::{ApplicantKind, Fen};
use suanli_service::model::{OperatorKind, Purpose, UsageInput, UsageOutcome};
use suanli_service::{ErrorCode, OrderInput};
use suanli_store::FsyncMode;

use crate::{SHANGHAI_LIKE, World, op};

#[derive(Clone, Debug)]
enum Step {
    /// A record over `[start, start + length)` seconds after the order started, at `percent` of
    /// the order's GPUs.
    Record {
        start: i64,
        length: i64,
        percent: i64,
    },
    Extend {
        hours: u32,
    },
    Complete,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => (0..4 * 3_600i64, 1..5_400i64, 1..=140i64)
            .prop_map(|(start, length, percent)| Step::Record { start, length, percent }),
        1 => (1..3u32).prop_map(|hours| Step::Extend { hours }),
        1 => Just(Step::Complete),
    ]
}

/// The most GPUs the accepted records occupy at once, exactly: at each record's start the sum of
/// `gpu_seconds / length` over the records covering that instant.
fn peak_gpus(accepted: &[(i64, i64, i64)]) -> f64 {
    accepted
        .iter()
        .map(|&(t, _, _)| {
            accepted.iter().filter(|&&(s, e, _)| s <= t && t < e).map(|&(s, e, g)| g as f64 / (e - s) as f64).sum()
        })
        .fold(0.0, f64::max)
}

fn check(gpus: u32, hours: u32, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut w = World::start_with(FsyncMode::Normal);
    let program = w.program(SHANGHAI_LIKE);
    let enterprise = w.enterprise(1, 8_000_000, ApplicantKind::Sme, &[]);
    let app = w.service.create_application(&op(), enterprise, program, Fen::from_yuan(1_000_000).unwrap(), "").unwrap();
    w.service.submit_application(&op(), app).unwrap();
    let voucher = w.service.approve_application(&op(), app, Fen::from_yuan(1_000_000).unwrap()).unwrap();
    let (provider, pool) = w.provider(1, "310000", OperatorKind::Government, "H100", false, 1_800);
    let input =
        OrderInput { enterprise, voucher, pool, chip: None, gpu_count: gpus, hours, purpose: Purpose::Training };
    let order = w.service.place_order(&op(), input).unwrap();
    w.service.start_order(&op(), order).unwrap();
    let started = w.service.now_s();
    w.clock.advance(6 * 3_600);
    let mut ordered_hours = i64::from(hours);
    let mut accepted: Vec<(i64, i64, i64)> = Vec::new();
    let mut ended = false;
    for (n, step) in steps.iter().enumerate() {
        match step {
            Step::Record { start, length, percent } => {
                let gpu_seconds = (i64::from(gpus) * length * percent / 100).max(1);
                let record = UsageInput {
                    id: format!("r{n}"),
                    order,
                    gpu_seconds,
                    period_start_s: started + start,
                    period_end_s: started + start + length,
                };
                let books = suanli_ledger::state_hash(w.service.durable().ledger());
                let anomalies = w.service.state().anomalies.len();
                let outcome = w.service.record_usage(&op(), provider, std::slice::from_ref(&record)).unwrap();
                match &outcome[0] {
                    UsageOutcome::Recorded { .. } => {
                        accepted.push((record.period_start_s, record.period_end_s, gpu_seconds));
                    }
                    UsageOutcome::Refused { code, .. } => {
                        prop_assert_eq!(suanli_ledger::state_hash(w.service.durable().ledger()), books);
                        prop_assert_eq!(w.service.state().anomalies.len(), anomalies + 1, "no anomaly for {}", code);
                    }
                    other => prop_assert!(false, "{other:?}"),
                }
            }
            Step::Extend { hours } => {
                if w.service.extend_order(&op(), order, *hours).is_ok() {
                    ordered_hours += i64::from(*hours);
                }
            }
            Step::Complete => {
                if !ended {
                    w.service.complete_order(&op(), order).unwrap();
                    ended = true;
                    // A period past the end is refused, whatever else it is.
                    let end = w.service.order(order).unwrap().ended_at_s.unwrap();
                    let past = UsageInput {
                        id: format!("past{n}"),
                        order,
                        gpu_seconds: 1,
                        period_start_s: end,
                        period_end_s: end + 301,
                    };
                    w.clock.advance(400);
                    let outcome = w.service.record_usage(&op(), provider, &[past]).unwrap();
                    prop_assert!(
                        matches!(&outcome[0], UsageOutcome::Refused { code, .. } if code == ErrorCode::UsageAfterOrderEnd.as_str()),
                        "{outcome:?}"
                    );
                }
            }
        }
        // Each record's rate is rounded down to a millionth of a GPU before it is compared.
        let slack = accepted.len() as f64 * 1e-6;
        prop_assert!(peak_gpus(&accepted) <= f64::from(gpus) + slack, "more than {} GPUs at once", gpus);
        let total: i64 = accepted.iter().map(|(_, _, g)| g).sum();
        prop_assert!(total <= i64::from(gpus) * ordered_hours * 3_600, "beyond the hours ordered");
        prop_assert_eq!(w.service.order(order).unwrap().gpu_seconds, total);
    }
    prop_assert_eq!(w.service.check_books(), Vec::<String>::new());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn usage_never_exceeds_the_order_at_any_instant_nor_in_total(
        gpus in 1..16u32,
        hours in 1..4u32,
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        check(gpus, hours, &steps)?;
    }
}
