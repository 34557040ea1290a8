//! Usage through NATS JetStream, against the real server `SUANLI_TEST_NATS` names (`.ci/run` sets
//! it and starts the server). Each test makes its own uniquely named stream and deletes it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use ed25519_dalek::Signer;
use suanli_api::UsageRecord;
use suanli_api::nats::{NatsError, NatsOptions, NatsStats};
use suanli_service::access::{hex, usage_signing_bytes};

use crate::TestApp;

/// The server to test against, or `None` (the test is skipped) when `SUANLI_TEST_NATS` is unset.
fn nats_url() -> Option<String> {
    let url = std::env::var("SUANLI_TEST_NATS").ok();
    if url.is_none() {
        eprintln!("SUANLI_TEST_NATS is unset: skipping a test that needs NATS JetStream");
    }
    url
}

/// Options naming a stream and subjects no other test uses.
fn unique_options(url: &str) -> NatsOptions {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let unique = format!("{}_{nanos}", std::process::id());
    NatsOptions {
        url: url.to_owned(),
        stream: format!("SUANLI_TEST_{unique}"),
        subject_prefix: format!("suanli.test.{unique}"),
        consumer: "suanli-writer".into(),
        ack_wait: Duration::from_secs(2),
    }
}

/// Deletes the test's stream when dropped, whatever the test's outcome.
struct StreamGuard {
    context: jetstream::Context,
    name: String,
    runtime: tokio::runtime::Handle,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let _ = self.runtime.block_on(self.context.delete_stream(&self.name));
    }
}

/// The server's consumer on a stream of the test's own.
struct Consumer {
    options: NatsOptions,
    stats: Arc<NatsStats>,
    stop: tokio::sync::oneshot::Sender<()>,
    context: jetstream::Context,
    handle: tokio::task::JoinHandle<Result<(), NatsError>>,
    _guard: StreamGuard,
}

impl Consumer {
    fn start(app: &TestApp, url: &str) -> Consumer {
        let options = unique_options(url);
        let stats = Arc::new(NatsStats::default());
        let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
        let (context, handle) = app.runtime.block_on(async {
            let context = suanli_api::nats::connect(url).await.unwrap();
            suanli_api::nats::ensure_stream(&context, &options).await.unwrap();
            let handle = tokio::spawn(suanli_api::nats::consume(
                app.writer.clone(),
                context.clone(),
                options.clone(),
                stats.clone(),
                async {
                    let _ = stopping.await;
                },
            ));
            (context, handle)
        });
        let _guard = StreamGuard {
            context: context.clone(),
            name: options.stream.clone(),
            runtime: app.runtime.handle().clone(),
        };
        Consumer { options, stats, stop, context, handle, _guard }
    }
}

/// Waits until `done` holds, for at most 30 s.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen in 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl TestApp {
    fn signed(&self, signer: usize, provider: usize, records: &[UsageRecord]) -> (Vec<u8>, String) {
        let inputs: Vec<_> = records.iter().enumerate().map(|(i, r)| r.to_input(i).unwrap()).collect();
        let signature =
            hex(&self.keys[signer].sign(&usage_signing_bytes(self.providers[provider], &inputs)).to_bytes());
        (serde_json::json!({ "records": records }).to_string().into_bytes(), signature)
    }
}

async fn publish(context: &jetstream::Context, subject: String, body: Vec<u8>, signature: Option<&str>) {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(signature) = signature {
        headers.insert("Suanli-Signature", signature);
    }
    context.publish_with_headers(subject, headers, body.into()).await.unwrap().await.unwrap();
}

fn usage_from_nats_is_applied_once_and_what_is_not_a_signed_batch_is_set_aside() {
    let Some(url) = nats_url() else { return };
    let app = TestApp::start();
    let Consumer { options, stats, stop, context, handle: consumer, _guard } = Consumer::start(&app, &url);
    let subject = |provider: usize| options.subject(app.providers[provider]);
    let first: Vec<_> = (1..21).map(|i| app.record(&format!("n{i}"), 0, i, 8 * 60)).collect();
    let second: Vec<_> = (21..31).map(|i| app.record(&format!("n{i}"), 0, i, 8 * 60)).collect();
    let (first_body, first_signature) = app.signed(0, 0, &first);
    let (second_body, second_signature) = app.signed(0, 0, &second);
    let (forged_body, forged_signature) = app.signed(1, 0, &second);
    app.runtime.block_on(async {
        publish(&context, subject(0), first_body.clone(), Some(&first_signature)).await;
        // The same batch again, as a redelivery would bring it: every record answers `exists`.
        publish(&context, subject(0), first_body, Some(&first_signature)).await;
        publish(&context, subject(0), b"not a batch".to_vec(), Some(&first_signature)).await;
        // Signed with the other provider's key.
        publish(&context, subject(0), forged_body, Some(&forged_signature)).await;
        // No signature header.
        publish(&context, subject(0), second_body.clone(), None).await;
        // A subject that names no provider.
        publish(&context, format!("{}.nobody", options.subject_prefix), second_body.clone(), Some(&second_signature))
            .await;
        // And the consumer keeps going.
        publish(&context, subject(0), second_body, Some(&second_signature)).await;
    });
    wait_for("settling 7 messages", || {
        stats.applied.load(Ordering::SeqCst) + stats.rejected.load(Ordering::SeqCst) >= 7
    });
    assert_eq!(stats.applied.load(Ordering::SeqCst), 3);
    assert_eq!(stats.rejected.load(Ordering::SeqCst), 4);
    assert_eq!(app.usage_records(0), 1 + 30, "the fixture and 30 records, each once");

    let info = app.runtime.block_on(async {
        let stream = context.get_stream(&options.stream).await.unwrap();
        let mut consumer = stream.get_consumer::<jetstream::consumer::pull::Config>(&options.consumer).await.unwrap();
        let info = consumer.info().await.unwrap().clone();
        let stream_info = stream.get_info().await.unwrap();
        (info, stream_info)
    });
    assert_eq!(info.0.num_ack_pending, 0, "every message acknowledged or terminated");
    assert_eq!(info.0.num_pending, 0);
    assert_eq!(info.1.state.messages, 7, "rejected messages stay in the stream");

    let _ = stop.send(());
    app.runtime.block_on(consumer).unwrap().unwrap();
}

