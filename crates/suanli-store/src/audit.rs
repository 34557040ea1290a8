//! The audit: checks a whole database from its rows, a batch at a time.
//!
//! It walks the journal, recomputing every batch's hash from the rows recorded in it and checking
//! each link of the chain; checks that every record lies inside its batch's time range; then
//! rebuilds the ledger from the rows, which re-derives every balance from the transfers and checks
//! every invariant (books balance, no negative balance, limits hold, every hold resolved at most
//! once). Each problem found is reported, not only the first.

use std::collections::{HashMap, HashSet};

use suanli_ledger::{
    Account, Changes, GENESIS, Hash, Ledger, PendingStatus, Transfer, TransferFlags, batch_hash, state_hash,
};

use crate::log::check_log_after;
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

/// What a published head says of the log: that its first `size` entries have Merkle root
/// `root` and the entry `size` has hash `log_head` (the signature was checked by the caller).
#[derive(Clone, Debug)]
pub struct TreeClaim {
    pub size: u64,
    pub root: Hash,
    pub log_head: Hash,
    /// The journal's length and newest batch hash when the head was signed.
    pub journal_batches: u64,
    pub journal_head: Hash,
    /// How the claim is named in a violation (the head's file).
    pub label: String,
}

/// Audits a whole database a batch at a time: memory holds the accounts, the holds and one
/// batch's rows, never the history, so the audit of a programme year fits where the server does.
pub fn audit<S: Storage>(storage: &mut S) -> Result<AuditReport, StoreError> {
    audit_against(storage, &[])
}

