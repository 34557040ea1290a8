//! The audit: checks a whole database from its rows.
//!
//! It walks the journal, recomputing every batch's hash from the rows recorded in it and checking
//! each link of the chain; checks that every record lies inside its batch's time range; then
//! rebuilds the ledger from the rows, which re-derives every balance from the transfers and checks
//! every invariant (books balance, no negative balance, limits hold, every hold resolved at most
//! once). Each problem found is reported, not only the first.

use std::collections::HashMap;

use suanli_ledger::{Account, Changes, GENESIS, Hash, Ledger, PendingStatus, batch_hash, state_hash};

use crate::{Snapshot, Storage, StoreError};

/// What the audit found.
#[derive(Clone, Debug, Default)]
pub struct AuditReport {
    pub batches: u64,
    pub accounts: u64,
    pub transfers: u64,
    pub holds_open: u64,
    pub holds_expired: u64,
    pub failed_ids: u64,
    /// Sum of posted debits over all accounts (equal to posted credits when the books balance).
    pub posted_total: i128,
    /// Sum of pending debits over all accounts.
    pub pending_total: i128,
    pub journal_head: Hash,
    /// Entries in the audit log and the hash of the newest.
    pub log_entries: u64,
    pub log_head: Hash,
    /// The state hash of the rebuilt ledger, when it could be rebuilt.
    pub state_hash: Option<Hash>,
    pub violations: Vec<String>,
}

impl AuditReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

pub fn audit<S: Storage>(storage: &mut S) -> Result<AuditReport, StoreError> {
    let snapshot = storage.load()?;
    let mut report = AuditReport {
        batches: snapshot.batches.len() as u64,
        accounts: snapshot.accounts.len() as u64,
        transfers: snapshot.transfers.len() as u64,
        holds_expired: snapshot.expired.len() as u64,
        failed_ids: snapshot.failed.len() as u64,
        ..AuditReport::default()
    };
    check_journal(&snapshot, &mut report);
    report.log_entries = snapshot.log.len() as u64;
    match crate::check_log(&snapshot.log, &snapshot.batches) {
        Ok(head) => report.log_head = head,
        Err(problems) => report.violations.extend(problems),
    }
    let Snapshot { accounts, transfers, expired, failed, batches, .. } = snapshot;
    report.posted_total = accounts.iter().map(|a| i128::from(a.debits_posted)).sum();
    report.pending_total = accounts.iter().map(|a| i128::from(a.debits_pending)).sum();
    let last_timestamp = batches.last().map_or(0, |b| b.timestamp_last);
    match Ledger::restore(accounts, transfers, expired, failed, last_timestamp) {
        Ok(ledger) => {
            report.holds_open =
                ledger.pending_statuses().filter(|(_, status)| *status == PendingStatus::Pending).count() as u64;
            report.state_hash = Some(state_hash(&ledger));
        }
        Err(violation) => report.violations.push(violation.to_string()),
    }
    Ok(report)
}

/// Recomputes every batch's hash from its rows and checks each link, adding what is wrong to
/// `report.violations`.
pub(crate) fn check_journal(snapshot: &Snapshot, report: &mut AuditReport) {
    check_journal_after(snapshot, 0, GENESIS, report)
}

/// Like [`check_journal`] from a checkpoint at batch `after` whose hash is `after_hash`: every
/// link is checked, and the hashes of the batches after it are recomputed from their rows (the
/// snapshot holds no settled rows of earlier batches; the full audit checks those).
pub(crate) fn check_journal_after(snapshot: &Snapshot, after: u64, after_hash: Hash, report: &mut AuditReport) {
    // Regroup every record under the batch that recorded it.
    let mut by_batch: HashMap<u64, Changes> = HashMap::new();
    let batch_of = |timestamp: u64| {
        snapshot
            .batch_of_timestamp
            .binary_search_by_key(&timestamp, |&(t, _)| t)
            .ok()
            .map(|i| snapshot.batch_of_timestamp[i].1)
    };
    if let Some(pair) = snapshot.batch_of_timestamp.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        report.violations.push(format!("two records share timestamp {}", pair[0].0));
    }
    for account in &snapshot.accounts {
        let created =
            Account { debits_pending: 0, debits_posted: 0, credits_pending: 0, credits_posted: 0, ..*account };
        if let Some(batch) = batch_of(account.timestamp) {
            by_batch.entry(batch).or_default().accounts_created.push(created);
        }
    }
    for transfer in &snapshot.transfers {
        if let Some(batch) = batch_of(transfer.timestamp) {
            by_batch.entry(batch).or_default().transfers_created.push(*transfer);
        }
    }
    for expiry in &snapshot.expired {
        if let Some(batch) = batch_of(expiry.timestamp) {
            by_batch.entry(batch).or_default().expired.push(*expiry);
        }
    }
    for failed in &snapshot.failed {
        if let Some(batch) = batch_of(failed.timestamp) {
            by_batch.entry(batch).or_default().failed.push(*failed);
        }
    }
    let mut head = GENESIS;
    for (index, batch) in snapshot.batches.iter().enumerate() {
        if batch.batch_id != index as u64 + 1 {
            report.violations.push(format!("journal: batch {} is missing", index + 1));
        }
        if batch.previous_hash != head {
            report.violations.push(format!("journal: batch {} does not link to the batch before it", batch.batch_id));
        }
        let mut changes = by_batch.remove(&batch.batch_id).unwrap_or_default();
        if batch.batch_id == after && batch.hash != after_hash {
            report.violations.push(format!("journal: batch {after} does not match the checkpoint's journal head"));
        }
        if batch.batch_id <= after {
            head = batch.hash;
            continue;
        }
        changes.timestamp_first = batch.timestamp_first;
        changes.timestamp_last = batch.timestamp_last;
        let inside = |t: u64| t >= batch.timestamp_first && t <= batch.timestamp_last;
        let outside = changes
            .accounts_created
            .iter()
            .map(|a| a.timestamp)
            .chain(changes.transfers_created.iter().map(|t| t.timestamp))
            .chain(changes.expired.iter().map(|e| e.timestamp))
            .chain(changes.failed.iter().map(|f| f.timestamp))
            .find(|&t| !inside(t));
        if let Some(t) = outside {
            report
                .violations
                .push(format!("journal: batch {} holds a record at {t}, outside its time range", batch.batch_id));
        }
        if batch_hash(&batch.previous_hash, &changes) != batch.hash {
            report.violations.push(format!(
                "journal: batch {} does not match its hash (a row of it was changed, added or removed)",
                batch.batch_id
            ));
        }
        head = batch.hash;
    }
    if after == 0 && after_hash != GENESIS {
        report.violations.push("journal: the checkpoint names a journal head but no batch".into());
    }
    if let Some(orphan) = by_batch.keys().min() {
        report.violations.push(format!("journal: records name batch {orphan}, which is not in the journal"));
    }
    report.journal_head = head;
}
