//! The SQLite backend: one file in WAL mode, one transaction per batch.
//!
//! 128-bit ids are 16-byte big-endian blobs (so SQL orders them numerically); amounts and
//! balances are `INTEGER` fen with `CHECK` constraints that repeat the ledger's non-negativity
//! rules, so even a bug above could not store a negative balance. Timestamps are nanoseconds
//! stored in `INTEGER` (bit-cast from `u64`; real clocks stay far below `i64::MAX`).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use suanli_ledger::{Account, AccountFlags, Changes, Expiry, FailedId, Hash, Reject, Transfer, TransferFlags};

use crate::{BatchRecord, Checkpoint, Heads, LedgerBatch, LogEntry, Snapshot, Storage, StoreError, UsageRow};

/// Append-only: never edit a migration that has landed; add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the ledger journal.
    r"
    CREATE TABLE ledger_batches (
        batch_id        INTEGER PRIMARY KEY,
        timestamp_first INTEGER NOT NULL,
        timestamp_last  INTEGER NOT NULL,
        previous_hash   BLOB NOT NULL CHECK (length(previous_hash) = 32),
        hash            BLOB NOT NULL CHECK (length(hash) = 32)
    ) STRICT;
    CREATE TABLE ledger_accounts (
        id              BLOB PRIMARY KEY CHECK (length(id) = 16),
        ledger          INTEGER NOT NULL,
        code            INTEGER NOT NULL,
        flags           INTEGER NOT NULL,
        user_data       BLOB NOT NULL,
        debits_pending  INTEGER NOT NULL CHECK (debits_pending >= 0),
        debits_posted   INTEGER NOT NULL CHECK (debits_posted >= 0),
        credits_pending INTEGER NOT NULL CHECK (credits_pending >= 0),
        credits_posted  INTEGER NOT NULL CHECK (credits_posted >= 0),
        timestamp       INTEGER NOT NULL,
        batch_id        INTEGER NOT NULL REFERENCES ledger_batches (batch_id)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE ledger_transfers (
        id                BLOB PRIMARY KEY CHECK (length(id) = 16),
        debit_account_id  BLOB NOT NULL,
        credit_account_id BLOB NOT NULL,
        amount            INTEGER NOT NULL CHECK (amount >= 0),
        pending_id        BLOB NOT NULL,
        timeout_s         INTEGER NOT NULL,
        ledger            INTEGER NOT NULL,
        code              INTEGER NOT NULL,
        flags             INTEGER NOT NULL,
        user_data         BLOB NOT NULL,
        timestamp         INTEGER NOT NULL,
        batch_id          INTEGER NOT NULL REFERENCES ledger_batches (batch_id)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE ledger_expiries (
        pending_id BLOB PRIMARY KEY CHECK (length(pending_id) = 16),
        timestamp  INTEGER NOT NULL,
        batch_id   INTEGER NOT NULL REFERENCES ledger_batches (batch_id)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE ledger_failed_ids (
        id        BLOB PRIMARY KEY CHECK (length(id) = 16),
        reason    TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        batch_id  INTEGER NOT NULL REFERENCES ledger_batches (batch_id)
    ) STRICT, WITHOUT ROWID;
    ",
    // 2: the service's audit log, which is also its event log.
    r"
    CREATE TABLE audit_log (
        sequence        INTEGER PRIMARY KEY,
        time_s          INTEGER NOT NULL,
        actor           TEXT NOT NULL,
        action          TEXT NOT NULL,
        object          TEXT NOT NULL,
        body            TEXT NOT NULL,
        ledger_batch_id INTEGER REFERENCES ledger_batches (batch_id),
        previous_hash   BLOB NOT NULL CHECK (length(previous_hash) = 32),
        hash            BLOB NOT NULL CHECK (length(hash) = 32)
    ) STRICT;
    ",
    // 3: history out of memory. Every usage id ever decided with its first result (the service's
    // JSON), found by key; checkpoints of the service's state; indexes for a start that reads
    // only what came after the latest checkpoint and the transfers still pending.
    r"
    CREATE TABLE usage_ids (
        provider INTEGER NOT NULL,
        id       TEXT NOT NULL,
        entry    TEXT NOT NULL,
        PRIMARY KEY (provider, id)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE checkpoints (
        log_sequence  INTEGER PRIMARY KEY,
        batch_id      INTEGER NOT NULL,
        journal_head  BLOB NOT NULL CHECK (length(journal_head) = 32),
        log_head      BLOB NOT NULL CHECK (length(log_head) = 32),
        transfers     INTEGER NOT NULL,
        time_s        INTEGER NOT NULL,
        state_sha256  BLOB NOT NULL CHECK (length(state_sha256) = 32),
        state         TEXT NOT NULL
    ) STRICT;
    CREATE INDEX ledger_transfers_by_batch ON ledger_transfers (batch_id);
    CREATE INDEX ledger_accounts_by_batch ON ledger_accounts (batch_id);
    CREATE INDEX ledger_transfers_pending ON ledger_transfers (timestamp) WHERE (flags & 14) != 0;
    ",
    // 4: the audit log's Merkle tree: the root of every complete tile of 256 leaves.
    r"
    CREATE TABLE merkle_tiles (
        tile  INTEGER PRIMARY KEY,
        root  BLOB NOT NULL CHECK (length(root) = 32)
    ) STRICT;
    ",
    // 5: the log by action, so anomalies page from storage.
    r"
    CREATE INDEX audit_log_by_action ON audit_log (action, sequence);
    ",
    // 6: each usage id's order, so an order's usage pages from storage (filled from the entries
    // already kept: `{"r": [["ord-N", ...], ...]}` or `{"x": [...]}`).
    r"
    ALTER TABLE usage_ids ADD COLUMN order_id INTEGER NOT NULL DEFAULT 0;
    UPDATE usage_ids SET order_id = CAST(substr(coalesce(json_extract(entry, '$.r[0][0]'),
        json_extract(entry, '$.x[0][0]'), 'ord-0'), 5) AS INTEGER);
    CREATE INDEX usage_ids_by_order ON usage_ids (order_id, id);
    ",
    // 7: each usage id's period start, so an order's usage lists in time order.
    r"
    ALTER TABLE usage_ids ADD COLUMN period_start_s INTEGER NOT NULL DEFAULT 0;
    UPDATE usage_ids SET period_start_s = coalesce(json_extract(entry, '$.r[0][2]'),
        json_extract(entry, '$.x[0][2]'), 0);
    DROP INDEX usage_ids_by_order;
    CREATE INDEX usage_ids_by_order_period ON usage_ids (order_id, period_start_s, id);
    ",
    // 8: utilization telemetry, three tiers of sums per pool (see `utilization`).
    r"
    CREATE TABLE utilization (
        pool INTEGER NOT NULL,
        resolution_s INTEGER NOT NULL CHECK (resolution_s IN (0, 3600, 86400)),
        at_s INTEGER NOT NULL CHECK (at_s >= 0),
        busy_sum INTEGER NOT NULL CHECK (busy_sum >= 0),
        gpus_sum INTEGER NOT NULL CHECK (gpus_sum >= busy_sum),
        samples INTEGER NOT NULL CHECK (samples > 0),
        PRIMARY KEY (pool, resolution_s, at_s)
    );
    ", // 9: orders that ended long ago leave memory for storage (see `orders`).
    r"
    CREATE TABLE orders_archive (
        id INTEGER PRIMARY KEY,
        program INTEGER NOT NULL,
        authority INTEGER NOT NULL,
        enterprise INTEGER NOT NULL,
        provider INTEGER NOT NULL,
        state TEXT NOT NULL,
        placed_at_s INTEGER NOT NULL,
        cost_fen INTEGER NOT NULL CHECK (cost_fen >= 0),
        body TEXT NOT NULL
    );
    CREATE INDEX orders_archive_by_program ON orders_archive (program, id);
    CREATE INDEX orders_archive_by_authority ON orders_archive (authority, id);
    CREATE INDEX orders_archive_by_enterprise ON orders_archive (enterprise, placed_at_s);
    CREATE INDEX orders_archive_by_provider ON orders_archive (provider, id);
    ",
    // 10: the lines of approved statements leave memory for storage (see `orders`).
    r"
    CREATE TABLE statement_lines (
        statement INTEGER NOT NULL,
        order_id INTEGER NOT NULL,
        enterprise INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (statement, order_id)
    );
    CREATE INDEX statement_lines_by_enterprise ON statement_lines (enterprise, statement);
    ",
    // 11: archived orders listed by state.
    r"
    CREATE INDEX orders_archive_by_state ON orders_archive (state, id);
    ",
];

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncMode {
    /// `synchronous=FULL`: a committed batch survives power loss. The default.
    Full,
    /// `synchronous=NORMAL`: survives a crash of the process, not of the machine. For benchmarks
    /// that compare, never the default.
    Normal,
    /// `synchronous=OFF`: no fsync at all. Only for a store thrown away after use (a
    /// simulation's temporary database), never for a deployment.
    Off,
}

impl FsyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncMode::Full => "synchronous=FULL",
            FsyncMode::Normal => "synchronous=NORMAL",
            FsyncMode::Off => "synchronous=OFF",
        }
    }
}

