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
mod location;
mod log;
mod log_reader;
pub mod merkle;
pub mod orders;
mod postgres;
pub mod scratch;
mod sqlite;
pub mod utilization;

pub use audit::{AuditReport, TreeClaim, audit, audit_against};
pub use durable::{Committed, Durable, DurableError, Opened, Recovered};
pub use location::Location;
pub use log::{LogEntry, NewLogEntry, check_log, check_log_after, log_entry_hash};
pub use log_reader::{AnomalyFilter, LOG_PAGE_ENTRIES_MAX, LogReader};
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
    /// The audit log in order (from a checkpoint: the entries after it).
    pub log: Vec<LogEntry>,
    /// Loaded from a checkpoint: the largest transfer id stored (the ledger forgets settled
    /// transfers, and ids above this are new without a look-up).
    pub transfer_id_max: u128,
}

/// How many checkpoints a database keeps (older ones are deleted as new ones are written).
pub const CHECKPOINTS_KEPT: usize = 3;

/// The service's state at one point of the log, bound to both chains: the log entry and the
/// ledger batch it follows, by sequence and hash. A start loads the latest and replays only the
/// log after it. It is written in a transaction of its own, so a crash leaves it whole or absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub log_sequence: u64,
    pub log_head: Hash,
    pub batch_id: u64,
    pub journal_head: Hash,
    /// Transfers created up to `batch_id`.
    pub transfers_total: u64,
    pub time_s: i64,
    /// SHA-256 of `state`, checked before it is used.
    pub state_sha256: Hash,
    /// The service's state, in its own versioned JSON.
    pub state: String,
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
    #[error("--database: {database:?} is neither a path, sqlite://PATH nor postgres://…")]
    BadLocation { database: String },
    #[error("a fault injected for a test: {0:?}")]
    Injected(Fault),
}

/// What kind of fault a failed commit was, for the answer a client gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The disk (or the database's tablespace) is full: free space, then retry.
    Full,
    /// Storage could not be reached or refused the write for now: retry later.
    Unavailable,
}

impl StoreError {
    /// Classifies a failed write: a full disk, or anything else that left storage unwritten.
    pub fn fault(&self) -> Fault {
        let full = match self {
            StoreError::Sql(rusqlite::Error::SqliteFailure(error, _)) => error.code == rusqlite::ErrorCode::DiskFull,
            StoreError::Postgres { message, .. } => message.contains("No space left") || message.contains("disk full"),
            StoreError::Injected(fault) => *fault == Fault::Full,
            _ => false,
        };
        if full { Fault::Full } else { Fault::Unavailable }
    }
}

impl From<::postgres::Error> for StoreError {
    fn from(error: ::postgres::Error) -> StoreError {
        let full = error.code() == Some(&::postgres::error::SqlState::DISK_FULL);
        // "db error" alone says nothing: the server's own message says what went wrong.
        let detail = error.as_db_error().map_or_else(|| error.to_string(), |db| format!("{error}: {}", db.message()));
        let message = if full { format!("disk full: {detail}") } else { detail };
        StoreError::Postgres { url: "the database".into(), message }
    }
}

/// Either backend, chosen from the database URL at start-up, with a switch that makes commits
/// fail on demand (tests of what a refused commit leaves behind; it is off unless set).
pub struct AnyStore {
    backend: Backend,
    faults: FaultSwitch,
}

enum Backend {
    Sqlite(SqliteStore),
    Postgres(Box<PostgresStore>),
}

/// Makes the store's commits fail while set, as a full or unreachable disk would. Cloned handles
/// share one switch, so a test can hold one while the service owns the store.
#[derive(Clone, Debug, Default)]
pub struct FaultSwitch(std::sync::Arc<std::sync::atomic::AtomicU8>);

impl FaultSwitch {
    pub fn set(&self, fault: Option<Fault>) {
        let value = match fault {
            None => 0,
            Some(Fault::Unavailable) => 1,
            Some(Fault::Full) => 2,
        };
        self.0.store(value, std::sync::atomic::Ordering::SeqCst);
    }

