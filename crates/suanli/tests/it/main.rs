//! Tests of the `suanli` binary, run as a newcomer would run it.

mod agent_slurm;
mod crash;
mod heads;
mod nats;
mod restart;
mod service;
mod simulate;
mod usage_send;

use std::path::Path;
use std::process::{Command, Output};

pub fn suanli(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_suanli")).args(args).current_dir(dir).output().unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn demo_runs_twice_through_the_api_and_its_database_passes_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let output = suanli(&["demo", "--no-serve", "--listen", "127.0.0.1:0"], dir.path());
        assert!(output.status.success(), "{}{}", stdout(&output), String::from_utf8_lossy(&output.stderr));
        let text = stdout(&output);
        assert!(text.contains("10 providers, 34 pools"), "the national network is registered over HTTP:\n{text}");
        assert!(text.contains("Tiny Start-up (ent-2) → shanghai-compute: rejected, revenue-or-research"), "{text}");
        assert!(text.contains("a replay with another body: usage_record_conflict"), "{text}");
        assert!(text.contains("a forged signature: POST") && text.contains("signature_invalid"), "{text}");
        assert!(text.contains("10 orders, "), "{text}");
        assert!(text.contains("Console: http://") && text.contains("Logins (the console"), "{text}");
        assert!(text.contains("audit passed"), "{text}");
    }
    let output = suanli(&["audit", "verify", "--database", "sqlite://suanli-demo.db"], dir.path());
    assert!(output.status.success());
    assert!(stdout(&output).contains("usage records  1600"), "{}", stdout(&output));
    // The outcome report of the demo's programmes: as JSON it agrees with the programme's books.
    let report = stdout(&suanli(&["report", "--json", "--database", "suanli-demo.db"], dir.path()));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report}"));
    let shanghai = report.as_array().unwrap().iter().find(|r| r["key"] == "shanghai-compute").unwrap();
    assert_eq!(shanghai["usage"]["voucher_fen"], shanghai["spent_fen"], "{shanghai}");
    assert!(shanghai["usage"]["gpu_seconds"].as_i64().unwrap() > 0 && shanghai["vouchers"]["issued"] == 2);
    let csv = stdout(&suanli(&["report", "--csv", "shanghai-compute", "--database", "suanli-demo.db"], dir.path()));
    assert!(csv.starts_with("program,measure,value\n"), "{csv}");
    // Every figure of the JSON document, named by its path; list elements by their key.
    let json: serde_json::Value = serde_json::from_str(&stdout(&suanli(
        &["report", "--json", "shanghai-compute", "--database", "suanli-demo.db"],
        dir.path(),
    )))
    .unwrap();
    let o = &json[0];
    let row = |measure: &str| {
        csv.lines().find_map(|l| l.strip_prefix(&format!("shanghai-compute,{measure},"))).map(str::to_owned)
    };
    assert_eq!(row("funded_fen"), Some(o["funded_fen"].to_string()), "{csv}");
    assert_eq!(row("vouchers.unused"), Some(o["vouchers"]["unused"].to_string()), "{csv}");
    let chip = o["by_chip"][0]["key"].as_str().unwrap();
    assert_eq!(row(&format!("by_chip.{chip}.voucher_fen")), Some(o["by_chip"][0]["voucher_fen"].to_string()), "{csv}");
    assert!(row(&format!("by_chip.{chip}.key")).is_none(), "{csv}");
    // One object's history is every entry that touched it: the voucher's issuance is filed
    // under its application, its orders under themselves.
    let history = stdout(&suanli(&["log", "show", "--object", "vch-1", "--database", "suanli-demo.db"], dir.path()));
    assert!(history.contains("application.approved") && history.contains("order.placed"), "{history}");
}

/// The state hash line of an audit's output.
fn state_hash(text: &str) -> String {
    text.lines().find(|l| l.starts_with("state hash")).unwrap_or_else(|| panic!("no state hash in:\n{text}")).to_owned()
}

