//! The audit log: one append-only, hash-chained entry per state change of the service.
//!
//! An entry says who (`actor`) did what (`action`) to which object, when, with the details in
//! `body` (JSON written by the service). Each entry's hash covers the previous entry's hash, its
//! own fields and, when the change moved money, the hash of the ledger batch it committed with,
//! so the log and the ledger journal are bound together: changing, removing or reordering a row of
//! either breaks the chain. The service rebuilds its state by replaying the log, so the log is not
//! a side record that could drift from the state: it is the state.

use sha2::{Digest, Sha256};
use suanli_ledger::Hash;

/// An entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// 1, 2, 3, … without gaps.
    pub sequence: u64,
    /// Unix seconds by the service's clock.
    pub time_s: i64,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub body: String,
    /// The ledger batch committed with this entry, if the change moved money.
    pub ledger_batch_id: Option<u64>,
    pub previous_hash: Hash,
    pub hash: Hash,
}

/// An entry before it is chained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLogEntry {
    pub time_s: i64,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub body: String,
}

/// The hash of an entry: SHA-256 over the previous hash, the fields length-prefixed, and the hash
/// of the ledger batch it committed with (32 zero bytes when none).
pub fn log_entry_hash(previous: &Hash, entry: &NewLogEntry, sequence: u64, ledger_batch_hash: Option<&Hash>) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(sequence.to_le_bytes());
    hasher.update(entry.time_s.to_le_bytes());
    for field in [&entry.actor, &entry.action, &entry.object, &entry.body] {
        hasher.update((field.len() as u64).to_le_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.update(ledger_batch_hash.unwrap_or(&[0; 32]));
    hasher.finalize().into()
}

/// Walks the log: sequences without gaps, each entry linked to the one before and matching its
/// own hash, and each ledger batch it names present. Returns the head hash, or every problem found.
pub fn check_log(log: &[LogEntry], batches: &[crate::BatchRecord]) -> Result<Hash, Vec<String>> {
    check_log_after(log, batches, 0, suanli_ledger::GENESIS)
}

/// Like [`check_log`] for the entries after entry `after`, whose hash is `after_hash` (a
/// checkpoint's place in the log).
pub fn check_log_after(
    log: &[LogEntry],
    batches: &[crate::BatchRecord],
    after: u64,
    after_hash: Hash,
) -> Result<Hash, Vec<String>> {
    let mut problems = Vec::new();
    let mut head = after_hash;
    for (index, entry) in log.iter().enumerate() {
        let expected = after + index as u64 + 1;
        if entry.sequence != expected {
            problems.push(format!("audit log: entry {expected} is missing (found {} in its place)", entry.sequence));
        }
        if entry.previous_hash != head {
            problems.push(format!("audit log: entry {} does not link to the entry before it", entry.sequence));
        }
        let batch_hash = match entry.ledger_batch_id {
            Some(id) => match batches.get((id as usize).wrapping_sub(1)).filter(|b| b.batch_id == id) {
                Some(batch) => Some(&batch.hash),
                None => {
                    problems
                        .push(format!("audit log: entry {} names ledger batch {id}, which is missing", entry.sequence));
                    None
                }
            },
            None => None,
        };
        let new = NewLogEntry {
            time_s: entry.time_s,
            actor: entry.actor.clone(),
            action: entry.action.clone(),
            object: entry.object.clone(),
            body: entry.body.clone(),
        };
        if log_entry_hash(&entry.previous_hash, &new, entry.sequence, batch_hash) != entry.hash {
            problems.push(format!(
                "audit log: entry {} does not match its hash (its row or its ledger batch was changed)",
                entry.sequence
            ));
        }
        head = entry.hash;
    }
    if problems.is_empty() { Ok(head) } else { Err(problems) }
}
