//! A ledger whose every batch is durable before it is answered.
//!
//! [`Durable::commit`] runs a batch through the in-memory state machine, chains its hash onto the
//! journal, chains the audit-log entries that describe the change onto the log, and commits both
//! in one storage transaction; only then are the outcomes returned. If the commit fails, memory is
//! ahead of disk, so the ledger is rebuilt from storage before anything else happens: what was not
//! acknowledged did not happen.

use suanli_ledger::{BatchError, BatchResult, Event, GENESIS, Hash, InvariantViolation, Ledger, batch_hash};

use crate::log::{check_log, log_entry_hash};
use crate::{LedgerBatch, LogEntry, NewLogEntry, Snapshot, Storage, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("the stored ledger is damaged: {0}")]
    Damaged(#[from] InvariantViolation),
    #[error("the stored journal is damaged: {0}")]
    Journal(String),
    #[error("the ledger could not be rebuilt after a failed commit and refuses further writes")]
    Poisoned,
    #[error("the change was abandoned before it was written")]
    Abandoned,
}

pub struct Durable<S: Storage> {
    ledger: Ledger,
    storage: S,
    head: Hash,
    batches: u64,
    log_head: Hash,
    log_entries: u64,
    poisoned: bool,
}

/// What one commit wrote.
#[derive(Debug)]
pub struct Committed {
    /// The ledger's answer, when the commit carried ledger events.
    pub batch: Option<BatchResult>,
    /// The log entries as stored, chained.
    pub log: Vec<LogEntry>,
}

impl<S: Storage> Durable<S> {
    /// Loads the ledger from storage and checks every invariant before serving it.
    pub fn open(storage: S) -> Result<Durable<S>, DurableError> {
        Ok(Durable::open_with_log(storage)?.0)
    }

    /// Like [`Durable::open`], and hands back the audit log (checked link by link) so the service
    /// can replay it.
    pub fn open_with_log(mut storage: S) -> Result<(Durable<S>, Vec<LogEntry>), DurableError> {
        let loaded = rebuild(&mut storage)?;
        let durable = Durable {
            ledger: loaded.ledger,
            storage,
            head: loaded.head,
            batches: loaded.batches,
            log_head: loaded.log_head,
            log_entries: loaded.log.len() as u64,
            poisoned: false,
        };
        Ok((durable, loaded.log))
    }

    /// Applies one batch and makes it durable; returns the outcomes only after the commit.
    pub fn apply(&mut self, now_ns: u64, events: &[Event]) -> Result<BatchResult, DurableError> {
        let committed = self.commit(now_ns, events, |_| Some(Vec::new()))?;
        Ok(committed.batch.expect("a commit with events has a batch"))
    }

    /// Applies `events` (if any) to the ledger, asks `describe` for the log entries given the
    /// ledger's answer, and commits both in one transaction.
    pub fn commit(
        &mut self,
        now_ns: u64,
        events: &[Event],
        describe: impl FnOnce(Option<&BatchResult>) -> Option<Vec<NewLogEntry>>,
    ) -> Result<Committed, DurableError> {
        if self.poisoned {
            return Err(DurableError::Poisoned);
        }
        let batch = if events.is_empty() { None } else { Some(self.ledger.apply(now_ns, events)?) };
        let batch_hash = batch.as_ref().map(|result| batch_hash(&self.head, &result.changes));
        let Some(entries) = describe(batch.as_ref()) else {
            // The caller refuses what the ledger answered: forget the batch by rebuilding memory
            // from storage, where it was never written.
            self.restore_from_storage();
            return Err(DurableError::Abandoned);
        };
        let batch_id = batch.as_ref().map(|_| self.batches + 1);
        let mut log_head = self.log_head;
        let log: Vec<LogEntry> = entries
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                let sequence = self.log_entries + 1 + index as u64;
                let hash = log_entry_hash(&log_head, &entry, sequence, batch_hash.as_ref());
                let stored = LogEntry {
                    sequence,
                    time_s: entry.time_s,
                    actor: entry.actor,
                    action: entry.action,
                    object: entry.object,
                    body: entry.body,
                    ledger_batch_id: batch_id,
                    previous_hash: log_head,
                    hash,
                };
                log_head = hash;
                stored
            })
            .collect();
        if batch.is_none() && log.is_empty() {
            return Ok(Committed { batch, log });
        }
        let ledger_batch = batch.as_ref().zip(batch_hash.as_ref()).map(|(result, hash)| LedgerBatch {
            changes: &result.changes,
            previous_hash: &self.head,
            hash,
        });
        match self.storage.commit(ledger_batch, &log) {
            Ok(stored_batch_id) => {
                assert_eq!(stored_batch_id, batch_id, "batch ids are consecutive");
                if let (Some(id), Some(hash)) = (stored_batch_id, batch_hash) {
                    self.head = hash;
                    self.batches = id;
                }
                self.log_head = log_head;
                self.log_entries += log.len() as u64;
                Ok(Committed { batch, log })
            }
            Err(error) => {
                self.restore_from_storage();
                Err(error.into())
            }
        }
    }

    fn restore_from_storage(&mut self) {
        match rebuild(&mut self.storage) {
            Ok(loaded) => {
                self.ledger = loaded.ledger;
                self.head = loaded.head;
                self.batches = loaded.batches;
                self.log_head = loaded.log_head;
                self.log_entries = loaded.log.len() as u64;
            }
            Err(_) => self.poisoned = true,
        }
    }

    /// Reads the audit log back from storage, for a caller whose own state must be rebuilt after
    /// a failed commit.
    pub fn reload_log(&mut self) -> Result<Vec<LogEntry>, DurableError> {
        Ok(rebuild(&mut self.storage)?.log)
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The hash of the newest batch in the journal.
    pub fn journal_head(&self) -> Hash {
        self.head
    }

    pub fn batch_count(&self) -> u64 {
        self.batches
    }

    /// The hash of the newest audit-log entry.
    pub fn log_head(&self) -> Hash {
        self.log_head
    }

    pub fn log_count(&self) -> u64 {
        self.log_entries
    }

    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }
}

struct Loaded {
    ledger: Ledger,
    head: Hash,
    batches: u64,
    log: Vec<LogEntry>,
    log_head: Hash,
}

fn rebuild<S: Storage>(storage: &mut S) -> Result<Loaded, DurableError> {
    let Snapshot { accounts, transfers, expired, failed, batches, log, .. } = storage.load()?;
    let mut head = GENESIS;
    for (index, batch) in batches.iter().enumerate() {
        if batch.batch_id != index as u64 + 1 || batch.previous_hash != head {
            return Err(DurableError::Journal(format!("batch {} does not follow batch {index}", batch.batch_id)));
        }
        head = batch.hash;
    }
    let log_head = check_log(&log, &batches).map_err(|problems| DurableError::Journal(problems.join("; ")))?;
    let last_timestamp = batches.last().map_or(0, |b| b.timestamp_last);
    let ledger = Ledger::restore(accounts, transfers, expired, failed, last_timestamp)?;
    Ok(Loaded { ledger, head, batches: batches.len() as u64, log, log_head })
}
