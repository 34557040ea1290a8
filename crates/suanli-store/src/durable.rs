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

use sha2::Digest;

use crate::log::{check_log_after, log_entry_hash};
use crate::{Checkpoint, LedgerBatch, LogEntry, NewLogEntry, Snapshot, Storage, StoreError, UsageRow};

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
    /// reloaded, and here is what the caller needs to rebuild its own state.
    Reloaded(Opened),
}

/// What a start hands the service: the latest checkpoint (if any) and the log after it.
#[derive(Debug)]
pub struct Opened {
    pub checkpoint: Option<Checkpoint>,
    pub log: Vec<LogEntry>,
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

    /// Like [`Durable::open`], and hands back the latest checkpoint and the audit log after it
    /// (every hash after the checkpoint recomputed, every link checked) so the service can
    /// rebuild its state from them.
    pub fn open_with_log(mut storage: S) -> Result<(Durable<S>, Opened), DurableError> {
        let loaded = rebuild(&mut storage, Start::FromCheckpoint)?;
        let durable = Durable {
            ledger: loaded.ledger,
            storage,
            head: loaded.head,
            batches: loaded.batches,
            log_head: loaded.log_head,
            log_entries: loaded.log_entries,
            poisoned: false,
            in_doubt: false,
        };
        Ok((durable, Opened { checkpoint: loaded.checkpoint, log: loaded.log }))
    }

    /// Writes a checkpoint of the caller's state (`state`, its own JSON) bound to the heads of both
    /// chains as they stand now, after the last commit.
    pub fn checkpoint(&mut self, time_s: i64, state: String) -> Result<Checkpoint, DurableError> {
        if !self.is_ready() {
            return Err(DurableError::Unavailable);
        }
        let checkpoint = Checkpoint {
            log_sequence: self.log_entries,
            log_head: self.log_head,
            batch_id: self.batches,
            journal_head: self.head,
            transfers_total: self.ledger.transfers_total(),
            time_s,
            state_sha256: sha2::Sha256::digest(state.as_bytes()).into(),
            state,
        };
        self.storage.write_checkpoint(&checkpoint)?;
        Ok(checkpoint)
    }

    /// Applies one batch and makes it durable; returns the outcomes only after the commit.
    pub fn apply(&mut self, now_ns: u64, events: &[Event]) -> Result<BatchResult, DurableError> {
        let committed = self.commit(now_ns, events, &[], &crate::orders::Archive::default(), |_| Some(Vec::new()))?;
        Ok(committed.batch.expect("a commit with events has a batch"))
    }

