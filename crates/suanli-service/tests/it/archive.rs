//! Orders that ended over a month ago leave memory for storage: still found by id and in lists,
//! no longer changed, replayed and checked by the audit, and the same after a restart — on
//! SQLite and on PostgreSQL.

use suanli_domain::{ApplicantKind, Fen, OrderId};
use suanli_service::model::UsageOutcome;
use suanli_service::model::{OperatorKind, OrderState, Purpose, UsageInput};
use suanli_service::{ARCHIVE_AFTER_S, ErrorCode, OrderInput, OrderQuery, Role, TOKEN_PURGE_AFTER_S};

use crate::{SHANGHAI_LIKE, World, op};

/// Two enterprises, one order each (the first completed after 3 hours of usage, the second still
/// running); answers the orders.
fn two_orders(w: &mut World) -> (OrderId, OrderId) {
    let program = w.program(SHANGHAI_LIKE);
    let (provider, pool) = w.provider(1, "310000", OperatorKind::Government, "H100", false, 100);
    let mut orders = Vec::new();
    for n in 1..=2 {
        let enterprise = w.enterprise(n, 9_000_000, ApplicantKind::Sme, &[]);
        let amount = Fen::from_yuan(10_000).unwrap();
        let app = w.service.create_application(&op(), enterprise, program, amount, "").unwrap();
        w.service.submit_application(&op(), app).unwrap();
        let voucher = w.service.approve_application(&op(), app, amount).unwrap();
        let input =
            OrderInput { enterprise, voucher, pool, chip: None, gpu_count: 2, hours: 10, purpose: Purpose::Training };
        let order = w.service.place_order(&op(), input).unwrap();
        w.service.start_order(&op(), order).unwrap();
        orders.push(order);
    }
    let start = w.service.now_s();
    w.clock.set(start + 4 * 3600);
    let records: Vec<UsageInput> = (0..3)
        .map(|h| UsageInput {
            id: format!("u-{h}"),
            order: orders[0],
            gpu_seconds: 2 * 3600,
            period_start_s: start + h * 3600,
            period_end_s: start + (h + 1) * 3600,
        })
        .collect();
    w.service.record_usage(&op(), provider, &records).unwrap();
    w.service.complete_order(&op(), orders[0]).unwrap();
    (orders[0], orders[1])
}

