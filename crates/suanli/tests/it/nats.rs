//! `serve --nats` and `usage publish` against the real NATS JetStream server `SUANLI_TEST_NATS`
//! names (`.ci/run` sets it and starts the server); skipped when it is unset. Each test makes its
//! own uniquely named stream and subjects and deletes the stream at the end.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use ed25519_dalek::SigningKey;
use suanli_api::nats::NatsOptions;
use suanli_service::access::hex;
use suanli_service::calendar::format_timestamp;

use crate::restart::{signed_batch, start_server, world};
use crate::suanli;

fn nats_url() -> Option<String> {
    let url = std::env::var("SUANLI_TEST_NATS").ok();
    if url.is_none() {
        eprintln!("SUANLI_TEST_NATS is unset: skipping a test that needs NATS JetStream");
    }
    url
}

/// A stream and subjects of this test's own, deleted when dropped.
struct TestStream {
    options: NatsOptions,
    context: jetstream::Context,
    runtime: tokio::runtime::Runtime,
}

impl TestStream {
    fn create(url: &str) -> TestStream {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let unique = format!("{}_{nanos}", std::process::id());
        let options = NatsOptions {
            url: url.to_owned(),
            stream: format!("SUANLI_TEST_{unique}"),
            subject_prefix: format!("suanli.test.{unique}"),
            consumer: "suanli-writer".into(),
            ack_wait: Duration::from_secs(2),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let context = runtime.block_on(async {
            let context = suanli_api::nats::connect(url).await.unwrap();
            suanli_api::nats::ensure_stream(&context, &options).await.unwrap();
            context
        });
        TestStream { options, context, runtime }
    }

    fn serve_args(&self) -> Vec<&str> {
        vec![
            "--nats",
            &self.options.url,
            "--nats-stream",
            &self.options.stream,
            "--nats-subject-prefix",
            &self.options.subject_prefix,
            "--nats-ack-wait-s",
            "2",
        ]
    }

    /// The server's consumer: (messages not yet delivered, delivered and not yet acknowledged).
    fn backlog(&self) -> Option<(u64, usize)> {
        self.runtime.block_on(async {
            let stream = self.context.get_stream(&self.options.stream).await.ok()?;
            let mut consumer =
                stream.get_consumer::<jetstream::consumer::pull::Config>(&self.options.consumer).await.ok()?;
            let info = consumer.info().await.ok()?;
            Some((info.num_pending, info.num_ack_pending))
        })
    }

    /// Deliveries the consumer has made, first deliveries and redeliveries together.
    fn deliveries(&self) -> u64 {
        self.runtime.block_on(async {
            let stream = self.context.get_stream(&self.options.stream).await.unwrap();
            let mut consumer =
                stream.get_consumer::<jetstream::consumer::pull::Config>(&self.options.consumer).await.unwrap();
            consumer.info().await.unwrap().delivered.consumer_sequence
        })
    }

    fn wait_until_consumed(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.backlog() != Some((0, 0)) {
            assert!(Instant::now() < deadline, "the server left {:?} unconsumed after 60 s", self.backlog());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let _ = self.runtime.block_on(self.context.delete_stream(&self.options.stream));
    }
}

/// The order's usage records, from the database once the server has stopped.
fn usage_records(dir: &Path, order: &str) -> u64 {
    let show = suanli(&["order", "show", order, "--database", "restart.db", "--json"], dir);
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    shown["usage_records"].as_u64().unwrap()
}

fn audit_passes(dir: &Path) {
    let audit = suanli(&["audit", "verify", "--database", "restart.db"], dir);
    assert!(audit.status.success(), "{}", String::from_utf8_lossy(&audit.stdout));
}

fn stop(server: &mut std::process::Child) {
    Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(server.wait().unwrap().success());
}

/// A counter of the server's `/metrics`.
fn metric(base: &str, line_start: &str) -> u64 {
    let agent: ureq::Agent = ureq::Agent::config_builder().max_idle_connections(0).build().into();
    let Ok(mut response) = agent.get(&format!("{base}/metrics")).call() else { return 0 };
    let text = response.body_mut().read_to_string().unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix(line_start)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

const MESSAGES: usize = 400;
const PER_MESSAGE: usize = 10;

#[test]
fn sigkill_during_nats_ingestion_then_restart_applies_every_record_once() {
    let Some(url) = nats_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let (provider, order, start) = world(dir.path(), &key);
    let stream = TestStream::create(&url);
    let subject = stream.options.subject(provider);
    let messages: Vec<(String, String)> = (0..MESSAGES)
        .map(|m| signed_batch(&key, provider, order, start, (m * PER_MESSAGE) as i64, PER_MESSAGE as i64))
        .collect();
    let publish = |(body, signature): &(String, String)| {
        stream.runtime.block_on(async {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Suanli-Signature", signature.as_str());
            stream
                .context
                .publish_with_headers(subject.clone(), headers, body.clone().into())
                .await
                .unwrap()
                .await
                .unwrap();
        })
    };
    // Half the messages wait in the stream before the server starts, so it takes many at once.
    let (backlog, steady) = messages.split_at(MESSAGES / 2);
    backlog.iter().for_each(publish);
    let now = format_timestamp(start + 30 * 86_400);
    let (mut server, base) = start_server(dir.path(), &now, &stream.serve_args());

    // Then the provider publishes steadily, a message every 2 ms, whether or not the server is up
    // (JetStream keeps what arrives). The server is SIGKILLed once it has applied 20 messages,
    // with many delivered and not yet acknowledged.
    let published = AtomicUsize::new(backlog.len());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for message in steady {
                publish(message);
                published.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while metric(&base, "suanli_nats_messages_total{outcome=\"applied\"}") < 20 {
            assert!(Instant::now() < deadline, "the server applied no messages in 60 s");
            std::thread::sleep(Duration::from_millis(2));
        }
        server.kill().unwrap();
        server.wait().unwrap();
        let at_kill = published.load(Ordering::SeqCst);
        assert!(at_kill < MESSAGES, "the kill came during ingestion ({at_kill} of {MESSAGES} published)");
    });
    let applied_before = usage_records(dir.path(), &order.to_string());
    assert!(applied_before < (MESSAGES * PER_MESSAGE) as u64, "{applied_before}");

    // Restart: the server takes up the unacknowledged messages (some already committed, which
    // answer `exists`) and everything published while it was down.
    let (mut server, _) = start_server(dir.path(), &now, &stream.serve_args());
    stream.wait_until_consumed();
    let deliveries = stream.deliveries();
    stop(&mut server);
    assert!(deliveries > MESSAGES as u64, "messages in flight at the kill came back: {deliveries} deliveries");
    assert_eq!(usage_records(dir.path(), &order.to_string()), (MESSAGES * PER_MESSAGE) as u64);
    audit_passes(dir.path());
}

#[test]
fn usage_publish_sends_a_file_that_serve_applies_once() {
    let Some(url) = nats_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The provider's key comes from `provider keygen`, and is registered with `set-key`.
    let keygen = suanli(&["provider", "keygen", "--out", "provider.key", "--json"], dir.path());
    assert!(keygen.status.success(), "{}", String::from_utf8_lossy(&keygen.stderr));
    let made: serde_json::Value = serde_json::from_slice(&keygen.stdout).unwrap();
    let again = suanli(&["provider", "keygen", "--out", "provider.key"], dir.path());
    assert!(!again.status.success(), "keygen never overwrites a key");
    let secret = std::fs::read_to_string(dir.path().join("provider.key")).unwrap();
    let key = SigningKey::from_bytes(&suanli_service::access::unhex::<32>(secret.trim()).unwrap());
    assert_eq!(made["public_key"], hex(key.verifying_key().as_bytes()));
    let (provider, order, start) = world(dir.path(), &key);

    let mut csv = String::from("id,order,gpu_seconds,period_start,period_end\n");
    for minute in 0..2_500i64 {
        csv.push_str(&format!(
            "c{minute},{order},480,{},{}\n",
            format_timestamp(start + minute * 60),
            format_timestamp(start + (minute + 1) * 60)
        ));
    }
    std::fs::write(dir.path().join("usage.csv"), csv).unwrap();
    let stream = TestStream::create(&url);
    let now = format_timestamp(start + 30 * 86_400);
    let (mut server, _) = start_server(dir.path(), &now, &stream.serve_args());
    let provider = provider.to_string();
    let mut publish = vec!["usage", "publish", "--provider", &provider, "--key-file", "provider.key", "--json"];
    publish.extend(["--nats", &url, "--nats-stream", &stream.options.stream]);
    publish.extend(["--nats-subject-prefix", &stream.options.subject_prefix, "--batch", "1000", "usage.csv"]);
    let output = suanli(&publish, dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let sent: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (sent["records"].as_u64(), sent["messages"].as_u64(), sent["duplicates"].as_u64()),
        (Some(2_500), Some(3), Some(0))
    );
    // Published again at once: the stream recognizes each signed batch and stores none twice.
    let output = suanli(&publish, dir.path());
    let sent: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(sent["duplicates"].as_u64(), Some(3), "{sent}");
    stream.wait_until_consumed();
    stop(&mut server);
    assert_eq!(usage_records(dir.path(), &order.to_string()), 2_500);
    audit_passes(dir.path());

    // Bad input: each a clear error naming what is wrong.
    let refused = |args: &[&str], expected: &str| {
        let output = suanli(args, dir.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(expected), "{args:?}: {stderr}");
    };
    let mut unreachable = publish.clone();
    unreachable[8] = "nats://127.0.0.1:1";
    refused(&unreachable, "nats: cannot connect to nats://127.0.0.1:1");
    let mut no_stream = publish.clone();
    no_stream[12] = "suanli.nowhere";
    refused(&no_stream, "nats: no stream takes suanli.nowhere.");
    std::fs::write(dir.path().join("bad.key"), "not a key").unwrap();
    let mut bad_key = publish.clone();
    bad_key[5] = "bad.key";
    refused(&bad_key, "--key-file: bad.key must hold an Ed25519 secret key");
    refused(
        &["serve", "--database", "restart.db", "--listen", "127.0.0.1:0", "--nats", "nats://127.0.0.1:1"],
        "nats: cannot connect to nats://127.0.0.1:1",
    );
    // The stream exists for other subjects: the server does not start.
    refused(
        &[
            "serve",
            "--database",
            "restart.db",
            "--listen",
            "127.0.0.1:0",
            "--nats",
            &url,
            "--nats-stream",
            &stream.options.stream,
            "--nats-subject-prefix",
            "suanli.elsewhere",
        ],
        &format!("nats: stream {} exists for subjects", stream.options.stream),
    );
}

#[test]
fn bench_ingest_via_nats_prints_its_figures_and_leaves_no_stream() {
    let Some(url) = nats_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let args =
        ["bench", "ingest", "--via", "nats", "--nats", &url, "--records", "2000", "--clients", "2", "--batch", "250"];
    let child = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(args)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("usage_records_per_s: ") && text.contains("2000 records") && text.contains("via NATS"),
        "{text}"
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let leftover = runtime.block_on(async {
        let context = suanli_api::nats::connect(&url).await.unwrap();
        let mut names = context.stream_names();
        let mut leftover = Vec::new();
        while let Some(name) = futures_util::StreamExt::next(&mut names).await {
            let name = name.unwrap();
            if name.starts_with(&format!("SUANLI_BENCH_{pid}_")) {
                leftover.push(name);
            }
        }
        leftover
    });
    assert!(leftover.is_empty(), "{leftover:?}");
}

#[test]
fn bench_ingest_compares_the_four_paths_side_by_side() {
    let (Some(url), Ok(postgres)) = (nats_url(), std::env::var("SUANLI_TEST_POSTGRES")) else {
        eprintln!("needs both SUANLI_TEST_NATS and SUANLI_TEST_POSTGRES: skipping");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let args = ["bench", "ingest", "--compare", &postgres, "--nats", &url, "--records", "1000", "--clients", "2"];
    let output = suanli(&args, dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(text.matches("usage_records_per_s: ").count(), 4, "{text}");
    for row in ["| SQLite (synchronous=FULL) | ", "| PostgreSQL | "] {
        assert!(text.lines().any(|l| l.starts_with(row) && l.ends_with("% |")), "{row}\n{text}");
    }
}

/// A NATS server of the test's own, with JetStream in `store`, stopped when dropped.
struct PrivateNats {
    child: std::process::Child,
    port: u16,
}

impl PrivateNats {
    fn start(binary: &Path, store: &Path, port: u16) -> PrivateNats {
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateNats { child, port }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_consumer_carries_on_after_the_nats_server_restarts() {
    let Some(_) = nats_url() else { return };
    let Some(binary) = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        eprintln!("no nats-server binary to restart: skipping");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let (provider, order, start) = world(dir.path(), &key);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let store = dir.path().join("nats");
    let mut nats = PrivateNats::start(binary, &store, port);
    let url = format!("nats://127.0.0.1:{}", nats.port);
    let stream = TestStream::create(&url);
    let subject = stream.options.subject(provider);
    let message = |m: i64| signed_batch(&key, provider, order, start, m * 10, 10);
    // Publishes, retrying while the client reconnects.
    let publish = |m: i64| {
        let (body, signature) = message(m);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sent = stream.runtime.block_on(async {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Suanli-Signature", signature.as_str());
                let confirmation =
                    stream.context.publish_with_headers(subject.clone(), headers, body.clone().into()).await?;
                confirmation.await.map(|_| ()).map_err(async_nats::Error::from)
            });
            match sent {
                Ok(()) => return,
                Err(error) => {
                    assert!(Instant::now() < deadline, "cannot publish after the restart: {error}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    };
    let now = format_timestamp(start + 30 * 86_400);
    let (mut server, _) = start_server(dir.path(), &now, &stream.serve_args());
    (0..10).for_each(publish);
    stream.wait_until_consumed();

    // The NATS server goes away and comes back on the same store; the Suanli server stays up.
    drop(nats);
    std::thread::sleep(Duration::from_millis(500));
    nats = PrivateNats::start(binary, &store, port);
    (10..20).for_each(publish);
    stream.wait_until_consumed();
    stop(&mut server);
    assert_eq!(usage_records(dir.path(), &order.to_string()), 200);
    audit_passes(dir.path());
    drop(stream);
    drop(nats);
}