    fn get(&self) -> Option<Fault> {
        match self.0.load(std::sync::atomic::Ordering::SeqCst) {
            1 => Some(Fault::Unavailable),
            2 => Some(Fault::Full),
            _ => None,
        }
    }
}

impl AnyStore {
    pub fn sqlite(store: SqliteStore) -> AnyStore {
        AnyStore { backend: Backend::Sqlite(store), faults: FaultSwitch::default() }
    }

    pub fn postgres(store: PostgresStore) -> AnyStore {
        AnyStore { backend: Backend::Postgres(Box::new(store)), faults: FaultSwitch::default() }
    }

    /// The switch that makes commits fail on demand.
    pub fn fault_switch(&self) -> FaultSwitch {
        self.faults.clone()
    }

    /// Where this store is, to open readers of it (the audit) beside its writer.
    pub fn location(&self) -> Location {
        match &self.backend {
            Backend::Sqlite(store) => Location::Sqlite(store.path().to_path_buf()),
            Backend::Postgres(store) => Location::Postgres(store.url().to_owned()),
        }
    }

    /// A reader of the audit log beside this store's writer, on a connection of its own.
    pub fn log_reader(&self) -> Result<LogReader, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => LogReader::sqlite(store.path()),
            Backend::Postgres(store) => LogReader::postgres(store.url()),
        }
    }

    pub fn as_sqlite(&self) -> Option<&SqliteStore> {
        match &self.backend {
            Backend::Sqlite(store) => Some(store),
            Backend::Postgres(_) => None,
        }
    }

    pub fn as_postgres(&mut self) -> Option<&mut PostgresStore> {
        match &mut self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(store) => Some(store),
        }
    }
}