    /// Applies `events` (if any) to the ledger, asks `describe` for the log entries given the
    /// ledger's answer, and commits both, with the usage ids the change decided and the orders it
    /// archived, in one transaction.
    pub fn commit(
        &mut self,
        now_ns: u64,
        events: &[Event],
        usage: &[UsageRow],
        archive: &crate::orders::Archive,
        describe: impl FnOnce(Option<&BatchResult>) -> Option<Vec<NewLogEntry>>,
    ) -> Result<Committed, DurableError> {
        if self.poisoned {
            return Err(DurableError::Poisoned);
        }
        if self.in_doubt {
            return Err(DurableError::Unavailable);
        }
        // Settled transfers live in storage only: bring back those the batch names.
        let needed = self.ledger.history_needed(events);
        if !needed.is_empty() {
            match self.storage.transfers_by_id(&needed) {
                Ok(found) => self.ledger.remember(found),
                Err(error) => {
                    self.in_doubt = true;
                    return Err(error.into());
                }
            }
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
        match self.storage.commit(ledger_batch, &log, usage, archive) {
            Ok(stored_batch_id) => {
                assert_eq!(stored_batch_id, batch_id, "batch ids are consecutive");
                if let (Some(id), Some(hash)) = (stored_batch_id, batch_hash) {
                    self.head = hash;
                    self.batches = id;
                }
                self.log_head = log_head;
                self.log_entries += log.len() as u64;
                self.ledger.forget_settled();
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

    /// Finds decided usage ids in storage. A failure leaves storage in doubt, like a failed commit,
    /// so the next write reconnects first.
    pub fn usage_lookup(&mut self, keys: &[(u64, &str)]) -> Result<Vec<UsageRow>, DurableError> {
        if self.poisoned {
            return Err(DurableError::LockLost);
        }
        self.storage.usage_lookup(keys).map_err(|error| {
            self.in_doubt = true;
            error.into()
        })
    }

    /// Archived order `id` (JSON), if it is archived. A failure leaves storage in doubt.
    pub fn archived_order(&mut self, id: u64) -> Result<Option<String>, DurableError> {
        if self.poisoned {
            return Err(DurableError::LockLost);
        }
        self.storage.archived_order(id).map_err(|error| {
            self.in_doubt = true;
            error.into()
        })
    }

    /// Records utilization samples in a transaction of their own (they touch neither the ledger
    /// nor the log). A failure leaves storage in doubt, like a failed commit.
    pub fn record_utilization(
        &mut self,
        samples: &[crate::utilization::Sample],
        now_s: i64,
    ) -> Result<Vec<crate::utilization::SampleAnswer>, DurableError> {
        if self.poisoned {
            return Err(DurableError::LockLost);
        }
        if self.in_doubt {
            return Err(DurableError::Unavailable);
        }
        self.storage.record_utilization(samples, now_s).map_err(|error| {
            self.in_doubt = true;
            error.into()
        })
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
        let loaded = rebuild(&mut self.storage, Start::FromCheckpoint)?;
        self.ledger = loaded.ledger;
        self.head = loaded.head;
        self.batches = loaded.batches;
        self.log_head = loaded.log_head;
        self.log_entries = loaded.log_entries;
        self.in_doubt = false;
        Ok(Recovered::Reloaded(Opened { checkpoint: loaded.checkpoint, log: loaded.log }))
    }

    /// Reads the audit log back from storage, for a caller whose own state must be rebuilt after
    /// a failed commit.
    pub fn reload_log(&mut self) -> Result<Vec<LogEntry>, DurableError> {
        Ok(self.storage.load_since(None)?.log)
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
    /// The log after the checkpoint (all of it without one).
    log: Vec<LogEntry>,
    log_head: Hash,
    log_entries: u64,
    checkpoint: Option<Checkpoint>,
}

/// Where a rebuild starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// From the latest checkpoint, if there is one.
    FromCheckpoint,
}

fn rebuild<S: Storage>(storage: &mut S, start: Start) -> Result<Loaded, DurableError> {
    let checkpoint = match start {
        Start::FromCheckpoint => storage.latest_checkpoint()?,
    };
    if let Some(checkpoint) = &checkpoint {
        let digest: Hash = sha2::Sha256::digest(checkpoint.state.as_bytes()).into();
        if digest != checkpoint.state_sha256 {
            return Err(DurableError::Journal(format!(
                "the checkpoint at log entry {} does not match its hash",
                checkpoint.log_sequence
            )));
        }
    }
    let snapshot = storage.load_since(checkpoint.as_ref())?;
    // Every batch's hash after the checkpoint is recomputed from its rows before anything is
    // served: a row changed with the balances adjusted to match still breaks its batch's hash.
    let (after_batch, after_journal) = checkpoint.as_ref().map_or((0, GENESIS), |c| (c.batch_id, c.journal_head));
    let (after_entry, after_log) = checkpoint.as_ref().map_or((0, GENESIS), |c| (c.log_sequence, c.log_head));
    let mut report = crate::AuditReport::default();
    crate::audit::check_journal_after(&snapshot, after_batch, after_journal, &mut report);
    if !report.violations.is_empty() {
        return Err(DurableError::Journal(report.violations.join("; ")));
    }
    let log_head = check_log_after(&snapshot.log, &snapshot.batches, after_entry, after_log)
        .map_err(|problems| DurableError::Journal(problems.join("; ")))?;
    let log_entries = after_entry + snapshot.log.len() as u64;
    if snapshot.log.is_empty() && checkpoint.is_some() && storage.heads()?.log_entries != log_entries {
        return Err(DurableError::Journal("the log does not end where the checkpoint says".into()));
    }
    let batch_of = |timestamp: u64| {
        snapshot
            .batch_of_timestamp
            .binary_search_by_key(&timestamp, |&(t, _)| t)
            .map(|i| snapshot.batch_of_timestamp[i].1)
    };
    let tail_transfers =
        snapshot.transfers.iter().filter(|t| batch_of(t.timestamp).is_ok_and(|b| b > after_batch)).count();
    let Snapshot { accounts, transfers, expired, failed, batches, log, transfer_id_max, .. } = snapshot;
    let head = batches.last().map_or(GENESIS, |b| b.hash);
    let last_timestamp = batches.last().map_or(0, |b| b.timestamp_last);
    let ledger = match &checkpoint {
        None => {
            let mut ledger = Ledger::restore(accounts, transfers, expired, failed, last_timestamp)?;
            ledger.forget_settled();
            ledger
        }
        Some(checkpoint) => {
            let holds = transfers.into_iter().filter(|t| t.flags.holds_or_resolves()).collect();
            Ledger::restore_forgetting(
                accounts,
                holds,
                expired,
                failed,
                last_timestamp,
                checkpoint.transfers_total + tail_transfers as u64,
                transfer_id_max,
            )?
        }
    };
    Ok(Loaded { ledger, head, batches: batches.len() as u64, log, log_head, log_entries, checkpoint })
}