fn archive_and_check(mut w: World) {
    // A token for an hour and one for a year, issued first.
    let secret = |n: u8| suanli_service::access::sha256_hex(&format!("secret-{n}"));
    let short = w.service.issue_token_for(&op(), Role::PlatformAdmin, &secret(1), 3_600).unwrap();
    let long = w.service.issue_token_for(&op(), Role::PlatformAdmin, &secret(2), 365 * 86_400).unwrap();
    let (ended, running) = two_orders(&mut w);
    let before = w.service.order(ended).unwrap().clone();
    assert_eq!(before.state, OrderState::Completed);
    let ended_at = before.ended_at_s.unwrap();

    // A day short of the window: late records are still taken, nothing is archived.
    w.clock.set(ended_at + ARCHIVE_AFTER_S - 86_400);
    assert_eq!(w.service.archive_orders(&op()).unwrap(), 0);
    w.clock.set(ended_at + ARCHIVE_AFTER_S);
    let entries = w.service.durable().log_count();
    assert_eq!(w.service.archive_orders(&op()).unwrap(), 1);
    assert_eq!(w.service.durable().log_count(), entries + 1, "one log entry archives them");
    assert!(!w.service.state().orders.contains_key(&ended) && w.service.state().orders.contains_key(&running));
    assert_eq!(w.service.state().orders_archived, 1);
    assert_eq!(w.service.archive_orders(&op()).unwrap(), 0, "archiving twice archives nothing");

    // Read from storage as it was.
    let mut reader = w.service.log_reader().unwrap();
    assert_eq!(w.service.find_order(ended, &mut reader).unwrap(), before);
    assert_eq!(w.service.order_parties(ended).unwrap(), (before.enterprise, before.provider, before.program));
    let all = w.service.orders_page(&OrderQuery::default(), 0, 10, &mut reader).unwrap();
    assert_eq!((all.total, all.orders.iter().map(|o| o.id).collect::<Vec<_>>()), (2, vec![ended, running]));
    let mine = OrderQuery { enterprise: Some(before.enterprise), ..OrderQuery::default() };
    let page = w.service.orders_page(&mine, 0, 10, &mut reader).unwrap();
    assert_eq!((page.total, page.orders.len(), page.orders[0].id), (1, 1, ended));
    let completed = OrderQuery { state: Some("completed".to_owned()), ..OrderQuery::default() };
    assert_eq!(w.service.orders_page(&completed, 0, 10, &mut reader).unwrap().total, 1);
    let second = w.service.orders_page(&OrderQuery::default(), 1, 1, &mut reader).unwrap();
    assert_eq!((second.total, second.orders[0].id), (2, running));

    // No longer changed: a late record and an action are refused, and nothing changes.
    let late = UsageInput {
        id: "late".to_owned(),
        order: ended,
        gpu_seconds: 60,
        period_start_s: ended_at - 120,
        period_end_s: ended_at - 60,
    };
    let outcome = w.service.record_usage(&op(), before.provider, std::slice::from_ref(&late)).unwrap();
    match &outcome[0] {
        UsageOutcome::Refused { code, .. } => assert_eq!(code, "usage_after_order_end"),
        other => panic!("{other:?}"),
    }
    w.refused(ErrorCode::OrderState, |s| s.complete_order(&op(), ended));
    // A record already applied still answers `exists`, however old.
    let retry = UsageInput {
        id: "u-0".to_owned(),
        order: ended,
        gpu_seconds: 2 * 3600,
        period_start_s: before.started_at_s.unwrap(),
        period_end_s: before.started_at_s.unwrap() + 3600,
    };
    let again = w.service.record_usage(&op(), before.provider, &[retry]).unwrap();
    assert!(matches!(&again[0], UsageOutcome::Duplicate { cost_fen, .. } if *cost_fen == Fen::new(2_00)), "{again:?}");

    // Ids go on past archived orders.
    assert_eq!(w.service.state().next_order().get(), 3);

    // The month's statement, approved: its lines leave memory, and nothing read from them changes.
    let program = before.program;
    let month = suanli_service::calendar::YearMonth::of(before.started_at_s.unwrap());
    let statement = w.service.issue_statement(&op(), before.provider, program, month).unwrap();
    w.service.approve_statement(&op(), statement).unwrap();
    let full = w.service.state().statements[&statement].clone();
    assert_eq!(full.lines.len(), 1);
    let outcome = serde_json::to_value(w.service.outcome(program).unwrap()).unwrap();
    assert_eq!(w.service.archive_statements(&op()).unwrap(), 1);
    assert!(w.service.state().statements[&statement].lines.is_empty());
    assert_eq!(w.service.state().settled.len(), 1);
    assert_eq!(serde_json::to_value(w.service.outcome(program).unwrap()).unwrap(), outcome);
    let mut reader = w.service.log_reader().unwrap();
    assert_eq!(w.service.statement_with_lines(statement, &mut reader).unwrap(), full);
    let mine = w.service.archived_lines_of(before.enterprise, &mut reader).unwrap();
    assert_eq!(mine, vec![(statement, full.lines[0].clone())]);
    assert_eq!(w.service.archive_statements(&op()).unwrap(), 0);

    // The hour's token expired long ago: it leaves memory; the year's stays and works.
    assert_eq!(w.service.purge_tokens(&op()).unwrap(), 1);
    assert!(!w.service.state().tokens.contains_key(&short) && w.service.state().tokens.contains_key(&long));
    assert_eq!(w.service.authenticate("secret-1"), None);
    assert_eq!(w.service.authenticate("secret-2"), Some(Role::PlatformAdmin));
    let next = w.service.issue_token(&op(), Role::Auditor, &secret(3)).unwrap();
    assert_eq!(next, long + 1, "token ids go on past purged ones");
    let _ = TOKEN_PURGE_AFTER_S;

    // After a checkpoint and a restart, and replayed from the first entry, the same.
    w.service.checkpoint().unwrap();
    let state = w.service.state().to_checkpoint();
    w.restart();
    assert_eq!(w.service.state().to_checkpoint(), state);
    assert!(w.service.check_books().is_empty(), "{:?}", w.service.check_books());
    let (_, problems) = w.service.verify_checkpoints().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn ended_orders_leave_memory_on_sqlite() {
    archive_and_check(World::start());
}

#[test]
fn ended_orders_leave_memory_on_postgres() {
    if let Some(w) = World::start_postgres() {
        archive_and_check(w);
    }
}

#[test]
fn the_audit_finds_an_archived_order_changed_in_storage() {
    let mut w = World::start();
    let (ended, _) = two_orders(&mut w);
    let ended_at = w.service.order(ended).unwrap().ended_at_s.unwrap();
    w.clock.set(ended_at + ARCHIVE_AFTER_S);
    w.service.archive_orders(&op()).unwrap();
    let path = w.path.clone();
    drop(w.service);
    let connection = rusqlite::Connection::open(&path).unwrap();
    let changed = connection
        .execute("UPDATE orders_archive SET body = replace(body, '\"usage_records\":3', '\"usage_records\":2')", [])
        .unwrap();
    assert_eq!(changed, 1);
    drop(connection);
    let mut service = suanli_service::Service::open(&path, std::sync::Arc::new(suanli_service::SystemClock)).unwrap();
    let (_, problems) = service.verify_checkpoints().unwrap();
    assert!(problems.iter().any(|p| p.contains(&format!("archived {ended}"))), "{problems:?}");
}

#[test]
fn pages_of_orders_interleave_memory_and_the_archive() {
    let mut w = World::start();
    let (first, _) = two_orders(&mut w);
    let base = w.service.order(first).unwrap().clone();
    // Orders 3 to 6, of the first enterprise; 3 and 5 cancelled: 1, 3 and 5 end up archived,
    // 2, 4 and 6 stay in memory.
    for n in 0..4 {
        let input = OrderInput {
            enterprise: base.enterprise,
            voucher: base.voucher,
            pool: base.pool,
            chip: None,
            gpu_count: 1,
            hours: 1,
            purpose: Purpose::Training,
        };
        let id = w.service.place_order(&op(), input).unwrap();
        if n % 2 == 0 {
            w.service.cancel_order(&op(), id).unwrap();
        }
    }
    w.clock.advance(ARCHIVE_AFTER_S + 1);
    assert_eq!(w.service.archive_orders(&op()).unwrap(), 3);
    let ids = |orders: &[suanli_service::model::Order]| orders.iter().map(|o| o.id.get()).collect::<Vec<_>>();
    let mut reader = w.service.log_reader().unwrap();
    let queries = [
        (OrderQuery::default(), vec![1, 2, 3, 4, 5, 6]),
        (OrderQuery { enterprise: Some(base.enterprise), ..OrderQuery::default() }, vec![1, 3, 4, 5, 6]),
        (OrderQuery { state: Some("cancelled".to_owned()), ..OrderQuery::default() }, vec![3, 5]),
        (OrderQuery { state: Some("placed".to_owned()), ..OrderQuery::default() }, vec![4, 6]),
    ];
    for (query, all) in queries {
        for offset in 0..8u64 {
            for limit in 1..5usize {
                let page = w.service.orders_page(&query, offset, limit, &mut reader).unwrap();
                let expected: Vec<u64> = all.iter().skip(offset as usize).take(limit).copied().collect();
                assert_eq!((page.total, ids(&page.orders)), (all.len() as u64, expected), "{query:?} {offset} {limit}");
            }
        }
    }
}
