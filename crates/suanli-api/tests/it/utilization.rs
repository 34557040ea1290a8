//! Utilization telemetry over HTTP: signed, idempotent samples, each refusal with its code; the
//! series by pool, site and hub within each role's scope; and the outcome report's difference
//! in differences computed by hand.

use ed25519_dalek::Signer;
use serde_json::{Value, json};
use suanli_service::access::{hex, utilization_signing_bytes};
use suanli_service::calendar::format_timestamp;
use suanli_service::model::UtilizationInput;

use suanli_service::clock::Clock;

use crate::TestApp;

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

impl TestApp {
    /// Sends `(pool, at_s, busy)` samples for provider `provider`, signed with `signer`'s key.
    fn send_samples(&self, provider: usize, signer: usize, samples: &[(&str, i64, u32)]) -> (u16, Value) {
        let inputs: Vec<UtilizationInput> = samples
            .iter()
            .map(|(pool, at_s, busy)| UtilizationInput {
                pool: suanli_domain::PoolId::parse(pool).unwrap(),
                at_s: *at_s,
                busy_gpus: *busy,
            })
            .collect();
        let signature =
            hex(&self.keys[signer].sign(&utilization_signing_bytes(self.providers[provider], &inputs)).to_bytes());
        let body: Vec<Value> = samples
            .iter()
            .map(|(pool, at_s, busy)| json!({ "pool": pool, "at": format_timestamp(*at_s), "busy_gpus": busy }))
            .collect();
        let token = if provider == 0 { "provider" } else { "other_provider" };
        self.request(
            "POST",
            &format!("/api/v1/providers/{}/utilization", self.providers[provider]),
            Some(token),
            &[("suanli-signature", signature)],
            Some(json!({ "samples": body }).to_string()),
        )
    }
}

fn statuses(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|r| r["code"].as_str().unwrap_or(r["status"].as_str().unwrap()).to_owned())
        .collect()
}

fn samples_are_signed_idempotent_and_each_refusal_has_its_code() {
    let app = TestApp::start();
    let now = app.clock.now_s();
    let (status, answer) = app.send_samples(0, 0, &[("pol-1", now - HOUR, 16), ("pol-1", now, 32)]);
    assert_eq!((status, statuses(&answer)), (200, vec!["ok".into(), "ok".into()]), "{answer}");
    let (status, answer) = app.send_samples(
        0,
        0,
        &[
            ("pol-1", now - HOUR, 16),
            ("pol-1", now, 33),
            ("pol-2", now, 1),
            ("pol-1", now - 60, 65),
            ("pol-1", now + 3_600, 1),
            ("pol-1", now - 8 * DAY, 1),
        ],
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        statuses(&answer),
        [
            "exists",
            "utilization_conflict",
            "not_found",
            "utilization_exceeds_pool",
            "utilization_in_future",
            "utilization_too_old"
        ]
    );
    // Signed with the other provider's key, or by another role: refused, nothing stored.
    let (status, answer) = app.send_samples(0, 1, &[("pol-1", now - 120, 1)]);
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("signature_invalid")), "{answer}");
    for body in [json!({ "samples": [] }), json!({ "samples": [{ "pool": "pol-1", "at": "x", "busy_gpus": 1 }] })] {
        let (status, answer) = app.request(
            "POST",
            &format!("/api/v1/providers/{}/utilization", app.providers[0]),
            Some("provider"),
            &[("suanli-signature", "00".repeat(64))],
            Some(body.to_string()),
        );
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_field")), "{answer}");
    }
    // Stored: 16 and 32 of 64 in one hour (the conflicting 33 was not).
    let from = format_timestamp(now - 2 * HOUR).replace("+", "%2B");
    let (status, answer) =
        app.request("GET", &format!("/api/v1/utilization?pool=pol-1&from={from}"), Some("admin"), &[], None);
    assert_eq!(status, 200, "{answer}");
    let loads: Vec<u64> = answer["points"].as_array().unwrap().iter().map(|p| p["load_bp"].as_u64().unwrap()).collect();
    assert_eq!(loads, [2_500, 5_000], "{answer}");
    // Scopes: a provider reads its own site, not another's; enterprises read none.
    for (role, query, expected) in [
        ("provider", "site=sit-1", 200),
        ("provider", "site=sit-2", 404),
        ("other_provider", "pool=pol-1", 404),
        ("authority", "hub=H", 200),
        ("auditor", "site=sit-2", 200),
        ("enterprise", "site=sit-1", 403),
        ("admin", "site=sit-1&pool=pol-1", 400),
        ("admin", "site=sit-1&step=week", 400),
    ] {
        let (status, answer) = app.request("GET", &format!("/api/v1/utilization?{query}"), Some(role), &[], None);
        assert_eq!(status, expected, "{role} {query}: {answer}");
    }
}