pub struct SqliteStore {
    connection: Connection,
    /// Held by a writer for as long as it lives: an exclusive lock on `PATH-lock`, so a second
    /// writer on the same file is refused (SQLite alone would let both in, one after the other).
    /// A reader holds none.
    _writer_lock: Option<std::fs::File>,
    /// Opened by `open_reader`: commits are refused.
    reader: Option<String>,
}

/// The file beside the database whose lock marks its one writer. A separate file, not the
/// database itself: closing any handle of the database would drop SQLite's own POSIX locks.
fn lock_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-lock");
    name.into()
}

fn take_writer_lock(path: &Path) -> Result<std::fs::File, StoreError> {
    let shown = path.display().to_string();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(path))
        .map_err(|e| StoreError::Malformed(format!("cannot create the lock file beside {shown}: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked { url: shown }),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError::Malformed(format!("cannot lock the lock file beside {shown}: {e}")))
        }
    }
}

/// Prepared statements the writer's connection keeps.
const STATEMENTS_CACHED: usize = 128;

impl SqliteStore {
    /// Opens or creates the database at `path` and brings its schema up to date.
    pub fn open(path: &Path, fsync: FsyncMode) -> Result<SqliteStore, StoreError> {
        let shown = path.display().to_string();
        let open_error = |source| StoreError::Open { path: shown.clone(), source };
        let writer_lock = take_writer_lock(path)?;
        let mut connection = Connection::open(path).map_err(open_error)?;
        let synchronous = match fsync {
            FsyncMode::Full => "FULL",
            FsyncMode::Normal => "NORMAL",
            FsyncMode::Off => "OFF",
        };
        connection
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; \
                 PRAGMA busy_timeout = 5000;"
            ))
            .map_err(open_error)?;
        migrate(&mut connection, &shown)?;
        // Every statement a commit, a usage lookup or a utilization fold runs stays prepared
        // (rusqlite keeps 16; a commit alone uses more, and each one evicted was parsed again).
        connection.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
        Ok(SqliteStore { connection, _writer_lock: Some(writer_lock), reader: None })
    }

    /// Opens an existing database without creating one, for read-only tools such as the audit.
    pub fn open_existing(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_reader(path)
    }

    /// Opens an existing database to read beside a running writer: no lock, no migration, and
    /// every commit refused. WAL lets a reader see every committed transaction while the writer
    /// goes on.
    pub fn open_reader(path: &Path) -> Result<SqliteStore, StoreError> {
        let shown = path.display().to_string();
        if !path.exists() {
            return Err(StoreError::Missing { path: shown });
        }
        let open_error = |source| StoreError::Open { path: shown.clone(), source };
        let connection = Connection::open_with_flags(
            path,
            // Read-write without create: a WAL reader may need to create the shared-memory file;
            // nothing else is written, since `commit` refuses.
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        connection.execute_batch("PRAGMA busy_timeout = 5000;").map_err(open_error)?;
        let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::SchemaTooNew { path: shown, found: version, supported });
        }
        if version < supported {
            let tables: i64 =
                connection.query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |r| r.get(0))?;
            if version == 0 && tables > 0 {
                return Err(StoreError::NotSuanli { path: shown });
            }
            return Err(StoreError::Malformed(format!(
                "{shown} has schema version {version}, older than {supported}; a writer (serve) upgrades it first"
            )));
        }
        Ok(SqliteStore { connection, _writer_lock: None, reader: Some(shown) })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.connection.path().map_or(Path::new(""), Path::new)
    }

    /// The raw connection, for tests that tamper with rows to prove the audit notices.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }
}

