//! `suanli usage send`: a provider's side of HTTP ingestion, through the connector client of
//! `suanli-wire`. Reads a CSV or JSON-lines usage file (checked whole first, like `usage import`),
//! signs each batch with the provider's Ed25519 key and posts it, trying a batch again with
//! backoff while the server is unavailable or unreachable. Sending a file twice is safe: records
//! the server already has answer `exists` with their first figures.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use suanli_domain::{Fen, ProviderId};
use suanli_wire::{Client, USAGE_BATCH_RECORDS_MAX, UsageResult};

use crate::usage_import::ImportSummary;

/// How a provider's connector reaches the server: shared by `usage send` and `agent slurm`.
#[derive(clap::Args)]
pub struct Connection {
    /// The provider (prv-N): the records are its, signed with its key.
    #[arg(long)]
    pub provider: String,
    /// The server's address.
    #[arg(long, env = "SUANLI_SERVER", default_value = "http://127.0.0.1:8640")]
    pub server: String,
    /// The provider's machine token (`suanli token issue --role provider:prv-N`); better through
    /// the environment than on a command line others can read.
    #[arg(long, env = "SUANLI_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The provider's Ed25519 secret key: a file holding 64 hex characters (`provider keygen`).
    #[arg(long, env = "SUANLI_PROVIDER_KEY_FILE")]
    pub key_file: PathBuf,
}

impl Connection {
    /// The provider, its key, and a client of the server as its token.
    pub fn open(&self) -> anyhow::Result<(ProviderId, ed25519_dalek::SigningKey, Client)> {
        let provider = ProviderId::parse(&self.provider).context("--provider")?;
        let key = crate::usage_publish::read_key(&self.key_file)?;
        Ok((provider, key, Client::new(&self.server, &self.token)))
    }
}

#[derive(clap::Args)]
pub struct SendOptions {
    #[command(flatten)]
    connection: Connection,
    /// Records per request (1 to 4000).
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Attempts per batch while the server is unavailable or unreachable, waiting 1 s, 2 s, 4 s …
    /// (at most 60 s, or what the server's Retry-After says) between them.
    #[arg(long, default_value_t = 8)]
    attempts: u32,
    /// A .csv (id,order,gpu_seconds,period_start,period_end) or .jsonl file.
    file: PathBuf,
}

/// Adds one record's answer to the file's summary (the sums count what was recorded now).
fn add(summary: &mut ImportSummary, result: UsageResult) -> anyhow::Result<()> {
    summary.records += 1;
    match result.status.as_str() {
        "ok" => {
            summary.recorded += 1;
            let fen = |value: Option<i64>| Fen::new(value.unwrap_or(0));
            summary.cost_fen = summary.cost_fen.checked_add(fen(result.cost_fen))?;
            summary.voucher_fen = summary.voucher_fen.checked_add(fen(result.voucher_part_fen))?;
            summary.enterprise_fen = summary.enterprise_fen.checked_add(fen(result.enterprise_part_fen))?;
        }
        "exists" => summary.duplicates += 1,
        _ => summary.refused.push((result.id, result.code.unwrap_or_default(), result.message.unwrap_or_default())),
    }
    Ok(())
}

pub fn send(options: &SendOptions, json: bool) -> anyhow::Result<ExitCode> {
    let (provider, key, client) = options.connection.open()?;
    if !(1..=USAGE_BATCH_RECORDS_MAX).contains(&options.batch) {
        bail!("--batch: must be between 1 and {USAGE_BATCH_RECORDS_MAX}");
    }
    if !(1..=100).contains(&options.attempts) {
        bail!("--attempts: must be between 1 and 100");
    }
    let records = crate::usage_import::read(&options.file)?;
    if records.is_empty() {
        bail!("{}: holds no usage records", options.file.display());
    }
    let mut summary = ImportSummary::default();
    for chunk in records.chunks(options.batch) {
        let results = suanli_wire::retry(
            options.attempts,
            || client.send_usage(provider, &key, chunk),
            |error, wait, attempt| {
                eprintln!("{error}; trying again in {wait} s (attempt {attempt} of {})", options.attempts)
            },
        )
        .map_err(|error| {
            anyhow::anyhow!("{error} (after {} records of {} were answered)", summary.records, records.len())
        })?;
        for result in results {
            add(&mut summary, result)?;
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{}", summary.text());
    }
    Ok(ExitCode::SUCCESS)
}
