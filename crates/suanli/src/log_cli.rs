//! `suanli log show` and `suanli anomalies`: the audit log and the evidence in it, read from
//! storage a page at a time.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};
use suanli_service::calendar::format_timestamp;

use crate::service_cli::{Common, Reply, run, table, to_json};

#[derive(Subcommand)]
pub enum LogCommand {
    /// Show audit-log entries, newest last.
    Show {
        /// Only entries about this object (for example vch-1).
        #[arg(long)]
        object: Option<String>,
        /// The newest this many entries that match (0 for all).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

pub fn log(common: &Common, command: LogCommand) -> anyhow::Result<ExitCode> {
    let LogCommand::Show { object, limit } = command;
    run(common, |service, _| {
        // The log a page at a time, keeping only the newest `limit` entries that match: memory
        // stays bounded however long the log is.
        let mut reader = service.log_reader()?;
        let mut kept: std::collections::VecDeque<suanli_store::LogEntry> = std::collections::VecDeque::new();
        let mut after = 0;
        loop {
            let (page, _) = reader.page(after, suanli_store::LOG_PAGE_ENTRIES_MAX)?;
            let Some(last) = page.last() else { break };
            after = last.sequence;
            // An object's history is every entry that touched it, not only those filed under it.
            let touches = |e: &suanli_store::LogEntry, o: &String| {
                &e.object == o
                    || suanli_service::event::Event::from_body(&e.body).is_ok_and(|event| event.objects().contains(o))
            };
            for entry in page.into_iter().filter(|e| object.as_ref().is_none_or(|o| touches(e, o))) {
                if kept.len() == limit {
                    kept.pop_front();
                }
                if limit > 0 {
                    kept.push_back(entry);
                }
            }
        }
        let shown: &[suanli_store::LogEntry] = kept.make_contiguous();
        let mut t = table(&["#", "time", "actor", "action", "object", "hash"]);
        for e in shown {
            t.add_row(vec![
                e.sequence.to_string(),
                format_timestamp(e.time_s),
                e.actor.clone(),
                e.action.clone(),
                e.object.clone(),
                suanli_ledger::to_hex(&e.hash)[..16].to_owned(),
            ]);
        }
        let json = json!(shown
            .iter()
            .map(|e| json!({"sequence": e.sequence, "time": format_timestamp(e.time_s), "actor": e.actor, "action": e.action,
                "object": e.object, "body": serde_json::from_str::<Value>(&e.body).unwrap_or(Value::Null),
                "ledger_batch": e.ledger_batch_id, "hash": suanli_ledger::to_hex(&e.hash)}))
            .collect::<Vec<_>>());
        Ok(Reply::new(json, t.to_string()))
    })
}

pub fn anomalies(common: &Common) -> anyhow::Result<ExitCode> {
    run(common, |service, _| {
        // Every anomaly is in the log: read a page at a time, keeping the newest thousand.
        let mut reader = service.log_reader()?;
        let filter = suanli_store::AnomalyFilter::default();
        let mut newest = std::collections::VecDeque::new();
        let mut seen = 0;
        loop {
            let (page, _) = reader.anomalies(&filter, seen, suanli_store::LOG_PAGE_ENTRIES_MAX)?;
            if page.is_empty() {
                break;
            }
            seen += page.len() as u64;
            for entry in page {
                let event = suanli_service::event::Event::from_body(&entry.body).map_err(anyhow::Error::msg)?;
                if let Some(anomaly) = event.anomaly(entry.time_s) {
                    if newest.len() == suanli_service::state::ANOMALIES_IN_MEMORY {
                        newest.pop_front();
                    }
                    newest.push_back(anomaly);
                }
            }
        }
        let mut t = table(&["time", "kind", "object", "detail"]);
        for a in &newest {
            t.add_row(vec![format_timestamp(a.time_s), a.kind.clone(), a.object.clone(), a.detail.clone()]);
        }
        Ok(Reply::new(to_json(&newest), t.to_string()))
    })
}