fn migrate(connection: &mut Connection, path: &str) -> Result<(), StoreError> {
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::SchemaTooNew { path: path.to_owned(), found: version, supported });
    }
    if version == 0 {
        let tables: i64 =
            connection.query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |r| r.get(0))?;
        if tables > 0 {
            return Err(StoreError::NotSuanli { path: path.to_owned() });
        }
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", index as i64 + 1)?;
        transaction.commit()?;
    }
    // A log written before tiles were kept gets them now, once.
    let transaction = connection.transaction()?;
    fill_tiles(&transaction)?;
    transaction.commit()?;
    Ok(())
}

/// Selects every column of an account, then its batch, in that order ([`account_row`]).
const ACCOUNT_COLUMNS: &str = "SELECT id, ledger, code, flags, user_data, debits_pending, debits_posted, \
     credits_pending, credits_posted, timestamp, batch_id FROM ledger_accounts";

fn account_row(r: &rusqlite::Row<'_>) -> Result<(Account, u64), rusqlite::Error> {
    Ok((
        Account {
            id: id_from(r.get(0)?)?,
            ledger: r.get(1)?,
            code: r.get(2)?,
            flags: AccountFlags::from_bits(r.get(3)?),
            user_data: id_from(r.get(4)?)?,
            debits_pending: r.get(5)?,
            debits_posted: r.get(6)?,
            credits_pending: r.get(7)?,
            credits_posted: r.get(8)?,
            timestamp: r.get::<_, i64>(9)? as u64,
        },
        r.get::<_, i64>(10)? as u64,
    ))
}

