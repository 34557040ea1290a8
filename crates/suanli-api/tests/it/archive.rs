//! An archived order over HTTP: found by id and in lists by those who may see it, as before its
//! archiving; no one else learns it exists; nothing can change it.

use serde_json::Value;
use suanli_service::{ARCHIVE_AFTER_S, Actor};

use crate::TestApp;

fn ids(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn an_archived_order_reads_as_before_to_those_who_may_see_it() {
    let app = TestApp::start();
    let id = app.orders[0];
    let path = format!("/api/v1/orders/{id}");
    let (status, _) = app.request("POST", &format!("{path}/complete"), Some("enterprise"), &[], Some("{}".into()));
    assert_eq!(status, 200);
    let (_, before) = app.request("GET", &path, Some("enterprise"), &[], None);
    let (_, list_before) = app.request("GET", "/api/v1/orders", Some("admin"), &[], None);

    app.clock.advance(ARCHIVE_AFTER_S);
    let archived = app.runtime.block_on(app.writer.call(|s| s.archive_orders(&Actor::operator()))).unwrap().unwrap();
    assert_eq!(archived, 1);

    for role in ["enterprise", "provider", "authority", "auditor", "admin"] {
        let (status, order) = app.request("GET", &path, Some(role), &[], None);
        assert_eq!((status, &order), (200, &before), "{role}");
    }
    for role in ["other_enterprise", "other_provider", "other_authority"] {
        let (status, answer) = app.request("GET", &path, Some(role), &[], None);
        assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")), "{role}");
    }
    let (_, list) = app.request("GET", "/api/v1/orders", Some("admin"), &[], None);
    assert_eq!(list, list_before, "the list reads the same, archived or not");
    let (_, mine) = app.request("GET", "/api/v1/orders?state=completed", Some("enterprise"), &[], None);
    assert_eq!((mine["total"].as_u64(), ids(&mine)), (Some(1), vec![id.to_string()]));
    let (_, theirs) = app.request("GET", "/api/v1/orders", Some("other_enterprise"), &[], None);
    assert!(!ids(&theirs).contains(&id.to_string()), "{theirs}");
    let (_, second) = app.request("GET", "/api/v1/orders?offset=1&limit=1", Some("admin"), &[], None);
    assert_eq!((second["total"].as_u64(), ids(&second)), (Some(2), vec![app.orders[1].to_string()]));

    // Nothing changes it; a stranger is told it does not exist.
    let (status, answer) =
        app.request("POST", &format!("{path}/extend"), Some("enterprise"), &[], Some(r#"{"hours":1}"#.into()));
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("order_state")), "{answer}");
    let (status, answer) =
        app.request("POST", &format!("{path}/extend"), Some("other_enterprise"), &[], Some(r#"{"hours":1}"#.into()));
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")), "{answer}");
    let (status, answer) = app.send_usage("provider", 0, 0, &[app.record("late", 0, 5, 60)]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["code"].as_str(), Some("usage_after_order_end"), "{answer}");
}

#[test]
fn an_approved_statement_reads_as_before_once_its_lines_leave_memory() {
    let app = TestApp::start();
    let path = "/api/v1/statements/stm-1";
    let (status, _) = app.request("POST", &format!("{path}/approve"), Some("authority"), &[], Some("{}".into()));
    assert_eq!(status, 200);
    let (_, before) = app.request("GET", path, Some("provider"), &[], None);
    assert_eq!(before["lines"].as_array().map(Vec::len), Some(1), "{before}");
    let archived =
        app.runtime.block_on(app.writer.call(|s| s.archive_statements(&Actor::operator()))).unwrap().unwrap();
    assert_eq!(archived, 1);
    for role in ["provider", "authority", "auditor"] {
        let (status, after) = app.request("GET", path, Some(role), &[], None);
        assert_eq!((status, &after), (200, &before), "{role}");
    }
    let (status, _) = app.request("GET", path, Some("other_provider"), &[], None);
    assert_eq!(status, 404);
}
