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

/// What an audit found, printed as text or JSON.
#[derive(serde::Serialize)]
pub struct Verified {
    pub database: String,
    /// What the published heads were (with --heads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heads: Option<String>,
    pub journal_batches: u64,
    pub journal_head: String,
    pub accounts: u64,
    pub transfers: u64,
    pub holds_open: u64,
    pub holds_expired: u64,
    pub failed_ids: u64,
    pub log_entries: u64,
    pub log_head: String,
    /// Usage records and checkpoints of the service's state replayed from the log, when the
    /// ledger checks passed and the state could be rebuilt.
    pub usage_records: Option<u64>,
    pub checkpoints: Option<u64>,
    /// Posted and pending debits (equal to credits), in fen as text: the sums may pass i64.
    pub posted_fen: String,
    pub pending_fen: String,
    pub state_hash: Option<String>,
    pub passed: bool,
    pub violations: Vec<String>,
}

impl Verified {
    pub fn code(&self) -> ExitCode {
        if self.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    }

    pub fn text(&self) -> String {
        let money = |fen: &str| fen.parse::<i64>().map_or_else(|_| format!("{fen} fen"), |f| Fen::new(f).to_string());
        let mut out = String::new();
        if let Some(heads) = &self.heads {
            out.push_str(&format!("{heads}\n"));
        }
        out.push_str(&format!("database       {}\n", self.database));
        out.push_str(&format!("journal        {} batches, head {}\n", self.journal_batches, self.journal_head));
        out.push_str(&format!("accounts       {}\n", self.accounts));
        out.push_str(&format!("transfers      {}\n", self.transfers));
        out.push_str(&format!("holds          {} open, {} expired\n", self.holds_open, self.holds_expired));
        out.push_str(&format!("failed ids     {}\n", self.failed_ids));
        out.push_str(&format!("audit log      {} entries, head {}\n", self.log_entries, self.log_head));
        if let (Some(usage), Some(checkpoints)) = (self.usage_records, self.checkpoints) {
            out.push_str(&format!("usage records  {usage}\n"));
            out.push_str(&format!("checkpoints    {checkpoints}, each equal to the log replayed up to it\n"));
        }
        out.push_str(&format!("posted         {} debits = credits\n", money(&self.posted_fen)));
        out.push_str(&format!("pending        {} debits = credits\n", money(&self.pending_fen)));
        match &self.state_hash {
            Some(hash) => out.push_str(&format!("state hash     {hash}\n")),
            None => out.push_str("state hash     (not computed: the ledger could not be rebuilt)\n"),
        }
        if self.passed {
            out.push_str(
                "audit passed: every balance re-derived from its transfers, every invariant holds, both hash chains \
                 are intact, and the service's state replayed from the log agrees with the ledger\n",
            );
        } else {
            for violation in &self.violations {
                out.push_str(&format!("VIOLATION      {violation}\n"));
            }
            out.push_str(&format!("audit FAILED: {} violation(s)\n", self.violations.len()));
        }
        out
    }

    /// Prints it as asked and answers the exit code.
    pub fn print(&self, json: bool) -> anyhow::Result<ExitCode> {
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
        } else {
            print!("{}", self.text());
        }
        Ok(self.code())
    }
}

/// Audits the database a URL names (a path, `sqlite://PATH` or `postgres://…`). On PostgreSQL
/// the audit reads one snapshot without the writer's lock, so it runs beside a server.
pub fn verify_database(database: &str) -> anyhow::Result<Verified> {
    verify_against(database, None)
}

/// [`verify_database`], and the log proven a consistent extension of every head in `heads`.
pub fn verify_against(database: &str, heads: Option<Heads<'_>>) -> anyhow::Result<Verified> {
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
    Ok(finish(shown, summary, database, report))
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

fn finish(shown: String, heads: Option<String>, database: &str, mut report: suanli_store::AuditReport) -> Verified {
    let mut checkpoints = None;
    // The service's own state, replayed from the log, must agree with the ledger everywhere.
    let usage_records = if report.passed() {
        match Service::open_reader(database, std::sync::Arc::new(SystemClock)) {
            Ok(mut service) => {
                let problems = service.check_books();
                report.violations.extend(problems.iter().map(|p| format!("books: {p}")));
                match service.verify_checkpoints() {
                    Ok((count, problems)) => {
                        checkpoints = Some(count as u64);
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
    Verified {
        database: shown,
        heads,
        journal_batches: report.batches,
        journal_head: to_hex(&report.journal_head),
        accounts: report.accounts,
        transfers: report.transfers,
        holds_open: report.holds_open,
        holds_expired: report.holds_expired,
        failed_ids: report.failed_ids,
        log_entries: report.log_entries,
        log_head: to_hex(&report.log_head),
        usage_records,
        checkpoints: checkpoints.filter(|_| usage_records.is_some()),
        posted_fen: report.posted_total.to_string(),
        pending_fen: report.pending_total.to_string(),
        state_hash: report.state_hash.map(|h| to_hex(&h)),
        passed: report.violations.is_empty(),
        violations: report.violations,
    }
}