/// Selects every column of a transfer, then its batch, in that order ([`transfer_row`]).
const TRANSFER_COLUMNS: &str = "SELECT id, debit_account_id, credit_account_id, amount, pending_id, timeout_s, ledger, \
     code, flags, user_data, timestamp, batch_id FROM ledger_transfers";

fn transfer_row(r: &rusqlite::Row<'_>) -> Result<(Transfer, u64), rusqlite::Error> {
    Ok((
        Transfer {
            id: id_from(r.get(0)?)?,
            debit_account_id: id_from(r.get(1)?)?,
            credit_account_id: id_from(r.get(2)?)?,
            amount: r.get(3)?,
            pending_id: id_from(r.get(4)?)?,
            timeout_s: r.get(5)?,
            ledger: r.get(6)?,
            code: r.get(7)?,
            flags: TransferFlags::from_bits(r.get(8)?),
            user_data: id_from(r.get(9)?)?,
            timestamp: r.get::<_, i64>(10)? as u64,
        },
        r.get::<_, i64>(11)? as u64,
    ))
}

impl SqliteStore {
    fn checkpoints(&mut self, latest_only: bool) -> Result<Vec<Checkpoint>, StoreError> {
        let limit = if latest_only { 1 } else { crate::CHECKPOINTS_KEPT as i64 };
        let mut statement = self.connection.prepare(
            "SELECT log_sequence, batch_id, journal_head, log_head, transfers, time_s, state_sha256, state \
             FROM checkpoints ORDER BY log_sequence DESC LIMIT ?1",
        )?;
        let mut found = statement
            .query_map([limit], |r| {
                Ok(Checkpoint {
                    log_sequence: r.get::<_, i64>(0)? as u64,
                    batch_id: r.get::<_, i64>(1)? as u64,
                    journal_head: hash_from(r.get(2)?)?,
                    log_head: hash_from(r.get(3)?)?,
                    transfers_total: r.get::<_, i64>(4)? as u64,
                    time_s: r.get(5)?,
                    state_sha256: hash_from(r.get(6)?)?,
                    state: r.get(7)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        found.reverse();
        Ok(found)
    }
}

/// Reads the rows back, all of them or only what a start from `from` needs.
fn load_from(c: &rusqlite::Transaction<'_>, from: Option<&Checkpoint>) -> Result<Snapshot, StoreError> {
    let mut snapshot = Snapshot::default();
    let mut statement = c.prepare(
        "SELECT batch_id, timestamp_first, timestamp_last, previous_hash, hash FROM ledger_batches ORDER BY batch_id",
    )?;
    for row in statement.query_map([], |r| {
        Ok(BatchRecord {
            batch_id: r.get::<_, i64>(0)? as u64,
            timestamp_first: r.get::<_, i64>(1)? as u64,
            timestamp_last: r.get::<_, i64>(2)? as u64,
            previous_hash: hash_from(r.get(3)?)?,
            hash: hash_from(r.get(4)?)?,
        })
    })? {
        snapshot.batches.push(row?);
    }
    let mut statement = c.prepare(&format!("{ACCOUNT_COLUMNS} ORDER BY timestamp"))?;
    for row in statement.query_map([], account_row)? {
        let (account, batch) = row?;
        snapshot.batch_of_timestamp.push((account.timestamp, batch));
        snapshot.accounts.push(account);
    }
    // From a checkpoint: the transfers of the batches after it (to check their hashes) and
    // every transfer that is or resolves a hold (the ledger keeps those); settled history
    // stays on disk.
    let queries: Vec<(String, i64)> = match from {
        None => vec![(format!("{TRANSFER_COLUMNS} ORDER BY timestamp"), 0)],
        Some(checkpoint) => vec![
            (format!("{TRANSFER_COLUMNS} WHERE batch_id > ?1 ORDER BY timestamp"), checkpoint.batch_id as i64),
            (format!("{TRANSFER_COLUMNS} WHERE (flags & 14) != 0 AND ?1 = ?1 ORDER BY timestamp"), 0),
        ],
    };
    let mut seen = std::collections::HashSet::new();
    for (query, parameter) in queries {
        let mut statement = c.prepare(&query)?;
        let rows = if from.is_some() {
            statement.query_map([parameter], transfer_row)?.collect::<Result<Vec<_>, _>>()?
        } else {
            statement.query_map([], transfer_row)?.collect::<Result<Vec<_>, _>>()?
        };
        for (transfer, batch) in rows {
            if from.is_some() && !seen.insert(transfer.id) {
                continue;
            }
            snapshot.batch_of_timestamp.push((transfer.timestamp, batch));
            snapshot.transfers.push(transfer);
        }
    }
    if from.is_some() {
        snapshot.transfers.sort_unstable_by_key(|t| t.timestamp);
        let max: Option<Vec<u8>> = c.query_row("SELECT max(id) FROM ledger_transfers", [], |r| r.get(0))?;
        snapshot.transfer_id_max = max.map(id_from).transpose()?.unwrap_or(0);
    }
    let mut statement = c.prepare("SELECT pending_id, timestamp, batch_id FROM ledger_expiries ORDER BY timestamp")?;
    for row in statement.query_map([], |r| {
        Ok((
            Expiry { pending_id: id_from(r.get(0)?)?, timestamp: r.get::<_, i64>(1)? as u64 },
            r.get::<_, i64>(2)? as u64,
        ))
    })? {
        let (expiry, batch) = row?;
        snapshot.batch_of_timestamp.push((expiry.timestamp, batch));
        snapshot.expired.push(expiry);
    }
    let mut statement =
        c.prepare("SELECT id, reason, timestamp, batch_id FROM ledger_failed_ids ORDER BY timestamp")?;
    let rows: Vec<(u128, String, u64, u64)> = statement
        .query_map([], |r| {
            Ok((id_from(r.get(0)?)?, r.get(1)?, r.get::<_, i64>(2)? as u64, r.get::<_, i64>(3)? as u64))
        })?
        .collect::<Result<_, _>>()?;
    for (id, reason, timestamp, batch) in rows {
        let reason = Reject::from_code(&reason)
            .ok_or_else(|| StoreError::Malformed(format!("failed id {id:#x} has unknown reason {reason:?}")))?;
        snapshot.batch_of_timestamp.push((timestamp, batch));
        snapshot.failed.push(FailedId { id, reason, timestamp });
    }
    snapshot.batch_of_timestamp.sort_unstable();
    let mut statement = c.prepare(&format!("{LOG_COLUMNS} WHERE sequence > ?1 ORDER BY sequence"))?;
    for row in statement.query_map([from.map_or(0, |c| c.log_sequence as i64)], log_row)? {
        snapshot.log.push(row?);
    }
    Ok(snapshot)
}

/// Selects every column of an audit-log entry ([`log_row`]).
pub(crate) const LOG_COLUMNS: &str =
    "SELECT sequence, time_s, actor, action, object, body, ledger_batch_id, previous_hash, hash FROM audit_log";

pub(crate) fn log_row(r: &rusqlite::Row<'_>) -> Result<LogEntry, rusqlite::Error> {
    Ok(LogEntry {
        sequence: r.get::<_, i64>(0)? as u64,
        time_s: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        object: r.get(4)?,
        body: r.get(5)?,
        ledger_batch_id: r.get::<_, Option<i64>>(6)?.map(|b| b as u64),
        previous_hash: hash_from(r.get(7)?)?,
        hash: hash_from(r.get(8)?)?,
    })
}

fn id_bytes(id: u128) -> [u8; 16] {
    id.to_be_bytes()
}

fn id_from(bytes: Vec<u8>) -> Result<u128, rusqlite::Error> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| rusqlite::Error::InvalidColumnType(0, "id".into(), rusqlite::types::Type::Blob))?;
    Ok(u128::from_be_bytes(array))
}

fn hash_from(bytes: Vec<u8>) -> Result<Hash, rusqlite::Error> {
    bytes.try_into().map_err(|_| rusqlite::Error::InvalidColumnType(0, "hash".into(), rusqlite::types::Type::Blob))
}

impl Storage for SqliteStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        self.load_since(None)
    }

