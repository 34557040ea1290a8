//! Usage ingestion from NATS JetStream: providers publish signed usage batches to a stream, a
//! subject per provider (`suanli.usage.prv-7`), and the server consumes them through the same
//! single writer as the HTTP API.
//!
//! A message is the HTTP body (`{"records": [...]}`) with the `Suanli-Signature` header; with
//! the header `Suanli-Kind: utilization` it is a utilization batch (`{"samples": [...]}`); the
//! provider is the last token of its subject, so a batch signed by one provider and published on
//! another's subject fails the signature check. The consumer is durable and pull-based with
//! explicit acknowledgement: a message is acknowledged only after the writer has committed its
//! records. A crash before the acknowledgement means redelivery, and redelivery is harmless,
//! because usage ids are idempotent (a record already committed answers `exists`).
//!
//! A message that is not a signed batch (not JSON, a wrong field, a bad signature, a subject that
//! names no provider) is terminated: JetStream stops redelivering it, the server logs it with its
//! stream sequence, and it stays in the stream (limits retention), so nothing is lost and the
//! consumer goes on. A batch the writer cannot take now (queue full, storage failure) is
//! negatively acknowledged and comes back after a delay.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures_util::StreamExt;
use suanli_domain::ProviderId;
use suanli_service::model::UsageOutcome;
use suanli_service::{Actor, ErrorCode, Role};
use tokio::sync::Semaphore;

use crate::utilization::{UtilizationBatch, check_utilization_batch};
use crate::writer::{Refused, Writer};
use crate::{ApiError, UsageBatch, check_usage_batch};

/// Messages being checked or waiting for their commit at most.
pub const IN_FLIGHT_MAX: usize = 256;

/// How long a connection attempt may take before the server is called unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where usage messages live.
#[derive(Clone, Debug)]
pub struct NatsOptions {
    pub url: String,
    /// The stream, created on first use.
    pub stream: String,
    /// Subjects are `<prefix>.<provider>`.
    pub subject_prefix: String,
    /// The durable consumer's name.
    pub consumer: String,
    /// How long a delivered message may stay unacknowledged before JetStream delivers it again:
    /// after a crash, the messages that were in flight come back this much later.
    pub ack_wait: Duration,
}

impl NatsOptions {
    pub fn new(url: &str) -> NatsOptions {
        NatsOptions {
            url: url.to_owned(),
            stream: "SUANLI_USAGE".into(),
            subject_prefix: "suanli.usage".into(),
            consumer: "suanli-writer".into(),
            ack_wait: Duration::from_secs(30),
        }
    }

    /// Checks the names: a stream name without dots, spaces or wildcards; a prefix of non-empty
    /// dot-separated tokens without spaces or wildcards; a `nats://` or `tls://` URL.
    pub fn check(&self) -> Result<(), String> {
        let plain = |text: &str| !text.is_empty() && !text.contains(|c: char| c.is_whitespace() || "*>".contains(c));
        if !plain(&self.stream) || self.stream.contains(['.', '/', '\\']) {
            return Err(format!(
                "nats stream: {:?} must be a name without dots, slashes, spaces or wildcards",
                self.stream
            ));
        }
        if !self.subject_prefix.split('.').all(plain) {
            return Err(format!(
                "nats subject prefix: {:?} must be dot-separated names without spaces or wildcards",
                self.subject_prefix
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3_600)).contains(&self.ack_wait) {
            return Err("nats ack wait: must be between 1 and 3600 seconds".into());
        }
        if !(self.url.starts_with("nats://") || self.url.starts_with("tls://")) {
            return Err(format!("nats: {:?} must be a nats:// or tls:// URL", self.url));
        }
        Ok(())
    }

    /// The subject a provider publishes on.
    pub fn subject(&self, provider: ProviderId) -> String {
        format!("{}.{provider}", self.subject_prefix)
    }
}

/// Why NATS could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("nats: cannot connect to {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("nats: {0}")]
    Stream(String),
}

fn stream_error(what: &str, error: impl std::fmt::Display) -> NatsError {
    NatsError::Stream(format!("{what}: {error}"))
}

/// Connects to the server, failing fast (no retry loop) when it cannot be reached.
pub async fn connect(url: &str) -> Result<jetstream::Context, NatsError> {
    let unreachable = |reason: String| NatsError::Unreachable { url: url.to_owned(), reason };
    let client = tokio::time::timeout(
        CONNECT_TIMEOUT,
        async_nats::ConnectOptions::new().connection_timeout(CONNECT_TIMEOUT).connect(url),
    )
    .await
    .map_err(|_| unreachable(format!("no answer in {} s", CONNECT_TIMEOUT.as_secs())))?
    .map_err(|e| unreachable(e.to_string()))?;
    Ok(jetstream::new(client))
}

