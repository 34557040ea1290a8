//! `suanli audit verify`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use suanli_domain::Fen;
use suanli_ledger::to_hex;
use suanli_store::{SqliteStore, audit};

pub fn verify(path: &Path) -> anyhow::Result<ExitCode> {
    let mut store = SqliteStore::open_existing(path).with_context(|| format!("audit of {}", path.display()))?;
    let report = audit(&mut store)?;
    let money = |total: i128| i64::try_from(total).map_or_else(|_| format!("{total} fen"), |f| Fen::new(f).to_string());
    println!("database       {}", path.display());
    println!("journal        {} batches, head {}", report.batches, to_hex(&report.journal_head));
    println!("accounts       {}", report.accounts);
    println!("transfers      {}", report.transfers);
    println!("holds          {} open, {} expired", report.holds_open, report.holds_expired);
    println!("failed ids     {}", report.failed_ids);
    println!("posted         {} debits = credits", money(report.posted_total));
    println!("pending        {} debits = credits", money(report.pending_total));
    match report.state_hash {
        Some(hash) => println!("state hash     {}", to_hex(&hash)),
        None => println!("state hash     (not computed: the ledger could not be rebuilt)"),
    }
    if report.passed() {
        println!(
            "audit passed: every balance re-derived from its transfers, every invariant holds, the hash chain is intact"
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for violation in &report.violations {
            println!("VIOLATION      {violation}");
        }
        println!("audit FAILED: {} violation(s)", report.violations.len());
        Ok(ExitCode::FAILURE)
    }
}