fn the_outcome_report_compares_served_and_unserved_sites_by_hand() {
    let app = TestApp::start();
    // A third site, of the second provider, that the programme never served.
    let provider = app.providers[1];
    let pool = app
        .runtime
        .block_on(app.writer.call(move |s| {
            let op = suanli_service::Actor::operator();
            let mut spec = s.state().sites.values().next().unwrap().spec.clone();
            spec.provider = provider;
            spec.name = "unserved".into();
            let site = s.add_site(&op, spec)?;
            s.add_pool(
                &op,
                suanli_service::PoolInput {
                    site,
                    chip: "H100".into(),
                    gpu_count: 64,
                    domestic: false,
                    price_fen_per_gpu_hour: suanli_domain::Fen::new(1_800),
                },
            )
        }))
        .unwrap()
        .unwrap();
    assert_eq!(pool.to_string(), "pol-3");
    // Both orders were placed when the app started: the pivot. Six days before it, every site
    // ran 16 of 64 GPUs (25%). The six days after, the served sites ran 48 (75%, +50 points) and
    // 35.2 (55%, +30), the unserved one 22.5 on average (20 and 25 alternately: 35.16%, +10.16):
    // the effect is (50 + 30) / 2 − 10.16 = 29.84 points.
    let pivot = app.started_s;
    app.clock.set(pivot + HOUR);
    for (provider, pool) in [(0, "pol-1"), (1, "pol-2"), (1, "pol-3")] {
        let before: Vec<_> = (1..=6 * 24).map(|h| (pool, pivot - h * HOUR, 16)).collect();
        let (status, answer) = app.send_samples(provider, provider, &before);
        assert_eq!(status, 200, "{answer}");
    }
    app.clock.advance(6 * DAY);
    let after = |pool: &'static str, busy: fn(i64) -> u32| -> Vec<(&'static str, i64, u32)> {
        (0..6 * 24).map(|h| (pool, pivot + h * HOUR, busy(h))).collect()
    };
    assert_eq!(app.send_samples(0, 0, &after("pol-1", |_| 48)).0, 200);
    assert_eq!(app.send_samples(1, 1, &after("pol-2", |h| if h % 5 == 0 { 36 } else { 35 })).0, 200);
    assert_eq!(app.send_samples(1, 1, &after("pol-3", |h| if h % 2 == 0 { 20 } else { 25 })).0, 200);
    let (status, answer) = app.request("GET", "/api/v1/programs/prg-1/outcome?window_days=6", Some("admin"), &[], None);
    assert_eq!(status, 200, "{answer}");
    let load = &answer["load"];
    assert_eq!(load["pivot"], format_timestamp(pivot), "{load}");
    let sites = load["sites"].as_array().unwrap();
    let site = |id: &str| sites.iter().find(|s| s["site"] == id).unwrap().clone();
    let loads = |id: &str| (site(id)["before_bp"].as_u64(), site(id)["after_bp"].as_u64());
    assert_eq!(loads("sit-1"), (Some(2_500), Some(7_500)));
    // 144 samples, 29 of them 36 and 115 of them 35: 5,069 of 9,216 GPU-samples = 55.00%.
    assert_eq!(loads("sit-2"), (Some(2_500), Some(5_500)));
    assert_eq!(loads("sit-3"), (Some(2_500), Some(3_515)));
    assert_eq!((site("sit-1")["served"].as_bool(), site("sit-3")["served"].as_bool()), (Some(true), Some(false)));
    assert_eq!(site("sit-1")["own_after_bp"], 7_500);
    let did = &load["did"];
    assert!((did["estimate"].as_f64().unwrap() - 29.85).abs() < 1e-9, "{did}");
    assert_eq!((did["treated"].as_u64(), did["control"].as_u64()), (Some(2), Some(1)));
    assert!(did["low"].is_null(), "one unserved site: no interval, {did}");
    // The console's outcome page draws the same comparison (its window is 28 days, which holds
    // the same six days of samples on each side).
    let reviewer = crate::console::session(&app, "reviewer");
    let page = crate::console::call(&app, "GET", "/programs/prg-1/outcome", Some(&reviewer), &[], None);
    assert!(page.body.contains("id=\"outcome-sites\"") && page.body.contains("双重差分"), "{}", page.body);
    assert!(page.body.contains("+29.9") && page.body.contains("75.00%"), "{}", page.body);
    // The network page shows each site's measured load: sit-1's last 30 days are 144 samples at
    // 25% and 144 at 75%, so 50.00%.
    let admin = crate::console::session(&app, "admin");
    let page = crate::console::call(&app, "GET", "/network", Some(&admin), &[], None);
    assert!(page.body.contains("id=\"site-measured-load\"") && page.body.contains("50.00%"), "{}", page.body);
    // A bad window is refused by name.
    let (status, answer) = app.request("GET", "/api/v1/programs/prg-1/outcome?window_days=0", Some("admin"), &[], None);
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("window_days"), "{answer}");
}

