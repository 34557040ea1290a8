//! `suanli audit verify`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use suanli_domain::Fen;
use suanli_ledger::to_hex;
use suanli_service::{Service, SystemClock};
use suanli_store::{PostgresStore, SqliteStore, audit};

/// Audits the database a URL names (a path, `sqlite://PATH` or `postgres://…`). On PostgreSQL
/// the audit reads one snapshot without the writer's lock, so it runs beside a server.
pub fn verify_database(database: &str) -> anyhow::Result<ExitCode> {
    if crate::database::is_postgres(database) {
        let mut store = PostgresStore::open_reader(database)?;
        let report = audit(&mut store)?;
        drop(store);
        return finish(&suanli_store::redact(database), database, report);
    }
    verify(&crate::database::sqlite_path(database)?)
}

pub fn verify(path: &Path) -> anyhow::Result<ExitCode> {
    let mut store = SqliteStore::open_existing(path).with_context(|| format!("audit of {}", path.display()))?;
    let report = audit(&mut store)?;
    drop(store);
    finish(&path.display().to_string(), &path.display().to_string(), report)
}

fn finish(shown: &str, database: &str, mut report: suanli_store::AuditReport) -> anyhow::Result<ExitCode> {
    let path = shown;
    let mut checkpoints = 0;
    // The service's own state, replayed from the log, must agree with the ledger everywhere.
    let books = if report.passed() {
        match Service::open_reader(database, std::sync::Arc::new(SystemClock)) {
            Ok(mut service) => {
                let problems = service.check_books();
                report.violations.extend(problems.iter().map(|p| format!("books: {p}")));
                match service.verify_checkpoints() {
                    Ok((count, problems)) => {
                        checkpoints = count;
                        report.violations.extend(problems);
                    }
                    Err(error) => report.violations.push(format!("checkpoints: {error}")),
                }
                Some(service.state().usage_recorded)
            }
            Err(error) => {
                report.violations.push(format!("the service state cannot be rebuilt from the audit log: {error}"));
                None
            }
        }
    } else {
        None
    };
    let money = |total: i128| i64::try_from(total).map_or_else(|_| format!("{total} fen"), |f| Fen::new(f).to_string());
    println!("database       {path}");
    println!("journal        {} batches, head {}", report.batches, to_hex(&report.journal_head));
    println!("accounts       {}", report.accounts);
    println!("transfers      {}", report.transfers);
    println!("holds          {} open, {} expired", report.holds_open, report.holds_expired);
    println!("failed ids     {}", report.failed_ids);
    println!("audit log      {} entries, head {}", report.log_entries, to_hex(&report.log_head));
    if let Some(usage) = books {
        println!("usage records  {usage}");
        println!("checkpoints    {checkpoints}, each equal to the log replayed up to it");
    }
    println!("posted         {} debits = credits", money(report.posted_total));
    println!("pending        {} debits = credits", money(report.pending_total));
    match report.state_hash {
        Some(hash) => println!("state hash     {}", to_hex(&hash)),
        None => println!("state hash     (not computed: the ledger could not be rebuilt)"),
    }
    if report.passed() {
        println!(
            "audit passed: every balance re-derived from its transfers, every invariant holds, both hash chains are \
             intact, and the service's state replayed from the log agrees with the ledger"
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
