//! SIGKILL the server during ingestion, restart it, resend everything: every record is applied
//! exactly once and the audit passes.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use ed25519_dalek::{Signer, SigningKey};
use suanli_domain::{ApplicantKind, Fen, RegionCode, Uscc};
use suanli_domain::{OrderId, ProviderId};
use suanli_service::access::{hex, sha256_hex, usage_signing_bytes};
use suanli_service::calendar::{format_timestamp, shanghai_midnight};
use suanli_service::model::{OperatorKind, Purpose, UsageInput};
use suanli_service::{Actor, EnterpriseInput, ManualClock, OrderInput, PoolInput, Role, Service, SiteSpec};

const BATCHES: usize = 40;
const PER_BATCH: usize = 100;

/// Starts `suanli serve` on a free port and returns it with its base URL (its stdout stays open
/// while the child lives).
pub fn start_server(dir: &Path, now: &str, extra: &[&str]) -> (Child, String) {
    start_server_on(dir, "restart.db", now, extra)
}

/// Like [`start_server`] on the database `database` names.
pub fn start_server_on(dir: &Path, database: &str, now: &str, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", database, "--now", now])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    if first.trim().is_empty() {
        // Its error went to the test's stderr, above this panic.
        panic!("the server exited before it served: {}", child.wait().unwrap());
    }
    let url = first.split_whitespace().last().unwrap().to_owned();
    // Keep draining the server's output so it never writes into a closed pipe.
    std::thread::spawn(move || for _ in reader.lines() {});
    (child, url)
}

/// The world in `dir/restart.db`: the Shanghai programme, an enterprise with a voucher, a
/// provider signing with `key` (token `restart-secret`) and its running order of 8 GPUs for 100
/// hours from 2 March 2026. Answers the provider, the order and the order's start.
pub fn world(dir: &Path, key: &SigningKey) -> (ProviderId, OrderId, i64) {
    world_in(&dir.join("restart.db").display().to_string(), key)
}

/// Like [`world`] in the database `database` names.
pub fn world_in(database: &str, key: &SigningKey) -> (ProviderId, OrderId, i64) {
    world_with(database, key, true)
}

/// Like [`world_in`], the order left placed (not started) when `started` is false.
pub fn world_with(database: &str, key: &SigningKey, started: bool) -> (ProviderId, OrderId, i64) {
    let start = shanghai_midnight(2026, 3, 2).unwrap();
    {
        let clock = ManualClock::new(start);
        let mut s = Service::open_database(database, Arc::new(clock)).unwrap();
        let op = Actor::operator();
        let program = s.load_program(&op, include_str!("../../../../programs/shanghai-compute.toml")).unwrap();
        s.open_program(&op, program).unwrap();
        let enterprise = s
            .register_enterprise(
                &op,
                EnterpriseInput {
                    uscc: Uscc::with_check_characters("9131011500000001").unwrap(),
                    name: "E".into(),
                    region: RegionCode::parse("310115").unwrap(),
                    kind: ApplicantKind::Sme,
                    headcount: 10,
                    revenue_fen: Fen::from_yuan(9_000_000).unwrap(),
                    research_projects: vec![],
                    related_parties: vec![],
                },
            )
            .unwrap();
        let app = s.create_application(&op, enterprise, program, Fen::from_yuan(1_000_000).unwrap(), "").unwrap();
        s.submit_application(&op, app).unwrap();
        let voucher = s.approve_application(&op, app, Fen::from_yuan(1_000_000).unwrap()).unwrap();
        let provider = s
            .register_provider(
                &op,
                Uscc::with_check_characters("9131000000000901").unwrap(),
                "P",
                OperatorKind::Government,
            )
            .unwrap();
        s.register_provider_key(&op, provider, &hex(key.verifying_key().as_bytes())).unwrap();
        s.issue_token(&op, Role::Provider(provider), &sha256_hex("restart-secret")).unwrap();
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
                    gpu_count: 8,
                    domestic: false,
                    price_fen_per_gpu_hour: Fen::new(1_800),
                },
            )
            .unwrap();
        let order = s
            .place_order(
                &op,
                OrderInput {
                    enterprise,
                    voucher,
                    pool,
                    chip: None,
                    gpu_count: 8,
                    hours: 100,
                    purpose: Purpose::Training,
                },
            )
            .unwrap();
        if started {
            s.start_order(&op, order).unwrap();
        }
        (provider, order, start)
    }
}

