//! Running the platform over the API: a provider changes and retires its pools; the admin keeps
//! the people who log in (disable, enable, set a password) and sees the tokens.

use serde_json::{Value, json};

use super::TestApp;

fn get_with(app: &TestApp, path: &str, bearer: &str) -> u16 {
    app.agent
        .get(&format!("{}{path}", app.base))
        .header("authorization", &format!("Bearer {bearer}"))
        .call()
        .unwrap()
        .status()
        .as_u16()
}

fn login(app: &TestApp, name: &str, password: &str) -> (u16, Value) {
    app.request("POST", "/api/v1/login", None, &[], Some(json!({ "name": name, "password": password }).to_string()))
}

#[test]
fn a_provider_changes_its_pool_for_new_orders_and_retires_it() {
    let app = TestApp::start();
    let pool = || app.writer.view().state().pools.values().find(|p| p.id.to_string() == "pol-1").cloned().unwrap();
    let order_before = app.writer.view().state().orders[&app.orders[0]].clone();
    assert_eq!(order_before.pool, pool().id);
    let change =
        |who: &str, body: Value| app.request("POST", "/api/v1/pools/pol-1", Some(who), &[], Some(body.to_string()));

    let (status, answer) = change("provider", json!({ "price_fen_per_gpu_hour": 2_000, "gpus": 96 }));
    assert_eq!(status, 200, "{answer}");
    assert_eq!((pool().price_fen_per_gpu_hour.fen(), pool().gpu_count), (2_000, 96));
    let order = app.writer.view().state().orders[&app.orders[0]].clone();
    assert_eq!(order.quote, order_before.quote, "an order keeps the price it was quoted");

    // Refusals change nothing: another provider, a pool smaller than its orders, nothing to change.
    assert_eq!(change("other_provider", json!({ "gpus": 100 })).0, 403);
    let (status, answer) = change("provider", json!({ "gpus": 4 }));
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("pool_capacity_exceeded")), "{answer}");
    let (status, answer) = change("provider", json!({}));
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_field")), "{answer}");
    assert_eq!(change("provider", json!({ "price_fen_per_gpu_hour": 0 })).0, 400);
    assert_eq!((pool().price_fen_per_gpu_hour.fen(), pool().gpu_count), (2_000, 96));

    // Retired: no new order lands on it, the running order goes on.
    let (status, answer) = app.request("POST", "/api/v1/pools/pol-1/retire", Some("provider"), &[], None);
    assert_eq!(status, 200, "{answer}");
    assert!(pool().retired_at_s.is_some());
    let pinned = json!({ "enterprise": "ent-1", "voucher": app.voucher.to_string(), "pool": "pol-1",
                         "gpus": 1, "hours": 1, "purpose": "training" });
    let (status, answer) = app.request("POST", "/api/v1/orders", Some("enterprise"), &[], Some(pinned.to_string()));
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("pool_retired")), "{answer}");
    let anywhere = json!({ "enterprise": "ent-1", "voucher": app.voucher.to_string(), "gpus": 1, "hours": 1, "purpose": "training" });
    let (status, answer) =
        app.request("POST", "/api/v1/orders/quote", Some("enterprise"), &[], Some(anywhere.to_string()));
    assert_eq!(status, 200, "{answer}");
    assert_ne!(answer["chosen"]["pool"], "pol-1");
    assert!(answer["alternatives"].as_array().unwrap().iter().all(|a| a["pool"] != "pol-1"));
    let (status, answer) = app.request("POST", "/api/v1/pools/pol-1/retire", Some("provider"), &[], None);
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("pool_retired")));
    assert_eq!(change("provider", json!({ "gpus": 100 })).0, 422);
    let (records, _) = app.send_usage("provider", 0, 0, &[app.record("after-retire", 0, 30, 60)]);
    assert_eq!(records, 200, "usage of a running order on a retired pool is still taken");
}

