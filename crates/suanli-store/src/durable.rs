//! A ledger whose every batch is durable before it is answered.
//!
//! [`Durable::apply`] runs the batch through the in-memory state machine, chains its hash onto
//! the journal and commits it in one storage transaction; only then are the outcomes returned.
//! If the commit fails, memory is ahead of disk, so the ledger is rebuilt from storage before
//! anything else happens: what was not acknowledged did not happen.

use suanli_ledger::{BatchError, BatchResult, Event, GENESIS, Hash, InvariantViolation, Ledger, batch_hash};

use crate::{Snapshot, Storage, StoreError};

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
}

pub struct Durable<S: Storage> {
    ledger: Ledger,
    storage: S,
    head: Hash,
    batches: u64,
    poisoned: bool,
}

impl<S: Storage> Durable<S> {
    /// Loads the ledger from storage and checks every invariant before serving it.
    pub fn open(mut storage: S) -> Result<Durable<S>, DurableError> {
        let (ledger, head, batches) = rebuild(&mut storage)?;
        Ok(Durable { ledger, storage, head, batches, poisoned: false })
    }

    /// Applies one batch and makes it durable; returns the outcomes only after the commit.
    pub fn apply(&mut self, now_ns: u64, events: &[Event]) -> Result<BatchResult, DurableError> {
        if self.poisoned {
            return Err(DurableError::Poisoned);
        }
        let result = self.ledger.apply(now_ns, events)?;
        let hash = batch_hash(&self.head, &result.changes);
        match self.storage.commit(&result.changes, &self.head, &hash) {
            Ok(batch_id) => {
                assert_eq!(batch_id, self.batches + 1, "batch ids are consecutive");
                self.head = hash;
                self.batches = batch_id;
                Ok(result)
            }
            Err(error) => {
                match rebuild(&mut self.storage) {
                    Ok((ledger, head, batches)) => (self.ledger, self.head, self.batches) = (ledger, head, batches),
                    Err(_) => self.poisoned = true,
                }
                Err(error.into())
            }
        }
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

    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }
}

fn rebuild<S: Storage>(storage: &mut S) -> Result<(Ledger, Hash, u64), DurableError> {
    let Snapshot { accounts, transfers, expired, failed, batches, .. } = storage.load()?;
    let mut head = GENESIS;
    for (index, batch) in batches.iter().enumerate() {
        if batch.batch_id != index as u64 + 1 || batch.previous_hash != head {
            return Err(DurableError::Journal(format!("batch {} does not follow batch {index}", batch.batch_id)));
        }
        head = batch.hash;
    }
    let last_timestamp = batches.last().map_or(0, |b| b.timestamp_last);
    let ledger = Ledger::restore(accounts, transfers, expired, failed, last_timestamp)?;
    Ok((ledger, head, batches.len() as u64))
}
