//! The service commands, run as a user would run them: every step of a programme from the CLI,
//! with `--json` read back by the test.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use suanli_domain::Uscc;

/// Runs `suanli` in `dir` against `suanli.db` at the simulated time `now`.
fn at(dir: &Path, now: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(args)
        .current_dir(dir)
        .env("SUANLI_DATABASE", "suanli.db")
        .env("SUANLI_NOW", now)
        .output()
        .unwrap()
}

/// Runs a command that must succeed with `--json` and returns its document.
fn json(dir: &Path, now: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let output = at(dir, now, &all);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{args:?}: {text}{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// Runs a command that must fail with `code` and returns its message.
fn refused(dir: &Path, now: &str, args: &[&str], code: &str) -> String {
    let mut all = args.to_vec();
    all.push("--json");
    let output = at(dir, now, &all);
    assert_eq!(output.status.code(), Some(2), "{args:?} must fail");
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(document["error"]["code"], code, "{args:?}: {document}");
    document["error"]["message"].as_str().unwrap().to_owned()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap()
}

const MARCH: &str = "2026-03-02T09:00:00+08:00";

#[test]
fn a_programme_runs_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let programs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../programs");
    let files: Vec<String> =
        std::fs::read_dir(&programs).unwrap().map(|e| e.unwrap().path().display().to_string()).collect();
    let mut load = vec!["program", "load"];
    load.extend(files.iter().map(String::as_str));
    assert_eq!(json(d, MARCH, &load).as_array().unwrap().len(), 8);
    assert_eq!(json(d, MARCH, &["program", "list"]).as_array().unwrap().len(), 8);
    json(d, MARCH, &["program", "open", "shanghai-compute"]);
    refused(d, MARCH, &["program", "open", "shanghai-compute"], "program_state");

    let uscc = Uscc::with_check_characters("91310115MA1FL001").unwrap().to_string();
    let enterprise = json(
        d,
        MARCH,
        &[
            "enterprise",
            "register",
            "--uscc",
            &uscc,
            "--name",
            "Pudong Model Lab",
            "--kind",
            "sme",
            "--headcount",
            "80",
            "--revenue",
            "12000000",
        ],
    );
    let enterprise = text(&enterprise["id"]).to_owned();
    let message = refused(
        d,
        MARCH,
        &[
            "enterprise",
            "register",
            "--uscc",
            "91310115MA1FL0012X",
            "--name",
            "X",
            "--kind",
            "sme",
            "--headcount",
            "1",
            "--revenue",
            "1",
        ],
        "invalid_input",
    );
    assert!(message.starts_with("--uscc:"), "{message}");

    let application = json(
        d,
        MARCH,
        &[
            "application",
            "create",
            "--enterprise",
            &enterprise,
            "--program",
            "shanghai-compute",
            "--amount",
            "2000000.00",
        ],
    );
    let application = text(&application["id"]).to_owned();
    let submitted = json(d, MARCH, &["application", "submit", &application]);
    assert!(submitted["eligibility"].as_array().unwrap().iter().all(|v| v["passed"] == true), "{submitted}");
    refused(d, MARCH, &["application", "approve", &application, "--amount", "2000000.01"], "amount_above_request");
    refused(d, MARCH, &["application", "approve", &application, "--amount", "1", "--rate-bp", "9000"], "invalid_field");
    let voucher = json(d, MARCH, &["application", "approve", &application, "--amount", "2000000"]);
    let voucher = text(&voucher["id"]).to_owned();
    refused(d, MARCH, &["application", "approve", &application, "--amount", "1"], "application_state");

    let provider_uscc = Uscc::with_check_characters("91310000MA1GW001").unwrap().to_string();
    let provider = json(
        d,
        MARCH,
        &["provider", "register", "--uscc", &provider_uscc, "--name", "Lingang", "--operator", "government"],
    );
    let provider = text(&provider["id"]).to_owned();
    let site = json(
        d,
        MARCH,
        &[
            "provider",
            "add-site",
            "--provider",
            &provider,
            "--name",
            "Lingang",
            "--hub",
            "Yangtze River Delta",
            "--region",
            "310000",
            "--latitude",
            "30.9",
            "--longitude",
            "121.9",
        ],
    );
    let pool = json(
        d,
        MARCH,
        &["provider", "add-pool", "--site", text(&site["id"]), "--chip", "H100", "--gpus", "64", "--price", "18.00"],
    );
    let pool = text(&pool["id"]).to_owned();

    let order_args = [
        "--enterprise",
        enterprise.as_str(),
        "--voucher",
        &voucher,
        "--pool",
        &pool,
        "--gpus",
        "8",
        "--hours",
        "10",
        "--purpose",
        "training",
    ];
    let quote = json(d, MARCH, &[&["order", "quote"][..], &order_args].concat());
    assert_eq!(quote["list_cost_fen"], 8 * 10 * 1800);
    assert_eq!(quote["voucher_share_fen"], 8 * 10 * 1800 * 8 / 10);
    refused(d, MARCH, &[&["order", "place"][..], &order_args, &["--chip", "A100"]].concat(), "chip_not_in_pool");
    // Without --pool the placement engine chooses, and says why the others were left out.
    let unpinned = &order_args[..4].iter().chain(&order_args[6..]).copied().collect::<Vec<_>>();
    let choice = json(d, MARCH, &[&["order", "quote"][..], unpinned].concat());
    assert_eq!(choice["chosen"]["pool"], pool.as_str());
    assert_eq!(choice["chosen"]["list_cost_fen"], 8 * 10 * 1800);
    let order = json(d, MARCH, &[&["order", "place"][..], &order_args].concat());
    let order = text(&order["id"]).to_owned();
    json(d, MARCH, &["order", "start", &order]);

    // The scheduling loop: a request waits, a round places it (then it is cancelled unused).
    let submitted = json(d, MARCH, &[&["order", "submit"][..], unpinned, &["--wait-s", "600"]].concat());
    assert_eq!(submitted["state"], "waiting");
    let request = text(&submitted["id"]).to_owned();
    let round = json(d, MARCH, &["order", "round"]);
    assert_eq!(round["placed"][0][0], request.as_str(), "{round}");
    let decided = json(d, MARCH, &["order", "request", &request]);
    assert_eq!(
        (decided["state"].as_str(), decided["decision"]["pool"].as_str()),
        (Some("placed"), Some(pool.as_str()))
    );
    assert_eq!(decided["decision"]["list_cost_fen"], 8 * 10 * 1800);
    json(d, MARCH, &["order", "cancel", text(&decided["decision"]["order"])]);
    assert_eq!(json(d, MARCH, &["order", "requests"]).as_array().unwrap().len(), 1);
    refused(d, MARCH, &["order", "withdraw", &request], "request_state");

    // Usage from a CSV and a JSON-lines file; one record breaks physics and is refused.
    let mut csv = String::from("id,order,gpu_seconds,period_start,period_end\n");
    for minute in 0..50 {
        let seconds = if minute == 7 { 8 * 60 + 1 } else { 8 * 60 };
        csv.push_str(&format!(
            "c{minute},{order},{seconds},2026-03-02T09:{minute:02}:00+08:00,2026-03-02T09:{:02}:00+08:00\n",
            minute + 1
        ));
    }
    std::fs::write(d.join("usage.csv"), &csv).unwrap();
    let mut lines = String::new();
    for minute in 0..50 {
        lines.push_str(&format!(
            "{{\"id\":\"j{minute}\",\"order\":\"{order}\",\"gpu_seconds\":240,\"period_start\":\"2026-03-02T10:{minute:02}:00+08:00\",\"period_end\":\"2026-03-02T10:{:02}:00+08:00\"}}\n",
            minute + 1
        ));
    }
    std::fs::write(d.join("usage.jsonl"), &lines).unwrap();
    let later = "2026-03-02T12:00:00+08:00";
    let summary = json(d, later, &["usage", "import", "--provider", &provider, "usage.csv"]);
    assert_eq!((summary["recorded"].as_u64(), summary["refused"].as_array().unwrap().len()), (Some(49), 1));
    assert_eq!(summary["refused"][0][1], "usage_exceeds_physics");
    let summary = json(d, later, &["usage", "import", "--provider", &provider, "usage.jsonl"]);
    assert_eq!(summary["recorded"], 50);
    let summary = json(d, later, &["usage", "import", "--provider", &provider, "usage.jsonl"]);
    assert_eq!(summary["duplicates"], 50, "importing the same file again changes nothing");

    // A malformed line stops the import before anything is recorded.
    std::fs::write(d.join("bad.csv"), format!("id,order,gpu_seconds,period_start,period_end\nb1,{order},10,2026-03-02T11:00:00+08:00,2026-03-02T11:01:00+08:00\nb2,{order},ten,2026-03-02T11:01:00+08:00,2026-03-02T11:02:00+08:00\n")).unwrap();
    let message = refused(d, later, &["usage", "import", "--provider", &provider, "bad.csv"], "invalid_input");
    assert!(message.contains("line 3"), "{message}");
    assert_eq!(json(d, later, &["order", "show", &order])["usage_records"], 99);

    json(d, later, &["order", "complete", &order]);
    let april = "2026-04-01T10:00:00+08:00";
    refused(
        d,
        later,
        &["statement", "issue", "--provider", &provider, "--program", "shanghai-compute", "--month", "2026-03"],
        "month_not_ended",
    );
    let statement = json(
        d,
        april,
        &["statement", "issue", "--provider", &provider, "--program", "shanghai-compute", "--month", "2026-03"],
    );
    assert_eq!(statement["lines"].as_array().unwrap().len(), 1);
    let approved = json(d, april, &["statement", "approve", text(&statement["id"])]);
    assert_eq!(approved["state"], "approved");
    let shown = at(d, april, &["statement", "show", text(&statement["id"])]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("大写"), "{}", String::from_utf8_lossy(&shown.stdout));

    let swept = json(d, "2027-04-01T00:00:00+08:00", &["voucher", "sweep"]);
    assert_eq!(swept["expired"].as_array().unwrap().len(), 1);
    let log = json(d, april, &["log", "show", "--object", &voucher]);
    let actions: Vec<&str> = log.as_array().unwrap().iter().map(|e| text(&e["action"])).collect();
    // Every entry that touched the voucher: its issuance, its order, the request and the order a
    // round placed for it, its expiry.
    assert_eq!(
        actions,
        ["application.approved", "order.placed", "request.submitted", "order.placed", "voucher.expired"]
    );
    // The newest entries, read a page at a time.
    let all = json(d, april, &["log", "show", "--limit", "1000000"]);
    let newest = json(d, april, &["log", "show", "--limit", "3"]);
    let sequences: Vec<u64> = newest.as_array().unwrap().iter().map(|e| e["sequence"].as_u64().unwrap()).collect();
    let total = all.as_array().unwrap().len() as u64;
    assert_eq!(sequences, [total - 2, total - 1, total]);
    assert!(!json(d, april, &["anomalies"]).as_array().unwrap().is_empty());

    let output = at(d, april, &["audit", "verify"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));

    // Editing one audit-log entry is noticed.
    rusqlite::Connection::open(d.join("suanli.db"))
        .unwrap()
        .execute("UPDATE audit_log SET actor = 'enterprise:ent-9' WHERE sequence = 12", [])
        .unwrap();
    let output = at(d, april, &["audit", "verify"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("audit log: entry 12 does not match its hash"));
}

/// One configuration file for every command: `program load` and `serve` use the database it
/// names; a flag still wins, and `SUANLI_CONFIG` names another file.
#[test]
fn every_command_reads_the_database_from_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("suanli.toml"), "database = \"from-config.db\"\n").unwrap();
    let programs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../programs/shanghai-compute.toml");
    let output = crate::suanli(&["program", "load", programs], dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(dir.path().join("from-config.db").exists() && !dir.path().join("suanli.db").exists());
    let list = crate::stdout(&crate::suanli(&["program", "list", "--json"], dir.path()));
    assert!(list.contains("shanghai-compute"), "{list}");
    let elsewhere = crate::stdout(&crate::suanli(&["program", "list", "--json", "--database", "other.db"], dir.path()));
    assert!(!elsewhere.contains("shanghai-compute"), "the flag wins: {elsewhere}");
    std::fs::write(dir.path().join("other.toml"), "database = \"third.db\"\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["program", "list"])
        .env("SUANLI_CONFIG", "other.toml")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(dir.path().join("third.db").exists());
    std::fs::write(dir.path().join("bad.toml"), "databse = \"typo.db\"\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["program", "list"])
        .env("SUANLI_CONFIG", "bad.toml")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success(), "an unknown key is refused");
    assert!(String::from_utf8_lossy(&output.stderr).contains("databse"), "{}", String::from_utf8_lossy(&output.stderr));
}