#[test]
fn demo_on_postgres_reaches_the_same_state_as_the_embedded_demo_and_never_drops_data() {
    let Some(database) = suanli_store::scratch::ScratchDatabase::from_test_env() else {
        eprintln!("SUANLI_TEST_POSTGRES is unset: skipping the demo on PostgreSQL");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let embedded = suanli(&["demo", "--no-serve", "--listen", "127.0.0.1:0"], dir.path());
    assert!(embedded.status.success(), "{}", String::from_utf8_lossy(&embedded.stderr));
    let on_postgres =
        suanli(&["demo", "--no-serve", "--listen", "127.0.0.1:0", "--database", &database.url], dir.path());
    assert!(on_postgres.status.success(), "{}", String::from_utf8_lossy(&on_postgres.stderr));
    assert!(stdout(&on_postgres).contains("audit passed"), "{}", stdout(&on_postgres));
    assert_eq!(state_hash(&stdout(&on_postgres)), state_hash(&stdout(&embedded)));
    // A second demo on the same PostgreSQL database is refused: its data is never dropped.
    let again = suanli(&["demo", "--no-serve", "--listen", "127.0.0.1:0", "--database", &database.url], dir.path());
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a suanli deployment"));
    let audit = suanli(&["audit", "verify", "--database", &database.url], dir.path());
    assert_eq!(state_hash(&stdout(&audit)), state_hash(&stdout(&embedded)));

    // While a server writes to it: a second server is refused, and the audit still runs.
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &database.url])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.as_mut().unwrap()), &mut first).unwrap();
    assert!(first.starts_with("suanli serving"), "{first}");
    let second = suanli(&["serve", "--listen", "127.0.0.1:0", "--database", &database.url], dir.path());
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another suanli writer holds the database"));
    let audit = suanli(&["audit", "verify", "--database", &database.url], dir.path());
    assert!(audit.status.success(), "{}{}", stdout(&audit), String::from_utf8_lossy(&audit.stderr));
    assert_eq!(state_hash(&stdout(&audit)), state_hash(&stdout(&embedded)));
    // Reading commands read beside it; a change is refused with the reason.
    let programs = suanli(&["program", "list", "--database", &database.url, "--json"], dir.path());
    assert!(programs.status.success(), "{}", String::from_utf8_lossy(&programs.stderr));
    assert!(stdout(&programs).contains("shanghai-compute"));
    let change = suanli(&["token", "issue", "--role", "auditor", "--database", &database.url], dir.path());
    assert_eq!(change.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&change.stderr);
    assert!(stderr.contains("error[database_locked]: another suanli writer holds the database"), "{stderr}");
    std::process::Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(server.wait().unwrap().success());
}

#[test]
fn demo_refuses_to_replace_a_file_that_is_not_a_suanli_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.db"), "my notes").unwrap();
    let output = suanli(&["demo", "--no-serve", "--database", "notes.db"], dir.path());
    assert!(!output.status.success());
    assert_eq!(std::fs::read_to_string(dir.path().join("notes.db")).unwrap(), "my notes");
    // A suanli database the demo did not make is refused too, and keeps what it holds.
    let program = concat!(env!("CARGO_MANIFEST_DIR"), "/../../programs/ningbo.toml");
    assert!(suanli(&["program", "load", program, "--database", "mine.db"], dir.path()).status.success());
    let output = suanli(&["demo", "--no-serve", "--database", "mine.db"], dir.path());
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("the demo did not make"), "{output:?}");
    let listed = suanli(&["program", "list", "--json", "--database", "mine.db"], dir.path());
    assert!(stdout(&listed).contains("ningbo"), "{}", stdout(&listed));
}