/// [`audit`], and the log checked against published heads: the Merkle root of the first `size`
/// entries must be each head's root (a log rewritten and re-hashed is not), the database must
/// hold at least `size` entries (a log cut short does not), and every stored tile must equal the
/// one recomputed from the leaves.
pub fn audit_against<S: Storage>(storage: &mut S, claims: &[TreeClaim]) -> Result<AuditReport, StoreError> {
    let skeleton = storage.load_skeleton()?;
    let mut report = AuditReport {
        batches: skeleton.batches.len() as u64,
        accounts: skeleton.accounts.len() as u64,
        holds_expired: skeleton.expired.len() as u64,
        failed_ids: skeleton.failed.len() as u64,
        ..AuditReport::default()
    };
    let batch_of = |timestamp: u64| {
        skeleton
            .batch_of_timestamp
            .binary_search_by_key(&timestamp, |&(t, _)| t)
            .ok()
            .map(|i| skeleton.batch_of_timestamp[i].1)
    };
    let mut expired_by_batch: HashMap<u64, Vec<suanli_ledger::Expiry>> = HashMap::new();
    for expiry in &skeleton.expired {
        expired_by_batch.entry(batch_of(expiry.timestamp).unwrap_or(0)).or_default().push(*expiry);
    }
    let mut failed_by_batch: HashMap<u64, Vec<suanli_ledger::FailedId>> = HashMap::new();
    for failed in &skeleton.failed {
        failed_by_batch.entry(batch_of(failed.timestamp).unwrap_or(0)).or_default().push(*failed);
    }
    let expired: HashSet<u128> = skeleton.expired.iter().map(|e| e.pending_id).collect();
    let failed: HashSet<u128> = skeleton.failed.iter().map(|f| f.id).collect();
    let mut derive = Derivation {
        derived: skeleton.accounts.iter().map(|a| (a.id, [0i128; 4])).collect(),
        holds: HashMap::new(),
        resolved: HashMap::new(),
        expired: &expired,
        failed: &failed,
        transfers: 0,
        violations: Vec::new(),
    };
    let mut head = GENESIS;
    let mut accounts_seen = 0;
    for (index, batch) in skeleton.batches.iter().enumerate() {
        if batch.batch_id != index as u64 + 1 {
            report.violations.push(format!("journal: batch {} is missing", index + 1));
        }
        if batch.previous_hash != head {
            report.violations.push(format!("journal: batch {} does not link to the batch before it", batch.batch_id));
        }
        let (accounts, transfers) = storage.batch_rows(batch.batch_id)?;
        accounts_seen += accounts.len();
        let changes = Changes {
            timestamp_first: batch.timestamp_first,
            timestamp_last: batch.timestamp_last,
            accounts_created: accounts
                .iter()
                .map(|a| Account { debits_pending: 0, debits_posted: 0, credits_pending: 0, credits_posted: 0, ..*a })
                .collect(),
            transfers_created: transfers,
            expired: expired_by_batch.remove(&batch.batch_id).unwrap_or_default(),
            failed: failed_by_batch.remove(&batch.batch_id).unwrap_or_default(),
            accounts_after: Vec::new(),
        };
        let mut stamps: Vec<u64> = changes
            .accounts_created
            .iter()
            .map(|a| a.timestamp)
            .chain(changes.transfers_created.iter().map(|t| t.timestamp))
            .chain(changes.expired.iter().map(|e| e.timestamp))
            .chain(changes.failed.iter().map(|f| f.timestamp))
            .collect();
        stamps.sort_unstable();
        if let Some(pair) = stamps.windows(2).find(|pair| pair[0] == pair[1]) {
            report.violations.push(format!("two records share timestamp {}", pair[0]));
        }
        if let Some(t) = stamps.iter().find(|&&t| t < batch.timestamp_first || t > batch.timestamp_last) {
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
        changes.transfers_created.iter().for_each(|t| derive.transfer(t));
        head = batch.hash;
    }
    report.journal_head = head;
    let stored_transfers = storage.transfer_count()?;
    report.transfers = stored_transfers;
    if let Some(orphan) = expired_by_batch.keys().chain(failed_by_batch.keys()).min() {
        report.violations.push(format!("journal: records name batch {orphan}, which is not in the journal"));
    }
    if stored_transfers != derive.transfers || accounts_seen != skeleton.accounts.len() {
        report.violations.push(format!(
            "journal: {} transfers and {} accounts name a batch that is not in the journal",
            stored_transfers.abs_diff(derive.transfers),
            skeleton.accounts.len().abs_diff(accounts_seen)
        ));
    }
    // Every balance re-derived from every transfer.
    for account in &skeleton.accounts {
        let stored = [account.debits_pending, account.debits_posted, account.credits_pending, account.credits_posted]
            .map(i128::from);
        if derive.derived[&account.id] != stored {
            derive.violations.push(format!(
                "ledger invariant violated: account {:#x} holds {stored:?} but its transfers give {:?}",
                account.id, derive.derived[&account.id]
            ));
        }
    }
    for id in derive.resolved.keys().filter(|id| expired.contains(id)) {
        derive.violations.push(format!("ledger invariant violated: hold {id:#x} both expired and was resolved"));
    }
    report.violations.append(&mut derive.violations);
    let transfers_total = derive.transfers;
    let Snapshot { accounts, transfers, expired, failed, batches, transfer_id_max, .. } = skeleton;
    report.posted_total = accounts.iter().map(|a| i128::from(a.debits_posted)).sum();
    report.pending_total = accounts.iter().map(|a| i128::from(a.debits_pending)).sum();
    let last_timestamp = batches.last().map_or(0, |b| b.timestamp_last);
    // The ledger as the server restores it: the remaining invariants, and the state hash.
    match Ledger::restore_forgetting(
        accounts,
        transfers,
        expired,
        failed,
        last_timestamp,
        transfers_total,
        transfer_id_max,
    ) {
        Ok(ledger) => {
            report.holds_open =
                ledger.pending_statuses().filter(|(_, status)| *status == PendingStatus::Pending).count() as u64;
            report.state_hash = Some(state_hash(&ledger));
        }
        Err(violation) => report.violations.push(violation.to_string()),
    }
    // The log, a page at a time, each entry linked and bound to its batch, and grown into its
    // Merkle tree leaf by leaf.
    let mut after = 0;
    let mut log_head = GENESIS;
    let mut claims: Vec<&TreeClaim> = claims.iter().collect();
    claims.sort_by_key(|c| c.size);
    // The journal a head names must be a prefix of this one, with the same newest hash.
    for claim in &claims {
        let kept = match claim.journal_batches {
            0 => Some(GENESIS),
            n => batches.iter().find(|b| b.batch_id == n).map(|b| b.hash),
        };
        if kept != Some(claim.journal_head) {
            report.violations.push(format!(
                "{}: the ledger journal's batch {} is not the one this head signed: the journal was cut short or \
                 rewritten after it was published",
                claim.label, claim.journal_batches
            ));
        }
    }
    // A head of the empty log names the empty tree.
    for claim in claims.iter().filter(|c| c.size == 0) {
        if claim.root != crate::merkle::empty_root() {
            report.violations.push(format!("{}: a head of no entries must name the empty tree's root", claim.label));
        }
    }
    let mut pending = claims.into_iter().filter(|c| c.size > 0).peekable();
    let mut tree = crate::merkle::Frontier::default();
    loop {
        let page = storage.log_after(after, LOG_PAGE_ENTRIES)?;
        let Some(last) = page.last() else { break };
        match check_log_after(&page, &batches, after, log_head) {
            Ok(head) => log_head = head,
            Err(problems) => {
                report.violations.extend(problems);
                log_head = last.hash;
            }
        }
        let mut tiles = Vec::new();
        for entry in &page {
            tiles.extend(tree.push(crate::merkle::leaf_hash(&entry.hash)));
            while let Some(claim) = pending.next_if(|c| c.size == tree.size()) {
                if tree.root() != claim.root || entry.hash != claim.log_head {
                    report.violations.push(format!(
                        "{}: the log's first {} entries are not the ones this head signed (their Merkle root \
                         differs): the log was rewritten after it was published",
                        claim.label, claim.size
                    ));
                }
            }
        }
        if let (Some(&(first, _)), Some(&(last_tile, _))) = (tiles.first(), tiles.last()) {
            let stored = storage.tile_roots(first, last_tile - first + 1)?;
            for ((tile, root), kept) in tiles.iter().zip(stored.iter().map(Some).chain(std::iter::repeat(None))) {
                if kept != Some(root) {
                    report.violations.push(format!("merkle tile {tile}: the stored root is not the leaves' root"));
                }
            }
        }
        after = last.sequence;
        report.log_entries += page.len() as u64;
    }
    for claim in pending {
        report.violations.push(format!(
            "{}: it signed {} entries and the database holds only {}: the log was cut short after it was published",
            claim.label, claim.size, report.log_entries
        ));
    }
    report.log_head = log_head;
    Ok(report)
}

/// Log entries the audit reads at a time.
const LOG_PAGE_ENTRIES: usize = 10_000;

/// Balances re-derived from transfers as the audit visits them, with what it learns of holds.
struct Derivation<'a> {
    derived: HashMap<u128, [i128; 4]>,
    /// Every hold seen so far (kept: a resolution names one).
    holds: HashMap<u128, Transfer>,
    resolved: HashMap<u128, PendingStatus>,
    expired: &'a HashSet<u128>,
    failed: &'a HashSet<u128>,
    transfers: u64,
    violations: Vec<String>,
}

