//! The server's own schedule: statements of ended months and the expiry sweep, run through the
//! writer on a timer as the actor `server`, without anyone asking.

use std::time::{Duration, Instant};

use suanli_api::schedule;
use suanli_service::calendar::shanghai_midnight;
use suanli_service::model::VoucherState;

use crate::TestApp;

/// Waits (at most 10 s) until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_server_issues_due_statements_and_sweeps_on_its_schedule() {
    let app = TestApp::start();
    // Usage recorded in April (the fixture's March already has its statement).
    let (status, answer) = app.send_usage("provider", 0, 0, &[app.record("april", 0, 5, 60)]);
    assert_eq!(status, 200, "{answer}");
    let statements = || {
        let view = app.writer.view();
        view.state().statements.values().map(|s| (s.provider, s.month.clone())).collect::<Vec<_>>()
    };
    assert_eq!(statements(), vec![(app.providers[0], "2026-03".to_owned())]);
    // While April runs, there is nothing to do.
    let ran = app.runtime.block_on(schedule::run_once(&app.writer)).unwrap();
    assert_eq!(ran.statements.unwrap(), vec![]);
    assert!(ran.sweep.unwrap().expired.is_empty());

    // Once April has ended, the schedule's loop issues its statement.
    app.clock.set(shanghai_midnight(2026, 5, 1).unwrap() + 60);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let stopped = async move {
        let mut stopping = stopping;
        let _ = stopping.wait_for(|&stop| stop).await;
    };
    let task = app.runtime.spawn(schedule::run(app.writer.clone(), Duration::from_millis(50), stopped));
    eventually("April's statement", || statements().len() == 2);
    assert_eq!(statements()[1], (app.providers[0], "2026-04".to_owned()));
    // Issued once, by the server, as the log shows.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(statements().len(), 2, "a later run issues nothing twice");
    let (entries, _) = app.runtime.block_on(app.writer.log_page(0, 100_000)).unwrap().unwrap();
    let issued: Vec<_> = entries.iter().filter(|e| e.action == "statement.issued").map(|e| e.actor.as_str()).collect();
    assert_eq!(issued.last(), Some(&"server"), "{issued:?}");

    // A year on, the voucher has expired on its own and its balance is back in the budget.
    let program = app.writer.view().voucher(app.voucher).unwrap().program;
    let remaining = app.writer.view().program(program).unwrap().budget_remaining_fen;
    app.clock.advance(366 * 86_400);
    eventually("the voucher's expiry", || {
        app.writer.view().voucher(app.voucher).unwrap().state == VoucherState::Expired
    });
    assert!(app.writer.view().program(program).unwrap().budget_remaining_fen > remaining);
    stop.send(true).unwrap();
    app.runtime.block_on(task).unwrap();
}