#[test]
fn disabling_a_person_ends_its_sessions_and_a_new_password_replaces_the_old() {
    let app = TestApp::start();
    let (status, answer) = login(&app, "lab", "correct horse");
    assert_eq!(status, 200, "{answer}");
    let session = answer["token"].as_str().unwrap().to_owned();
    // A token is named token-N wherever it appears: the login, the list, the revocation.
    let named = answer["token_id"].as_str().unwrap().to_owned();
    assert!(named.starts_with("token-"), "{answer}");
    assert_eq!(get_with(&app, "/api/v1/enterprises/ent-1", &session), 200);

    // The admin sees the people and the tokens, never a password hash or a secret.
    let (status, people) = app.request("GET", "/api/v1/users", Some("admin"), &[], None);
    assert_eq!(status, 200);
    assert!(people["items"].as_array().unwrap().iter().any(|u| u["name"] == "lab" && u["disabled"] == false));
    assert!(!people.to_string().contains("argon2"));
    let (_, tokens) = app.request("GET", "/api/v1/tokens", Some("admin"), &[], None);
    assert_eq!(tokens["items"][0]["user"], "lab", "newest first, with the person: {tokens}");
    assert_eq!(tokens["items"][0]["token_id"], named.as_str(), "{tokens}");
    assert!(!tokens.to_string().contains("sha256") && !tokens.to_string().contains(&session));
    assert_eq!(app.request("GET", "/api/v1/users", Some("enterprise"), &[], None).0, 403);
    // A name is never `.` or `..`, which a path could not name.
    for name in [".", "..", "-x"] {
        let body = json!({ "name": name, "role": "auditor", "password": "long enough 1" }).to_string();
        let (status, answer) = app.request("POST", "/api/v1/users", Some("admin"), &[], Some(body));
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_field")), "{name}: {answer}");
    }
    // Nor in the audit log an auditor reads: the entries that keep them show `[redacted]`.
    let (status, log) = app.request("GET", "/api/v1/audit/log?limit=500", Some("auditor"), &[], None);
    assert_eq!(status, 200);
    let text = log.to_string();
    let secrets = text.matches("\"secret_sha256_hex\":\"").count();
    assert!(!text.contains("argon2"), "{text}");
    assert_eq!(secrets, text.matches("\"secret_sha256_hex\":\"[redacted]\"").count(), "{text}");
    assert!(text.contains("[redacted]"), "the user's creation is in the log: {text}");

    let (status, answer) = app.request("POST", "/api/v1/users/lab/disable", Some("admin"), &[], None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(get_with(&app, "/api/v1/enterprises/ent-1", &session), 401, "the session is revoked");
    assert_eq!(login(&app, "lab", "correct horse").0, 401);
    assert_eq!(app.request("POST", "/api/v1/users/lab/disable", Some("admin"), &[], None).0, 409);
    assert_eq!(app.request("POST", "/api/v1/users/lab/enable", Some("admin"), &[], None).0, 200);
    let (status, answer) = login(&app, "lab", "correct horse");
    assert_eq!(status, 200);
    let second = answer["token"].as_str().unwrap().to_owned();

    let short = json!({ "password": "short" }).to_string();
    let (status, answer) = app.request("POST", "/api/v1/users/lab/password", Some("admin"), &[], Some(short));
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_field")));
    assert_eq!(get_with(&app, "/api/v1/enterprises/ent-1", &second), 200, "a refused change revokes nothing");
    let new = json!({ "password": "a much longer one" }).to_string();
    assert_eq!(app.request("POST", "/api/v1/users/lab/password", Some("admin"), &[], Some(new)).0, 200);
    assert_eq!(get_with(&app, "/api/v1/enterprises/ent-1", &second), 401);
    assert_eq!(login(&app, "lab", "correct horse").0, 401);
    assert_eq!(login(&app, "lab", "a much longer one").0, 200);
    // The other tokens (machine tokens, other people) are untouched.
    assert_eq!(app.request("GET", "/api/v1/enterprises/ent-1", Some("enterprise"), &[], None).0, 200);
    assert_eq!(app.request("POST", "/api/v1/users/nobody/disable", Some("admin"), &[], None).0, 404);

    let add = json!({ "name": "officer", "role": "authority-admin:ath-1", "password": "long enough 1" }).to_string();
    let (status, answer) = app.request("POST", "/api/v1/users", Some("admin"), &[], Some(add.clone()));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(app.request("POST", "/api/v1/users", Some("admin"), &[], Some(add)).0, 409);
    assert_eq!(login(&app, "officer", "long enough 1").1["role"], "authority-admin:ath-1");
}

#[test]
fn a_programme_file_is_previewed_against_every_enterprise_and_a_draft_is_amended() {
    let app = TestApp::start();
    let shanghai = include_str!("../../../../programs/shanghai-compute.toml");
    let preview = |who: &str, toml: &str| {
        app.request("POST", "/api/v1/programs/preview", Some(who), &[], Some(json!({ "toml": toml }).to_string()))
    };
    let log_before = app.runtime.block_on(app.writer.log_page(0, 1)).unwrap().unwrap().1;
    let (status, answer) = preview("authority", shanghai);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["enterprises_registered"], 2);
    assert_eq!(answer["eligible"], 2, "E1 and E2 earn 9M and are in Pudong: {answer}");
    assert_eq!(answer["rules"][1]["rule"], "revenue-or-research");
    // A stricter rule admits no one, and the preview says so rule by rule.
    let strict = shanghai.replace("revenue_fen >= 5000000_00", "revenue_fen >= 50000000_00");
    let (_, answer) = preview("authority", &strict);
    assert_eq!((answer["eligible"].as_u64(), answer["rules"][1]["admitted"].as_u64()), (Some(0), Some(0)), "{answer}");
    assert_eq!(answer["rules"][2]["admitted"], 2);
    // A file that would not load is refused with the field named; another authority's file too.
    let (status, answer) = preview("admin", &shanghai.replace("subsidy_rate_bp = 8000", "subsidy_rate_bp = 18000"));
    assert_eq!(status, 400);
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("subsidy_rate_bp"), "{answer}");
    let beijing = include_str!("../../../../programs/beijing.toml");
    assert_eq!(preview("authority", beijing).0, 403);
    assert_eq!(preview("enterprise", shanghai).0, 403);
    let log_after = app.runtime.block_on(app.writer.log_page(0, 1)).unwrap().unwrap().1;
    assert_eq!(log_after, log_before, "a preview writes nothing");

    // Beijing's programme is a draft: its admin amends it; the key and region stay.
    let amend = |toml: &str| {
        app.request(
            "POST",
            "/api/v1/programs/beijing-compute/amend",
            Some("admin"),
            &[],
            Some(json!({ "toml": toml }).to_string()),
        )
    };
    let key = |toml: &str| toml.lines().find(|l| l.starts_with("key")).unwrap().to_owned();
    let renamed = beijing.replacen("\nname = ", "\nname = \"Beijing vouchers, second draft\" # ", 1);
    let (status, answer) = amend(&renamed);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["terms"]["name"], "Beijing vouchers, second draft");
    let (status, answer) = amend(&beijing.replace(&key(beijing), "key = \"beijing-other\""));
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("program_file_invalid")), "{answer}");
    // An open programme is never amended.
    let (status, answer) = app.request(
        "POST",
        "/api/v1/programs/prg-1/amend",
        Some("admin"),
        &[],
        Some(json!({ "toml": shanghai }).to_string()),
    );
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("program_state")), "{answer}");
}

#[test]
fn an_authority_approves_at_a_rate_below_the_maximum_over_the_api() {
    let app = TestApp::start();
    let create = json!({ "enterprise": "ent-2", "program": "prg-1", "amount_fen": 1_000_00, "note": "" }).to_string();
    let (status, answer) = app.request("POST", "/api/v1/applications", Some("other_enterprise"), &[], Some(create));
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.request("POST", &format!("/api/v1/applications/{id}/submit"), Some("other_enterprise"), &[], None).0,
        200
    );
    let approve = |rate: i64| {
        let body = json!({ "amount_fen": 1_000_00, "rate_bp": rate }).to_string();
        app.request("POST", &format!("/api/v1/applications/{id}/approve"), Some("authority"), &[], Some(body))
    };
    let (status, answer) = approve(9_000);
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_field")), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("rate_bp"), "{answer}");
    let (status, answer) = approve(6_000);
    assert_eq!(status, 200, "{answer}");
    let voucher =
        app.writer.view().state().vouchers.values().find(|v| v.enterprise.to_string() == "ent-2").cloned().unwrap();
    assert_eq!(voucher.rate_bp.map(|r| r.basis_points()), Some(6_000));
}