/// `suanli program list | head -1`: the reader goes away and the CLI ends quietly with success.
#[test]
fn a_closed_output_pipe_ends_the_cli_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let program = concat!(env!("CARGO_MANIFEST_DIR"), "/../../programs/ningbo.toml");
    assert!(suanli(&["program", "load", program, "--database", "p.db"], dir.path()).status.success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["program", "list", "--database", "p.db"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // closed before anything is written
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn program_show_reads_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let program = concat!(env!("CARGO_MANIFEST_DIR"), "/../../programs/shandong.toml");
    assert!(suanli(&["program", "load", program, "--database", "p.db"], dir.path()).status.success());
    let shown = stdout(&suanli(&["program", "show", "prg-1", "--database", "p.db"], dir.path()));
    assert!(!shown.contains('{') && !shown.contains("Stacking") && !shown.contains("GovernmentRun"), "{shown}");
    assert!(shown.contains("government-run data centres only"), "{shown}");
}

#[test]
fn audit_verify_fails_with_the_violation_on_a_tampered_database() {
    let dir = tempfile::tempdir().unwrap();
    assert!(suanli(&["demo", "--no-serve", "--listen", "127.0.0.1:0"], dir.path()).status.success());
    rusqlite::Connection::open(dir.path().join("suanli-demo.db"))
        .unwrap()
        .execute("UPDATE ledger_accounts SET credits_posted = credits_posted + 100 WHERE code = 30", [])
        .unwrap();
    let output = suanli(&["audit", "verify", "--database", "suanli-demo.db"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains("VIOLATION") && text.contains("holds"), "{text}");
    assert!(text.contains("audit FAILED"), "{text}");
}

#[test]
fn audit_verify_explains_a_missing_database_and_an_unsupported_url() {
    let dir = tempfile::tempdir().unwrap();
    let output = suanli(&["audit", "verify", "--database", "absent.db"], dir.path());
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("absent.db does not exist"));
    assert!(!dir.path().join("absent.db").exists());
    let output = suanli(&["audit", "verify", "--database", "postgres://postgres:secret@127.0.0.1:1/x"], dir.path());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PostgreSQL at postgres://postgres@127.0.0.1:1/x"), "{stderr}");
    assert!(!stderr.contains("secret"), "the password is not printed: {stderr}");
    let output = suanli(&["audit", "verify", "--database", "mysql://localhost/x"], dir.path());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--database"));
}

#[test]
fn bench_ledger_prints_both_figures() {
    let dir = tempfile::tempdir().unwrap();
    let output = suanli(
        &["bench", "ledger", "--records-in-memory", "20000", "--records-sqlite", "4000", "--batch-sizes", "1000"],
        dir.path(),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = stdout(&output);
    assert!(text.contains("ledger_apply_in_memory: ") && text.contains("records/s"), "{text}");
    assert!(text.contains("ledger_apply_sqlite: ") && text.contains("batch 1000, synchronous=FULL"), "{text}");
    let output = suanli(&["bench", "ledger", "--batch-sizes", "9000"], dir.path());
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--batch-sizes: 9000"));
}

#[test]
fn place_answers_a_batch_and_explains_an_order() {
    let dir = tempfile::tempdir().unwrap();
    let batch = r#"{ "version": 1, "egress_fen_per_gb": 30, "unplaced_penalty_fen_per_ref_gpu_hour": 100000,
      "speed": { "llm-train": { "h100": 3.0, "ascend-910b": 0.9 } },
      "sites": [ { "id": "ga", "hub": "guizhou", "lat": 26.50, "lon": 106.45, "operator": "state" } ],
      "pools": [ { "id": "ga/910b", "site": "ga", "chip": "ascend-910b", "domestic": true, "gpus_free": 512, "price_fen_per_gpu_hour": 900 },
                 { "id": "ga/h100", "site": "ga", "chip": "h100", "domestic": false, "gpus_free": 4, "price_fen_per_gpu_hour": 1500 } ],
      "orders": [ { "id": "o1", "class": "llm-train", "gpus": 8, "work_ref_gpu_hours": 64.0, "chips": ["h100", "ascend-910b"],
                    "origin": { "hub": "yrd", "lat": 31.23, "lon": 121.47 }, "data_gb": 500, "deadline_hours": 72.0,
                    "rtt_ms_max": null, "sites_allowed": null },
                  { "id": "o2", "class": "llm-train", "gpus": 1024, "work_ref_gpu_hours": 10.0, "chips": ["h100"],
                    "origin": { "hub": "yrd", "lat": 31.23, "lon": 121.47 }, "data_gb": 0, "deadline_hours": 72.0,
                    "rtt_ms_max": null, "sites_allowed": null } ] }"#;
    std::fs::write(dir.path().join("batch.json"), batch).unwrap();
    let output = suanli(&["place", "--input", "batch.json"], dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["assignments"][0]["cost_fen"], 79_000);
    assert_eq!(answer["unplaced"][0]["order"], "o2");
    assert_eq!(answer["unplaced"][0]["reason"], "no pool with 1024 free GPUs of an accepted chip");
    assert_eq!(answer["objective_fen"], 79_000 + 1_000_000);
    assert_eq!(answer["gap"], 0.0);
    let output = suanli(&["place", "--input", "batch.json", "--explain", "o1"], dir.path());
    let text = stdout(&output);
    assert!(text.contains("order o1 → ga/910b at 79000 fen"), "{text}");
    assert!(text.contains("ga/h100: excluded, the order needs 8 GPUs and the pool has 4 free"), "{text}");
    std::fs::write(dir.path().join("bad.json"), batch.replace("\"gpus\": 8", "\"gpus\": 0")).unwrap();
    let output = suanli(&["place", "--input", "bad.json"], dir.path());
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("orders[0].gpus"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn serve_answers_and_stops_cleanly_on_sigterm() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", "served.db"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.split_whitespace().last().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{first}");
    let mut response = ureq::get(&format!("{url}/healthz")).call().unwrap();
    assert_eq!(response.body_mut().read_to_string().unwrap(), "ok");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    assert!(lines.any(|l| l.unwrap().contains("every accepted batch is committed")));
}

/// One writer per SQLite file: beside a running server, a second `serve` and a CLI change are
/// refused with `database_locked`, while CLI reads still answer; the server is unaffected.
#[test]
fn a_second_server_and_a_cli_change_beside_a_running_sqlite_server_are_refused() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let program = concat!(env!("CARGO_MANIFEST_DIR"), "/../../programs/shanghai-compute.toml");
    let loaded = suanli(&["program", "load", program, "--database", "served.db"], dir.path());
    assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
    let mut child = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", "served.db"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines.next().unwrap().unwrap().split_whitespace().last().unwrap().to_owned();
    let second = suanli(&["serve", "--listen", "127.0.0.1:0", "--database", "served.db"], dir.path());
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another suanli writer holds the database"), "{stderr}");
    let change = suanli(&["program", "open", "shanghai-compute", "--database", "served.db"], dir.path());
    assert_eq!(change.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&change.stderr);
    assert!(stderr.contains("error[database_locked]"), "{stderr}");
    let list = suanli(&["program", "list", "--database", "served.db", "--json"], dir.path());
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    assert!(stdout(&list).contains("\"draft\""), "the change did not happen: {}", stdout(&list));
    let mut response = ureq::get(&format!("{url}/readyz")).call().unwrap();
    assert_eq!(response.body_mut().read_to_string().unwrap(), "ready");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
    // Once the server stopped, the change goes through.
    let change = suanli(&["program", "open", "shanghai-compute", "--database", "served.db"], dir.path());
    assert!(change.status.success(), "{}", String::from_utf8_lossy(&change.stderr));
}

