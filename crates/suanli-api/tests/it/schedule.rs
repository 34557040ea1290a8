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

#[test]
fn an_order_request_waits_then_a_round_places_it_and_the_server_runs_rounds_on_its_own() {
    let app = TestApp::start();
    let body = |extra: serde_json::Value| {
        let mut body = serde_json::json!({ "enterprise": "ent-1", "voucher": app.voucher.to_string(), "gpus": 1, "hours": 2, "purpose": "training" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        Some(body.to_string())
    };
    let post = |path: &str, role: &str, body: Option<String>| app.request("POST", path, Some(role), &[], body);
    let get = |path: &str, role: &str| app.request("GET", path, Some(role), &[], None);
    // Refused with the field named, nothing written: a pool (the loop chooses), a wait over a
    // week, no GPUs.
    let before = app.writer.view().state().requests.len();
    for (extra, field) in [
        (serde_json::json!({ "pool": "pol-1" }), "pool"),
        (serde_json::json!({ "wait_s": 604_801 }), "wait_s"),
        (serde_json::json!({ "gpus": 0 }), "gpus"),
    ] {
        let (status, answer) = post("/api/v1/requests", "enterprise", body(extra));
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(field), "{field}: {answer}");
    }
    assert_eq!(app.writer.view().state().requests.len(), before);
    // Submitted, it waits; its enterprise and the authority see it, another enterprise does not.
    let (status, answer) = post("/api/v1/requests", "enterprise", body(serde_json::json!({ "wait_s": 600 })));
    assert_eq!((status, answer["state"].as_str()), (200, Some("waiting")), "{answer}");
    let id = answer["id"].as_str().unwrap().to_owned();
    assert!(answer["expires_at"].as_str().is_some(), "instants in RFC 3339: {answer}");
    assert_eq!(get(&format!("/api/v1/requests/{id}"), "authority").0, 200);
    assert_eq!(get(&format!("/api/v1/requests/{id}"), "other_enterprise").0, 404);
    let (_, waiting) = get("/api/v1/requests?state=waiting", "enterprise");
    assert_eq!(waiting["total"], 1, "{waiting}");
    assert_eq!(get("/api/v1/requests?state=lost", "enterprise").0, 400);
    // The admin runs a round: the request becomes an order, with what the policy weighed.
    let (status, round) = post("/api/v1/rounds", "admin", None);
    assert_eq!((status, round["placed"].as_array().map(Vec::len)), (200, Some(1)), "{round}");
    let (_, placed) = get(&format!("/api/v1/requests/{id}"), "enterprise");
    assert_eq!(placed["state"], "placed", "{placed}");
    let order = placed["decision"]["order"].as_str().unwrap();
    assert_eq!(get(&format!("/api/v1/orders/{order}"), "enterprise").0, 200);
    assert!(placed["decision"]["list_cost_fen"].as_i64().unwrap() > 0, "{placed}");
    // Decided, it cannot be withdrawn.
    let (status, answer) = post(&format!("/api/v1/requests/{id}/withdraw"), "enterprise", None);
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("request_state")), "{answer}");

    // The server's loop places the next request without anyone asking, as the actor `server`.
    let (_, next) = post("/api/v1/requests", "enterprise", body(serde_json::json!({})));
    let next = suanli_domain::RequestId::parse(next["id"].as_str().unwrap()).unwrap();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let stopped = async move {
        let mut stopping = stopping;
        let _ = stopping.wait_for(|&stop| stop).await;
    };
    let task = app.runtime.spawn(schedule::run_rounds(app.writer.clone(), Duration::from_millis(50), stopped));
    eventually("the loop's round", || {
        app.writer.view().request(next).unwrap().state == suanli_service::requests::RequestState::Placed
    });
    stop.send(true).unwrap();
    app.runtime.block_on(task).unwrap();
    let (entries, _) = app.runtime.block_on(app.writer.log_page(0, 100_000)).unwrap().unwrap();
    let rounds: Vec<_> = entries.iter().filter(|e| e.action == "request.decided").map(|e| e.actor.as_str()).collect();
    assert_eq!(rounds, ["admin", "server"], "{rounds:?}");
}