    fn load_since(&mut self, from: Option<&Checkpoint>) -> Result<Snapshot, StoreError> {
        // One read transaction, so what is loaded is one moment of the database.
        let transaction = self.connection.transaction()?;
        let snapshot = load_from(&transaction, from)?;
        transaction.commit()?;
        Ok(snapshot)
    }

    fn transfers_by_id(&mut self, ids: &[u128]) -> Result<Vec<Transfer>, StoreError> {
        let mut statement = self.connection.prepare_cached(&format!("{TRANSFER_COLUMNS} WHERE id = ?1"))?;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some((transfer, _)) = statement.query_row([&id_bytes(*id)[..]], transfer_row).optional()? {
                found.push(transfer);
            }
        }
        Ok(found)
    }

    fn latest_checkpoint(&mut self) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.checkpoints(true)?.pop())
    }

    fn batch_rows(&mut self, batch_id: u64) -> Result<(Vec<Account>, Vec<Transfer>), StoreError> {
        let mut statement =
            self.connection.prepare_cached(&format!("{ACCOUNT_COLUMNS} WHERE batch_id = ?1 ORDER BY timestamp"))?;
        let accounts = statement
            .query_map([batch_id as i64], account_row)?
            .map(|row| row.map(|(a, _)| a))
            .collect::<Result<_, _>>()?;
        let mut statement =
            self.connection.prepare_cached(&format!("{TRANSFER_COLUMNS} WHERE batch_id = ?1 ORDER BY timestamp"))?;
        let transfers = statement
            .query_map([batch_id as i64], transfer_row)?
            .map(|row| row.map(|(t, _)| t))
            .collect::<Result<_, _>>()?;
        Ok((accounts, transfers))
    }

    fn transfer_count(&mut self) -> Result<u64, StoreError> {
        Ok(self.connection.query_row("SELECT count(*) FROM ledger_transfers", [], |r| r.get::<_, i64>(0))? as u64)
    }

    fn log_after(&mut self, after: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let mut statement =
            self.connection.prepare_cached(&format!("{LOG_COLUMNS} WHERE sequence > ?1 ORDER BY sequence LIMIT ?2"))?;
        let entries = statement.query_map([after as i64, limit as i64], log_row)?.collect::<Result<_, _>>()?;
        Ok(entries)
    }

    fn all_checkpoints(&mut self) -> Result<Vec<Checkpoint>, StoreError> {
        self.checkpoints(false)
    }

    fn write_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        if let Some(path) = &self.reader {
            return Err(StoreError::ReadOnly { url: path.clone() });
        }
        let transaction = self.connection.transaction()?;
        transaction.execute(
            "INSERT INTO checkpoints (log_sequence, batch_id, journal_head, log_head, transfers, time_s, \
             state_sha256, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                checkpoint.log_sequence as i64,
                checkpoint.batch_id as i64,
                &checkpoint.journal_head[..],
                &checkpoint.log_head[..],
                checkpoint.transfers_total as i64,
                checkpoint.time_s,
                &checkpoint.state_sha256[..],
                checkpoint.state
            ],
        )?;
        transaction.execute(
            "DELETE FROM checkpoints WHERE log_sequence NOT IN \
             (SELECT log_sequence FROM checkpoints ORDER BY log_sequence DESC LIMIT ?1)",
            [crate::CHECKPOINTS_KEPT as i64],
        )?;
        transaction.commit()?;
        Ok(())
    }

    fn tile_roots(&mut self, first: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT root FROM merkle_tiles WHERE tile >= ?1 AND tile < ?2 ORDER BY tile")?;
        let rows = statement.query_map([first as i64, (first + count) as i64], |r| hash_from(r.get(0)?))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn record_utilization(
        &mut self,
        samples: &[crate::utilization::Sample],
        now_s: i64,
    ) -> Result<Vec<crate::utilization::SampleAnswer>, StoreError> {
        if let Some(url) = &self.reader {
            return Err(StoreError::ReadOnly { url: url.clone() });
        }
        crate::utilization::record_sqlite(&mut self.connection, samples, now_s)
    }

    fn heads(&mut self) -> Result<Heads, StoreError> {
        let (batches, log_entries) = self.connection.query_row(
            "SELECT (SELECT coalesce(max(batch_id), 0) FROM ledger_batches), \
             (SELECT coalesce(max(sequence), 0) FROM audit_log)",
            [],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
        )?;
        Ok(Heads { batches: batches as u64, log_entries: log_entries as u64 })
    }

    fn usage_lookup(&mut self, keys: &[(u64, &str)]) -> Result<Vec<UsageRow>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT entry, order_id, period_start_s FROM usage_ids WHERE provider = ?1 AND id = ?2")?;
        let mut found = Vec::new();
        for &(provider, id) in keys {
            if let Some((entry, order, period_start_s)) = statement
                .query_row(params![provider as i64, id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                })
                .optional()?
            {
                found.push(UsageRow { provider, id: id.to_owned(), entry, order: order as u64, period_start_s });
            }
        }
        Ok(found)
    }

    fn archived_order(&mut self, id: u64) -> Result<Option<String>, StoreError> {
        crate::orders::find_sqlite(&self.connection, id)
    }

    fn usage_count(&mut self) -> Result<u64, StoreError> {
        Ok(self.connection.query_row("SELECT count(*) FROM usage_ids", [], |r| r.get::<_, i64>(0))? as u64)
    }

    fn backfill_usage(&mut self, rows: &[UsageRow]) -> Result<(), StoreError> {
        if let Some(path) = &self.reader {
            return Err(StoreError::ReadOnly { url: path.clone() });
        }
        let transaction = self.connection.transaction()?;
        insert_usage(&transaction, rows, "INSERT OR IGNORE")?;
        transaction.commit()?;
        Ok(())
    }

    fn commit(
        &mut self,
        batch: Option<LedgerBatch<'_>>,
        log: &[LogEntry],
        usage: &[UsageRow],
        archive: &crate::orders::Archive,
    ) -> Result<Option<u64>, StoreError> {
        if let Some(path) = &self.reader {
            return Err(StoreError::ReadOnly { url: path.clone() });
        }
        let transaction = self.connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        insert_usage(&transaction, usage, "INSERT")?;
        crate::orders::insert_sqlite(&transaction, &archive.orders)?;
        crate::orders::insert_lines_sqlite(&transaction, &archive.lines)?;
        let batch_id = match batch {
            Some(LedgerBatch { changes, previous_hash, hash }) => {
                Some(commit_batch(&transaction, changes, previous_hash, hash)? as u64)
            }
            None => None,
        };
        {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO audit_log (sequence, time_s, actor, action, object, body, ledger_batch_id, \
                 previous_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for entry in log {
                insert.execute(params![
                    entry.sequence as i64,
                    entry.time_s,
                    entry.actor,
                    entry.action,
                    entry.object,
                    entry.body,
                    entry.ledger_batch_id.map(|b| b as i64),
                    &entry.previous_hash[..],
                    &entry.hash[..]
                ])?;
            }
        }
        if log.iter().any(|e| e.sequence % crate::merkle::TILE_LEAVES == 0) {
            fill_tiles(&transaction)?;
        }
        transaction.commit()?;
        Ok(batch_id)
    }
}