fn a_full_writer_queue_sends_messages_back_and_none_is_lost() {
    let Some(url) = nats_url() else { return };
    let app = TestApp::start_with(2);
    let Consumer { options, stats, stop, context, handle, _guard } = Consumer::start(&app, &url);
    // Hold the writer busy so its queue of two fills.
    let release = app.hold_writer();
    let subject = options.subject(app.providers[0]);
    app.runtime.block_on(async {
        for i in 1..=20 {
            let (body, signature) = app.signed(0, 0, &[app.record(&format!("q{i}"), 0, i, 8 * 60)]);
            publish(&context, subject.clone(), body, Some(&signature)).await;
        }
    });
    wait_for("a message sent back", || stats.retried.load(Ordering::SeqCst) > 0);
    release.send(()).unwrap();
    wait_for("20 messages applied", || stats.applied.load(Ordering::SeqCst) >= 20);
    assert_eq!(stats.applied.load(Ordering::SeqCst), 20);
    assert_eq!(stats.rejected.load(Ordering::SeqCst), 0);
    assert_eq!(app.usage_records(0), 1 + 20, "the fixture and every record, once");
    let _ = stop.send(());
    app.runtime.block_on(handle).unwrap().unwrap();
}

fn utilization_from_nats_is_stored_once_by_its_kind_header() {
    use suanli_service::access::utilization_signing_bytes;
    use suanli_service::clock::Clock;
    use suanli_service::model::UtilizationInput;
    let Some(url) = nats_url() else { return };
    let app = TestApp::start();
    let Consumer { options, stats, stop, context, handle, _guard } = Consumer::start(&app, &url);
    let now = app.clock.now_s();
    let pool = suanli_domain::PoolId::parse("pol-1").unwrap();
    let inputs: Vec<UtilizationInput> =
        (0..10).map(|i| UtilizationInput { pool, at_s: now - i * 60, busy_gpus: 32 }).collect();
    let signature = hex(&app.keys[0].sign(&utilization_signing_bytes(app.providers[0], &inputs)).to_bytes());
    let samples: Vec<_> = inputs
        .iter()
        .map(|s| serde_json::json!({ "pool": "pol-1", "at": suanli_service::calendar::format_timestamp(s.at_s), "busy_gpus": 32 }))
        .collect();
    let body = serde_json::json!({ "samples": samples }).to_string().into_bytes();
    let subject = options.subject(app.providers[0]);
    app.runtime.block_on(async {
        for kind in ["utilization", "utilization", "telemetry"] {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Suanli-Signature", signature.as_str());
            headers.insert("Suanli-Kind", kind);
            context.publish_with_headers(subject.clone(), headers, body.clone().into()).await.unwrap().await.unwrap();
        }
    });
    wait_for("settling 3 messages", || {
        stats.applied.load(Ordering::SeqCst) + stats.rejected.load(Ordering::SeqCst) >= 3
    });
    assert_eq!((stats.applied.load(Ordering::SeqCst), stats.rejected.load(Ordering::SeqCst)), (2, 1));
    let stored = app
        .runtime
        .block_on(app.writer.read_log(move |reader| reader.utilization(&[pool.get()], now - 3_600, now + 1, 86_400)))
        .unwrap()
        .unwrap();
    assert_eq!(stored[0].iter().map(|p| p.samples).sum::<i64>(), 10, "each sample once: {stored:?}");
    let _ = stop.send(());
    app.runtime.block_on(handle).unwrap().unwrap();
}

#[test]
fn an_unreachable_nats_server_is_a_clear_error() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let error = runtime.block_on(suanli_api::nats::connect("nats://127.0.0.1:1")).err().unwrap();
    assert!(matches!(error, NatsError::Unreachable { .. }), "{error}");
    assert!(error.to_string().starts_with("nats: cannot connect to nats://127.0.0.1:1"), "{error}");
}

#[test]
fn nats_names_are_checked() {
    let good = NatsOptions::new("nats://127.0.0.1:4222");
    assert_eq!(good.check(), Ok(()));
    for (options, field) in [
        (NatsOptions { stream: "A.B".into(), ..good.clone() }, "nats stream"),
        (NatsOptions { stream: String::new(), ..good.clone() }, "nats stream"),
        (NatsOptions { subject_prefix: "usage.*".into(), ..good.clone() }, "nats subject prefix"),
        (NatsOptions { subject_prefix: "a..b".into(), ..good.clone() }, "nats subject prefix"),
        (NatsOptions { url: "http://127.0.0.1:4222".into(), ..good.clone() }, "nats:"),
    ] {
        let problem = options.check().unwrap_err();
        assert!(problem.starts_with(field), "{problem}");
    }
}

suanli_store::conformance!(
    usage_from_nats_is_applied_once_and_what_is_not_a_signed_batch_is_set_aside,
    a_full_writer_queue_sends_messages_back_and_none_is_lost,
    utilization_from_nats_is_stored_once_by_its_kind_header,
);