#[test]
fn bench_history_runs_a_server_through_its_milestones() {
    let dir = tempfile::tempdir().unwrap();
    let output = suanli(
        &["bench", "history", "--records", "8000,16000", "--orders", "10", "--load-records", "4000", "--batch", "1000"],
        dir.path(),
    );
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("16000 records: grew at"), "{text}");
    assert!(text.contains("| records | restart to ready |"), "{text}");
}

#[test]
fn bench_ingest_prints_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    let output = suanli(&["bench", "ingest", "--records", "2000", "--clients", "2", "--batch", "250"], dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = stdout(&output);
    assert!(
        text.contains("usage_records_per_s: ") && text.contains("p99") && text.contains("synchronous=FULL"),
        "{text}"
    );
}

#[test]
fn serve_reads_its_configuration_file_and_the_environment_wins() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("suanli.toml"),
        "database = \"from-file.db\"\nlisten = \"127.0.0.1:0\"\nlog_requests = true\n",
    )
    .unwrap();
    let start = |envs: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_suanli"));
        command
            .arg("serve")
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (name, value) in envs {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let url = first.split_whitespace().last().unwrap().to_owned();
        let answer = ureq::get(&format!("{url}/healthz")).header("x-request-id", "probe-42").call().unwrap();
        assert_eq!(answer.headers().get("x-request-id").unwrap(), "probe-42", "the caller's request id comes back");
        let answer = ureq::get(&format!("{url}/readyz")).call().unwrap();
        let made = answer.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();
        assert_eq!(made.len(), 16, "a request without an id is given one: {made}");
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let output = child.wait_with_output().unwrap();
        (first, String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (first, logs) = start(&[]);
    assert!(first.starts_with("suanli serving from-file.db on http://127.0.0.1:"), "{first}");
    let lines: Vec<serde_json::Value> = logs.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // JSON lines through tracing: an RFC 3339 timestamp, a level, the message and its fields, and
    // the request's span (its id, method and route) on what was logged while answering it.
    assert!(
        lines.iter().all(|l| l["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')) && l["level"].is_string()),
        "{logs}"
    );
    assert!(
        lines.iter().any(|l| l["message"] == "serving" && l["database"] == "from-file.db" && l["level"] == "INFO"),
        "{logs}"
    );
    assert!(
        lines.iter().any(|l| l["message"] == "request"
            && l["span"]["route"] == "/healthz"
            && l["span"]["request_id"] == "probe-42"
            && l["status"] == 200),
        "{logs}"
    );
    assert!(lines.iter().any(|l| l["message"] == "stopped"), "{logs}");
    let (first, _) = start(&[("SUANLI_DATABASE", "from-env.db")]);
    assert!(first.starts_with("suanli serving from-env.db"), "{first}");
    std::fs::write(dir.path().join("suanli.toml"), "colour = \"red\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_suanli")).arg("serve").current_dir(dir.path()).output().unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("unknown field: found `colour`") && error.contains("suanli.toml"), "{error}");
    // A variable of the wrong type names its key and where it came from.
    std::fs::write(dir.path().join("suanli.toml"), "queue_jobs_max = 5\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .arg("serve")
        .env("SUANLI_QUEUE_JOBS_MAX", "many")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && error.contains("QUEUE_JOBS_MAX") && error.contains("SUANLI_"), "{error}");
}

/// A database written by the previous release (schema 2, before usage ids and checkpoints were
/// kept apart from the log; made by `tests/fixtures/make-previous-release.sh`) opens with this
/// one: migrated, its usage ids taken from its log, its voucher exactly as that release showed it,
/// every old usage id answered with its first result (or still failed), and the audit passes.
#[test]
fn a_database_written_by_the_previous_release_opens_with_every_balance_and_every_usage_id() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::copy(fixtures.join("previous-release.db"), dir.path().join("previous.db")).unwrap();
    let mut expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("previous-release.voucher.json")).unwrap())
            .unwrap();
    // That release wrote instants as Unix seconds; this one writes them in RFC 3339.
    suanli_api::times::rewrite(&mut expected);
    let now = ["--database", "previous.db", "--now", "2026-03-02T11:00:00+08:00", "--json"];
    let shown = suanli(&[&["voucher", "show", "vch-1"][..], &now].concat(), dir.path());
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown, expected, "the voucher as the previous release showed it");
    let mut csv = String::from("id,order,gpu_seconds,period_start,period_end\n");
    for minute in 0..60 {
        let seconds = if minute == 7 { 481 } else { 480 };
        let (from, to) = (540 + minute, 541 + minute);
        csv.push_str(&format!(
            "c{minute},ord-1,{seconds},2026-03-02T{:02}:{:02}:00+08:00,2026-03-02T{:02}:{:02}:00+08:00\n",
            from / 60,
            from % 60,
            to / 60,
            to % 60
        ));
    }
    std::fs::write(dir.path().join("usage.csv"), csv).unwrap();
    let again = suanli(&[&["usage", "import", "--provider", "prv-1", "usage.csv"][..], &now].concat(), dir.path());
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(summary["recorded"], 0, "{summary}");
    assert_eq!(summary["duplicates"], 59, "{summary}");
    assert_eq!(summary["refused"][0][1], "usage_id_already_failed", "{summary}");
    let audit = suanli(&["audit", "verify", "--database", "previous.db"], dir.path());
    assert!(audit.status.success(), "{}", stdout(&audit));
}

#[test]
fn completions_and_manual_pages_cover_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = suanli(&["completions", shell], dir.path());
        assert!(output.status.success(), "{shell}");
        let script = stdout(&output);
        assert!(script.contains("suanli") && script.contains("statement") && script.contains("key-file"), "{shell}");
    }
    let output = suanli(&["completions", "tcsh"], dir.path());
    assert!(!output.status.success(), "an unknown shell is refused");
    let page = stdout(&suanli(&["man"], dir.path()));
    assert!(page.starts_with(".ie") && page.contains(".SH NAME") && page.contains("serve"), "{page}");
    let output = suanli(&["man", "--out", "pages"], dir.path());
    assert!(output.status.success());
    for name in ["suanli.1", "suanli-serve.1", "suanli-usage-send.1", "suanli-order-place.1"] {
        let page = std::fs::read_to_string(dir.path().join("pages").join(name)).unwrap();
        assert!(page.contains(".SH OPTIONS"), "{name}");
    }
    assert!(!dir.path().join("pages").join("suanli-debug.1").exists(), "hidden commands have no page");
}
