//! The API over real HTTP on port 0: signed usage ingestion, its refusals, scopes, health and
//! metrics, and the authorization matrix.

mod archive;
mod authz;
mod browser;
mod console;
mod edge;
mod lists;
mod market;
mod nats;
mod operate;
mod schedule;
mod trust;
mod utilization;

use std::sync::Arc;

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use suanli_api::{AppState, UsageRecord, Writer};
use suanli_domain::{ApplicantKind, Fen, OrderId, ProviderId, RegionCode, Uscc, VoucherId};
use suanli_service::access::{hex, sha256_hex, usage_signing_bytes};
use suanli_service::calendar::{format_timestamp, shanghai_midnight};
use suanli_service::model::{OperatorKind, Purpose};
use suanli_service::{
    Actor, EnterpriseInput, ManualClock, OrderInput, PoolInput, Role, Service, ServiceError, SiteSpec,
};

const PROGRAM: &str = include_str!("../../../../programs/shanghai-compute.toml");

pub struct TestApp {
    pub base: String,
    pub writer: Writer,
    pub runtime: tokio::runtime::Runtime,
    pub agent: ureq::Agent,
    keys: Vec<SigningKey>,
    pub providers: Vec<ProviderId>,
    pub orders: Vec<OrderId>,
    pub voucher: VoucherId,
    started_s: i64,
    pub tokens: std::collections::HashMap<&'static str, String>,
    _dir: tempfile::TempDir,
    /// The PostgreSQL database of a conformance test's PostgreSQL run.
    _postgres: Option<suanli_store::scratch::ScratchDatabase>,
    /// Makes the server's commits fail on demand.
    faults: suanli_store::FaultSwitch,
    /// The server's clock (2026-04-02 00:00 in Shanghai when the app starts).
    pub clock: ManualClock,
}

pub fn uscc(region: &str, n: u32) -> Uscc {
    Uscc::with_check_characters(&format!("91{region}{n:08}")).unwrap()
}

impl TestApp {
    /// A programme, two enterprises (one with a voucher), two providers each with a key, a pool
    /// and a running order; tokens for each role; the server on 127.0.0.1:0.
    pub fn start() -> TestApp {
        TestApp::start_with(suanli_api::writer::QUEUE_JOBS_MAX)
    }

    pub fn start_with(queue_jobs_max: usize) -> TestApp {
        TestApp::start_with_limits(queue_jobs_max, suanli_api::edge::Limits::default())
    }