impl Storage for AnyStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        match &mut self.backend {
            Backend::Sqlite(store) => store.load(),
            Backend::Postgres(store) => store.load(),
        }
    }

    fn commit(
        &mut self,
        batch: Option<LedgerBatch<'_>>,
        log: &[LogEntry],
        usage: &[UsageRow],
        archive: &orders::Archive,
    ) -> Result<Option<u64>, StoreError> {
        if let Some(fault) = self.faults.get() {
            return Err(StoreError::Injected(fault));
        }
        match &mut self.backend {
            Backend::Sqlite(store) => store.commit(batch, log, usage, archive),
            Backend::Postgres(store) => store.commit(batch, log, usage, archive),
        }
    }

    fn usage_lookup(&mut self, keys: &[(u64, &str)]) -> Result<Vec<UsageRow>, StoreError> {
        match &mut self.backend {
            Backend::Sqlite(store) => store.usage_lookup(keys),
            Backend::Postgres(store) => store.usage_lookup(keys),
        }
    }

    fn archived_order(&mut self, id: u64) -> Result<Option<String>, StoreError> {
        match &mut self.backend {
            Backend::Sqlite(store) => store.archived_order(id),
            Backend::Postgres(store) => store.archived_order(id),
        }
    }

    fn usage_count(&mut self) -> Result<u64, StoreError> {
        match &mut self.backend {
            Backend::Sqlite(store) => store.usage_count(),
            Backend::Postgres(store) => store.usage_count(),
        }
    }

    fn backfill_usage(&mut self, rows: &[UsageRow]) -> Result<(), StoreError> {
        match &mut self.backend {
            Backend::Sqlite(store) => store.backfill_usage(rows),
            Backend::Postgres(store) => store.backfill_usage(rows),
        }
    }

    fn load_since(&mut self, from: Option<&Checkpoint>) -> Result<Snapshot, StoreError> {
        match &mut self.backend {
            Backend::Sqlite(store) => store.load_since(from),
            Backend::Postgres(store) => store.load_since(from),
        }
    }

    fn transfers_by_id(&mut self, ids: &[u128]) -> Result<Vec<Transfer>, StoreError> {
        match &mut self.backend {
            Backend::Sqlite(store) => store.transfers_by_id(ids),
            Backend::Postgres(store) => store.transfers_by_id(ids),
        }
    }

    fn batch_rows(&mut self, batch_id: u64) -> Result<(Vec<Account>, Vec<Transfer>), StoreError> {
        match &mut self.backend {
            Backend::Sqlite(store) => store.batch_rows(batch_id),
            Backend::Postgres(store) => store.batch_rows(batch_id),
        }
    }

    fn transfer_count(&mut self) -> Result<u64, StoreError> {
        match &mut self.backend {
            Backend::Sqlite(store) => store.transfer_count(),
            Backend::Postgres(store) => store.transfer_count(),
        }
    }

    fn log_after(&mut self, after: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        match &mut self.backend {
            Backend::Sqlite(store) => store.log_after(after, limit),
            Backend::Postgres(store) => store.log_after(after, limit),
        }
    }

    fn latest_checkpoint(&mut self) -> Result<Option<Checkpoint>, StoreError> {
        match &mut self.backend {
            Backend::Sqlite(store) => store.latest_checkpoint(),
            Backend::Postgres(store) => store.latest_checkpoint(),
        }
    }

    fn all_checkpoints(&mut self) -> Result<Vec<Checkpoint>, StoreError> {
        match &mut self.backend {
            Backend::Sqlite(store) => store.all_checkpoints(),
            Backend::Postgres(store) => store.all_checkpoints(),
        }
    }

    fn write_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        if let Some(fault) = self.faults.get() {
            return Err(StoreError::Injected(fault));
        }
        match &mut self.backend {
            Backend::Sqlite(store) => store.write_checkpoint(checkpoint),
            Backend::Postgres(store) => store.write_checkpoint(checkpoint),
        }
    }

    fn tile_roots(&mut self, first: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        match &mut self.backend {
            Backend::Sqlite(store) => store.tile_roots(first, count),
            Backend::Postgres(store) => store.tile_roots(first, count),
        }
    }

    fn record_utilization(
        &mut self,
        samples: &[utilization::Sample],
        now_s: i64,
    ) -> Result<Vec<utilization::SampleAnswer>, StoreError> {
        if let Some(fault) = self.faults.get() {
            return Err(StoreError::Injected(fault));
        }
        match &mut self.backend {
            Backend::Sqlite(store) => store.record_utilization(samples, now_s),
            Backend::Postgres(store) => store.record_utilization(samples, now_s),
        }
    }

    fn heads(&mut self) -> Result<Heads, StoreError> {
        match &mut self.backend {
            Backend::Sqlite(store) => store.heads(),
            Backend::Postgres(store) => store.heads(),
        }
    }

    fn reconnect(&mut self) -> Result<(), StoreError> {
        if let Some(fault) = self.faults.get() {
            return Err(StoreError::Injected(fault));
        }
        match &mut self.backend {
            Backend::Sqlite(store) => store.reconnect(),
            Backend::Postgres(store) => store.reconnect(),
        }
    }
}

/// One decided usage id and its first result, as the service wrote it (JSON): storage keeps it
/// in the same transaction as the log entry that decided it, and finds it by key, so idempotency
/// stays exact for every id ever sent without holding them in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRow {
    pub provider: u64,
    pub id: String,
    pub entry: String,
    /// The order the record was for, so an order's usage is found without reading the log.
    pub order: u64,
    /// When the record's period began, so an order's usage is listed in time order.
    pub period_start_s: i64,
}

/// How far storage's two chains reach: the number of ledger batches and of log entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heads {
    pub batches: u64,
    pub log_entries: u64,
}

/// A place that keeps the ledger durably.
pub trait Storage {
    /// Reads every row back, in timestamp order.
    fn load(&mut self) -> Result<Snapshot, StoreError>;

    /// Reads what a start from `from` needs: every batch record and account, the transfers of the
    /// batches after the checkpoint and every transfer that is or resolves a hold, every expiry
    /// and failure, and the log after the checkpoint. Without a checkpoint, everything.
    fn load_since(&mut self, from: Option<&Checkpoint>) -> Result<Snapshot, StoreError>;

    /// The stored transfers among `ids` (for a ledger that forgot settled ones).
    fn transfers_by_id(&mut self, ids: &[u128]) -> Result<Vec<Transfer>, StoreError>;

