//! `suanli audit verify`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use suanli_domain::Fen;
use suanli_ledger::to_hex;
use suanli_service::{Service, SystemClock};
use suanli_store::{PostgresStore, SqliteStore, TreeClaim, audit_against};

/// Published heads to check a database against: the directory, and the public key they must be
/// signed with (by default the directory's `public-key`; pass the key obtained out of band when
/// the directory itself could have been tampered with).
pub struct Heads<'a> {
    pub dir: &'a Path,
    pub public_key: Option<&'a str>,
}

/// Audits the database a URL names (a path, `sqlite://PATH` or `postgres://…`). On PostgreSQL
/// the audit reads one snapshot without the writer's lock, so it runs beside a server.
pub fn verify_database(database: &str) -> anyhow::Result<ExitCode> {
    verify_against(database, None)
}

/// [`verify_database`], and the log proven a consistent extension of every head in `heads`.
pub fn verify_against(database: &str, heads: Option<Heads<'_>>) -> anyhow::Result<ExitCode> {
    let (claims, mut refused, summary) = match heads {
        Some(heads) => load_claims(&heads)?,
        None => (Vec::new(), Vec::new(), None),
    };
    let (shown, mut report) = if crate::database::is_postgres(database) {
        let mut store = PostgresStore::open_reader(database)?;
        (suanli_store::redact(database), audit_against(&mut store, &claims)?)
    } else {
        let path = crate::database::sqlite_path(database)?;
        let mut store = SqliteStore::open_existing(&path).with_context(|| format!("audit of {}", path.display()))?;
        (path.display().to_string(), audit_against(&mut store, &claims)?)
    };
    report.violations.append(&mut refused);
    if let Some(summary) = summary {
        println!("{summary}");
    }
    finish(&shown, database, report)
}

pub fn verify(path: &Path) -> anyhow::Result<ExitCode> {
    verify_against(&path.display().to_string(), None)
}

/// Reads every head in the directory and checks its signature: the good ones become claims the
/// audit checks the log against; the others are violations.
fn load_claims(heads: &Heads<'_>) -> anyhow::Result<(Vec<TreeClaim>, Vec<String>, Option<String>)> {
    use suanli_service::heads::{parse_public_key, read_heads};
    let key_text = match heads.public_key {
        Some(text) => text.to_owned(),
        None => std::fs::read_to_string(heads.dir.join("public-key"))
            .with_context(|| format!("--heads: {} has no public-key; pass --public-key", heads.dir.display()))?,
    };
    let key = parse_public_key(&key_text).map_err(anyhow::Error::msg).context("--public-key")?;
    let published = read_heads(heads.dir).map_err(anyhow::Error::msg).context("--heads")?;
    let (mut claims, mut refused) = (Vec::new(), Vec::new());
    for (path, head) in &published {
        let label = format!("published head {}", path.file_name().and_then(|n| n.to_str()).unwrap_or("?"));
        match head.verify(&key).and_then(|()| head.hashes()) {
            Ok((root, log_head, journal_head)) => claims.push(TreeClaim {
                size: head.log_size,
                root,
                log_head,
                journal_batches: head.journal_batches,
                journal_head,
                label,
            }),
            Err(reason) => refused.push(format!("{label} is refused: {reason}")),
        }
    }
    // Asked to check against heads, finding none that verifies is a failure, not a pass.
    if claims.is_empty() {
        refused.push(format!("--heads: {} holds no head signed by the platform's key", heads.dir.display()));
    }
    let summary = format!(
        "heads          {} published in {}, {} signed by key {}",
        published.len(),
        heads.dir.display(),
        claims.len(),
        suanli_service::heads::key_id(&key)
    );
    Ok((claims, refused, Some(summary)))
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
