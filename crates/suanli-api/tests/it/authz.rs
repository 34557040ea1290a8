//! The authorization matrix: every operation of `suanli_api::operations` × every role, on objects owned
//! by the first authority, enterprise and provider. A role of the owning scope must get through
//! (any answer but 401, 403 or 404); a role that cannot see the object gets 404, exactly as for
//! an object that does not exist, learning nothing; a role that can see it but not act on it, or
//! any role refused an endpoint that names no object, gets 403; no token gets 401. A route
//! without a case here fails the test.

use serde_json::{Value, json};

use crate::TestApp;

const ROLES: [&str; 9] = [
    "admin",
    "auditor",
    "authority",
    "reviewer",
    "other_authority",
    "enterprise",
    "other_enterprise",
    "provider",
    "other_provider",
];

struct Case {
    method: &'static str,
    route: &'static str,
    path: String,
    body: Option<Value>,
    allowed: Vec<&'static str>,
    hidden: &'static [&'static str],
}

fn cases(app: &TestApp) -> Vec<Case> {
    let (prv, other_prv) = (app.providers[0].to_string(), app.providers[1].to_string());
    let order = app.orders[0].to_string();
    let voucher = app.voucher.to_string();
    let case = |method, route, path: String, body: Option<Value>, hidden| Case {
        method,
        route,
        path,
        body,
        allowed: allowed(method, route),
        hidden,
    };
    let order_body = json!({ "enterprise": "ent-1", "voucher": voucher, "gpus": 1, "hours": 1, "purpose": "training" });
    let request_body = json!({ "enterprise": "ent-1", "voucher": voucher, "gpus": 1, "hours": 1, "purpose": "training", "wait_s": 60 });
    let _ = other_prv;
    vec![
        case("GET", "/api/v1/programs", "/api/v1/programs".into(), None, &[]),
        case("GET", "/api/v1/authorities", "/api/v1/authorities".into(), None, &[]),
        case("GET", "/api/v1/network", "/api/v1/network".into(), None, &[]),
        case(
            "POST",
            "/api/v1/programs",
            "/api/v1/programs".into(),
            Some(json!({ "toml": include_str!("../../../../programs/ningbo.toml") })),
            &[],
        ),
        case("GET", "/api/v1/programs/{program}", "/api/v1/programs/prg-1".into(), None, &[]),
        case("GET", "/api/v1/programs/{program}/outcome", "/api/v1/programs/prg-1/outcome".into(), None, &[]),
        case("GET", "/api/v1/programs/{program}/lottery", "/api/v1/programs/prg-1/lottery".into(), None, &[]),
        case(
            "POST",
            "/api/v1/programs/{program}/lottery/commit",
            "/api/v1/programs/prg-1/lottery/commit".into(),
            Some(json!({ "seed_sha256": "00".repeat(32), "closes_at": "2027-01-01T00:00:00+08:00" })),
            &[],
        ),
        case(
            "POST",
            "/api/v1/programs/{program}/lottery/draw",
            "/api/v1/programs/prg-1/lottery/draw".into(),
            Some(json!({ "seed": "s" })),
            &[],
        ),
        case(
            "POST",
            "/api/v1/programs/preview",
            "/api/v1/programs/preview".into(),
            Some(json!({ "toml": include_str!("../../../../programs/shanghai-compute.toml") })),
            &[],
        ),
        case(
            "POST",
            "/api/v1/programs/{program}/amend",
            "/api/v1/programs/prg-1/amend".into(),
            Some(json!({ "toml": include_str!("../../../../programs/ningbo.toml") })),
            &[],
        ),
        case("POST", "/api/v1/programs/{program}/open", "/api/v1/programs/prg-1/open".into(), None, &[]),
        case("POST", "/api/v1/programs/{program}/close", "/api/v1/programs/prg-1/close".into(), None, &[]),
        case(
            "POST",
            "/api/v1/enterprises",
            "/api/v1/enterprises".into(),
            Some(json!({ "uscc": "91310115MA1FL00154", "name": "N", "kind": "sme", "headcount": 1, "revenue_fen": 1 })),
            &[],
        ),
        case(
            "GET",
            "/api/v1/enterprises/{enterprise}",
            "/api/v1/enterprises/ent-1".into(),
            None,
            &["authority", "reviewer", "other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case("GET", "/api/v1/applications", "/api/v1/applications".into(), None, &[]),
        case(
            "POST",
            "/api/v1/applications",
            "/api/v1/applications".into(),
            Some(json!({ "enterprise": "ent-1", "program": "prg-1", "amount_fen": 100 })),
            &["authority", "reviewer", "other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case(
            "GET",
            "/api/v1/applications/{application}",
            "/api/v1/applications/app-1".into(),
            None,
            &["other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case(
            "POST",
            "/api/v1/applications/{application}/submit",
            "/api/v1/applications/app-1/submit".into(),
            None,
            &["other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case(
            "POST",
            "/api/v1/applications/{application}/withdraw",
            "/api/v1/applications/app-1/withdraw".into(),
            None,
            &["other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case(
            "POST",
            "/api/v1/applications/{application}/approve",
            "/api/v1/applications/app-1/approve".into(),
            Some(json!({ "amount_fen": 100 })),
            &["other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case(
            "POST",
            "/api/v1/applications/{application}/reject",
            "/api/v1/applications/app-1/reject".into(),
            Some(json!({ "reason": "matrix" })),
            &["other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case(
            "GET",
            "/api/v1/vouchers/{voucher}",
            format!("/api/v1/vouchers/{voucher}"),
            None,
            &["other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case(
            "POST",
            "/api/v1/vouchers/{voucher}/suspend",
            format!("/api/v1/vouchers/{voucher}/suspend"),
            Some(json!({ "reason": "matrix" })),
            &["other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case(
            "POST",
            "/api/v1/vouchers/{voucher}/reinstate",
            format!("/api/v1/vouchers/{voucher}/reinstate"),
            Some(json!({})),
            &["other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case(
            "POST",
            "/api/v1/providers",
            "/api/v1/providers".into(),
            Some(json!({ "uscc": "91310000MA1GW0016T", "name": "N", "operator": "commercial" })),
            &[],
        ),
        case(
            "POST",
            "/api/v1/providers/{provider}/sites",
            format!("/api/v1/providers/{prv}/sites"),
            Some(json!({ "name": "S", "hub": "H", "region": "310000", "latitude": 31.0, "longitude": 121.0 })),
            &[],
        ),
        case(
            "POST",
            "/api/v1/providers/{provider}/key",
            format!("/api/v1/providers/{prv}/key"),
            Some(json!({ "public_key_hex": "zz" })),
            &[],
        ),
        // Usage is the provider's own: any other role is refused before the body is read.
        case(
            "POST",
            "/api/v1/providers/{provider}/usage",
            format!("/api/v1/providers/{prv}/usage"),
            Some(json!({ "records": [] })),
            &[],
        ),
        // Telemetry is the provider's own, like usage.
        case(
            "POST",
            "/api/v1/providers/{provider}/utilization",
            format!("/api/v1/providers/{prv}/utilization"),
            Some(json!({ "samples": [] })),
            &[],
        ),
        // Overseers read every site's load; a provider its own; enterprises none.
        case("GET", "/api/v1/utilization", "/api/v1/utilization?site=sit-1".into(), None, &["other_provider"]),
        case(
            "POST",
            "/api/v1/sites/{site}/pools",
            "/api/v1/sites/sit-1/pools".into(),
            Some(json!({ "chip": "H20", "gpus": 8, "domestic": false, "price_fen_per_gpu_hour": 500 })),
            &[],
        ),
        case("GET", "/api/v1/pools", "/api/v1/pools".into(), None, &[]),
        case("POST", "/api/v1/sites/{site}/verify", "/api/v1/sites/sit-1/verify".into(), None, &[]),
        case(
            "POST",
            "/api/v1/orders",
            "/api/v1/orders".into(),
            Some(order_body.clone()),
            &["authority", "reviewer", "other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case(
            "POST",
            "/api/v1/orders/quote",
            "/api/v1/orders/quote".into(),
            Some(order_body),
            &["authority", "reviewer", "other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case(
            "GET",
            "/api/v1/orders/{order}",
            format!("/api/v1/orders/{order}"),
            None,
            &["other_authority", "other_enterprise", "other_provider"],
        ),
        case(
            "GET",
            "/api/v1/orders/{order}/usage",
            format!("/api/v1/orders/{order}/usage"),
            None,
            &["other_authority", "other_enterprise", "other_provider"],
        ),
        case(
            "POST",
            "/api/v1/orders/{order}/start",
            format!("/api/v1/orders/{order}/start"),
            None,
            &["other_authority", "other_enterprise", "other_provider"],
        ),
        case(
            "POST",
            "/api/v1/orders/{order}/extend",
            format!("/api/v1/orders/{order}/extend"),
            Some(json!({ "hours": 1 })),
            &["other_authority", "other_enterprise", "other_provider"],
        ),
        case(
            "POST",
            "/api/v1/orders/{order}/complete",
            format!("/api/v1/orders/{order}/complete"),
            None,
            &["other_authority", "other_enterprise", "other_provider"],
        ),
        case(
            "POST",
            "/api/v1/orders/{order}/cancel",
            format!("/api/v1/orders/{order}/cancel"),
            None,
            &["other_authority", "other_enterprise", "other_provider"],
        ),
        case(
            "POST",
            "/api/v1/statements",
            "/api/v1/statements".into(),
            Some(json!({ "provider": prv, "program": "prg-1", "month": "2026-03" })),
            &[],
        ),
        case(
            "GET",
            "/api/v1/statements/{statement}",
            "/api/v1/statements/stm-1".into(),
            None,
            &["other_authority", "enterprise", "other_enterprise", "other_provider"],
        ),
        case(
            "POST",
            "/api/v1/statements/{statement}/approve",
            "/api/v1/statements/stm-1/approve".into(),
            None,
            &["other_authority", "enterprise", "other_enterprise", "other_provider"],
        ),
        case("POST", "/api/v1/sweep", "/api/v1/sweep".into(), None, &[]),
        case("GET", "/api/v1/audit/log", "/api/v1/audit/log".into(), None, &[]),
        case("POST", "/api/v1/tokens", "/api/v1/tokens".into(), Some(json!({ "role": "auditor" })), &[]),
        // Revokes token-10, the one the admin case above just issued (the fixture issued nine).
        case("POST", "/api/v1/tokens/{token}/revoke", "/api/v1/tokens/token-10/revoke".into(), None, &[]),
        case("GET", "/api/v1/vouchers", "/api/v1/vouchers".into(), None, &[]),
        case("GET", "/api/v1/orders", "/api/v1/orders".into(), None, &[]),
        case("GET", "/api/v1/requests", "/api/v1/requests".into(), None, &[]),
        case(
            "POST",
            "/api/v1/requests",
            "/api/v1/requests".into(),
            Some(request_body),
            &["authority", "reviewer", "other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case(
            "GET",
            "/api/v1/requests/{request}",
            "/api/v1/requests/req-1".into(),
            None,
            &["other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case(
            "POST",
            "/api/v1/requests/{request}/withdraw",
            "/api/v1/requests/req-1/withdraw".into(),
            None,
            &["other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case("POST", "/api/v1/rounds", "/api/v1/rounds".into(), None, &[]),
        case("GET", "/api/v1/offers", "/api/v1/offers".into(), None, &[]),
        case(
            "POST",
            "/api/v1/offers",
            "/api/v1/offers".into(),
            Some(
                json!({ "provider": prv, "pool": "pol-1", "gpus": 1, "closes_at": "2026-04-03T00:00:00+08:00", "reserve_fen_per_gpu_hour": 500 }),
            ),
            &["authority", "reviewer", "other_authority", "enterprise", "other_enterprise", "other_provider"],
        ),
        case("GET", "/api/v1/offers/{offer}", "/api/v1/offers/off-1".into(), None, &[]),
        case("POST", "/api/v1/offers/{offer}/withdraw", "/api/v1/offers/off-1/withdraw".into(), None, &[]),
        case("GET", "/api/v1/clearings", "/api/v1/clearings".into(), None, &[]),
        case("POST", "/api/v1/clearings", "/api/v1/clearings".into(), None, &[]),
        case("GET", "/api/v1/statements", "/api/v1/statements".into(), None, &[]),
        case("GET", "/api/v1/enterprises", "/api/v1/enterprises".into(), None, &[]),
        case("GET", "/api/v1/providers", "/api/v1/providers".into(), None, &[]),
        case("GET", "/api/v1/sites", "/api/v1/sites".into(), None, &[]),
        case("POST", "/api/v1/heads", "/api/v1/heads".into(), None, &[]),
        case(
            "POST",
            "/api/v1/ownership",
            "/api/v1/ownership".into(),
            Some(json!({ "party": "ent-1", "shareholders": [] })),
            &["authority", "reviewer", "other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case("GET", "/api/v1/anomalies", "/api/v1/anomalies".into(), None, &[]),
        case(
            "POST",
            "/api/v1/pools/{pool}",
            "/api/v1/pools/pol-1".into(),
            Some(json!({ "price_fen_per_gpu_hour": 1_900 })),
            &[],
        ),
        case("POST", "/api/v1/pools/{pool}/retire", "/api/v1/pools/pol-1/retire".into(), None, &[]),
        case("GET", "/api/v1/users", "/api/v1/users".into(), None, &[]),
        case(
            "POST",
            "/api/v1/users",
            "/api/v1/users".into(),
            Some(json!({ "name": "newcomer", "role": "auditor", "password": "long enough 1" })),
            &[],
        ),
        case("POST", "/api/v1/users/{name}/disable", "/api/v1/users/lab/disable".into(), None, &[]),
        case("POST", "/api/v1/users/{name}/enable", "/api/v1/users/lab/enable".into(), None, &[]),
        case(
            "POST",
            "/api/v1/users/{name}/password",
            "/api/v1/users/lab/password".into(),
            Some(json!({ "password": "long enough 2" })),
            &[],
        ),
        case("GET", "/api/v1/tokens", "/api/v1/tokens".into(), None, &[]),
        // Entry 4 registered ent-1: its proof is for the overseers and that enterprise only.
        case(
            "GET",
            "/api/v1/audit/proof",
            "/api/v1/audit/proof?sequence=4&size=4".into(),
            None,
            &["authority", "reviewer", "other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        // Last, as they end what the cases above act on.
        case(
            "POST",
            "/api/v1/vouchers/{voucher}/revoke",
            format!("/api/v1/vouchers/{voucher}/revoke"),
            Some(json!({ "reason": "matrix" })),
            &["other_authority", "other_enterprise", "provider", "other_provider"],
        ),
        case("POST", "/api/v1/programs/{program}/finish", "/api/v1/programs/prg-1/finish".into(), None, &[]),
    ]
}

/// The roles the table of operations lets through, on objects owned by the first authority,
/// enterprise and provider.
fn allowed(method: &str, route: &str) -> Vec<&'static str> {
    use suanli_api::operations::{Who, operations};
    let operation = operations()
        .iter()
        .find(|o| o.method.as_str() == method && o.path == route)
        .unwrap_or_else(|| panic!("{method} {route} is not in the table of operations"));
    let mut roles: Vec<&'static str> = operation
        .who
        .iter()
        .flat_map(|who| -> &'static [&'static str] {
            match who {
                Who::Public | Who::Anyone => &ROLES,
                Who::Admin => &["admin"],
                Who::Auditor => &["auditor"],
                Who::Authority => &["authority", "reviewer"],
                Who::AuthorityAdmin => &["authority"],
                Who::Authorities | Who::EveryAuthority => &["authority", "reviewer", "other_authority"],
                Who::Enterprise => &["enterprise"],
                Who::Enterprises => &["enterprise", "other_enterprise"],
                Who::Provider => &["provider"],
                Who::Providers => &["provider", "other_provider"],
            }
        })
        .copied()
        .collect();
    roles.sort_unstable();
    roles.dedup();
    roles
}

fn every_route_checks_every_role_and_scope() {
    let app = TestApp::start();
    // A request waiting, to read and withdraw.
    let body = json!({ "enterprise": "ent-1", "voucher": app.voucher.to_string(), "gpus": 1, "hours": 1, "purpose": "training" });
    let (status, answer) = app.request("POST", "/api/v1/requests", Some("enterprise"), &[], Some(body.to_string()));
    assert_eq!((status, answer["id"].as_str()), (200, Some("req-1")), "{answer}");
    // An offer, to read and withdraw: its site verified first (trades are settled by region).
    let (status, answer) = app.request("POST", "/api/v1/sites/sit-1/verify", Some("admin"), &[], Some("{}".into()));
    assert_eq!(status, 200, "{answer}");
    let offer = json!({ "provider": app.providers[0].to_string(), "pool": "pol-1", "gpus": 8, "closes_at": "2026-04-03T00:00:00+08:00", "reserve_fen_per_gpu_hour": 500 });
    let (status, answer) = app.request("POST", "/api/v1/offers", Some("provider"), &[], Some(offer.to_string()));
    assert_eq!(
        (status, answer["id"].as_str(), answer["state"].as_str()),
        (200, Some("off-1"), Some("open")),
        "{answer}"
    );
    let cases = cases(&app);
    let operations: Vec<_> = suanli_api::operations::operations()
        .iter()
        .filter(|o| !o.is_public() && o.path.starts_with("/api/v1/"))
        .collect();
    for operation in &operations {
        let (method, route) = (operation.method.as_str(), operation.path);
        assert!(
            cases.iter().any(|c| c.method == method && c.route == route),
            "{method} {route} has no case in the authorization matrix"
        );
    }
    let mut checked = 0;
    for case in &cases {
        let body = case.body.as_ref().map(Value::to_string);
        let (status, answer) = app.request(case.method, &case.path, None, &[], body.clone().or(Some("{}".into())));
        assert_eq!(status, 401, "{} {} without a token: {answer}", case.method, case.path);
        // Denied roles first, then allowed ones, so an allowed write cannot change what a denied
        // role would have seen.
        let mut order: Vec<&str> = ROLES.iter().copied().filter(|r| !case.allowed.contains(r)).collect();
        order.extend(case.allowed.iter().copied());
        for role in order {
            let (status, answer) =
                app.request(case.method, &case.path, Some(role), &[], body.clone().or(Some("{}".into())));
            let expected = if case.allowed.contains(&role) {
                None
            } else if case.hidden.contains(&role) {
                Some(404)
            } else {
                Some(403)
            };
            match expected {
                None => assert!(
                    ![401, 403, 404].contains(&status),
                    "{} {} as {role}: allowed, but answered {status} {answer}",
                    case.method,
                    case.path
                ),
                Some(code) => assert_eq!(status, code, "{} {} as {role}: {answer}", case.method, case.path),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, operations.len() * ROLES.len());
}

suanli_store::conformance!(every_route_checks_every_role_and_scope,);
