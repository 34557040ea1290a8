//! The collections listed over HTTP that had no list: statements, enterprises, providers, sites.

use serde_json::Value;

use crate::TestApp;

fn ids(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect()
}

/// The lists that were missing: each holds what the caller may see, paged, and filters.
#[test]
fn statements_enterprises_providers_and_sites_are_listed_within_scope() {
    let app = TestApp::start();
    let (status, mine) = app.request("GET", "/api/v1/statements", Some("provider"), &[], None);
    assert_eq!(status, 200, "{mine}");
    assert_eq!((mine["total"].as_u64(), ids(&mine)), (Some(1), vec!["stm-1".to_owned()]), "{mine}");
    assert_eq!(mine["items"][0]["month"].as_str(), Some("2026-03"), "{mine}");
    assert!(mine["items"][0].get("lines").is_none(), "a list carries totals, not lines: {mine}");
    for (role, total) in [("admin", 1), ("authority", 1), ("other_authority", 0), ("other_provider", 0)] {
        let (_, list) = app.request("GET", "/api/v1/statements", Some(role), &[], None);
        assert_eq!(list["total"].as_u64(), Some(total), "{role}: {list}");
    }
    let (_, approved) = app.request("GET", "/api/v1/statements?state=approved", Some("admin"), &[], None);
    assert_eq!(approved["total"].as_u64(), Some(0), "{approved}");
    // A state no item of the list can have is refused with the ones it can.
    for list in ["statements", "orders", "vouchers", "applications", "programs"] {
        let (status, answer) = app.request("GET", &format!("/api/v1/{list}?state=flying"), Some("admin"), &[], None);
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_field")), "{list}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().starts_with("state: \"flying\" is not one of"));
    }
    let (status, _) = app.request("GET", "/api/v1/vouchers?state=exhausted", Some("admin"), &[], None);
    assert_eq!(status, 200);
    let (status, refused) = app.request("GET", "/api/v1/statements", Some("enterprise"), &[], None);
    assert_eq!((status, refused["error"]["code"].as_str()), (403, Some("forbidden")), "{refused}");

    let (_, all) = app.request("GET", "/api/v1/enterprises?limit=1", Some("auditor"), &[], None);
    assert_eq!((all["total"].as_u64(), ids(&all)), (Some(2), vec!["ent-1".to_owned()]), "{all}");
    let (_, itself) = app.request("GET", "/api/v1/enterprises", Some("other_enterprise"), &[], None);
    assert_eq!(ids(&itself), vec!["ent-2".to_owned()], "{itself}");
    let (status, _) = app.request("GET", "/api/v1/enterprises", Some("authority"), &[], None);
    assert_eq!(status, 403);

    let (_, providers) = app.request("GET", "/api/v1/providers", Some("enterprise"), &[], None);
    assert_eq!(ids(&providers), vec!["prv-1".to_owned(), "prv-2".to_owned()], "{providers}");
    let (_, sites) = app.request("GET", "/api/v1/sites?offset=1", Some("provider"), &[], None);
    assert_eq!((sites["total"].as_u64(), ids(&sites)), (Some(2), vec!["sit-2".to_owned()]), "{sites}");
    let (status, bad) = app.request("GET", "/api/v1/sites?limit=0", Some("provider"), &[], None);
    assert_eq!((status, bad["error"]["code"].as_str()), (400, Some("invalid_field")), "{bad}");
}