    pub fn start_with_limits(queue_jobs_max: usize, limits: suanli_api::edge::Limits) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let start = shanghai_midnight(2026, 3, 2).unwrap() + 9 * 3600;
        let clock = ManualClock::new(start);
        let postgres = suanli_store::scratch::postgres_requested()
            .then(|| suanli_store::scratch::ScratchDatabase::from_test_env().expect("SUANLI_TEST_POSTGRES is set"));
        let database = match &postgres {
            Some(database) => database.url.clone(),
            None => dir.path().join("api.db").display().to_string(),
        };
        let mut s = Service::open_database(&database, Arc::new(clock.clone())).unwrap();
        s.set_head_signer(
            suanli_service::heads::HeadSigner::open(&dir.path().join("signing.key"), &dir.path().join("heads"))
                .unwrap(),
        );
        let op = Actor::operator();
        let program = s.load_program(&op, PROGRAM).unwrap();
        s.open_program(&op, program).unwrap();
        let mut enterprises = Vec::new();
        for n in 1..=2 {
            enterprises.push(
                s.register_enterprise(
                    &op,
                    EnterpriseInput {
                        uscc: uscc("310115", n),
                        name: format!("E{n}"),
                        region: RegionCode::parse("310115").unwrap(),
                        kind: ApplicantKind::Sme,
                        headcount: 10,
                        revenue_fen: Fen::from_yuan(9_000_000).unwrap(),
                        research_projects: vec![],
                        related_parties: vec![],
                    },
                )
                .unwrap(),
            );
        }
        let app = s.create_application(&op, enterprises[0], program, Fen::from_yuan(1_000_000).unwrap(), "").unwrap();
        s.submit_application(&op, app).unwrap();
        let voucher = s.approve_application(&op, app, Fen::from_yuan(1_000_000).unwrap()).unwrap();
        let mut keys = Vec::new();
        let mut providers = Vec::new();
        let mut orders = Vec::new();
        for n in 1..=2u8 {
            let provider =
                s.register_provider(&op, uscc("310000", 900 + u32::from(n)), "P", OperatorKind::Government).unwrap();
            let key = SigningKey::from_bytes(&[n; 32]);
            s.register_provider_key(&op, provider, &hex(key.verifying_key().as_bytes())).unwrap();
            let site = s
                .add_site(
                    &op,
                    SiteSpec {
                        provider,
                        name: "S".into(),
                        hub: "H".into(),
                        region: RegionCode::parse("310000").unwrap(),
                        latitude: 31.0,
                        longitude: 121.0,
                        operator: OperatorKind::Government,
                        power_price_fen_per_kwh: None,
                        pue: None,
                    },
                )
                .unwrap();
            let pool = s
                .add_pool(
                    &op,
                    PoolInput {
                        site,
                        chip: "H100".into(),
                        gpu_count: 64,
                        domestic: false,
                        price_fen_per_gpu_hour: Fen::new(1_800),
                    },
                )
                .unwrap();
            let order = s
                .place_order(
                    &op,
                    OrderInput {
                        enterprise: enterprises[0],
                        voucher,
                        pool,
                        chip: None,
                        gpu_count: 8,
                        hours: 10,
                        purpose: Purpose::Training,
                    },
                )
                .unwrap();
            s.start_order(&op, order).unwrap();
            keys.push(key);
            providers.push(provider);
            orders.push(order);
        }
        // A second authority with its own programme, for foreign-scope checks.
        let other_program = s.load_program(&op, include_str!("../../../../programs/beijing.toml")).unwrap();
        let other_authority = s.program(other_program).unwrap().authority;
        // One usage record in March and its statement, issued in April.
        clock.set(start + 600);
        let fixture = suanli_service::model::UsageInput {
            id: "fixture".into(),
            order: orders[0],
            gpu_seconds: 60,
            period_start_s: start,
            period_end_s: start + 60,
        };
        s.record_usage(&op, providers[0], &[fixture]).unwrap();
        clock.set(shanghai_midnight(2026, 4, 2).unwrap());
        s.issue_statement(&op, providers[0], program, suanli_service::calendar::YearMonth { year: 2026, month: 3 })
            .unwrap();
        let mut tokens = std::collections::HashMap::new();
        let authority = s.program(program).unwrap().authority;
        for (name, role) in [
            ("admin", Role::PlatformAdmin),
            ("auditor", Role::Auditor),
            ("authority", Role::AuthorityAdmin(authority)),
            ("reviewer", Role::AuthorityReviewer(authority)),
            ("other_authority", Role::AuthorityAdmin(other_authority)),
            ("enterprise", Role::Enterprise(enterprises[0])),
            ("other_enterprise", Role::Enterprise(enterprises[1])),
            ("provider", Role::Provider(providers[0])),
            ("other_provider", Role::Provider(providers[1])),
        ] {
            let secret = format!("secret-{name}");
            s.issue_token(&op, role, &sha256_hex(&secret)).unwrap();
            tokens.insert(name, secret);
        }
        let phc = suanli_api::login::hash_password("correct horse").unwrap();
        s.add_user(&op, "lab", Role::Enterprise(enterprises[0]), &phc).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let faults = s.fault_switch();
        let (writer, _thread) = Writer::start_with(s, queue_jobs_max);
        let state = AppState { admission: suanli_api::edge::Admission::new(limits), ..AppState::new(writer.clone()) };
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = suanli_api::router(state);
        runtime.spawn(suanli_api::edge::serve(listener, router, limits, std::future::pending()));
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).max_idle_connections(0).build().into();
        TestApp {
            base,
            writer,
            runtime,
            agent,
            keys,
            providers,
            orders,
            voucher,
            started_s: start,
            tokens,
            _dir: dir,
            _postgres: postgres,
            faults,
            clock,
        }
    }

    /// Sends records as provider 0 and answers the status, the body and the `Retry-After` header.
    fn send_usage_with_retry_after(&self, records: &[UsageRecord]) -> (u16, Value, Option<String>) {
        let inputs: Vec<_> = records.iter().enumerate().map(|(i, r)| r.to_input(i).unwrap()).collect();
        let signature = hex(&self.keys[0].sign(&usage_signing_bytes(self.providers[0], &inputs)).to_bytes());
        let mut response = self
            .agent
            .post(&format!("{}/api/v1/providers/{}/usage", self.base, self.providers[0]))
            .header("content-type", "application/json")
            .header("authorization", &format!("Bearer {}", self.tokens["provider"]))
            .header("suanli-signature", &signature)
            .send(json!({ "records": records }).to_string())
            .unwrap();
        let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), retry)
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, String)],
        body: Option<String>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let response = match method {
            "GET" => {
                let mut request = self.agent.get(&url);
                if let Some(token) = token {
                    request = request.header("authorization", &format!("Bearer {}", self.tokens[token]));
                }
                request.call()
            }
            _ => {
                let mut request = self.agent.post(&url).header("content-type", "application/json");
                if let Some(token) = token {
                    request = request.header("authorization", &format!("Bearer {}", self.tokens[token]));
                }
                for (name, value) in headers {
                    request = request.header(*name, value);
                }
                request.send(body.unwrap_or_default())
            }
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub fn record(&self, id: &str, order: usize, minute: i64, gpu_seconds: i64) -> UsageRecord {
        UsageRecord {
            id: id.into(),
            order: self.orders[order].to_string(),
            gpu_seconds,
            period_start: format_timestamp(self.started_s + minute * 60),
            period_end: format_timestamp(self.started_s + (minute + 1) * 60),
        }
    }

    /// Sends records as provider `sender` (signed with `signer`'s key) for `provider`'s path.
    pub fn send_usage(&self, token: &str, provider: usize, signer: usize, records: &[UsageRecord]) -> (u16, Value) {
        let inputs: Vec<_> = records.iter().enumerate().map(|(i, r)| r.to_input(i).unwrap()).collect();
        let signature =
            hex(&self.keys[signer].sign(&usage_signing_bytes(self.providers[provider], &inputs)).to_bytes());
        let body = json!({ "records": records }).to_string();
        self.request(
            "POST",
            &format!("/api/v1/providers/{}/usage", self.providers[provider]),
            Some(token),
            &[("suanli-signature", signature)],
            Some(body),
        )
    }

    /// Keeps the writer busy until the answer is sent on the returned channel; returns once the
    /// writer is held.
    pub fn hold_writer(&self) -> std::sync::mpsc::Sender<()> {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (held, is_held) = std::sync::mpsc::channel::<()>();
        let busy = self.writer.clone();
        self.runtime.spawn(async move {
            let _ = busy
                .call(move |_| {
                    let _ = held.send(());
                    let _ = wait.recv();
                    Ok::<_, ServiceError>(())
                })
                .await;
        });
        is_held.recv_timeout(std::time::Duration::from_secs(10)).expect("the writer is held");
        release
    }

    fn usage_records(&self, order: usize) -> u32 {
        let id = self.orders[order];
        self.runtime
            .block_on(self.writer.call(move |s| Ok::<_, ServiceError>(s.order(id)?.usage_records)))
            .unwrap()
            .unwrap()
    }
}

