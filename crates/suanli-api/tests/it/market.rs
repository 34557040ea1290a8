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
        (json!({ "gpus": 65 }), 422, "gpus"),
        (json!({ "closes_at": "tomorrow" }), 400, "closes_at"),
        (json!({ "opens_at": "2026-04-02" }), 400, "opens_at"),
        (json!({ "closes_at": "2026-06-01T00:00:00+08:00" }), 422, "closes_at"),
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

/// The console's market page: a provider offers GPUs of its pool (a bad form changes nothing),
/// everyone sees the offer, another provider cannot withdraw it, its provider can, and the admin
/// clears the market from the page.
#[test]
fn the_console_market_page_offers_withdraws_and_clears() {
    use crate::console::{call, form_token, session};
    let app = TestApp::start();
    assert_eq!(app.request("POST", "/api/v1/sites/sit-1/verify", Some("admin"), &[], Some("{}".into())).0, 200);
    let cookie = session(&app, "provider");
    let page = call(&app, "GET", "/market?lang=en", Some(&cookie), &[], None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("action=\"/market/offers\"") && page.body.contains("pol-1"), "{}", page.body);
    let token = form_token(&page.body);
    let bad = call(
        &app,
        "POST",
        "/market/offers",
        Some(&cookie),
        &[],
        Some(&format!("form_token={token}&pool=pol-1&gpus=8&days=40&reserve_yuan=9")),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(app.writer.view().state().offers.is_empty());
    let posted = call(
        &app,
        "POST",
        "/market/offers",
        Some(&cookie),
        &[],
        Some(&format!("form_token={token}&pool=pol-1+%28H100%2C+64%29&gpus=8&days=7&reserve_yuan=9.50")),
    );
    assert_eq!(posted.status, 303, "{}", posted.body);
    assert!(posted.location.unwrap().starts_with("/market?done=offer_posted"));
    let offer = app.writer.view().offer(suanli_domain::OfferId::new(1).unwrap()).unwrap().clone();
    assert_eq!(
        (offer.gpus, offer.reserve_fen_per_gpu_hour.fen(), offer.closes_at_s - offer.opens_at_s),
        (8, 950, 7 * 86_400)
    );
    // An enterprise sees the offer (in Chinese by default), and no form to post one.
    let seen = call(&app, "GET", "/market", Some(&session(&app, "enterprise")), &[], None);
    assert!(
        seen.body.contains("off-1") && seen.body.contains("在售") && !seen.body.contains("action=\"/market/offers\""),
        "{}",
        seen.body
    );
    // Another provider may not withdraw it; its provider does.
    let other = call(&app, "GET", "/market", Some(&session(&app, "other_provider")), &[], None);
    let foreign = call(
        &app,
        "POST",
        "/market/offers/off-1/withdraw",
        Some(&session(&app, "other_provider")),
        &[],
        Some(&format!("form_token={}", form_token(&other.body))),
    );
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    let withdrawn =
        call(&app, "POST", "/market/offers/off-1/withdraw", Some(&cookie), &[], Some(&format!("form_token={token}")));
    assert_eq!(withdrawn.status, 303, "{}", withdrawn.body);
    assert!(app.writer.view().offer(offer.id).unwrap().withdrawn_at_s.is_some());
    // Only the admin clears, from the page.
    let admin = session(&app, "admin");
    let admin_page = call(&app, "GET", "/market?lang=en", Some(&admin), &[], None);
    assert!(admin_page.body.contains("action=\"/market/clear\""), "{}", admin_page.body);
    let refused = call(&app, "POST", "/market/clear", Some(&cookie), &[], Some(&format!("form_token={token}")));
    assert_eq!(refused.status, 403, "{}", refused.body);
    let cleared = call(
        &app,
        "POST",
        "/market/clear",
        Some(&admin),
        &[],
        Some(&format!("form_token={}", form_token(&admin_page.body))),
    );
    assert_eq!(cleared.status, 303, "{}", cleared.body);
}
