//! The market between hub nodes over HTTP: a provider posts an offer (bad ones refused with the
//! field named and nothing written), anyone with a token reads it with its state, the admin
//! clears the market, and the provider withdraws what is unsold.

use serde_json::{Value, json};

use crate::TestApp;

#[test]
fn a_provider_offers_capacity_everyone_reads_it_the_admin_clears_and_the_provider_withdraws() {
    let app = TestApp::start();
    let post = |path: &str, role: &str, body: Option<String>| app.request("POST", path, Some(role), &[], body);
    let get = |path: &str, role: &str| app.request("GET", path, Some(role), &[], None);
    let offer = |extra: Value| {
        let mut body = json!({ "provider": app.providers[0].to_string(), "pool": "pol-1", "gpus": 8, "closes_at": "2026-04-03T00:00:00+08:00", "reserve_fen_per_gpu_hour": 900 });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        Some(body.to_string())
    };
    // The site is not verified yet: no offer, and the reason says so.
    let (status, answer) = post("/api/v1/offers", "provider", offer(json!({})));
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("site_not_verified")), "{answer}");
    assert_eq!(post("/api/v1/sites/sit-1/verify", "admin", Some("{}".into())).0, 200);
    // Bad offers: refused with the field named, nothing written.
    for (extra, status, field) in [
        (json!({ "gpus": 0 }), 400, "gpus"),
        (json!({ "gpus": 65 }), 400, "gpus"),
        (json!({ "closes_at": "tomorrow" }), 400, "closes_at"),
        (json!({ "opens_at": "2026-04-02" }), 400, "opens_at"),
        (json!({ "closes_at": "2026-06-01T00:00:00+08:00" }), 400, "closes_at"),
        (json!({ "reserve_fen_per_gpu_hour": 0 }), 400, "reserve_fen_per_gpu_hour"),
        (json!({ "colour": "red" }), 400, "colour"),
    ] {
        let (got, answer) = post("/api/v1/offers", "provider", offer(extra.clone()));
        assert_eq!(got, status, "{extra}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(field), "{field}: {answer}");
    }
    assert!(app.writer.view().state().offers.is_empty(), "a refused offer wrote nothing");
    // Another provider cannot offer this provider's pool.
    let (status, _) = post("/api/v1/offers", "other_provider", offer(json!({})));
    assert_eq!(status, 404);

    let (status, posted) = post("/api/v1/offers", "provider", offer(json!({})));
    assert_eq!(
        (status, posted["id"].as_str(), posted["state"].as_str()),
        (200, Some("off-1"), Some("open")),
        "{posted}"
    );
    assert!(posted["opens_at"].as_str().is_some() && posted["closes_at"].as_str().is_some(), "RFC 3339: {posted}");
    assert_eq!(posted["region"], "310000");
    let (_, open) = get("/api/v1/offers?state=open", "enterprise");
    assert_eq!(open["total"], 1, "{open}");
    assert_eq!(get("/api/v1/offers?state=sold", "enterprise").0, 400);
    assert_eq!(get("/api/v1/offers/off-1", "other_enterprise").0, 200);

    // A bid's limit is checked where it enters.
    let request = json!({ "enterprise": "ent-1", "voucher": app.voucher.to_string(), "gpus": 1, "hours": 2, "purpose": "training", "limit_fen_per_gpu_hour": 0 });
    let (status, answer) = post("/api/v1/requests", "enterprise", Some(request.to_string()));
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("limit_fen_per_gpu_hour"), "{answer}");

    // The admin clears: the fixture's programme does not trade, so there is no bid.
    let (status, run) = post("/api/v1/clearings", "admin", None);
    assert_eq!(status, 200, "{run}");
    assert_eq!((run["clearing"]["clearing"].as_u64(), run["clearing"]["bids"].as_u64()), (Some(0), Some(0)), "{run}");
    assert!(run["round"].is_object(), "{run}");
    assert_eq!(post("/api/v1/clearings", "provider", None).0, 403);
    let (status, clearings) = get("/api/v1/clearings", "auditor");
    assert_eq!((status, clearings["total"].as_u64()), (200, Some(0)), "{clearings}");

    // Withdrawn by its provider; not twice, and not by another.
    assert_eq!(post("/api/v1/offers/off-1/withdraw", "other_provider", None).0, 403);
    let (status, withdrawn) = post("/api/v1/offers/off-1/withdraw", "provider", None);
    assert_eq!((status, withdrawn["state"].as_str()), (200, Some("withdrawn")), "{withdrawn}");
    let (status, answer) = post("/api/v1/offers/off-1/withdraw", "provider", None);
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("offer_state")), "{answer}");
    assert_eq!(get("/api/v1/offers/off-9", "provider").0, 404);
}
