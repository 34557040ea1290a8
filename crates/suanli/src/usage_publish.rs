//! `suanli usage publish`: a provider's side of NATS ingestion. Reads a CSV or JSON-lines usage
//! file (checked whole first, like `usage import`), signs each batch with the provider's Ed25519
//! key and publishes it to the provider's subject, with a progress bar that advances as JetStream
//! confirms each message stored. `suanli provider keygen` makes the key.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use async_nats::jetstream::message::PublishMessage;
use ed25519_dalek::SigningKey;
use suanli_api::nats::NatsOptions;
use suanli_api::{UsageBatch, UsageRecord};
use suanli_domain::ProviderId;
use suanli_service::access::{hex, sha256_hex, unhex, usage_signing_bytes};
use suanli_service::service::USAGE_BATCH_RECORDS_MAX;

/// Messages published and not yet confirmed at most.
const UNCONFIRMED_MAX: usize = 256;

#[derive(clap::Args)]
pub struct PublishOptions {
    /// The provider the records are for (prv-N).
    #[arg(long)]
    provider: String,
    /// The provider's Ed25519 secret key: a file holding 64 hex characters (`provider keygen`).
    #[arg(long, env = "SUANLI_PROVIDER_KEY_FILE")]
    key_file: PathBuf,
    /// The NATS server.
    #[arg(long, env = "SUANLI_NATS", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// The stream the server consumes.
    #[arg(long, env = "SUANLI_NATS_STREAM", default_value = "SUANLI_USAGE")]
    nats_stream: String,
    /// Subjects are <prefix>.<provider>.
    #[arg(long, env = "SUANLI_NATS_SUBJECT_PREFIX", default_value = "suanli.usage")]
    nats_subject_prefix: String,
    /// Records per message.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// A .csv (id,order,gpu_seconds,period_start,period_end) or .jsonl file.
    file: PathBuf,
}

/// Reads a secret key file: 64 hex characters, surrounding whitespace ignored.
pub fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--key-file: cannot read {}", path.display()))?;
    let bytes = unhex::<32>(text.trim()).with_context(|| {
        format!("--key-file: {} must hold an Ed25519 secret key as 64 hex characters", path.display())
    })?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// `suanli provider keygen --out FILE`: a new secret key in a new file (never overwritten, readable
/// by its owner only); prints the public key to register with `provider set-key`.
pub fn keygen(out: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("the system's random source failed: {e}"))?;
    let key = SigningKey::from_bytes(&secret);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file =
        options.open(out).with_context(|| format!("--out: cannot create {} (it must not exist)", out.display()))?;
    writeln!(file, "{}", hex(&secret))?;
    let public = hex(key.verifying_key().as_bytes());
    if json {
        println!("{}", serde_json::json!({ "secret_key_file": out, "public_key": public }));
    } else {
        println!(
            "secret key written to {}\npublic key {public}\nregister it: suanli provider set-key --provider prv-N --public-key {public}",
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What a publish sent.
#[derive(serde::Serialize)]
struct Published {
    records: usize,
    messages: usize,
    subject: String,
    stream: String,
    first_sequence: u64,
    last_sequence: u64,
    /// Messages the stream already held (the same signed batch published before).
    duplicates: usize,
}

pub fn publish(options: &PublishOptions, json: bool) -> anyhow::Result<ExitCode> {
    let provider = ProviderId::parse(&options.provider).context("--provider")?;
    if !(1..=USAGE_BATCH_RECORDS_MAX).contains(&options.batch) {
        bail!("--batch: must be between 1 and {USAGE_BATCH_RECORDS_MAX}");
    }
    let mut nats = NatsOptions::new(&options.nats);
    nats.stream = options.nats_stream.clone();
    nats.subject_prefix = options.nats_subject_prefix.clone();
    nats.check().map_err(anyhow::Error::msg)?;
    let key = read_key(&options.key_file)?;
    let records = crate::usage_import::read(&options.file)?;
    if records.is_empty() {
        bail!("{}: holds no usage records", options.file.display());
    }
    // Every message is built and signed before the first is sent.
    let messages: Vec<(usize, Vec<u8>, String)> = records
        .chunks(options.batch)
        .map(|chunk| {
            let signature = suanli_wire::sign(&key, &usage_signing_bytes(provider, chunk));
            let batch = UsageBatch { records: chunk.iter().map(UsageRecord::of).collect() };
            Ok((chunk.len(), serde_json::to_vec(&batch)?, signature))
        })
        .collect::<anyhow::Result<_>>()?;
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(records.len() as u64).with_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} records {per_sec} {eta}")
                .expect("the template is valid"),
        )
    };
    let subject = nats.subject(provider);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut published = Published {
        records: records.len(),
        messages: messages.len(),
        subject: subject.clone(),
        stream: nats.stream.clone(),
        first_sequence: 0,
        last_sequence: 0,
        duplicates: 0,
    };
    runtime.block_on(async {
        let context = suanli_api::nats::connect(&nats.url).await?;
        let no_stream = || {
            anyhow::anyhow!(
                "nats: no stream takes {subject}; `suanli serve --nats {}` creates stream {} on its start",
                nats.url,
                nats.stream
            )
        };
        let mut unconfirmed = VecDeque::new();
        for (count, body, signature) in messages {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Suanli-Signature", signature.as_str());
            // The same signed batch always has the same id, so a publish repeated within the
            // stream's duplicate window is stored once.
            let message = PublishMessage::build()
                .payload(body.into())
                .headers(headers)
                .message_id(format!("{provider}-{}", &sha256_hex(&signature)[..32]));
            let confirmation = context.send_publish(subject.clone(), message).await.map_err(|e| {
                if e.kind() == async_nats::jetstream::context::PublishErrorKind::StreamNotFound {
                    no_stream()
                } else {
                    anyhow::anyhow!("nats: cannot publish to {subject}: {e}")
                }
            })?;
            unconfirmed.push_back((count, confirmation));
            if unconfirmed.len() >= UNCONFIRMED_MAX {
                let (count, confirmation) = unconfirmed.pop_front().expect("the queue is not empty");
                confirm(&mut published, confirmation.await, &no_stream)?;
                bar.inc(count as u64);
            }
        }
        while let Some((count, confirmation)) = unconfirmed.pop_front() {
            confirm(&mut published, confirmation.await, &no_stream)?;
            bar.inc(count as u64);
        }
        anyhow::Ok(())
    })?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string(&published)?);
    } else {
        println!(
            "published {} records in {} messages to {} (stream {}, sequences {}–{}{}); \
             the server applies them and logs any record it refuses",
            published.records,
            published.messages,
            published.subject,
            published.stream,
            published.first_sequence,
            published.last_sequence,
            if published.duplicates > 0 { format!(", {} already stored", published.duplicates) } else { String::new() },
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn confirm(
    published: &mut Published,
    confirmation: Result<async_nats::jetstream::publish::PublishAck, async_nats::jetstream::context::PublishError>,
    no_stream: &dyn Fn() -> anyhow::Error,
) -> anyhow::Result<()> {
    let ack = confirmation.map_err(|e| {
        if e.kind() == async_nats::jetstream::context::PublishErrorKind::StreamNotFound {
            no_stream()
        } else {
            anyhow::anyhow!("nats: a message was not confirmed stored: {e}")
        }
    })?;
    if ack.duplicate {
        published.duplicates += 1;
    }
    if published.first_sequence == 0 {
        published.first_sequence = ack.sequence;
    }
    published.first_sequence = published.first_sequence.min(ack.sequence);
    published.last_sequence = published.last_sequence.max(ack.sequence);
    Ok(())
}
