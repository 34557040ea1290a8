//! A ledger whose every batch is durable before it is answered.
//!
//! [`Durable::commit`] runs a batch through the in-memory state machine, chains its hash onto the
//! journal, chains the audit-log entries that describe the change onto the log, and commits both
//! in one storage transaction; only then are the outcomes returned. If the commit fails, the batch
//! is taken back ([`Ledger::revert_last_batch`]), so memory is exactly what storage held before
//! it: what was not acknowledged did not happen.
//!
//! A failed commit leaves storage in doubt (a connection cut during `COMMIT` may or may not have
//! stored it), so the store refuses further commits until [`Durable::recover`] has reconnected,
//! taken the writer lock again, and compared the stored heads with memory's: equal, it goes on;
//! ahead, it reloads from storage; a lock that another writer took means this one never writes
//! again.

use suanli_ledger::{BatchError, BatchResult, Event, GENESIS, Hash, InvariantViolation, Ledger, batch_hash};

use crate::log::{check_log, log_entry_hash};
use crate::{LedgerBatch, LogEntry, NewLogEntry, Snapshot, Storage, StoreError, UsageRow};

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
    #[error("storage failed earlier and has not been reached since; nothing was written")]
    Unavailable,
    #[error("another writer took the database's lock while storage was unreachable; this writer stops writing")]
    LockLost,
}

impl DurableError {
    /// The fault behind a write that storage did not take, if it was one.
    pub fn fault(&self) -> Option<crate::Fault> {
        match self {
            DurableError::Store(error) => Some(error.fault()),
            DurableError::Unavailable => Some(crate::Fault::Unavailable),
            _ => None,
        }
    }
}

/// What [`Durable::recover`] found.
#[derive(Debug)]
pub enum Recovered {
    /// Storage holds exactly what memory holds; nothing to do.
    Unchanged,
    /// Storage held more than memory (the failed commit was stored after all): the ledger was
    /// reloaded, and here is the log for the caller's own state.
    Reloaded(Vec<LogEntry>),
}

pub struct Durable<S: Storage> {
    ledger: Ledger,
    storage: S,
    head: Hash,
    batches: u64,
    log_head: Hash,
    log_entries: u64,
    poisoned: bool,
    /// A commit failed and storage has not been checked since.
    in_doubt: bool,
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
            in_doubt: false,
        };
        Ok((durable, loaded.log))
    }

    /// Applies one batch and makes it durable; returns the outcomes only after the commit.
    pub fn apply(&mut self, now_ns: u64, events: &[Event]) -> Result<BatchResult, DurableError> {
        let committed = self.commit(now_ns, events, &[], |_| Some(Vec::new()))?;
        Ok(committed.batch.expect("a commit with events has a batch"))
    }

    /// Applies `events` (if any) to the ledger, asks `describe` for the log entries given the
    /// ledger's answer, and commits both, with the usage ids the change decided, in one
    /// transaction.
    pub fn commit(
        &mut self,
        now_ns: u64,
        events: &[Event],
        usage: &[UsageRow],
        describe: impl FnOnce(Option<&BatchResult>) -> Option<Vec<NewLogEntry>>,
    ) -> Result<Committed, DurableError> {
        if self.poisoned {
            return Err(DurableError::Poisoned);
        }
        if self.in_doubt {
            return Err(DurableError::Unavailable);
        }
        let batch = if events.is_empty() { None } else { Some(self.ledger.apply(now_ns, events)?) };
        let batch_hash = batch.as_ref().map(|result| batch_hash(&self.head, &result.changes));
        let Some(entries) = describe(batch.as_ref()) else {
            // The caller refuses what the ledger answered: take the batch back; it was never
            // written.
            if batch.is_some() {
                assert!(self.ledger.revert_last_batch(), "the batch just applied can be taken back");
            }
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
        match self.storage.commit(ledger_batch, &log, usage) {
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
                if batch.is_some() {
                    assert!(self.ledger.revert_last_batch(), "the batch just applied can be taken back");
                }
                self.in_doubt = true;
                Err(error.into())
            }
        }
    }

    /// Whether the store can take a commit now: no failed commit is in doubt and the writer lock
    /// was never lost.
    pub fn is_ready(&self) -> bool {
        !self.poisoned && !self.in_doubt
    }

    /// After a failed commit: reconnects, takes the lock again and compares the stored heads with
    /// memory's. Equal, the store takes commits again; storage ahead (the commit was stored after
    /// all), the ledger is reloaded and the log handed back. Fails while storage stays out of
    /// reach; a lost lock poisons the store for good.
    pub fn recover(&mut self) -> Result<Recovered, DurableError> {
        if self.poisoned {
            return Err(DurableError::LockLost);
        }
        if !self.in_doubt {
            return Ok(Recovered::Unchanged);
        }
        if let Err(error) = self.storage.reconnect() {
            if matches!(error, StoreError::Locked { .. }) {
                self.poisoned = true;
                return Err(DurableError::LockLost);
            }
            return Err(error.into());
        }
        let heads = self.storage.heads()?;
        if heads.batches == self.batches && heads.log_entries == self.log_entries {
            self.in_doubt = false;
            return Ok(Recovered::Unchanged);
        }
        let loaded = rebuild(&mut self.storage)?;
        self.ledger = loaded.ledger;
        self.head = loaded.head;
        self.batches = loaded.batches;
        self.log_head = loaded.log_head;
        self.log_entries = loaded.log.len() as u64;
        self.in_doubt = false;
        Ok(Recovered::Reloaded(loaded.log))
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

    pub fn storage(&self) -> &S {
        &self.storage
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
    let snapshot = storage.load()?;
    // Every batch's hash is recomputed from its rows before anything is served: a row changed
    // with the balances adjusted to match still breaks its batch's hash.
    let mut report = crate::AuditReport::default();
    crate::audit::check_journal(&snapshot, &mut report);
    if !report.violations.is_empty() {
        return Err(DurableError::Journal(report.violations.join("; ")));
    }
    let Snapshot { accounts, transfers, expired, failed, batches, log, .. } = snapshot;
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
