//! Several commands in one commit: the state they leave is the state the log replays to, usage
//! ids decided in the group are known to later commands of it, and a group that fails keeps
//! nothing.

use suanli_domain::{ApplicantKind, Fen};
use suanli_service::model::{OperatorKind, Purpose, UsageInput, UsageOutcome};
use suanli_service::{ErrorCode, OrderInput, ServiceError};

use crate::{SHANGHAI_LIKE, World, op};

#[test]
fn a_group_of_commands_is_one_commit_that_replays_to_the_same_state() {
    let mut w = World::start();
    let program = w.program(SHANGHAI_LIKE);
    let (provider, pool) = w.provider(1, "310000", OperatorKind::Government, "H100", false, 1_000);
    let enterprise = w.enterprise(1, 9_000_000, ApplicantKind::Sme, &[]);
    let amount = Fen::from_yuan(10_000).unwrap();
    let app = w.service.create_application(&op(), enterprise, program, amount, "").unwrap();
    w.service.submit_application(&op(), app).unwrap();
    let voucher = w.service.approve_application(&op(), app, amount).unwrap();
    let input =
        OrderInput { enterprise, voucher, pool, chip: None, gpu_count: 1, hours: 10, purpose: Purpose::Training };
    let entries_before = w.service.durable().log_count();
    let orders = w
        .service
        .in_one_commit(&op(), |s| {
            let mut orders = Vec::new();
            for _ in 0..20 {
                let order = s.place_order(&op(), input.clone())?;
                s.start_order(&op(), order)?;
                orders.push(order);
            }
            // Refused by its checks: records nothing, and the group goes on.
            let too_big = OrderInput { gpu_count: 100_000, ..input.clone() };
            assert!(s.place_order(&op(), too_big).is_err());
            Ok(orders)
        })
        .unwrap();
    assert_eq!(w.service.durable().log_count(), entries_before + 40, "20 placed and 20 started, stored");
    let start = w.service.now_s();
    w.clock.set(start + 3_600);
    let record = |id: &str, order| UsageInput {
        id: id.into(),
        order,
        gpu_seconds: 3_600,
        period_start_s: start,
        period_end_s: start + 3_600,
    };
    let answers = w
        .service
        .in_one_commit(&op(), |s| {
            let first = s.record_usage(&op(), provider, &[record("u-1", orders[0])])?;
            // The same id again within the group: known, answered `exists`, not posted twice.
            let again = s.record_usage(&op(), provider, &[record("u-1", orders[0])])?;
            for order in &orders {
                s.complete_order(&op(), *order)?;
            }
            Ok((first, again))
        })
        .unwrap();
    assert!(matches!(answers.0[0], UsageOutcome::Recorded { .. }), "{answers:?}");
    assert!(matches!(answers.1[0], UsageOutcome::Duplicate { .. }), "{answers:?}");
    let before = w.fingerprint();
    w.restart();
    assert_eq!(w.fingerprint(), before, "the log replays to the state the group left");

    // A group that fails keeps nothing, not even what its first commands did.
    let before = w.fingerprint();
    let failed = w.service.in_one_commit(&op(), |s| {
        s.place_order(&op(), input.clone())?;
        Err::<(), _>(ServiceError::new(ErrorCode::Internal, "stop"))
    });
    assert!(failed.is_err());
    assert_eq!(w.fingerprint(), before, "nothing of a failed group is kept");
    // And the clock may not move within a group.
    let clock = w.clock.clone();
    let moved = w.service.in_one_commit(&op(), |s| {
        s.place_order(&op(), input.clone())?;
        clock.set(start + 7_200);
        s.place_order(&op(), input.clone())
    });
    assert!(moved.unwrap_err().message.contains("clock moved"));
    assert_eq!(w.fingerprint(), before);
}