fn signed_usage_is_recorded_once_and_refusals_change_nothing() {
    let app = TestApp::start();
    let batch: Vec<_> = (1..21).map(|i| app.record(&format!("r{i}"), 0, i, 8 * 60)).collect();
    let (status, answer) = app.send_usage("provider", 0, 0, &batch);
    assert_eq!(status, 200, "{answer}");
    assert!(answer["results"].as_array().unwrap().iter().all(|r| r["status"] == "ok"), "{answer}");
    assert_eq!(answer["results"][0]["cost_fen"], 8 * 60 * 1800 / 3600);
    // The same batch again: every record answers `exists` with its first result.
    let (_, again) = app.send_usage("provider", 0, 0, &batch);
    assert!(again["results"].as_array().unwrap().iter().all(|r| r["status"] == "exists"), "{again}");
    assert_eq!(app.usage_records(0), 21);

    // A replayed id with a different body.
    let (_, replay) = app.send_usage("provider", 0, 0, &[app.record("r3", 0, 3, 60)]);
    assert_eq!(replay["results"][0]["code"], "usage_record_conflict");
    // Another provider's order, signed properly by the other provider.
    let (_, foreign) = app.send_usage("other_provider", 1, 1, &[app.record("x1", 0, 30, 60)]);
    assert_eq!(foreign["results"][0]["code"], "not_found");
    assert_eq!(app.usage_records(0), 21);

    // A forged signature: signed with the other provider's key.
    let (status, forged) = app.send_usage("provider", 0, 1, &[app.record("f1", 0, 40, 60)]);
    assert_eq!((status, forged["error"]["code"].as_str()), (401, Some("signature_invalid")));
    // Another provider's token on this provider's path.
    let (status, other) = app.send_usage("other_provider", 0, 1, &[app.record("f2", 0, 41, 60)]);
    assert_eq!((status, other["error"]["code"].as_str()), (403, Some("forbidden")));
    // No token at all.
    let (status, _) =
        app.request("POST", &format!("/api/v1/providers/{}/usage", app.providers[0]), None, &[], Some("{}".into()));
    assert_eq!(status, 401);
    assert_eq!(app.usage_records(0), 21, "no refusal recorded anything");

    // The order's usage, listed from storage in the order of the periods, paged.
    let path = format!("/api/v1/orders/{}/usage", app.orders[0]);
    let (status, page) = app.request("GET", &format!("{path}?limit=5"), Some("enterprise"), &[], None);
    assert_eq!(status, 200, "{page}");
    let total = page["total"].as_u64().unwrap();
    assert!(total >= 21, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    let (_, rest) = app.request("GET", &format!("{path}?offset=20&limit=500"), Some("auditor"), &[], None);
    assert_eq!(rest["items"].as_array().unwrap().len() as u64, total - 20, "{rest}");
    let (_, all) = app.request("GET", &format!("{path}?limit=500"), Some("provider"), &[], None);
    let items = all["items"].as_array().unwrap();
    let ok: Vec<_> = items.iter().filter(|r| r["status"] == "ok").collect();
    assert_eq!(ok.len(), 21, "{all}");
    for record in &ok {
        let parts = record["voucher_part_fen"].as_i64().unwrap() + record["enterprise_part_fen"].as_i64().unwrap();
        assert_eq!(record["cost_fen"].as_i64().unwrap(), parts, "{record}");
    }
    let r1 = items.iter().find(|r| r["id"] == "r1").expect("r1 is listed");
    assert_eq!(r1["gpu_seconds"], 8 * 60);
    let starts: Vec<&str> = items.iter().map(|r| r["period_start"].as_str().unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "in the order of their periods: {starts:?}");
    let (status, _) = app.request("GET", &path, Some("other_enterprise"), &[], None);
    assert_eq!(status, 404, "another enterprise is told the order does not exist");
}

fn bad_bodies_get_a_code_that_names_the_problem() {
    let app = TestApp::start();
    let path = format!("/api/v1/providers/{}/usage", app.providers[0]);
    let signature = ("suanli-signature", "00".repeat(64));
    let cases = [
        ("{\"records\": [", 400, "invalid_json"),
        ("{\"records\": [], \"colour\": 1}", 400, "invalid_json"),
        (
            "{\"records\": [{\"id\": 1, \"order\": \"ord-1\", \"gpu_seconds\": 1, \"period_start\": \"x\", \"period_end\": \"y\"}]}",
            400,
            "invalid_json",
        ),
        (
            "{\"records\": [{\"id\": \"a\", \"order\": \"order-1\", \"gpu_seconds\": 1, \"period_start\": \"x\", \"period_end\": \"y\"}]}",
            400,
            "invalid_field",
        ),
        ("{\"records\": []}", 400, "invalid_field"),
    ];
    for (body, status, code) in cases {
        let (got, answer) =
            app.request("POST", &path, Some("provider"), std::slice::from_ref(&signature), Some(body.into()));
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{body}: {answer}");
    }
    let (_, unknown) = app.request(
        "POST",
        &path,
        Some("provider"),
        std::slice::from_ref(&signature),
        Some("{\"records\": [], \"colour\": 1}".into()),
    );
    assert!(unknown["error"]["message"].as_str().unwrap().contains("colour"), "{unknown}");
    let huge = format!("{{\"records\": [\"{}\"]}}", "x".repeat(suanli_api::BODY_BYTES_MAX));
    let (status, answer) = app.request("POST", &path, Some("provider"), &[signature], Some(huge));
    assert_eq!((status, answer["error"]["code"].as_str()), (413, Some("body_too_large")), "{answer}");
    assert_eq!(app.usage_records(0), 1, "only the fixture's record");
}

fn a_voucher_is_visible_only_within_scope() {
    let app = TestApp::start();
    let path = format!("/api/v1/vouchers/{}", app.voucher);
    for (token, expected) in [
        ("admin", 200),
        ("auditor", 200),
        ("authority", 200),
        ("enterprise", 200),
        ("other_enterprise", 404),
        // Providers never see vouchers: the same answer as for a voucher that does not exist.
        ("provider", 404),
    ] {
        let (status, body) = app.request("GET", &path, Some(token), &[], None);
        assert_eq!(status, expected, "{token}: {body}");
        if status == 200 {
            assert_eq!(body["face_value_fen"], 1_000_000_00);
        }
    }
    assert_eq!(app.request("GET", &path, None, &[], None).0, 401);
    let (status, programs) = app.request("GET", "/api/v1/programs", Some("provider"), &[], None);
    assert_eq!((status, programs["items"].as_array().unwrap().len(), programs["total"].as_u64()), (200, 2, Some(2)));
}

fn health_and_metrics_answer() {
    let app = TestApp::start();
    let (status, body) = app.request("GET", "/healthz", None, &[], None);
    assert_eq!((status, body), (200, Value::String("ok".into())));
    let mut batch: Vec<_> = (1..6).map(|i| app.record(&format!("m{i}"), 0, i, 60)).collect();
    // One record more GPU-seconds than its order's GPUs can run in a minute: refused by code.
    batch.push(app.record("m-too-much", 0, 7, 1_000_000));
    app.send_usage("provider", 0, 0, &batch);
    let (_, metrics) = app.request("GET", "/metrics", None, &[], None);
    let text = metrics.as_str().unwrap();
    assert!(text.contains("suanli_usage_records_applied_total 6"), "{text}");
    assert!(
        text.contains("suanli_http_requests_total{route=\"/api/v1/providers/{provider}/usage\",status=\"2xx\"} 1"),
        "{text}"
    );
    assert!(text.contains("suanli_writer_queue_depth 0"), "{text}");
    assert!(text.contains("suanli_usage_refused_total{code=\"usage_exceeds_physics\"} 1"), "{text}");
    // The commit latency and the batch sizes are histograms with buckets.
    assert!(text.contains("suanli_writer_job_seconds_bucket{job=\"usage\",le=\"0.005\"}"), "{text}");
    assert!(text.contains("suanli_writer_batch_records_bucket{le=\"10\"} 1"), "{text}");
    // The business, read from the last commit: budgets left and vouchers by state.
    assert!(text.contains("suanli_program_budget_left_fen{program=\"prg-1\""), "{text}");
    assert!(text.lines().any(|l| l.starts_with("suanli_vouchers{state=\"active\"} ") && !l.ends_with(" 0")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("process_resident_memory_bytes ")), "{text}");
}

fn more_bad_inputs_each_with_its_code_and_no_change() {
    let app = TestApp::start();
    let before =
        app.runtime.block_on(app.writer.call(|s| Ok::<_, ServiceError>(s.durable().log_count()))).unwrap().unwrap();
    let post =
        |path: &str, token: &str, body: Value| app.request("POST", path, Some(token), &[], Some(body.to_string()));
    // A malformed USCC, named by its field.
    let (status, answer) = post(
        "/api/v1/enterprises",
        "admin",
        json!({ "uscc": "91310115MA1FL0012X", "name": "X", "kind": "sme", "headcount": 1, "revenue_fen": 1 }),
    );
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_field")), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("uscc:"), "{answer}");
    // Negative and overflowing amounts.
    let (status, answer) = post(
        "/api/v1/applications",
        "enterprise",
        json!({ "enterprise": "ent-1", "program": "prg-1", "amount_fen": -5 }),
    );
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_field")), "{answer}");
    let (status, answer) = app.request(
        "POST",
        "/api/v1/applications",
        Some("enterprise"),
        &[],
        Some(r#"{"enterprise": "ent-1", "program": "prg-1", "amount_fen": 99999999999999999999}"#.into()),
    );
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_json")), "{answer}");
    // Another enterprise's voucher.
    let (status, answer) = post(
        "/api/v1/orders",
        "other_enterprise",
        json!({ "enterprise": "ent-2", "voucher": app.voucher.to_string(), "gpus": 1, "hours": 1, "purpose": "training" }),
    );
    // The same answer as a voucher that does not exist: no enterprise learns others' vouchers.
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")), "{answer}");
    let (_, missing) = post(
        "/api/v1/orders/quote",
        "other_enterprise",
        json!({ "enterprise": "ent-2", "voucher": "vch-999", "gpus": 1, "hours": 1, "purpose": "training" }),
    );
    let (_, foreign) = post(
        "/api/v1/orders/quote",
        "other_enterprise",
        json!({ "enterprise": "ent-2", "voucher": app.voucher.to_string(), "gpus": 1, "hours": 1, "purpose": "training" }),
    );
    assert_eq!(
        missing["error"]["message"].as_str().map(|m| m.replace("vch-999", "vch-N")),
        foreign["error"]["message"].as_str().map(|m| m.replace(&app.voucher.to_string(), "vch-N")),
    );
    // Work instead of hours, and the data's hub: a hub no site is in is not found, a latency
    // bound outside `origin` is an unknown field, and an unknown class names the field.
    let order = |extra: Value| {
        let mut body = json!({ "enterprise": "ent-1", "voucher": app.voucher.to_string(), "gpus": 1, "hours": 100, "purpose": "training" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        post("/api/v1/orders/quote", "enterprise", body)
    };
    let (status, answer) = order(json!({ "work": { "class": "llm-train", "reference_gpu_hours": 3 } }));
    assert_eq!(status, 200, "{answer}");
    assert!(answer["chosen"]["hours"].as_u64().unwrap() >= 1, "{answer}");
    let (status, answer) = order(json!({ "origin": { "hub": "nowhere", "data_gb": 5 } }));
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")), "{answer}");
    let (status, answer) = order(json!({ "rtt_ms_max": 5 }));
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_json")), "{answer}");
    let (status, answer) = order(json!({ "work": { "class": "weather", "reference_gpu_hours": 3 } }));
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_field")), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("work.class"), "{answer}");
    let after =
        app.runtime.block_on(app.writer.call(|s| Ok::<_, ServiceError>(s.durable().log_count()))).unwrap().unwrap();
    assert_eq!(after, before, "no refusal wrote anything");
}

fn a_full_queue_is_answered_503_with_retry_after_and_loses_nothing() {
    let app = TestApp::start_with(2);
    // Hold the writer busy so the queue fills.
    let release = app.hold_writer();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut answers = Vec::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let app = &app;
                scope.spawn(move || app.send_usage("provider", 0, 0, &[app.record(&format!("q{i}"), 0, 60 + i, 60)]))
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        release.send(()).unwrap();
        for handle in handles {
            answers.push(handle.join().unwrap());
        }
    });
    let refused: Vec<_> = answers.iter().filter(|(status, _)| *status == 503).collect();
    let accepted = answers.iter().filter(|(status, _)| *status == 200).count();
    assert!(!refused.is_empty(), "the short queue must overflow: {answers:?}");
    assert!(refused.iter().all(|(_, body)| body["error"]["code"] == "overloaded"));
    assert_eq!(accepted + refused.len(), 6);
    // What was accepted was applied; what was refused was not.
    assert_eq!(app.usage_records(0) as usize, 1 + accepted);
}

fn people_log_in_with_a_password_and_get_a_token() {
    let app = TestApp::start();
    let login = |name: &str, password: &str| {
        app.request("POST", "/api/v1/login", None, &[], Some(json!({ "name": name, "password": password }).to_string()))
    };
    let (status, answer) = login("lab", "correct horse");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["role"], "enterprise:ent-1");
    let token = answer["token"].as_str().unwrap().to_owned();
    let mut response = app
        .agent
        .get(&format!("{}/api/v1/enterprises/ent-1", app.base))
        .header("authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{}", response.body_mut().read_to_string().unwrap());
    for (name, password) in [("lab", "wrong"), ("nobody", "correct horse")] {
        let (status, answer) = login(name, password);
        assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("unauthenticated")), "{answer}");
    }
    // The dummy hash used for unknown names is a real argon2 hash, so both failures cost the same.
    assert!(argon2::password_hash::PasswordHash::new(suanli_api::login::DUMMY_PHC).is_ok());
}