/// The usage stream, created if missing: file storage, limits retention (acknowledged messages
/// stay until the stream's limits remove them), duplicate publishes of one message id dropped.
pub async fn ensure_stream(context: &jetstream::Context, options: &NatsOptions) -> Result<stream::Stream, NatsError> {
    let subjects = format!("{}.*", options.subject_prefix);
    let mut stream = context
        .get_or_create_stream(stream::Config {
            name: options.stream.clone(),
            subjects: vec![subjects.clone()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            ..Default::default()
        })
        .await
        .map_err(|e| stream_error(&format!("stream {}", options.stream), e))?;
    // A stream of that name made for other subjects would never see this prefix's messages.
    let taken =
        &stream.info().await.map_err(|e| stream_error(&format!("stream {}", options.stream), e))?.config.subjects;
    if !taken.contains(&subjects) {
        return Err(NatsError::Stream(format!(
            "stream {} exists for subjects {taken:?}, not {subjects}; choose another stream or subject prefix",
            options.stream
        )));
    }
    Ok(stream)
}

/// Message counters for `/metrics`.
#[derive(Default)]
pub struct NatsStats {
    /// Committed and acknowledged.
    pub applied: AtomicU64,
    /// Not a signed batch: terminated and logged.
    pub rejected: AtomicU64,
    /// Negatively acknowledged, to come back.
    pub retried: AtomicU64,
}

/// What became of one message.
enum Verdict {
    Applied {
        records: usize,
        refused: usize,
    },
    Rejected(ApiError),
    Retry(String),
    /// The writer has stopped: leave the message unacknowledged for the next run.
    Stopped,
}

/// Consumes usage messages until `shutdown` resolves; then waits for the messages in flight (their
/// commits and acknowledgements) and returns. Connection trouble after the start is logged and
/// retried; only a failure to set up the stream or the consumer is returned.
pub async fn consume(
    writer: Writer,
    context: jetstream::Context,
    options: NatsOptions,
    stats: Arc<NatsStats>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NatsError> {
    let stream = ensure_stream(&context, &options).await?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &options.consumer,
            consumer::pull::Config {
                durable_name: Some(options.consumer.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: options.ack_wait,
                max_ack_pending: (2 * IN_FLIGHT_MAX) as i64,
                filter_subject: format!("{}.*", options.subject_prefix),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| stream_error(&format!("consumer {}", options.consumer), e))?;
    let filter = &consumer.cached_info().config.filter_subject;
    if *filter != format!("{}.*", options.subject_prefix) {
        return Err(NatsError::Stream(format!(
            "consumer {} exists with filter {filter:?}, not {}.*; choose another consumer",
            options.consumer, options.subject_prefix
        )));
    }
    let kept = consumer.cached_info().config.ack_wait;
    if kept != options.ack_wait {
        tracing::warn!(
            consumer = %options.consumer,
            ack_wait_s = kept.as_secs(),
            asked_s = options.ack_wait.as_secs(),
            "nats: the durable consumer exists and keeps its acknowledgement wait"
        );
    }
    tracing::info!(
        stream = %options.stream,
        subjects = %format!("{}.*", options.subject_prefix),
        consumer = %options.consumer,
        "consuming usage"
    );
    let slots = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let prefix = Arc::new(format!("{}.", options.subject_prefix));
    tokio::pin!(shutdown);
    'run: loop {
        let mut messages = tokio::select! {
            _ = &mut shutdown => break 'run,
            messages = consumer.stream().max_messages_per_batch(IN_FLIGHT_MAX).messages() => match messages {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, "nats: cannot pull; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        loop {
            let slot = tokio::select! {
                _ = &mut shutdown => break 'run,
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            };
            let next = tokio::select! {
                _ = &mut shutdown => break 'run,
                next = messages.next() => next,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(%error, "nats: pull interrupted; resuming");
                    continue;
                }
                None => break,
            };
            let (writer, stats, prefix) = (writer.clone(), stats.clone(), prefix.clone());
            tokio::spawn(async move {
                let verdict = apply(&writer, &prefix, &message).await;
                settle(&message, verdict, &stats).await;
                drop(slot);
            });
        }
    }
    // Let every message in flight reach its commit and acknowledgement.
    let _ = slots.acquire_many(IN_FLIGHT_MAX as u32).await;
    Ok(())
}

async fn apply(writer: &Writer, prefix: &str, message: &jetstream::Message) -> Verdict {
    let provider = match message.subject.strip_prefix(prefix).map(ProviderId::parse) {
        Some(Ok(provider)) => provider,
        _ => return Verdict::Rejected(ApiError::field("subject", format!("must be {prefix}<provider>"))),
    };
    let kind = message.headers.as_ref().and_then(|h| h.get("Suanli-Kind")).map(|v| v.as_str().to_owned());
    match kind.as_deref() {
        None | Some("usage") => {}
        Some("utilization") => return apply_utilization(writer, provider, message).await,
        Some(other) => {
            return Verdict::Rejected(ApiError::field(
                "Suanli-Kind",
                format!("{other:?} must be usage or utilization"),
            ));
        }
    }
    let batch: UsageBatch = match serde_json::from_slice(&message.payload) {
        Ok(batch) => batch,
        Err(error) => return Verdict::Rejected(ApiError::field("body", format!("not a usage batch: {error}"))),
    };
    let signature = message.headers.as_ref().and_then(|h| h.get("Suanli-Signature")).map(|v| v.as_str());
    let records = match check_usage_batch(writer, provider, &batch, signature) {
        Ok(records) => records,
        Err(error) => {
            crate::flag_bad_signature(writer, provider, &error).await;
            return Verdict::Rejected(error);
        }
    };
    let count = records.len();
    match writer.usage(Actor::of(Role::Provider(provider)), provider, records).await {
        Ok(Ok(outcomes)) => {
            let mut refused = 0;
            for outcome in outcomes {
                if let UsageOutcome::Refused { id, code, message } = outcome {
                    refused += 1;
                    tracing::warn!(%provider, id = %id, code = %code, error = %message, "usage record refused");
                }
            }
            Verdict::Applied { records: count, refused }
        }
        Ok(Err(error)) if retry_later(&error) => Verdict::Retry(error.message),
        Ok(Err(error)) => Verdict::Rejected(error.into()),
        Err(Refused::Overloaded) => Verdict::Retry("the writer's queue is full".into()),
        Err(Refused::Stopped) => Verdict::Stopped,
    }
}

/// A message with header `Suanli-Kind: utilization`: a utilization batch, checked and recorded
/// like one posted over HTTP. Redelivery is harmless: a sample stored before answers `exists`.
async fn apply_utilization(writer: &Writer, provider: ProviderId, message: &jetstream::Message) -> Verdict {
    let batch: UtilizationBatch = match serde_json::from_slice(&message.payload) {
        Ok(batch) => batch,
        Err(error) => return Verdict::Rejected(ApiError::field("body", format!("not a utilization batch: {error}"))),
    };
    let signature = message.headers.as_ref().and_then(|h| h.get("Suanli-Signature")).map(|v| v.as_str());
    let samples = match check_utilization_batch(writer, provider, &batch, signature) {
        Ok(samples) => samples,
        Err(error) => {
            crate::flag_bad_signature(writer, provider, &error).await;
            return Verdict::Rejected(error);
        }
    };
    let count = samples.len();
    let actor = Actor::of(Role::Provider(provider));
    match writer.call(move |s| s.record_utilization(&actor, provider, &samples)).await {
        Ok(Ok(outcomes)) => {
            let refused = outcomes.iter().filter(|o| o.status == "error").count();
            Verdict::Applied { records: count, refused }
        }
        Ok(Err(error)) if retry_later(&error) => Verdict::Retry(error.message),
        Ok(Err(error)) => Verdict::Rejected(error.into()),
        Err(Refused::Overloaded) => Verdict::Retry("the writer's queue is full".into()),
        Err(Refused::Stopped) => Verdict::Stopped,
    }
}

/// A refusal that says "not stored, try again": storage failed or is out of space.
fn retry_later(error: &suanli_service::ServiceError) -> bool {
    matches!(
        error.code,
        ErrorCode::Storage | ErrorCode::StorageUnavailable | ErrorCode::StorageFull | ErrorCode::Internal
    )
}

async fn settle(message: &jetstream::Message, verdict: Verdict, stats: &NatsStats) {
    let sequence = message.info().map(|info| info.stream_sequence).unwrap_or_default();
    let subject = message.subject.as_str();
    let acknowledged = match verdict {
        Verdict::Applied { records, refused } => {
            stats.applied.fetch_add(1, Ordering::Relaxed);
            if refused > 0 {
                tracing::warn!(
                    subject,
                    stream_sequence = sequence,
                    records,
                    refused,
                    "usage message applied with refusals"
                );
            }
            message.ack().await
        }
        Verdict::Rejected(error) => {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::error!(subject, stream_sequence = sequence, code = %error.code, error = %error.message, "usage message rejected");
            message.ack_with(AckKind::Term).await
        }
        Verdict::Retry(reason) => {
            stats.retried.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(subject, stream_sequence = sequence, %reason, "usage message retried");
            message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await
        }
        Verdict::Stopped => return,
    };
    if let Err(error) = acknowledged {
        // The records are committed; the message will come back and answer `exists`.
        tracing::warn!(subject, stream_sequence = sequence, %error, "nats: acknowledgement lost");
    }
}