fn a_lottery_round_over_http_is_committed_refused_with_another_seed_drawn_and_verified() {
    let app = TestApp::start();
    let source = include_str!("../../../../programs/shanghai-compute.toml")
        .replace("key = \"shanghai-compute\"", "key = \"shanghai-lottery\"")
        .replace("voucher_validity_days", "allocation = \"lottery\"\nvoucher_validity_days");
    let (status, program) =
        app.request("POST", "/api/v1/programs", Some("admin"), &[], Some(json!({ "toml": source }).to_string()));
    assert_eq!(status, 200, "{program}");
    let id = program["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.request("POST", &format!("/api/v1/programs/{id}/open"), Some("admin"), &[], Some("{}".into())).0,
        200
    );
    let (status, application) = app.request(
        "POST",
        "/api/v1/applications",
        Some("admin"),
        &[],
        Some(json!({ "enterprise": "ent-2", "program": id, "amount_fen": 100_000 }).to_string()),
    );
    assert!(status < 300, "{application}");
    let application = application["id"].as_str().unwrap().to_owned();
    let (status, answer) = app.request(
        "POST",
        &format!("/api/v1/applications/{application}/submit"),
        Some("admin"),
        &[],
        Some("{}".into()),
    );
    assert_eq!(status, 200, "{answer}");
    let now = app.clock.now_s();
    let seed = "a seed kept secret until the draw";
    let commit = json!({
        "seed_sha256": suanli_service::lottery::seed_sha256(seed),
        "closes_at": format_timestamp(now + HOUR),
    });
    let path = |what: &str| format!("/api/v1/programs/{id}/lottery{what}");
    let (status, answer) = app.request("POST", &path("/commit"), Some("admin"), &[], Some(commit.to_string()));
    assert_eq!(status, 200, "{answer}");
    app.clock.advance(HOUR);
    let draw =
        |seed: &str| app.request("POST", &path("/draw"), Some("admin"), &[], Some(json!({ "seed": seed }).to_string()));
    let (status, answer) = draw("another seed");
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("lottery_seed_mismatch")), "{answer}");
    let (status, answer) = draw(seed);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["drawn"], json!([application]), "one participant, budget enough: drawn");
    let (status, rounds) = app.request("GET", &path(""), Some("auditor"), &[], None);
    assert_eq!(status, 200, "{rounds}");
    assert_eq!(rounds["rounds"][0]["verified"], true, "{rounds}");
    assert_eq!(rounds["rounds"][0]["seed"], seed);

    // In the console, the authority's admin commits the next round and draws it.
    use crate::console::{call, form_token, session};
    let authority = session(&app, "authority");
    let page = call(&app, "GET", &format!("/programs/{id}"), Some(&authority), &[], None);
    assert!(page.body.contains("id=\"lottery-commit\"") && !page.body.contains("id=\"lottery-draw\""), "{}", page.body);
    let token = form_token(&page.body);
    let hash = suanli_service::lottery::seed_sha256("round two");
    let tomorrow = suanli_service::calendar::format_date(app.clock.now_s() + 86_400);
    let form = format!("form_token={token}&seed_sha256={hash}&closes_on={tomorrow}");
    let committed = call(&app, "POST", &format!("/programs/{id}/lottery/commit"), Some(&authority), &[], Some(&form));
    assert_eq!(committed.status, 303, "{}", committed.body);
    let page = call(&app, "GET", &format!("/programs/{id}"), Some(&authority), &[], None);
    assert!(page.body.contains("id=\"lottery-draw\"") && page.body.contains("已提交种子哈希"), "{}", page.body);
    // Another role cannot draw; a draw before the close is refused with the reason.
    let reviewer = session(&app, "reviewer");
    let reviewer_token = form_token(&call(&app, "GET", "/programs", Some(&reviewer), &[], None).body);
    let refused = call(
        &app,
        "POST",
        &format!("/programs/{id}/lottery/draw"),
        Some(&reviewer),
        &[],
        Some(&format!("form_token={reviewer_token}&seed=round+two")),
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    let early = call(
        &app,
        "POST",
        &format!("/programs/{id}/lottery/draw"),
        Some(&authority),
        &[],
        Some(&format!("form_token={token}&seed=round+two")),
    );
    assert!(early.status >= 400 && early.body.contains("it is drawn after"), "{}", early.body);
    app.clock.advance(2 * 86_400);
    let drawn = call(
        &app,
        "POST",
        &format!("/programs/{id}/lottery/draw"),
        Some(&authority),
        &[],
        Some(&format!("form_token={token}&seed=round+two")),
    );
    assert_eq!(drawn.status, 303, "{}", drawn.body);
    let (_, rounds) = app.request("GET", &path(""), Some("auditor"), &[], None);
    assert_eq!(
        (rounds["rounds"][1]["verified"].as_bool(), rounds["rounds"][1]["seed"].as_str()),
        (Some(true), Some("round two"))
    );
}

