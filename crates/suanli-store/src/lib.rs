//! Suanli storage: the [`Storage`] trait, its SQLite backend, the [`Durable`] ledger that commits
//! each batch in one storage transaction before answering, and the audit that checks a database
//! from its rows alone.
//!
//! The ledger decides; storage only records. A backend persists the [`Changes`] of one batch
//! atomically, chained into the journal by hash, and hands everything back on open so the ledger
//! can be rebuilt. Adding a backend (PostgreSQL is next) means implementing [`Storage`]; the
//! ledger does not change.

mod audit;
mod durable;
mod log;
mod postgres;
pub mod scratch;
mod sqlite;

pub use audit::{AuditReport, audit};
pub use durable::{Committed, Durable, DurableError};
pub use log::{LogEntry, NewLogEntry, check_log, log_entry_hash};
pub use postgres::{PostgresStore, redact};
pub use sqlite::{FsyncMode, SqliteStore};

use suanli_ledger::{Account, Changes, Expiry, FailedId, Hash, Transfer};

/// One journal entry: a committed batch and its place in the hash chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRecord {
    pub batch_id: u64,
    pub timestamp_first: u64,
    pub timestamp_last: u64,
    pub previous_hash: Hash,
    pub hash: Hash,
}

/// Everything a store holds, as rows.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub accounts: Vec<Account>,
    pub transfers: Vec<Transfer>,
    pub expired: Vec<Expiry>,
    pub failed: Vec<FailedId>,
    /// The journal in order.
    pub batches: Vec<BatchRecord>,
    /// For every transfer, expiry, failure and created account: the batch it was recorded in, by
    /// timestamp (timestamps are unique across all records).
    pub batch_of_timestamp: Vec<(u64, u64)>,
    /// The audit log in order.
    pub log: Vec<LogEntry>,
}

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path} does not exist")]
    Missing { path: String },
    #[error("cannot open database {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("database {path} has schema version {found}, newer than this program's {supported}; upgrade suanli")]
    SchemaTooNew { path: String, found: i64, supported: i64 },
    #[error("database {path} is not a suanli database (it has tables but no suanli schema)")]
    NotSuanli { path: String },
    #[error("storage error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored data is malformed: {0}")]
    Malformed(String),
    #[error("PostgreSQL at {url}: {message}")]
    Postgres { url: String, message: String },
    #[error("another suanli writer holds the database at {url}; stop it first (one writer per database)")]
    Locked { url: String },
    #[error("the database at {url} is open for reading only")]
    ReadOnly { url: String },
}

impl From<::postgres::Error> for StoreError {
    fn from(error: ::postgres::Error) -> StoreError {
        StoreError::Postgres { url: "the database".into(), message: error.to_string() }
    }
}

/// Either backend, chosen from the database URL at start-up.
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(Box<PostgresStore>),
}

impl Storage for AnyStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        match self {
            AnyStore::Sqlite(store) => store.load(),
            AnyStore::Postgres(store) => store.load(),
        }
    }

    fn commit(&mut self, batch: Option<LedgerBatch<'_>>, log: &[LogEntry]) -> Result<Option<u64>, StoreError> {
        match self {
            AnyStore::Sqlite(store) => store.commit(batch, log),
            AnyStore::Postgres(store) => store.commit(batch, log),
        }
    }
}

/// A place that keeps the ledger durably.
pub trait Storage {
    /// Reads every row back, in timestamp order.
    fn load(&mut self) -> Result<Snapshot, StoreError>;

    /// Records one command in one transaction: the ledger batch if it has one (the journal entry
    /// with its hash, every record it created and the final balances of every account it
    /// changed) and the audit-log entries that describe it. When this returns `Ok` all of it is
    /// durable (within the backend's fsync mode); when it returns `Err` none of it is. Returns the
    /// ledger batch id, if a batch was written.
    fn commit(&mut self, batch: Option<LedgerBatch<'_>>, log: &[LogEntry]) -> Result<Option<u64>, StoreError>;
}

/// A ledger batch to commit, chained into the journal.
#[derive(Clone, Copy, Debug)]
pub struct LedgerBatch<'a> {
    pub changes: &'a Changes,
    pub previous_hash: &'a Hash,
    pub hash: &'a Hash,
}
