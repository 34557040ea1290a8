//! `suanli agent slurm` against a real one-node Slurm with slurmdbd on MariaDB (`.ci/slurm.sh up`
//! starts it; `SUANLI_TEST_SLURM` names its slurm.conf) and a real `suanli serve`: a placed order
//! becomes an account with its GPU limits and is started, a dry run changes nothing, a running
//! job shows as busy GPUs, a finished job becomes one usage record of its GPUs × its run, a pass
//! repeated or run after the state file is lost records nothing twice, and an order that ends
//! closes its account.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use suanli_service::access::hex;
use suanli_service::calendar::format_timestamp;

use crate::restart::{start_server, world_with};
use crate::{stdout, suanli};

struct Cluster {
    conf: String,
    parent: String,
}

impl Cluster {
    fn command(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program).args(args).env("SLURM_CONF", &self.conf).env("TZ", "UTC").output().unwrap()
    }

    fn text(&self, program: &str, args: &[&str]) -> String {
        let output = self.command(program, args);
        assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The account's association row: `GrpTRES|GrpTRESMins`.
    fn limits(&self, account: &str) -> String {
        let rows = self.text(
            "sacctmgr",
            &["-n", "-P", "show", "assoc", &format!("account={account}"), "format=user,grptres,grptresmins"],
        );
        rows.lines().find(|l| l.starts_with('|')).unwrap_or_default().trim_start_matches('|').to_owned()
    }

    fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(90), "waited 90 s for {what}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Cluster {
    /// Leaves the cluster as it was: the test's jobs cancelled, its accounts removed.
    fn drop(&mut self) {
        let account = format!("{}-ord-1", self.parent);
        let _ = self.command("scancel", &[&format!("--account={account}")]);
        let _ = self.command("sacctmgr", &["-i", "delete", "user", "root", &format!("account={account}")]);
        let _ = self.command("sacctmgr", &["-i", "delete", "account", &account]);
        let _ = self.command("sacctmgr", &["-i", "delete", "account", &self.parent]);
    }
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent(dir: &Path, cluster: &Cluster, url: &str, token: &str, extra: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["agent", "slurm", "--once", "--json", "--provider", "prv-1", "--server", url])
        .args(["--key-file", "provider.key", "--pool", "pol-1=debug", "--users", "ent-1=root"])
        .args(["--parent-account", &cluster.parent, "--state", "agent.json", "--attempts", "2"])
        .args(extra)
        .env("SUANLI_TOKEN", token)
        .env("SLURM_CONF", &cluster.conf)
        .current_dir(dir)
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the agent failed: {logs}");
    // Logs are JSON lines with a level.
    for line in logs.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(entry["level"].is_string(), "{line}");
    }
    serde_json::from_str(&stdout(&output)).unwrap()
}

/// The tests share the cluster's one partition, whose busy GPUs they check: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A server over a world with a placed order of 8 GPUs for 100 hours at pool pol-1 (the
/// partition `debug`), a provider token of now, and a parent account of this test's own.
struct Setup {
    cluster: Cluster,
    account: String,
    dir: tempfile::TempDir,
    order: suanli_domain::OrderId,
    token: String,
    url: String,
    client: suanli_wire::Client,
    _server: Killed,
}

fn setup() -> Option<Setup> {
    let Ok(conf) = std::env::var("SUANLI_TEST_SLURM") else {
        eprintln!("SUANLI_TEST_SLURM is unset (bash .ci/slurm.sh up): skipping the Slurm agent test");
        return None;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let cluster = Cluster { conf, parent: format!("t{}x{nanos}", std::process::id()) };
    let account = format!("{}-ord-1", cluster.parent);
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[9u8; 32]);
    std::fs::write(dir.path().join("provider.key"), hex(&[9u8; 32])).unwrap();
    let (_, order, _) = world_with(&dir.path().join("restart.db").display().to_string(), &key, false);
    // The world's token was issued in March and has expired: a token of now for the agent.
    let issued = suanli(
        &["token", "issue", "--json", "--role", "provider:prv-1", "--database", "sqlite://restart.db"],
        dir.path(),
    );
    let token: serde_json::Value = serde_json::from_str(&stdout(&issued)).unwrap();
    let token = token["secret"].as_str().unwrap().to_owned();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (server, url) = start_server(dir.path(), &format_timestamp(now), &[]);
    let client = suanli_wire::Client::new(&url, &token);
    Some(Setup { cluster, account, dir, order, token, url, client, _server: Killed(server) })
}

