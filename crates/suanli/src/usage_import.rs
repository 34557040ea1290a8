//! `suanli usage import`: usage records from a provider's CSV or JSON-lines file.
//!
//! The whole file is parsed and checked first, so a malformed line (named by its number and
//! field) stops the import before anything is recorded. Then the records go to the service in
//! batches, one commit each, with a progress bar on the terminal. Records the service refuses
//! (physics, an order that is not running, a replayed id with a different body) are listed in the
//! summary; the rest of the batch is recorded.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use suanli_domain::{Fen, OrderId, ProviderId};
use suanli_service::calendar::parse_timestamp;
use suanli_service::model::{UsageInput, UsageOutcome};
use suanli_service::service::USAGE_BATCH_RECORDS_MAX;
use suanli_service::{Actor, Service};

/// The most records one import reads, so a wrong file cannot exhaust memory.
pub const IMPORT_RECORDS_MAX: usize = 10_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: String,
    order: String,
    gpu_seconds: i64,
    period_start: String,
    period_end: String,
}

#[derive(Debug, Default, Serialize)]
pub struct ImportSummary {
    pub records: usize,
    pub recorded: usize,
    pub duplicates: usize,
    /// (id, code, message) of each refused record.
    pub refused: Vec<(String, String, String)>,
    pub cost_fen: Fen,
    pub voucher_fen: Fen,
    pub enterprise_fen: Fen,
}

impl ImportSummary {
    /// The summary as the CLI prints it: the counts, the sums of what was recorded now, and the
    /// first refusals.
    pub fn text(&self) -> String {
        let mut text = format!(
            "{} records: {} recorded, {} duplicates, {} refused\ncost {}  voucher parts {}  enterprise parts {}",
            self.records,
            self.recorded,
            self.duplicates,
            self.refused.len(),
            self.cost_fen,
            self.voucher_fen,
            self.enterprise_fen
        );
        for (id, code, message) in self.refused.iter().take(20) {
            text.push_str(&format!("\nrefused {id}: {code}: {message}"));
        }
        text
    }
}

fn to_input(line: Line, number: usize) -> anyhow::Result<UsageInput> {
    let at = |field: &str| format!("line {number}: {field}");
    let order = OrderId::parse(&line.order).with_context(|| at("order"))?;
    let period_start_s = parse_timestamp(&line.period_start)
        .with_context(|| format!("{}: {:?} is not an RFC 3339 time", at("period_start"), line.period_start))?;
    let period_end_s = parse_timestamp(&line.period_end)
        .with_context(|| format!("{}: {:?} is not an RFC 3339 time", at("period_end"), line.period_end))?;
    Ok(UsageInput { id: line.id, order, gpu_seconds: line.gpu_seconds, period_start_s, period_end_s })
}

/// Reads every record of a `.csv` or `.jsonl` file.
pub fn read(path: &Path) -> anyhow::Result<Vec<UsageInput>> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut records = Vec::new();
    match extension {
        "csv" => {
            let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(BufReader::new(file));
            let expected = ["id", "order", "gpu_seconds", "period_start", "period_end"];
            let headers = reader.headers().context("the CSV header")?.clone();
            if headers.iter().collect::<Vec<_>>() != expected {
                bail!("line 1: the CSV header must be exactly {}", expected.join(","));
            }
            for (index, row) in reader.deserialize::<Line>().enumerate() {
                let number = index + 2;
                let line = row.with_context(|| format!("line {number}"))?;
                records.push(to_input(line, number)?);
                if records.len() > IMPORT_RECORDS_MAX {
                    bail!("the file holds more than {IMPORT_RECORDS_MAX} records; split it");
                }
            }
        }
        "jsonl" | "ndjson" => {
            for (index, text) in BufReader::new(file).lines().enumerate() {
                let number = index + 1;
                let text = text.with_context(|| format!("line {number}"))?;
                if text.trim().is_empty() {
                    continue;
                }
                let line: Line = serde_json::from_str(&text).with_context(|| format!("line {number}"))?;
                records.push(to_input(line, number)?);
                if records.len() > IMPORT_RECORDS_MAX {
                    bail!("the file holds more than {IMPORT_RECORDS_MAX} records; split it");
                }
            }
        }
        other => bail!("{}: expected a .csv or .jsonl file, got {other:?}", path.display()),
    }
    Ok(records)
}

pub fn import(
    service: &mut Service,
    actor: &Actor,
    provider: ProviderId,
    path: &Path,
    batch: usize,
    progress: bool,
) -> anyhow::Result<ImportSummary> {
    if batch == 0 || batch > USAGE_BATCH_RECORDS_MAX {
        bail!("--batch: must be between 1 and {USAGE_BATCH_RECORDS_MAX}");
    }
    let records = read(path)?;
    let bar = if progress {
        let bar = indicatif::ProgressBar::new(records.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} records {per_sec} {eta}")
                .expect("the template is valid"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut summary = ImportSummary { records: records.len(), ..ImportSummary::default() };
    for chunk in records.chunks(batch) {
        for outcome in service.record_usage(actor, provider, chunk)? {
            match outcome {
                UsageOutcome::Recorded { cost_fen, voucher_part_fen, enterprise_part_fen, .. } => {
                    summary.recorded += 1;
                    summary.cost_fen = summary.cost_fen.checked_add(cost_fen)?;
                    summary.voucher_fen = summary.voucher_fen.checked_add(voucher_part_fen)?;
                    summary.enterprise_fen = summary.enterprise_fen.checked_add(enterprise_part_fen)?;
                }
                UsageOutcome::Duplicate { .. } => summary.duplicates += 1,
                UsageOutcome::Refused { id, code, message } => summary.refused.push((id, code, message)),
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(summary)
}