fn the_openapi_document_and_page_cover_every_route() {
    let app = TestApp::start();
    let (status, document) = app.request("GET", "/api/openapi.json", None, &[], None);
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.0.3");
    for operation in suanli_api::operations::operations() {
        let (method, path) = (operation.method.as_str(), operation.path);
        let documented = &document["paths"][path][method.to_lowercase()];
        assert!(documented.is_object(), "{method} {path} is missing from the document");
        assert_eq!(documented["operationId"], operation.id);
        if !operation.is_public() {
            assert_eq!(documented["security"][0]["bearer"], json!([]));
        }
    }
    assert!(document["paths"]["/api/v1/login"]["post"]["security"].is_null());
    let (status, page) = app.request("GET", "/api/docs", None, &[], None);
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("/api/v1/providers/{provider}/usage"));
}

/// Storage refuses commits (unreachable, then full): every write answers 503 with its code and
/// `Retry-After`, nothing changes, reads go on, `/readyz` says so; when storage returns the writer
/// finds it by itself and the same request goes in.
fn a_refused_commit_changes_nothing_and_answers_503_until_storage_returns() {
    use suanli_store::Fault;
    let app = TestApp::start();
    let records_before = app.usage_records(0);
    let voucher_path = format!("/api/v1/vouchers/{}", app.voucher);
    let (_, voucher_before) = app.request("GET", &voucher_path, Some("admin"), &[], None);
    let (_, log_before) = app.request("GET", "/api/v1/audit/log?limit=1", Some("auditor"), &[], None);
    let batch = vec![app.record("during-fault", 0, 30, 60)];
    for (fault, code) in [(Fault::Unavailable, "storage_unavailable"), (Fault::Full, "storage_full")] {
        app.faults.set(Some(fault));
        let (status, answer, retry_after) = app.send_usage_with_retry_after(&batch);
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert!(retry_after.is_some_and(|s| s.parse::<u32>().unwrap() > 0), "Retry-After is set");
        // A second write while storage is in doubt is refused the same way, not half-applied.
        let (status, answer, _) = app.send_usage_with_retry_after(&batch);
        assert_eq!(status, 503, "{answer}");
        let (status, ready) = app.request("GET", "/readyz", None, &[], None);
        assert_eq!(status, 503, "{ready}");
        assert_eq!(ready["error"]["code"], "storage_unavailable");
        let (status, _) = app.request("GET", "/healthz", None, &[], None);
        assert_eq!(status, 200, "the process lives");
        // Reads go on and show nothing that was not stored.
        assert_eq!(app.usage_records(0), records_before);
        assert_eq!(app.request("GET", &voucher_path, Some("admin"), &[], None).1, voucher_before);
        assert_eq!(app.request("GET", "/api/v1/audit/log?limit=1", Some("auditor"), &[], None).1, log_before);
        app.faults.set(None);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while app.request("GET", "/readyz", None, &[], None).0 != 200 {
            assert!(std::time::Instant::now() < deadline, "the writer finds storage again by itself");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let (status, answer, _) = app.send_usage_with_retry_after(&batch);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["status"], "ok", "the id was not burned by the refused commits");
    assert_eq!(app.usage_records(0), records_before + 1);
}

/// The audit log is paged from storage, and each entry carries what an auditor needs to check
/// the chain: body, previous hash and hash, each linking to the one before.
fn the_audit_log_pages_from_storage_with_its_hashes() {
    let app = TestApp::start();
    let (status, first) = app.request("GET", "/api/v1/audit/log?limit=3", Some("auditor"), &[], None);
    assert_eq!(status, 200, "{first}");
    let total = first["total"].as_u64().unwrap();
    assert!(total > 6);
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["sequence"], 1);
    assert_eq!(items[0]["previous_hash"], "0".repeat(64));
    assert_eq!(items[1]["previous_hash"], items[0]["hash"]);
    assert!(items[0]["body"].is_object(), "{}", items[0]);
    let (_, next) = app.request("GET", "/api/v1/audit/log?limit=3&offset=3", Some("auditor"), &[], None);
    assert_eq!(next["items"][0]["sequence"], 4);
    assert_eq!(next["items"][0]["previous_hash"], items[2]["hash"]);
    let (_, last) = app.request("GET", &format!("/api/v1/audit/log?offset={}", total - 1), Some("auditor"), &[], None);
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert_eq!(last["items"][0]["sequence"], total);
    let (status, _) = app.request("GET", "/api/v1/audit/log", Some("enterprise"), &[], None);
    assert_eq!(status, 403);
}

suanli_store::conformance!(
    a_refused_commit_changes_nothing_and_answers_503_until_storage_returns,
    the_audit_log_pages_from_storage_with_its_hashes,
    signed_usage_is_recorded_once_and_refusals_change_nothing,
    bad_bodies_get_a_code_that_names_the_problem,
    a_voucher_is_visible_only_within_scope,
    health_and_metrics_answer,
    more_bad_inputs_each_with_its_code_and_no_change,
    a_full_queue_is_answered_503_with_retry_after_and_loses_nothing,
    people_log_in_with_a_password_and_get_a_token,
    the_openapi_document_and_page_cover_every_route,
);