#[test]
fn the_slurm_agent_maps_orders_reports_usage_once_and_closes_ended_orders() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(setup) = setup() else { return };
    let Setup { cluster, account, dir, order, token, url, client, .. } = &setup;
    let (order, token, url) = (*order, token.as_str(), url.as_str());

    // A dry run says what it would do and does none of it.
    let dry = agent(dir.path(), cluster, url, token, &["--dry-run"]);
    assert_eq!(dry["accounts_added"], serde_json::json!([account]), "{dry}");
    let planned = dry["slurm_planned"].to_string();
    assert!(planned.contains(&format!("add account {account}")) && planned.contains("GrpTRES=gres/gpu=8"), "{dry}");
    assert_eq!(client.order(order).unwrap()["state"], "placed");
    assert!(!dir.path().join("agent.json").exists());
    assert_eq!(cluster.limits(account), "");

    // The order becomes an account with its limits, is started, and root may submit to it.
    let first = agent(dir.path(), cluster, url, token, &[]);
    assert_eq!(first["orders_started"], serde_json::json!([account]), "{first}");
    assert_eq!(first["users_added"], serde_json::json!([format!("root@{account}")]), "{first}");
    assert_eq!(first["utilization"], serde_json::json!([["pol-1", 0]]), "{first}");
    assert_eq!(cluster.limits(account), "gres/gpu=8|gres/gpu=48000", "8 GPUs for 100 hours");
    assert_eq!(client.order(order).unwrap()["state"], "running");
    let again = agent(dir.path(), cluster, url, token, &[]);
    assert_eq!(
        (again["accounts_added"].as_array().map(Vec::len), again["users_added"].as_array().map(Vec::len)),
        (Some(0), Some(0)),
        "{again}"
    );

    // A job of the order: busy while it runs, one usage record once it has finished.
    let job = cluster.text(
        "sbatch",
        &[
            "--parsable",
            "-o",
            "/dev/null",
            "-A",
            account,
            "-p",
            "debug",
            "--gres=gpu:2",
            "-t",
            "5",
            "--wrap",
            "sleep 6",
        ],
    );
    let job = job.trim().to_owned();
    cluster.wait_for("the job to run", || cluster.text("squeue", &["-h", "-j", &job, "-o", "%T"]).trim() == "RUNNING");
    let running = agent(dir.path(), cluster, url, token, &[]);
    assert_eq!(running["utilization"], serde_json::json!([["pol-1", 2]]), "{running}");
    let finished = || {
        cluster.text("sacct", &["-n", "-X", "-P", "-j", &job, "-o", "State,ElapsedRaw"]).trim().starts_with("COMPLETED")
    };
    cluster.wait_for("accounting to hold the finished job", finished);
    let elapsed: i64 =
        cluster.text("sacct", &["-n", "-X", "-P", "-j", &job, "-o", "ElapsedRaw"]).trim().parse().unwrap();
    let reported = agent(dir.path(), cluster, url, token, &[]);
    assert_eq!(
        (reported["usage_sent"].as_u64(), reported["usage_recorded"].as_u64()),
        (Some(1), Some(1)),
        "{reported}"
    );
    let seen = client.order(order).unwrap();
    assert_eq!(seen["gpu_seconds"].as_i64(), Some(2 * elapsed), "{seen}");
    assert_eq!(seen["usage_records"].as_u64(), Some(1), "{seen}");
    // Priced at the order's locked price and split between the voucher and the enterprise.
    let fen = |field: &str| seen[field].as_i64().unwrap();
    assert!(fen("cost_fen") > 0, "{seen}");
    assert_eq!(fen("voucher_paid_fen") + fen("enterprise_paid_fen"), fen("cost_fen"), "{seen}");

    // A job asking more GPU-minutes than the order has left is held by Slurm (or refused).
    let over = cluster.command(
        "sbatch",
        &["--parsable", "-o", "/dev/null", "-A", account, "--gres=gpu:1", "-t", "48001", "--wrap", "true"],
    );
    if over.status.success() {
        let over = String::from_utf8_lossy(&over.stdout).trim().to_owned();
        // Pending with no reason until the scheduler looks at it; then held by the account's limit.
        cluster.wait_for("the scheduler to hold the job", || {
            let state = cluster.text("squeue", &["-h", "-j", &over, "-o", "%T %r"]);
            assert!(!state.starts_with("RUNNING"), "a job over the order's GPU-minutes runs: {state}");
            state.starts_with("PENDING AssocGrp")
        });
        cluster.text("scancel", &[&over]);
    }

    // Again, and again after losing the state file: nothing is recorded twice.
    let repeated = agent(dir.path(), cluster, url, token, &[]);
    assert_eq!(repeated["usage_sent"].as_u64(), Some(0), "{repeated}");
    std::fs::remove_file(dir.path().join("agent.json")).unwrap();
    let forgotten = agent(dir.path(), cluster, url, token, &[]);
    assert_eq!(
        (forgotten["usage_sent"].as_u64(), forgotten["usage_duplicates"].as_u64()),
        (Some(1), Some(1)),
        "{forgotten}"
    );
    assert_eq!(client.order(order).unwrap()["gpu_seconds"].as_i64(), Some(2 * elapsed));

    // With its pool no longer mapped, the running order's account is left open, not closed.
    let unmapped = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["agent", "slurm", "--once", "--json", "--provider", "prv-1", "--server", url])
        .args(["--key-file", "provider.key", "--pool", "pol-9=debug", "--parent-account", &cluster.parent])
        .args(["--state", "agent.json"])
        .env("SUANLI_TOKEN", token)
        .env("SLURM_CONF", &cluster.conf)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let unmapped: serde_json::Value = serde_json::from_str(&stdout(&unmapped)).unwrap();
    assert_eq!(unmapped["accounts_closed"], serde_json::json!([]), "{unmapped}");
    assert!(cluster.limits(account).starts_with("gres/gpu=8|"), "{}", cluster.limits(account));

    // The order ends: its account is closed, and a job submitted to it cannot run.
    client.order_action(order, "complete").unwrap();
    let closed = agent(dir.path(), cluster, url, token, &[]);
    assert_eq!(closed["accounts_closed"], serde_json::json!([account]), "{closed}");
    assert!(cluster.limits(account).starts_with("gres/gpu=0|"), "{}", cluster.limits(account));
    let late = cluster.command(
        "sbatch",
        &["--parsable", "-o", "/dev/null", "-A", account, "--gres=gpu:1", "-t", "1", "--wrap", "true"],
    );
    if late.status.success() {
        let late = String::from_utf8_lossy(&late.stdout).trim().to_owned();
        std::thread::sleep(Duration::from_secs(2));
        let state = cluster.text("squeue", &["-h", "-j", &late, "-o", "%T %r"]);
        assert!(state.starts_with("PENDING"), "a job of a closed order does not run: {state}");
    }

    let audit = suanli(&["audit", "verify", "--database", "sqlite://restart.db"], dir.path());
    assert!(audit.status.success(), "{}", stdout(&audit));
}