/// Writes the root of every complete tile of the audit log not yet kept (one, when a commit
/// completes a tile; all of them, once, for a database written before tiles were kept).
pub(crate) fn fill_tiles(connection: &Connection) -> Result<(), StoreError> {
    let tiles = crate::merkle::TILE_LEAVES as i64;
    // Cached: this runs at every commit.
    let entries: i64 =
        connection.prepare_cached("SELECT coalesce(max(sequence), 0) FROM audit_log")?.query_row([], |r| r.get(0))?;
    let kept: i64 = connection
        .prepare_cached("SELECT coalesce(max(tile) + 1, 0) FROM merkle_tiles")?
        .query_row([], |r| r.get(0))?;
    let mut select = connection
        .prepare_cached("SELECT hash FROM audit_log WHERE sequence > ?1 AND sequence <= ?2 ORDER BY sequence")?;
    let mut insert = connection.prepare_cached("INSERT INTO merkle_tiles (tile, root) VALUES (?1, ?2)")?;
    for tile in kept..entries / tiles {
        let hashes = select
            .query_map([tile * tiles, (tile + 1) * tiles], |r| hash_from(r.get::<_, Vec<u8>>(0)?))?
            .map(|h| h.map(|h| crate::merkle::leaf_hash(&h)))
            .collect::<Result<Vec<_>, _>>()?;
        if hashes.len() as i64 != tiles {
            return Err(StoreError::Malformed(format!("audit log: tile {tile} has {} of its entries", hashes.len())));
        }
        insert.execute(params![tile, &crate::merkle::perfect_root(&hashes)[..]])?;
    }
    Ok(())
}

