//! `suanli usage send`, the connector client of `suanli-wire` against a real `suanli serve`:
//! batches are signed and posted, a second send changes nothing, a wrong key is refused with its
//! code, and an unreachable server is tried again before the command gives up.

use ed25519_dalek::SigningKey;
use suanli_service::access::hex;
use suanli_service::calendar::format_timestamp;

use crate::restart::{start_server, world};
use crate::{stdout, suanli};

fn send(dir: &std::path::Path, url: &str, provider: &str, key_file: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["usage", "send", "--json", "--provider", provider, "--server", url, "--key-file", key_file];
    args.extend_from_slice(extra);
    args.push("usage.csv");
    std::process::Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(&args)
        .env("SUANLI_TOKEN", "restart-secret")
        .current_dir(dir)
        .output()
        .unwrap()
}

/// A server stopped however the test ends (its output pipe would keep the test runner waiting).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn usage_send_signs_posts_retries_and_a_second_send_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let secret = [5u8; 32];
    let key = SigningKey::from_bytes(&secret);
    let (provider, order, start) = world(dir.path(), &key);
    std::fs::write(dir.path().join("provider.key"), hex(&secret)).unwrap();
    std::fs::write(dir.path().join("other.key"), hex(&[6u8; 32])).unwrap();
    let mut csv = String::from("id,order,gpu_seconds,period_start,period_end\n");
    for hour in 0..10 {
        let (from, to) = (start + hour * 3_600, start + (hour + 1) * 3_600);
        csv.push_str(&format!("h{hour},{order},{},{},{}\n", 8 * 3_600, format_timestamp(from), format_timestamp(to)));
    }
    std::fs::write(dir.path().join("usage.csv"), csv).unwrap();
    let now = format_timestamp(start + 11 * 3_600);
    let (server, url) = start_server(dir.path(), &now, &[]);
    let mut server = Killed(server);
    let provider = provider.to_string();

    let first = send(dir.path(), &url, &provider, "provider.key", &["--batch", "3"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&first)).unwrap();
    assert_eq!((summary["records"].as_u64(), summary["recorded"].as_u64()), (Some(10), Some(10)), "{summary}");
    assert!(summary["cost_fen"].as_i64().unwrap() > 0, "{summary}");
    let again = send(dir.path(), &url, &provider, "provider.key", &[]);
    let summary: serde_json::Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!((summary["recorded"].as_u64(), summary["duplicates"].as_u64()), (Some(0), Some(10)), "{summary}");

    // The same client reads the orders placed at the provider, with what they used.
    let client = suanli_wire::Client::new(&url, "restart-secret");
    let page = client.orders("state=running&limit=10").unwrap();
    let found = &page["items"][0];
    assert_eq!((found["id"].as_str(), page["total"].as_u64()), (Some(order.to_string().as_str()), Some(1)), "{page}");
    assert_eq!(found["gpu_seconds"].as_i64(), Some(10 * 8 * 3_600), "{page}");
    match suanli_wire::Client::new(&url, "not-a-token").orders("") {
        Err(suanli_wire::ClientError::Refused { status: 401, .. }) => {}
        other => panic!("a bad token is refused with 401, not {other:?}"),
    }

    // Another key: refused at once with the code, nothing recorded, no retry.
    let forged = send(dir.path(), &url, &provider, "other.key", &[]);
    assert!(!forged.status.success());
    let error = String::from_utf8_lossy(&forged.stderr);
    assert!(error.contains("signature_invalid") && !error.contains("trying again"), "{error}");

    // No server: tried again, then an error that says so.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let down = send(dir.path(), &url, &provider, "provider.key", &["--attempts", "2"]);
    assert!(!down.status.success());
    let error = String::from_utf8_lossy(&down.stderr);
    assert!(error.contains("trying again in 1 s (attempt 2 of 2)") && error.contains("no answer"), "{error}");

    let audit = suanli(&["audit", "verify", "--database", "sqlite://restart.db"], dir.path());
    assert!(audit.status.success(), "{}", stdout(&audit));
    assert!(stdout(&audit).contains("usage records  10"), "{}", stdout(&audit));
    // The same audit as JSON, with the database taken from the configuration file.
    std::fs::write(dir.path().join("suanli.toml"), "database = \"sqlite://restart.db\"\n").unwrap();
    let audit = suanli(&["audit", "verify", "--json"], dir.path());
    let report: serde_json::Value = serde_json::from_str(&stdout(&audit)).unwrap();
    assert_eq!((report["passed"].as_bool(), report["usage_records"].as_u64()), (Some(true), Some(10)), "{report}");
    assert_eq!(report["state_hash"].as_str().map(str::len), Some(64), "{report}");
}