/// Telemetry is checked against the platform's own orders: pol-1 carries an order of 8 GPUs
/// running for 48 hours from three hours ago, so a sample of 5 busy is kept as reported and the
/// batch is flagged; a sample of 8 or more is not, nor one from before the order started (the
/// fixture's own order there ended its 10 hours a month ago).
fn a_pool_reported_less_busy_than_its_running_orders_is_flagged() {
    let app = TestApp::start();
    let voucher = app.voucher;
    app.clock.advance(-3 * HOUR);
    app.runtime
        .block_on(app.writer.call(move |s| {
            let enterprise = s.voucher(voucher)?.enterprise;
            let input = suanli_service::OrderInput {
                enterprise,
                voucher,
                pool: suanli_domain::PoolId::new(1).unwrap(),
                chip: None,
                gpu_count: 8,
                hours: 48,
                purpose: suanli_service::model::Purpose::Training,
            };
            let order = s.place_order(&suanli_service::Actor::operator(), input)?;
            s.start_order(&suanli_service::Actor::operator(), order)
        }))
        .unwrap()
        .unwrap();
    app.clock.advance(3 * HOUR);
    let now = app.clock.now_s();
    let (status, answer) = app.send_samples(0, 0, &[("pol-1", now - 4 * HOUR, 0)]);
    assert_eq!((status, statuses(&answer)), (200, vec!["ok".into()]), "before the order started: {answer}");
    let flagged = |app: &TestApp| {
        app.writer.view().state().anomalies.iter().filter(|a| a.kind == "utilization_below_orders").count()
    };
    let (status, answer) = app.send_samples(0, 0, &[("pol-1", now - HOUR, 8), ("pol-1", now - 2 * HOUR, 40)]);
    assert_eq!((status, statuses(&answer)), (200, vec!["ok".into(), "ok".into()]), "{answer}");
    assert_eq!(flagged(&app), 0);
    let (status, answer) = app.send_samples(0, 0, &[("pol-1", now - 30 * 60, 5), ("pol-1", now - 20 * 60, 3)]);
    assert_eq!((status, statuses(&answer)), (200, vec!["ok".into(), "ok".into()]), "{answer}");
    assert_eq!(flagged(&app), 1, "one anomaly for the batch");
    let view = app.writer.view();
    let anomaly = view.state().anomalies.iter().find(|a| a.kind == "utilization_below_orders").unwrap();
    assert!(anomaly.detail.contains("2 samples") && anomaly.detail.contains("hold 8"), "{}", anomaly.detail);
    assert_eq!(anomaly.object, app.providers[0].to_string());
}

suanli_store::conformance!(
    a_pool_reported_less_busy_than_its_running_orders_is_flagged,
    samples_are_signed_idempotent_and_each_refusal_has_its_code,
    the_outcome_report_compares_served_and_unserved_sites_by_hand,
    a_lottery_round_over_http_is_committed_refused_with_another_seed_drawn_and_verified,
);