impl Derivation<'_> {
    fn transfer(&mut self, t: &Transfer) {
        self.transfers += 1;
        let fail = |message: String| format!("ledger invariant violated: {message}");
        if !self.derived.contains_key(&t.debit_account_id) || !self.derived.contains_key(&t.credit_account_id) {
            self.violations.push(fail(format!("transfer {:#x} names an account that does not exist", t.id)));
            return;
        }
        if t.amount < 0 || (t.amount == 0 && !t.flags.resolves_pending()) {
            self.violations.push(fail(format!("transfer {:#x} has amount {}", t.id, t.amount)));
        }
        if self.failed.contains(&t.id) {
            self.violations.push(fail(format!("id {:#x} is both a transfer and a failure", t.id)));
        }
        let amount = i128::from(t.amount);
        let mut add = |id: u128, slot: usize, value: i128| self.derived.get_mut(&id).expect("checked")[slot] += value;
        if t.flags.contains(TransferFlags::PENDING) {
            self.holds.insert(t.id, *t);
            if !self.expired.contains(&t.id) {
                add(t.debit_account_id, 0, amount);
                add(t.credit_account_id, 2, amount);
            }
        } else if t.flags.resolves_pending() {
            let Some(pending) = self.holds.get(&t.pending_id).copied() else {
                self.violations.push(fail(format!("transfer {:#x} resolves a transfer that does not exist", t.id)));
                return;
            };
            let status = if t.flags.contains(TransferFlags::POST_PENDING) {
                PendingStatus::Posted
            } else {
                PendingStatus::Voided
            };
            if self.resolved.insert(t.pending_id, status).is_some() {
                self.violations.push(fail(format!("pending transfer {:#x} is resolved twice", t.pending_id)));
            }
            if t.amount > pending.amount {
                self.violations.push(fail(format!("transfer {:#x} posts more than its pending transfer held", t.id)));
            }
            let held = i128::from(pending.amount);
            let mut add =
                |id: u128, slot: usize, value: i128| self.derived.get_mut(&id).expect("checked")[slot] += value;
            add(pending.debit_account_id, 0, -held);
            add(pending.credit_account_id, 2, -held);
            if status == PendingStatus::Posted {
                add(t.debit_account_id, 1, amount);
                add(t.credit_account_id, 3, amount);
            }
        } else {
            add(t.debit_account_id, 1, amount);
            add(t.credit_account_id, 3, amount);
        }
    }
}

/// Checks a loaded snapshot's journal from a checkpoint at batch `after` whose hash is
/// `after_hash` (0 and GENESIS without one): every link is checked, and the hashes of the batches
/// after it are recomputed from their rows (the snapshot holds no settled rows of earlier batches;
/// the audit checks those).
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