/// A signed batch of `count` one-minute records of the order from minute `first` (ids `u<minute>`,
/// 8 GPU-minutes each): its JSON body and its signature.
pub fn signed_batch(
    key: &SigningKey,
    provider: ProviderId,
    order: OrderId,
    start: i64,
    first: i64,
    count: i64,
) -> (String, String) {
    let records: Vec<UsageInput> = (first..first + count)
        .map(|minute| UsageInput {
            id: format!("u{minute}"),
            order,
            gpu_seconds: 8 * 60,
            period_start_s: start + minute * 60,
            period_end_s: start + (minute + 1) * 60,
        })
        .collect();
    let signature = hex(&key.sign(&usage_signing_bytes(provider, &records)).to_bytes());
    let json: Vec<_> = records
        .iter()
        .map(|r| {
            serde_json::json!({ "id": r.id, "order": r.order.to_string(), "gpu_seconds": r.gpu_seconds,
                "period_start": format_timestamp(r.period_start_s), "period_end": format_timestamp(r.period_end_s) })
        })
        .collect();
    (serde_json::json!({ "records": json }).to_string(), signature)
}

#[test]
fn sigkill_during_ingestion_then_resend_applies_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let (provider, order, start) = world(dir.path(), &key);
    // Every batch, signed, built once and sent the same way both times.
    let batches: Vec<(String, String)> = (0..BATCHES)
        .map(|b| signed_batch(&key, provider, order, start, (b * PER_BATCH) as i64, PER_BATCH as i64))
        .collect();
    let now = format_timestamp(start + 30 * 86_400);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let send = |url: &str, (body, signature): &(String, String)| -> Result<(usize, usize), ureq::Error> {
        let mut response = agent
            .post(&format!("{url}/api/v1/providers/{provider}/usage"))
            .header("authorization", "Bearer restart-secret")
            .header("content-type", "application/json")
            .header("suanli-signature", signature)
            .send(body.clone())?;
        let text = response.body_mut().read_to_string()?;
        assert_eq!(response.status().as_u16(), 200, "{text}");
        Ok((text.matches("\"status\":\"ok\"").count(), text.matches("\"status\":\"exists\"").count()))
    };

    // First run: two clients stream batches while the server is SIGKILLed mid-stream, after the
    // first acknowledgements; requests in flight at that moment get no answer.
    let (mut server, url) = start_server(dir.path(), &now, &[]);
    let acknowledged = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for half in [0, 1] {
            let (url, send, acknowledged, batches) = (&url, &send, &acknowledged, &batches);
            scope.spawn(move || {
                for batch in batches.iter().skip(half).step_by(2) {
                    match send(url, batch) {
                        Ok((ok, _)) => {
                            acknowledged.fetch_add(ok, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(_) => return, // the server is gone
                    }
                }
            });
        }
        while acknowledged.load(std::sync::atomic::Ordering::SeqCst) < 8 * PER_BATCH {
            std::thread::yield_now();
        }
        server.kill().unwrap();
    });
    server.wait().unwrap();
    let applied_first = acknowledged.into_inner();
    assert!((8 * PER_BATCH..BATCHES * PER_BATCH).contains(&applied_first), "{applied_first}");

    // Second run: resend everything. What was committed answers `exists` (the acknowledged records,
    // and any that were committed as the server died); the rest is applied now.
    let (mut server, url) = start_server(dir.path(), &now, &[]);
    let (mut ok, mut exists) = (0, 0);
    for batch in &batches {
        let (o, e) = send(&url, batch).unwrap();
        ok += o;
        exists += e;
    }
    assert!(exists >= applied_first, "every acknowledged record is there: {exists} < {applied_first}");
    assert_eq!(ok + exists, BATCHES * PER_BATCH);
    Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(server.wait().unwrap().success());

    let show = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["order", "show", &order.to_string(), "--database", "restart.db", "--json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["usage_records"], BATCHES * PER_BATCH);
    let audit = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["audit", "verify", "--database", "restart.db"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(audit.status.success(), "{}", String::from_utf8_lossy(&audit.stdout));
}

/// What a service opened on `database` holds: the log's length, the ledger's state hash and the
/// state in checkpoint form.
fn fingerprint(database: &str) -> (u64, String, String) {
    let service = Service::open_database(database, Arc::new(suanli_service::SystemClock)).unwrap();
    assert_eq!(service.check_books(), Vec::<String>::new());
    (
        service.durable().log_count(),
        suanli_ledger::to_hex(&suanli_ledger::state_hash(service.durable().ledger())),
        service.state().to_checkpoint(),
    )
}

/// Where the checkpoint crash test runs: a SQLite file in the test's directory, or a PostgreSQL
/// scratch database.
enum Backend {
    Sqlite,
    Postgres(suanli_store::scratch::ScratchDatabase),
}

impl Backend {
    fn database(&self, dir: &Path) -> String {
        match self {
            Backend::Sqlite => dir.join("restart.db").display().to_string(),
            Backend::Postgres(database) => database.url.clone(),
        }
    }

    /// A copy of the crash image with its checkpoints deleted (a start from the first entry);
    /// answers its location and, for PostgreSQL, the copy's name to drop.
    fn replayed_copy(&self, dir: &Path, round: usize) -> (String, Option<String>) {
        match self {
            Backend::Sqlite => {
                let replayed = dir.join(format!("replayed-{round}.db"));
                std::fs::copy(dir.join("restart.db"), &replayed).unwrap();
                if dir.join("restart.db-wal").exists() {
                    std::fs::copy(dir.join("restart.db-wal"), dir.join(format!("replayed-{round}.db-wal"))).unwrap();
                }
                rusqlite::Connection::open(&replayed).unwrap().execute("DELETE FROM checkpoints", []).unwrap();
                (replayed.display().to_string(), None)
            }
            Backend::Postgres(database) => {
                let name = format!("{}_replayed_{round}", database.name());
                let mut admin = postgres::Client::connect(database.admin_url(), postgres::NoTls).unwrap();
                admin.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {}", database.name())).unwrap();
                let url = format!("{}/{name}", database.url.rsplit_once('/').unwrap().0);
                postgres::Client::connect(&url, postgres::NoTls)
                    .unwrap()
                    .batch_execute("DELETE FROM checkpoints")
                    .unwrap();
                (url, Some(name))
            }
        }
    }

    fn drop_copy(&self, name: Option<String>) {
        if let (Backend::Postgres(database), Some(name)) = (self, name) {
            let mut admin = postgres::Client::connect(database.admin_url(), postgres::NoTls).unwrap();
            admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
        }
    }
}

#[test]
fn sigkill_while_checkpointing_then_a_start_from_the_checkpoint_equals_a_replay_from_the_start() {
    checkpoint_crash(Backend::Sqlite);
}

#[test]
fn sigkill_while_checkpointing_on_postgresql_then_a_start_from_the_checkpoint_equals_a_replay() {
    match suanli_store::scratch::ScratchDatabase::from_test_env() {
        Some(database) => checkpoint_crash(Backend::Postgres(database)),
        None => eprintln!("SUANLI_TEST_POSTGRES is unset: the PostgreSQL crash test is skipped"),
    }
}

fn checkpoint_crash(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database = backend.database(dir.path());
    let key = SigningKey::from_bytes(&[9; 32]);
    let (provider, order, start) = world_in(&database, &key);
    let batches: Vec<(String, String)> = (0..BATCHES)
        .map(|b| signed_batch(&key, provider, order, start, (b * PER_BATCH) as i64, PER_BATCH as i64))
        .collect();
    let now = format_timestamp(start + 30 * 86_400);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let send = |url: &str, (body, signature): &(String, String)| -> Result<String, ureq::Error> {
        let mut response = agent
            .post(&format!("{url}/api/v1/providers/{provider}/usage"))
            .header("authorization", "Bearer restart-secret")
            .header("content-type", "application/json")
            .header("suanli-signature", signature)
            .send(body.clone())?;
        response.body_mut().read_to_string()
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64; // fixed, so a failure reproduces
    let mut acknowledged_ids = std::collections::BTreeSet::new();
    for round in 0..4 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // A checkpoint every 120 entries: most kills land near or inside one.
        let (mut server, url) = start_server_on(dir.path(), &database, &now, &["--checkpoint-entries", "120"]);
        let killed_after = std::time::Duration::from_millis(5 + seed % 60);
        // Each round streams its own quarter of the batches (and the ones before, answered
        // `exists`), so every kill lands in the middle of new work.
        let upto = (round + 1) * BATCHES / 4;
        std::thread::scope(|scope| {
            let sender = scope.spawn(|| {
                let mut acknowledged = Vec::new();
                for batch in &batches[..upto] {
                    match send(&url, batch) {
                        Ok(text) => {
                            let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
                            for result in answer["results"].as_array().unwrap() {
                                if result["status"] == "ok" || result["status"] == "exists" {
                                    acknowledged.push(result["id"].as_str().unwrap().to_owned());
                                }
                            }
                        }
                        Err(_) => break, // the server is gone
                    }
                }
                acknowledged
            });
            std::thread::sleep(killed_after);
            server.kill().unwrap();
            acknowledged_ids.extend(sender.join().unwrap());
        });
        server.wait().unwrap();
        // The crash image without its checkpoints starts from the first entry; the original
        // starts from its latest checkpoint. Both must agree.
        let (replayed, copy) = backend.replayed_copy(dir.path(), round);
        let from_checkpoint = fingerprint(&database);
        assert_eq!(from_checkpoint, fingerprint(&replayed), "round {round}: the same state either way");
        backend.drop_copy(copy);
        eprintln!("round {round}: killed after {killed_after:?}, {} entries", from_checkpoint.0);
    }
    // Every acknowledged record is there once: resending everything applies only the rest.
    let (mut server, url) = start_server_on(dir.path(), &database, &now, &[]);
    let mut stored = 0;
    for batch in &batches {
        let answer: serde_json::Value = serde_json::from_str(&send(&url, batch).unwrap()).unwrap();
        for result in answer["results"].as_array().unwrap() {
            assert!(result["status"] == "ok" || result["status"] == "exists", "{result}");
            if result["status"] == "exists" {
                stored += 1;
            } else {
                assert!(
                    !acknowledged_ids.contains(result["id"].as_str().unwrap()),
                    "acknowledged, then lost: {result}"
                );
            }
        }
    }
    assert!(stored >= acknowledged_ids.len());
    Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(server.wait().unwrap().success());
    let show = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["order", "show", &order.to_string(), "--database", &database, "--json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["usage_records"], BATCHES * PER_BATCH);
    let audit = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["audit", "verify", "--database", &database])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.status.success(), "{report}");
    assert!(report.contains("each equal to the log replayed up to it"), "{report}");
}