/// Writes usage rows with `verb` (`INSERT`, or `INSERT OR IGNORE` for a backfill).
fn insert_usage(transaction: &rusqlite::Transaction<'_>, rows: &[UsageRow], verb: &str) -> Result<(), StoreError> {
    let mut insert = transaction.prepare_cached(&format!(
        "{verb} INTO usage_ids (provider, id, entry, order_id, period_start_s) VALUES (?1, ?2, ?3, ?4, ?5)"
    ))?;
    for row in rows {
        insert.execute(params![row.provider as i64, row.id, row.entry, row.order as i64, row.period_start_s])?;
    }
    Ok(())
}

fn commit_batch(
    transaction: &rusqlite::Transaction<'_>,
    changes: &Changes,
    previous_hash: &Hash,
    hash: &Hash,
) -> Result<i64, StoreError> {
    let batch_id: i64 = {
        let mut insert = transaction.prepare_cached(
            "INSERT INTO ledger_batches (timestamp_first, timestamp_last, previous_hash, hash) VALUES (?1, ?2, ?3, ?4)",
        )?;
        insert.execute(params![
            changes.timestamp_first as i64,
            changes.timestamp_last as i64,
            &previous_hash[..],
            &hash[..]
        ])?;
        transaction.last_insert_rowid()
    };
    {
        let mut insert = transaction.prepare_cached(
            "INSERT INTO ledger_accounts (id, ledger, code, flags, user_data, debits_pending, debits_posted, \
                 credits_pending, credits_posted, timestamp, batch_id) VALUES (?1, ?2, ?3, ?4, ?5, 0, 0, 0, 0, ?6, ?7)",
        )?;
        for a in &changes.accounts_created {
            insert.execute(params![
                &id_bytes(a.id)[..],
                a.ledger,
                a.code,
                a.flags.bits(),
                &id_bytes(a.user_data)[..],
                a.timestamp as i64,
                batch_id
            ])?;
        }
    }
    {
        let mut insert = transaction.prepare_cached(
            "INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount, pending_id, timeout_s, \
                 ledger, code, flags, user_data, timestamp, batch_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for t in &changes.transfers_created {
            insert.execute(params![
                &id_bytes(t.id)[..],
                &id_bytes(t.debit_account_id)[..],
                &id_bytes(t.credit_account_id)[..],
                t.amount,
                &id_bytes(t.pending_id)[..],
                t.timeout_s,
                t.ledger,
                t.code,
                t.flags.bits(),
                &id_bytes(t.user_data)[..],
                t.timestamp as i64,
                batch_id
            ])?;
        }
    }
    {
        let mut insert = transaction
            .prepare_cached("INSERT INTO ledger_expiries (pending_id, timestamp, batch_id) VALUES (?1, ?2, ?3)")?;
        for e in &changes.expired {
            insert.execute(params![&id_bytes(e.pending_id)[..], e.timestamp as i64, batch_id])?;
        }
        let mut insert = transaction.prepare_cached(
            "INSERT INTO ledger_failed_ids (id, reason, timestamp, batch_id) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for f in &changes.failed {
            insert.execute(params![&id_bytes(f.id)[..], f.reason.code(), f.timestamp as i64, batch_id])?;
        }
    }
    {
        let mut update = transaction.prepare_cached(
            "UPDATE ledger_accounts SET debits_pending = ?2, debits_posted = ?3, credits_pending = ?4, \
                 credits_posted = ?5 WHERE id = ?1",
        )?;
        for a in &changes.accounts_after {
            let updated = update.execute(params![
                &id_bytes(a.id)[..],
                a.debits_pending,
                a.debits_posted,
                a.credits_pending,
                a.credits_posted
            ])?;
            if updated != 1 {
                return Err(StoreError::Malformed(format!("account {:#x} is missing from the database", a.id)));
            }
        }
    }
    Ok(batch_id)
}