    /// Everything but the settled transfers and the log: every batch record and account, the
    /// holds and their resolutions, expiries and failures (for an audit that visits the rest a
    /// batch at a time).
    fn load_skeleton(&mut self) -> Result<Snapshot, StoreError> {
        let everything = Checkpoint {
            log_sequence: i64::MAX as u64,
            log_head: [0; 32],
            batch_id: i64::MAX as u64,
            journal_head: [0; 32],
            transfers_total: 0,
            time_s: 0,
            state_sha256: [0; 32],
            state: String::new(),
        };
        self.load_since(Some(&everything))
    }

    /// The accounts a batch created (balances as stored) and its transfers, in timestamp order.
    fn batch_rows(&mut self, batch_id: u64) -> Result<(Vec<Account>, Vec<Transfer>), StoreError>;

    /// How many transfers are stored.
    fn transfer_count(&mut self) -> Result<u64, StoreError>;

    /// The log entries after `after`, at most `limit`, in order.
    fn log_after(&mut self, after: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError>;

    /// The newest checkpoint, if any.
    fn latest_checkpoint(&mut self) -> Result<Option<Checkpoint>, StoreError>;

    /// Every checkpoint kept, oldest first (for the audit).
    fn all_checkpoints(&mut self) -> Result<Vec<Checkpoint>, StoreError>;

    /// Writes a checkpoint in a transaction of its own and drops the oldest beyond
    /// [`CHECKPOINTS_KEPT`].
    fn write_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StoreError>;

    /// Records one command in one transaction: the ledger batch if it has one (the journal entry
    /// with its hash, every record it created and the final balances of every account it
    /// changed) and the audit-log entries that describe it. When this returns `Ok` all of it is
    /// durable (within the backend's fsync mode); when it returns `Err` none of it is. Returns the
    /// ledger batch id, if a batch was written. `archive` holds what the log
    /// entries archive.
    fn commit(
        &mut self,
        batch: Option<LedgerBatch<'_>>,
        log: &[LogEntry],
        usage: &[UsageRow],
        archive: &orders::Archive,
    ) -> Result<Option<u64>, StoreError>;

    /// The decided usage ids among `keys` (provider, id), with their first results.
    fn usage_lookup(&mut self, keys: &[(u64, &str)]) -> Result<Vec<UsageRow>, StoreError>;

    /// How many usage ids are kept.
    fn usage_count(&mut self) -> Result<u64, StoreError>;

    /// Archived order `id` as the service held it (JSON), if it is archived.
    fn archived_order(&mut self, id: u64) -> Result<Option<String>, StoreError>;

    /// Adds usage rows that are missing (a database written before usage ids were kept apart
    /// gets them from its log once); rows already kept are left as they are.
    fn backfill_usage(&mut self, rows: &[UsageRow]) -> Result<(), StoreError>;

    /// The stored roots of Merkle tiles `first..first + count` that exist, in order (fewer
    /// when some are missing).
    fn tile_roots(&mut self, first: u64, count: u64) -> Result<Vec<Hash>, StoreError>;

    /// Records utilization samples in a transaction of their own (not the ledger's, not the
    /// log's: telemetry moves no money), each answered stored, duplicate or conflicting, and
    /// folds the older tiers of their pools as of `now_s` (see [`utilization`]).
    fn record_utilization(
        &mut self,
        samples: &[utilization::Sample],
        now_s: i64,
    ) -> Result<Vec<utilization::SampleAnswer>, StoreError>;

    /// How far the stored chains reach now, read from storage (after a failed commit, to learn
    /// whether it was stored after all).
    fn heads(&mut self) -> Result<Heads, StoreError>;

    /// Makes the store usable again after a fault (a new connection, the writer lock taken
    /// again), or says why it cannot be.
    fn reconnect(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A ledger batch to commit, chained into the journal.
#[derive(Clone, Copy, Debug)]
pub struct LedgerBatch<'a> {
    pub changes: &'a Changes,
    pub previous_hash: &'a Hash,
    pub hash: &'a Hash,
}