/// PostgreSQL: the server's own backends are terminated in the middle of ingestion. No read ever
/// reports a record that storage does not hold; writes are refused 503 `storage_unavailable` with
/// `Retry-After` until the server has connected again (and taken its lock again), then go on;
/// nothing acknowledged is lost and the audit passes.
#[test]
fn terminating_the_servers_postgresql_backend_loses_nothing_and_reads_never_run_ahead() {
    let Some(database) = suanli_store::scratch::ScratchDatabase::from_test_env() else {
        eprintln!("SUANLI_TEST_POSTGRES is unset: the PostgreSQL fault test is skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let (provider, order, start) = world_in(&database.url, &key);
    let batches: Vec<(String, String)> = (0..BATCHES)
        .map(|b| signed_batch(&key, provider, order, start, (b * PER_BATCH) as i64, PER_BATCH as i64))
        .collect();
    let now = format_timestamp(start + 30 * 86_400);
    let (mut server, url) = start_server_on(dir.path(), &database.url, &now, &[]);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut admin = postgres::Client::connect(database.admin_url(), postgres::NoTls).unwrap();
    // What storage holds, read on a connection of the test's own (made again if terminated).
    let stored = |client: &mut postgres::Client| -> i64 {
        loop {
            match client.query_one("SELECT count(*) FROM usage_ids", &[]) {
                Ok(row) => return row.get(0),
                Err(_) => *client = postgres::Client::connect(&database.url, postgres::NoTls).unwrap(),
            }
        }
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let (acknowledged, refused) = std::thread::scope(|scope| {
        let reads = scope.spawn(|| {
            // Reads beside the writer, each compared with what storage holds right after it:
            // storage only grows, so a read above it reported a record that was never stored.
            let mut counter = postgres::Client::connect(&database.url, postgres::NoTls).unwrap();
            let mut checked = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let mut response = agent
                    .get(&format!("{url}/api/v1/orders/{order}"))
                    .header("authorization", "Bearer restart-secret")
                    .call()
                    .unwrap();
                let shown: serde_json::Value =
                    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
                let reported = shown["usage_records"].as_i64().unwrap();
                let held = stored(&mut counter);
                assert!(reported <= held, "a read reported {reported} records, storage holds {held}");
                checked += 1;
            }
            checked
        });
        let writes = scope.spawn(|| {
            let (mut acknowledged, mut refused) = (0, 0);
            for (index, (body, signature)) in batches.iter().enumerate() {
                loop {
                    let mut response = agent
                        .post(&format!("{url}/api/v1/providers/{provider}/usage"))
                        .header("authorization", "Bearer restart-secret")
                        .header("content-type", "application/json")
                        .header("suanli-signature", signature)
                        .send(body.clone())
                        .unwrap();
                    let status = response.status().as_u16();
                    let retry_after = response.headers().get("retry-after").is_some();
                    let text = response.body_mut().read_to_string().unwrap();
                    if status == 200 {
                        acknowledged +=
                            text.matches("\"status\":\"ok\"").count() + text.matches("\"status\":\"exists\"").count();
                        break;
                    }
                    assert_eq!(status, 503, "{text}");
                    assert!(retry_after, "503 comes with Retry-After");
                    assert!(text.contains("storage_unavailable"), "{text}");
                    refused += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                if index == 10 {
                    // Every backend of this database except the test's own: the server's writer
                    // and its log reader lose their connections mid-stream.
                    let terminated = admin
                        .query(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                             WHERE datname = $1 AND pid <> pg_backend_pid()",
                            &[&database.name()],
                        )
                        .unwrap();
                    assert!(terminated.len() >= 2, "the counter and the server were connected");
                }
            }
            (acknowledged, refused)
        });
        let result = writes.join().unwrap();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(reads.join().unwrap() > 0);
        result
    });
    assert_eq!(acknowledged, BATCHES * PER_BATCH, "every batch was answered 200 in the end");
    eprintln!("{refused} writes were refused while the server reconnected");
    let mut ready = agent.get(&format!("{url}/readyz")).call().unwrap();
    assert_eq!(ready.status().as_u16(), 200, "{}", ready.body_mut().read_to_string().unwrap());
    // The writer holds its lock again: a second server on the same database is refused.
    let second = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &database.url])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&second.stderr).contains("another suanli writer holds the database"));
    Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(server.wait().unwrap().success());
    let mut counter = postgres::Client::connect(&database.url, postgres::NoTls).unwrap();
    assert_eq!(stored(&mut counter), (BATCHES * PER_BATCH) as i64, "every record once");
    let audit = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["audit", "verify", "--database", &database.url])
        .output()
        .unwrap();
    assert!(audit.status.success(), "{}", String::from_utf8_lossy(&audit.stdout));
}