/// The agent in loop mode, killed with SIGKILL at varied moments (inside a pass or between
/// passes) and started again while jobs finish: every job is recorded once, with its GPU-seconds.
#[test]
fn the_slurm_agent_killed_at_any_moment_loses_and_doubles_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(setup) = setup() else { return };
    let Setup { cluster, account, dir, order, token, url, client, .. } = &setup;
    agent(dir.path(), cluster, url, token, &[]);
    let jobs: Vec<String> = (0..6)
        .map(|i| {
            let wrap = format!("sleep {}", 1 + i % 3);
            let args = ["--parsable", "-o", "/dev/null", "-A", account, "--gres=gpu:1", "-t", "2", "--wrap", &wrap];
            cluster.text("sbatch", &args).trim().to_owned()
        })
        .collect();
    let finished =
        |job: &str| cluster.text("sacct", &["-n", "-X", "-P", "-j", job, "-o", "State"]).starts_with("COMPLETED");
    let pauses_ms = [150u64, 700, 320, 1_300, 90, 520, 2_100, 260];
    for round in 0.. {
        let all_done = jobs.iter().all(|job| finished(job));
        let mut looping = Command::new(env!("CARGO_BIN_EXE_suanli"))
            .args(["agent", "slurm", "--provider", "prv-1", "--server", url, "--key-file", "provider.key"])
            .args(["--pool", "pol-1=debug", "--users", "ent-1=root", "--parent-account", &cluster.parent])
            // No lag: the cursor alone decides what each pass reads again.
            .args(["--state", "agent.json", "--interval-seconds", "1", "--lag-seconds", "0"])
            .env("SUANLI_TOKEN", token)
            .env("SLURM_CONF", &cluster.conf)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(pauses_ms[round % pauses_ms.len()]));
        looping.kill().unwrap();
        looping.wait().unwrap();
        if all_done || round > 60 {
            break;
        }
    }
    // One last whole pass, then the order holds each job once.
    agent(dir.path(), cluster, url, token, &["--lag-seconds", "0"]);
    let elapsed: i64 = jobs
        .iter()
        .map(|job| {
            let text = cluster.text("sacct", &["-n", "-X", "-P", "-j", job, "-o", "ElapsedRaw"]);
            text.trim().parse::<i64>().unwrap()
        })
        .sum();
    let seen = client.order(*order).unwrap();
    assert_eq!((seen["usage_records"].as_u64(), seen["gpu_seconds"].as_i64()), (Some(6), Some(elapsed)), "{seen}");
}
