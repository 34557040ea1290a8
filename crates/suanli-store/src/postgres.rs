//! The PostgreSQL backend: the same tables and semantics as SQLite, for deployments that outgrow
//! one machine's file.
//!
//! A batch commits in one transaction with **set-based statements**: one `INSERT … SELECT FROM
//! unnest(…)` per table and one aggregated `UPDATE … FROM unnest(…)` for the balances, never a
//! statement per record and never a row lock per record. **Exactly one writer** holds a
//! database: the connection takes a session advisory lock when it opens, and a second writer is
//! refused with a clear message until the first goes away.

use postgres::{Client, NoTls};
use suanli_ledger::{Account, AccountFlags, Changes, Expiry, FailedId, Hash, Reject, Transfer, TransferFlags};

use crate::{BatchRecord, Checkpoint, Heads, LedgerBatch, LogEntry, Snapshot, Storage, StoreError, UsageRow};

/// The advisory lock key every suanli writer takes ("SUANLI" in ASCII, as a number).
const WRITER_LOCK_KEY: i64 = 0x5355_414e_4c49;

/// Append-only, like SQLite's list; the same tables in PostgreSQL's types.
/// How long opening a writer waits for the lock of a writer that is going away.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

const MIGRATIONS: &[&str] = &[
    r"
    CREATE TABLE ledger_batches (
        batch_id        BIGINT PRIMARY KEY,
        timestamp_first BIGINT NOT NULL,
        timestamp_last  BIGINT NOT NULL,
        previous_hash   BYTEA NOT NULL CHECK (length(previous_hash) = 32),
        hash            BYTEA NOT NULL CHECK (length(hash) = 32)
    );
    CREATE TABLE ledger_accounts (
        id              BYTEA PRIMARY KEY CHECK (length(id) = 16),
        ledger          BIGINT NOT NULL,
        code            INTEGER NOT NULL,
        flags           INTEGER NOT NULL,
        user_data       BYTEA NOT NULL,
        debits_pending  BIGINT NOT NULL CHECK (debits_pending >= 0),
        debits_posted   BIGINT NOT NULL CHECK (debits_posted >= 0),
        credits_pending BIGINT NOT NULL CHECK (credits_pending >= 0),
        credits_posted  BIGINT NOT NULL CHECK (credits_posted >= 0),
        timestamp       BIGINT NOT NULL,
        batch_id        BIGINT NOT NULL REFERENCES ledger_batches (batch_id)
    );
    CREATE TABLE ledger_transfers (
        id                BYTEA PRIMARY KEY CHECK (length(id) = 16),
        debit_account_id  BYTEA NOT NULL,
        credit_account_id BYTEA NOT NULL,
        amount            BIGINT NOT NULL CHECK (amount >= 0),
        pending_id        BYTEA NOT NULL,
        timeout_s         BIGINT NOT NULL,
        ledger            BIGINT NOT NULL,
        code              INTEGER NOT NULL,
        flags             INTEGER NOT NULL,
        user_data         BYTEA NOT NULL,
        timestamp         BIGINT NOT NULL,
        batch_id          BIGINT NOT NULL REFERENCES ledger_batches (batch_id)
    );
    CREATE TABLE ledger_expiries (
        pending_id BYTEA PRIMARY KEY CHECK (length(pending_id) = 16),
        timestamp  BIGINT NOT NULL,
        batch_id   BIGINT NOT NULL REFERENCES ledger_batches (batch_id)
    );
    CREATE TABLE ledger_failed_ids (
        id        BYTEA PRIMARY KEY CHECK (length(id) = 16),
        reason    TEXT NOT NULL,
        timestamp BIGINT NOT NULL,
        batch_id  BIGINT NOT NULL REFERENCES ledger_batches (batch_id)
    );
    ",
    r"
    CREATE TABLE audit_log (
        sequence        BIGINT PRIMARY KEY,
        time_s          BIGINT NOT NULL,
        actor           TEXT NOT NULL,
        action          TEXT NOT NULL,
        object          TEXT NOT NULL,
        body            TEXT NOT NULL,
        ledger_batch_id BIGINT REFERENCES ledger_batches (batch_id),
        previous_hash   BYTEA NOT NULL CHECK (length(previous_hash) = 32),
        hash            BYTEA NOT NULL CHECK (length(hash) = 32)
    );
    ",
    // 3: history out of memory (see the SQLite list).
    r"
    CREATE TABLE usage_ids (
        provider BIGINT NOT NULL,
        id       TEXT NOT NULL,
        entry    TEXT NOT NULL,
        PRIMARY KEY (provider, id)
    );
    CREATE TABLE checkpoints (
        log_sequence  BIGINT PRIMARY KEY,
        batch_id      BIGINT NOT NULL,
        journal_head  BYTEA NOT NULL CHECK (length(journal_head) = 32),
        log_head      BYTEA NOT NULL CHECK (length(log_head) = 32),
        transfers     BIGINT NOT NULL,
        time_s        BIGINT NOT NULL,
        state_sha256  BYTEA NOT NULL CHECK (length(state_sha256) = 32),
        state         TEXT NOT NULL
    );
    CREATE INDEX ledger_transfers_by_batch ON ledger_transfers (batch_id);
    CREATE INDEX ledger_accounts_by_batch ON ledger_accounts (batch_id);
    CREATE INDEX ledger_transfers_pending ON ledger_transfers (timestamp) WHERE (flags & 14) != 0;
    ",
    // 4: the audit log's Merkle tree: the root of every complete tile of 256 leaves.
    r"
    CREATE TABLE merkle_tiles (
        tile  BIGINT PRIMARY KEY,
        root  BYTEA NOT NULL CHECK (length(root) = 32)
    );
    ",
    // 5: the log by action, so anomalies page from storage.
    r"
    CREATE INDEX audit_log_by_action ON audit_log (action, sequence);
    ",
    // 6: each usage id's order (see the SQLite list).
    r"
    ALTER TABLE usage_ids ADD COLUMN order_id BIGINT NOT NULL DEFAULT 0;
    UPDATE usage_ids SET order_id = substr(coalesce(entry::jsonb #>> '{r,0,0}', entry::jsonb #>> '{x,0,0}', 'ord-0'), 5)::bigint;
    CREATE INDEX usage_ids_by_order ON usage_ids (order_id, id);
    ",
    // 7: each usage id's period start (see the SQLite list).
    r"
    ALTER TABLE usage_ids ADD COLUMN period_start_s BIGINT NOT NULL DEFAULT 0;
    UPDATE usage_ids SET period_start_s = coalesce(entry::jsonb #>> '{r,0,2}', entry::jsonb #>> '{x,0,2}', '0')::bigint;
    DROP INDEX usage_ids_by_order;
    CREATE INDEX usage_ids_by_order_period ON usage_ids (order_id, period_start_s, id);
    ",
    // 8: utilization telemetry, three tiers of sums per pool (see `utilization`).
    r"
    CREATE TABLE utilization (
        pool BIGINT NOT NULL,
        resolution_s BIGINT NOT NULL CHECK (resolution_s IN (0, 3600, 86400)),
        at_s BIGINT NOT NULL CHECK (at_s >= 0),
        busy_sum BIGINT NOT NULL CHECK (busy_sum >= 0),
        gpus_sum BIGINT NOT NULL CHECK (gpus_sum >= busy_sum),
        samples BIGINT NOT NULL CHECK (samples > 0),
        PRIMARY KEY (pool, resolution_s, at_s)
    );
    ", // 9: orders that ended long ago leave memory for storage (see `orders`).
    r"
    CREATE TABLE orders_archive (
        id BIGINT PRIMARY KEY,
        program BIGINT NOT NULL,
        authority BIGINT NOT NULL,
        enterprise BIGINT NOT NULL,
        provider BIGINT NOT NULL,
        state TEXT NOT NULL,
        placed_at_s BIGINT NOT NULL,
        cost_fen BIGINT NOT NULL CHECK (cost_fen >= 0),
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
        statement BIGINT NOT NULL,
        order_id BIGINT NOT NULL,
        enterprise BIGINT NOT NULL,
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

pub struct PostgresStore {
    client: Client,
    /// Opened by `open_reader`: no lock, no migrations, no commits; loads in one snapshot.
    reader: Option<String>,
    /// The URL as given (password included), kept in memory only, to reconnect after a fault.
    url: String,
}

fn pg(url: &str) -> impl Fn(postgres::Error) -> StoreError + '_ {
    move |error| StoreError::Postgres { url: redact(url), message: error.to_string() }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl PostgresStore {
    /// Connects, takes the single-writer lock, and brings the schema up to date.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let mut client = Client::connect(url, NoTls).map_err(pg(url))?;
        // A writer that has just closed its session may hold the lock a moment longer (the server
        // ends the backend after the socket closes): try for a little while before refusing.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            let locked: bool =
                client.query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK_KEY]).map_err(pg(url))?.get(0);
            if locked {
                break;
            }
            if std::time::Instant::now() >= deadline {
                return Err(StoreError::Locked { url: redact(url) });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        client.batch_execute("CREATE TABLE IF NOT EXISTS suanli_schema (version INTEGER NOT NULL)").map_err(pg(url))?;
        let version: i32 =
            client.query_opt("SELECT version FROM suanli_schema", &[]).map_err(pg(url))?.map_or(0, |row| row.get(0));
        let supported = MIGRATIONS.len() as i32;
        if version > supported {
            return Err(StoreError::SchemaTooNew {
                path: redact(url),
                found: i64::from(version),
                supported: i64::from(supported),
            });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let mut transaction = client.transaction().map_err(pg(url))?;
            transaction.batch_execute(migration).map_err(pg(url))?;
            transaction.execute("DELETE FROM suanli_schema", &[]).map_err(pg(url))?;
            transaction
                .execute("INSERT INTO suanli_schema (version) VALUES ($1)", &[&(index as i32 + 1)])
                .map_err(pg(url))?;
            transaction.commit().map_err(pg(url))?;
        }
        // A log written before tiles were kept gets them now, once.
        let mut transaction = client.transaction().map_err(pg(url))?;
        fill_tiles(&mut transaction)?;
        transaction.commit().map_err(pg(url))?;
        Ok(PostgresStore { client, reader: None, url: url.to_owned() })
    }

    /// Connects again after the connection failed and takes the writer lock again. The lock died
    /// with the old session, so another writer may hold it now: then this store is refused with
    /// [`StoreError::Locked`] and must never write again.
    fn reconnect_writer(&mut self) -> Result<(), StoreError> {
        let url = self.url.clone();
        let mut client = Client::connect(&url, NoTls).map_err(pg(&url))?;
        let locked: bool =
            client.query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK_KEY]).map_err(pg(&url))?.get(0);
        if !locked {
            return Err(StoreError::Locked { url: redact(&url) });
        }
        self.client = client;
        Ok(())
    }

    /// Connects for reading only, beside a running writer: takes no lock, migrates nothing,
    /// refuses every commit, and reads each load in one repeatable-read snapshot, so an audit sees
    /// the database as of one moment while the server goes on writing.
    pub fn open_reader(url: &str) -> Result<PostgresStore, StoreError> {
        let mut client = Client::connect(url, NoTls).map_err(pg(url))?;
        let exists: bool =
            client.query_one("SELECT to_regclass('suanli_schema') IS NOT NULL", &[]).map_err(pg(url))?.get(0);
        let version: Option<i32> = match exists {
            true => client.query_opt("SELECT version FROM suanli_schema", &[]).map_err(pg(url))?.map(|row| row.get(0)),
            false => None,
        };
        let supported = MIGRATIONS.len() as i32;
        match version {
            None => return Err(StoreError::Missing { path: format!("{} (it holds no suanli schema)", redact(url)) }),
            Some(found) if found > supported => {
                return Err(StoreError::SchemaTooNew {
                    path: redact(url),
                    found: i64::from(found),
                    supported: i64::from(supported),
                });
            }
            Some(found) if found < supported => {
                return Err(StoreError::Postgres {
                    url: redact(url),
                    message: format!(
                        "schema version {found} is older than {supported}; a writer (serve) upgrades it first"
                    ),
                });
            }
            Some(_) => {}
        }
        Ok(PostgresStore { client, reader: Some(redact(url)), url: url.to_owned() })
    }

    /// The URL as given (with any password): for a second connection, never for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The raw client, for tests that tamper with rows or check the schema.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Copies a whole snapshot (from another backend) into this empty database, keeping every
    /// batch id, timestamp and hash, so the audit of both prints the same state hash.
    pub fn import(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let count: i64 = self.client.query_one("SELECT count(*) FROM ledger_batches", &[])?.get(0);
        if count > 0 {
            return Err(StoreError::Malformed("the target database is not empty".into()));
        }
        let mut transaction = self.client.transaction()?;
        for batch in &snapshot.batches {
            transaction.execute(
                "INSERT INTO ledger_batches VALUES ($1, $2, $3, $4, $5)",
                &[
                    &(batch.batch_id as i64),
                    &(batch.timestamp_first as i64),
                    &(batch.timestamp_last as i64),
                    &&batch.previous_hash[..],
                    &&batch.hash[..],
                ],
            )?;
        }
        let batch_of = |timestamp: u64| {
            snapshot
                .batch_of_timestamp
                .binary_search_by_key(&timestamp, |&(t, _)| t)
                .map(|i| snapshot.batch_of_timestamp[i].1 as i64)
        };
        for a in &snapshot.accounts {
            let batch = batch_of(a.timestamp)
                .map_err(|_| StoreError::Malformed(format!("account {:#x} has no batch", a.id)))?;
            transaction.execute(
                "INSERT INTO ledger_accounts VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &&a.id.to_be_bytes()[..],
                    &i64::from(a.ledger),
                    &i32::from(a.code),
                    &i32::from(a.flags.bits()),
                    &&a.user_data.to_be_bytes()[..],
                    &a.debits_pending,
                    &a.debits_posted,
                    &a.credits_pending,
                    &a.credits_posted,
                    &(a.timestamp as i64),
                    &batch,
                ],
            )?;
        }
        for t in &snapshot.transfers {
            let batch = batch_of(t.timestamp)
                .map_err(|_| StoreError::Malformed(format!("transfer {:#x} has no batch", t.id)))?;
            transaction.execute(
                "INSERT INTO ledger_transfers VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[
                    &&t.id.to_be_bytes()[..],
                    &&t.debit_account_id.to_be_bytes()[..],
                    &&t.credit_account_id.to_be_bytes()[..],
                    &t.amount,
                    &&t.pending_id.to_be_bytes()[..],
                    &i64::from(t.timeout_s),
                    &i64::from(t.ledger),
                    &i32::from(t.code),
                    &i32::from(t.flags.bits()),
                    &&t.user_data.to_be_bytes()[..],
                    &(t.timestamp as i64),
                    &batch,
                ],
            )?;
        }
        for e in &snapshot.expired {
            let batch = batch_of(e.timestamp).map_err(|_| StoreError::Malformed("an expiry has no batch".into()))?;
            transaction.execute(
                "INSERT INTO ledger_expiries VALUES ($1, $2, $3)",
                &[&&e.pending_id.to_be_bytes()[..], &(e.timestamp as i64), &batch],
            )?;
        }
        for f in &snapshot.failed {
            let batch = batch_of(f.timestamp).map_err(|_| StoreError::Malformed("a failed id has no batch".into()))?;
            transaction.execute(
                "INSERT INTO ledger_failed_ids VALUES ($1, $2, $3, $4)",
                &[&&f.id.to_be_bytes()[..], &f.reason.code(), &(f.timestamp as i64), &batch],
            )?;
        }
        for entry in &snapshot.log {
            insert_log(&mut transaction, entry)?;
        }
        transaction.commit()?;
        Ok(())
    }
}

fn insert_log(transaction: &mut postgres::Transaction<'_>, entry: &LogEntry) -> Result<(), postgres::Error> {
    transaction.execute(
        "INSERT INTO audit_log VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &(entry.sequence as i64),
            &entry.time_s,
            &entry.actor,
            &entry.action,
            &entry.object,
            &entry.body,
            &entry.ledger_batch_id.map(|b| b as i64),
            &&entry.previous_hash[..],
            &&entry.hash[..],
        ],
    )?;
    Ok(())
}

fn id_from(bytes: &[u8]) -> Result<u128, StoreError> {
    let array: [u8; 16] = bytes.try_into().map_err(|_| StoreError::Malformed("an id is not 16 bytes".into()))?;
    Ok(u128::from_be_bytes(array))
}

fn hash_from(bytes: &[u8]) -> Result<Hash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Malformed("a hash is not 32 bytes".into()))
}

impl Storage for PostgresStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        self.load_since(None)
    }

    fn load_since(&mut self, from: Option<&Checkpoint>) -> Result<Snapshot, StoreError> {
        // One moment of a database, even with a writer changing it beside a reader.
        let mut transaction = self
            .client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let snapshot = load(&mut transaction, from)?;
        transaction.commit()?;
        Ok(snapshot)
    }

    fn transfers_by_id(&mut self, ids: &[u128]) -> Result<Vec<Transfer>, StoreError> {
        let ids: Vec<Vec<u8>> = ids.iter().map(|&id| bytes(id)).collect();
        let rows = self.client.query(&format!("{TRANSFER_COLUMNS} WHERE id = ANY($1::bytea[])"), &[&ids])?;
        rows.iter().map(|row| transfer_row(row).map(|(t, _)| t)).collect()
    }

    fn latest_checkpoint(&mut self) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.checkpoints(1)?.pop())
    }

    fn batch_rows(&mut self, batch_id: u64) -> Result<(Vec<Account>, Vec<Transfer>), StoreError> {
        let batch = batch_id as i64;
        let accounts = self
            .client
            .query(&format!("{ACCOUNT_COLUMNS} WHERE batch_id = $1 ORDER BY timestamp"), &[&batch])?
            .iter()
            .map(|row| account_row(row).map(|(a, _)| a))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let transfers = self
            .client
            .query(&format!("{TRANSFER_COLUMNS} WHERE batch_id = $1 ORDER BY timestamp"), &[&batch])?
            .iter()
            .map(|row| transfer_row(row).map(|(t, _)| t))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((accounts, transfers))
    }

    fn transfer_count(&mut self) -> Result<u64, StoreError> {
        Ok(self.client.query_one("SELECT count(*) FROM ledger_transfers", &[])?.get::<_, i64>(0) as u64)
    }

    fn log_after(&mut self, after: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let rows = self.client.query(
            "SELECT sequence, time_s, actor, action, object, body, ledger_batch_id, previous_hash, hash FROM audit_log \
             WHERE sequence > $1 ORDER BY sequence LIMIT $2",
            &[&(after as i64), &(limit as i64)],
        )?;
        rows.iter()
            .map(|row| {
                Ok(LogEntry {
                    sequence: row.get::<_, i64>(0) as u64,
                    time_s: row.get(1),
                    actor: row.get(2),
                    action: row.get(3),
                    object: row.get(4),
                    body: row.get(5),
                    ledger_batch_id: row.get::<_, Option<i64>>(6).map(|b| b as u64),
                    previous_hash: hash_from(row.get(7))?,
                    hash: hash_from(row.get(8))?,
                })
            })
            .collect()
    }

    fn all_checkpoints(&mut self) -> Result<Vec<Checkpoint>, StoreError> {
        self.checkpoints(crate::CHECKPOINTS_KEPT as i64)
    }

    fn write_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        if let Some(url) = &self.reader {
            return Err(StoreError::ReadOnly { url: url.clone() });
        }
        let mut transaction = self.client.transaction()?;
        transaction.execute(
            "INSERT INTO checkpoints VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &(checkpoint.log_sequence as i64),
                &(checkpoint.batch_id as i64),
                &&checkpoint.journal_head[..],
                &&checkpoint.log_head[..],
                &(checkpoint.transfers_total as i64),
                &checkpoint.time_s,
                &&checkpoint.state_sha256[..],
                &checkpoint.state,
            ],
        )?;
        transaction.execute(
            "DELETE FROM checkpoints WHERE log_sequence NOT IN \
             (SELECT log_sequence FROM checkpoints ORDER BY log_sequence DESC LIMIT $1)",
            &[&(crate::CHECKPOINTS_KEPT as i64)],
        )?;
        transaction.commit()?;
        Ok(())
    }

    fn tile_roots(&mut self, first: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        let rows = self.client.query(
            "SELECT root FROM merkle_tiles WHERE tile >= $1 AND tile < $2 ORDER BY tile",
            &[&(first as i64), &((first + count) as i64)],
        )?;
        rows.iter()
            .map(|r| {
                r.get::<_, &[u8]>(0).try_into().map_err(|_| StoreError::Malformed("a tile root is not 32 bytes".into()))
            })
            .collect()
    }

    fn record_utilization(
        &mut self,
        samples: &[crate::utilization::Sample],
        now_s: i64,
    ) -> Result<Vec<crate::utilization::SampleAnswer>, StoreError> {
        if let Some(url) = &self.reader {
            return Err(StoreError::ReadOnly { url: url.clone() });
        }
        crate::utilization::record_postgres(&mut self.client, samples, now_s)
    }

    fn heads(&mut self) -> Result<Heads, StoreError> {
        let row = self.client.query_one(
            "SELECT (SELECT coalesce(max(batch_id), 0) FROM ledger_batches), \
             (SELECT coalesce(max(sequence), 0) FROM audit_log)",
            &[],
        )?;
        Ok(Heads { batches: row.get::<_, i64>(0) as u64, log_entries: row.get::<_, i64>(1) as u64 })
    }

    fn reconnect(&mut self) -> Result<(), StoreError> {
        match &self.reader {
            Some(_) => {
                self.client = Client::connect(&self.url, NoTls).map_err(pg(&self.url))?;
                Ok(())
            }
            None if self.client.is_closed() || self.client.is_valid(std::time::Duration::from_secs(2)).is_err() => {
                self.reconnect_writer()
            }
            None => Ok(()),
        }
    }

    fn usage_lookup(&mut self, keys: &[(u64, &str)]) -> Result<Vec<UsageRow>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let providers: Vec<i64> = keys.iter().map(|&(p, _)| p as i64).collect();
        let ids: Vec<&str> = keys.iter().map(|&(_, id)| id).collect();
        let rows = self.client.query(
            "SELECT u.provider, u.id, u.entry, u.order_id, u.period_start_s \
             FROM unnest($1::int8[], $2::text[]) AS k(provider, id) \
             JOIN usage_ids u ON u.provider = k.provider AND u.id = k.id",
            &[&providers, &ids],
        )?;
        Ok(rows
            .iter()
            .map(|r| UsageRow {
                provider: r.get::<_, i64>(0) as u64,
                id: r.get(1),
                entry: r.get(2),
                order: r.get::<_, i64>(3) as u64,
                period_start_s: r.get(4),
            })
            .collect())
    }

    fn archived_order(&mut self, id: u64) -> Result<Option<String>, StoreError> {
        crate::orders::find_postgres(&mut self.client, id)
    }

    fn usage_count(&mut self) -> Result<u64, StoreError> {
        Ok(self.client.query_one("SELECT count(*) FROM usage_ids", &[])?.get::<_, i64>(0) as u64)
    }

    fn backfill_usage(&mut self, rows: &[UsageRow]) -> Result<(), StoreError> {
        if let Some(url) = &self.reader {
            return Err(StoreError::ReadOnly { url: url.clone() });
        }
        let mut transaction = self.client.transaction()?;
        for chunk in rows.chunks(10_000) {
            insert_usage(&mut transaction, chunk, "ON CONFLICT DO NOTHING")?;
        }
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
        if let Some(url) = &self.reader {
            return Err(StoreError::ReadOnly { url: url.clone() });
        }
        let mut transaction = self.client.transaction()?;
        if !usage.is_empty() {
            insert_usage(&mut transaction, usage, "")?;
        }
        crate::orders::insert_postgres(&mut transaction, &archive.orders)?;
        crate::orders::insert_lines_postgres(&mut transaction, &archive.lines)?;
        let batch_id = match batch {
            Some(LedgerBatch { changes, previous_hash, hash }) => {
                Some(commit_batch(&mut transaction, changes, previous_hash, hash)?)
            }
            None => None,
        };
        if !log.is_empty() {
            let column = |f: fn(&LogEntry) -> i64| log.iter().map(f).collect::<Vec<i64>>();
            let text = |f: fn(&LogEntry) -> &str| log.iter().map(|e| f(e).to_owned()).collect::<Vec<String>>();
            let batches: Vec<Option<i64>> = log.iter().map(|e| e.ledger_batch_id.map(|b| b as i64)).collect();
            let previous: Vec<Vec<u8>> = log.iter().map(|e| e.previous_hash.to_vec()).collect();
            let hashes: Vec<Vec<u8>> = log.iter().map(|e| e.hash.to_vec()).collect();
            transaction.execute(
                "INSERT INTO audit_log SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::int8[], $8::bytea[], $9::bytea[])",
                &[
                    &column(|e| e.sequence as i64),
                    &column(|e| e.time_s),
                    &text(|e| &e.actor),
                    &text(|e| &e.action),
                    &text(|e| &e.object),
                    &text(|e| &e.body),
                    &batches,
                    &previous,
                    &hashes,
                ],
            )?;
        }
        if log.iter().any(|e| e.sequence % crate::merkle::TILE_LEAVES == 0) {
            fill_tiles(&mut transaction)?;
        }
        transaction.commit()?;
        Ok(batch_id)
    }
}

/// Writes the root of every complete tile of the audit log not yet kept (see the SQLite twin).
pub(crate) fn fill_tiles(client: &mut impl postgres::GenericClient) -> Result<(), StoreError> {
    let tiles = crate::merkle::TILE_LEAVES as i64;
    let entries: i64 = client.query_one("SELECT coalesce(max(sequence), 0)::int8 FROM audit_log", &[])?.get(0);
    let kept: i64 = client.query_one("SELECT coalesce(max(tile) + 1, 0)::int8 FROM merkle_tiles", &[])?.get(0);
    for tile in kept..entries / tiles {
        let rows = client.query(
            "SELECT hash FROM audit_log WHERE sequence > $1 AND sequence <= $2 ORDER BY sequence",
            &[&(tile * tiles), &((tile + 1) * tiles)],
        )?;
        let hashes = rows
            .iter()
            .map(|r| {
                let hash: Hash = r
                    .get::<_, &[u8]>(0)
                    .try_into()
                    .map_err(|_| StoreError::Malformed("an audit-log hash is not 32 bytes".into()))?;
                Ok(crate::merkle::leaf_hash(&hash))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if hashes.len() as i64 != tiles {
            return Err(StoreError::Malformed(format!("audit log: tile {tile} has {} of its entries", hashes.len())));
        }
        client.execute(
            "INSERT INTO merkle_tiles (tile, root) VALUES ($1, $2)",
            &[&tile, &crate::merkle::perfect_root(&hashes).to_vec()],
        )?;
    }
    Ok(())
}

fn insert_usage(
    transaction: &mut postgres::Transaction<'_>,
    rows: &[UsageRow],
    on_conflict: &str,
) -> Result<(), StoreError> {
    let providers: Vec<i64> = rows.iter().map(|r| r.provider as i64).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let entries: Vec<&str> = rows.iter().map(|r| r.entry.as_str()).collect();
    let orders: Vec<i64> = rows.iter().map(|r| r.order as i64).collect();
    let starts: Vec<i64> = rows.iter().map(|r| r.period_start_s).collect();
    transaction.execute(
        &format!(
            "INSERT INTO usage_ids (provider, id, entry, order_id, period_start_s) \
             SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[], $5::int8[]) {on_conflict}"
        ),
        &[&providers, &ids, &entries, &orders, &starts],
    )?;
    Ok(())
}

fn bytes(id: u128) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

/// Reads every row back through `c`: a client, or a reader's snapshot transaction.
/// Selects every column of an account, then its batch ([`account_row`]).
const ACCOUNT_COLUMNS: &str = "SELECT id, ledger, code, flags, user_data, debits_pending, debits_posted, \
     credits_pending, credits_posted, timestamp, batch_id FROM ledger_accounts";

fn account_row(row: &postgres::Row) -> Result<(Account, u64), StoreError> {
    Ok((
        Account {
            id: id_from(row.get(0))?,
            ledger: row.get::<_, i64>(1) as u32,
            code: row.get::<_, i32>(2) as u16,
            flags: AccountFlags::from_bits(row.get::<_, i32>(3) as u16),
            user_data: id_from(row.get(4))?,
            debits_pending: row.get(5),
            debits_posted: row.get(6),
            credits_pending: row.get(7),
            credits_posted: row.get(8),
            timestamp: row.get::<_, i64>(9) as u64,
        },
        row.get::<_, i64>(10) as u64,
    ))
}

/// Selects every column of a transfer, then its batch ([`transfer_row`]).
const TRANSFER_COLUMNS: &str = "SELECT id, debit_account_id, credit_account_id, amount, pending_id, timeout_s, ledger, \
     code, flags, user_data, timestamp, batch_id FROM ledger_transfers";

fn transfer_row(row: &postgres::Row) -> Result<(Transfer, u64), StoreError> {
    Ok((
        Transfer {
            id: id_from(row.get(0))?,
            debit_account_id: id_from(row.get(1))?,
            credit_account_id: id_from(row.get(2))?,
            amount: row.get(3),
            pending_id: id_from(row.get(4))?,
            timeout_s: row.get::<_, i64>(5) as u32,
            ledger: row.get::<_, i64>(6) as u32,
            code: row.get::<_, i32>(7) as u16,
            flags: TransferFlags::from_bits(row.get::<_, i32>(8) as u16),
            user_data: id_from(row.get(9))?,
            timestamp: row.get::<_, i64>(10) as u64,
        },
        row.get::<_, i64>(11) as u64,
    ))
}

impl PostgresStore {
    fn checkpoints(&mut self, limit: i64) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = self.client.query(
            "SELECT log_sequence, batch_id, journal_head, log_head, transfers, time_s, state_sha256, state \
             FROM checkpoints ORDER BY log_sequence DESC LIMIT $1",
            &[&limit],
        )?;
        let mut found = rows
            .iter()
            .map(|r| {
                Ok(Checkpoint {
                    log_sequence: r.get::<_, i64>(0) as u64,
                    batch_id: r.get::<_, i64>(1) as u64,
                    journal_head: hash_from(r.get(2))?,
                    log_head: hash_from(r.get(3))?,
                    transfers_total: r.get::<_, i64>(4) as u64,
                    time_s: r.get(5),
                    state_sha256: hash_from(r.get(6))?,
                    state: r.get(7),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        found.reverse();
        Ok(found)
    }
}

fn load(c: &mut impl postgres::GenericClient, from: Option<&Checkpoint>) -> Result<Snapshot, StoreError> {
    let mut snapshot = Snapshot::default();
    for row in c.query(
        "SELECT batch_id, timestamp_first, timestamp_last, previous_hash, hash FROM ledger_batches ORDER BY batch_id",
        &[],
    )? {
        snapshot.batches.push(BatchRecord {
            batch_id: row.get::<_, i64>(0) as u64,
            timestamp_first: row.get::<_, i64>(1) as u64,
            timestamp_last: row.get::<_, i64>(2) as u64,
            previous_hash: hash_from(row.get(3))?,
            hash: hash_from(row.get(4))?,
        });
    }
    for row in c.query(&format!("{ACCOUNT_COLUMNS} ORDER BY timestamp"), &[])? {
        let (account, batch) = account_row(&row)?;
        snapshot.batch_of_timestamp.push((account.timestamp, batch));
        snapshot.accounts.push(account);
    }
    let transfer_rows = match from {
        None => c.query(&format!("{TRANSFER_COLUMNS} ORDER BY timestamp"), &[])?,
        // The batches after the checkpoint, and every hold and its resolution.
        Some(checkpoint) => c.query(
            &format!(
                "{TRANSFER_COLUMNS} WHERE batch_id > $1 UNION {TRANSFER_COLUMNS} WHERE (flags & 14) != 0 \
                 ORDER BY timestamp"
            ),
            &[&(checkpoint.batch_id as i64)],
        )?,
    };
    for row in &transfer_rows {
        let (transfer, batch) = transfer_row(row)?;
        snapshot.batch_of_timestamp.push((transfer.timestamp, batch));
        snapshot.transfers.push(transfer);
    }
    if from.is_some() {
        // The largest id through the primary key (PostgreSQL has no max over bytea).
        let max = c.query_opt("SELECT id FROM ledger_transfers ORDER BY id DESC LIMIT 1", &[])?;
        snapshot.transfer_id_max = max.map(|row| id_from(row.get(0))).transpose()?.unwrap_or(0);
    }
    for row in c.query("SELECT pending_id, timestamp, batch_id FROM ledger_expiries ORDER BY timestamp", &[])? {
        let expiry = Expiry { pending_id: id_from(row.get(0))?, timestamp: row.get::<_, i64>(1) as u64 };
        snapshot.batch_of_timestamp.push((expiry.timestamp, row.get::<_, i64>(2) as u64));
        snapshot.expired.push(expiry);
    }
    for row in c.query("SELECT id, reason, timestamp, batch_id FROM ledger_failed_ids ORDER BY timestamp", &[])? {
        let reason: String = row.get(1);
        let id = id_from(row.get(0))?;
        let reason = Reject::from_code(&reason)
            .ok_or_else(|| StoreError::Malformed(format!("failed id {id:#x} has unknown reason {reason:?}")))?;
        let timestamp = row.get::<_, i64>(2) as u64;
        snapshot.batch_of_timestamp.push((timestamp, row.get::<_, i64>(3) as u64));
        snapshot.failed.push(FailedId { id, reason, timestamp });
    }
    snapshot.batch_of_timestamp.sort_unstable();
    for row in c.query(
        "SELECT sequence, time_s, actor, action, object, body, ledger_batch_id, previous_hash, hash FROM audit_log \
             WHERE sequence > $1 ORDER BY sequence",
        &[&from.map_or(0, |c| c.log_sequence as i64)],
    )? {
        snapshot.log.push(LogEntry {
            sequence: row.get::<_, i64>(0) as u64,
            time_s: row.get(1),
            actor: row.get(2),
            action: row.get(3),
            object: row.get(4),
            body: row.get(5),
            ledger_batch_id: row.get::<_, Option<i64>>(6).map(|b| b as u64),
            previous_hash: hash_from(row.get(7))?,
            hash: hash_from(row.get(8))?,
        });
    }
    Ok(snapshot)
}

/// One batch as five set-based statements and one aggregated update.
fn commit_batch(
    transaction: &mut postgres::Transaction<'_>,
    changes: &Changes,
    previous_hash: &Hash,
    hash: &Hash,
) -> Result<u64, StoreError> {
    let batch_id: i64 = transaction
        .query_one(
            "INSERT INTO ledger_batches SELECT COALESCE(MAX(batch_id), 0) + 1, $1, $2, $3, $4 FROM ledger_batches RETURNING batch_id",
            &[&(changes.timestamp_first as i64), &(changes.timestamp_last as i64), &&previous_hash[..], &&hash[..]],
        )?
        .get(0);
    let accounts = &changes.accounts_created;
    if !accounts.is_empty() {
        transaction.execute(
            "INSERT INTO ledger_accounts SELECT id, ledger, code, flags, user_data, 0, 0, 0, 0, timestamp, $7 \
             FROM unnest($1::bytea[], $2::int8[], $3::int4[], $4::int4[], $5::bytea[], $6::int8[]) \
             AS a(id, ledger, code, flags, user_data, timestamp)",
            &[
                &accounts.iter().map(|a| bytes(a.id)).collect::<Vec<_>>(),
                &accounts.iter().map(|a| i64::from(a.ledger)).collect::<Vec<_>>(),
                &accounts.iter().map(|a| i32::from(a.code)).collect::<Vec<_>>(),
                &accounts.iter().map(|a| i32::from(a.flags.bits())).collect::<Vec<_>>(),
                &accounts.iter().map(|a| bytes(a.user_data)).collect::<Vec<_>>(),
                &accounts.iter().map(|a| a.timestamp as i64).collect::<Vec<_>>(),
                &batch_id,
            ],
        )?;
    }
    let transfers = &changes.transfers_created;
    if !transfers.is_empty() {
        transaction.execute(
            "INSERT INTO ledger_transfers SELECT *, $12 FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::int8[], \
             $5::bytea[], $6::int8[], $7::int8[], $8::int4[], $9::int4[], $10::bytea[], $11::int8[])",
            &[
                &transfers.iter().map(|t| bytes(t.id)).collect::<Vec<_>>(),
                &transfers.iter().map(|t| bytes(t.debit_account_id)).collect::<Vec<_>>(),
                &transfers.iter().map(|t| bytes(t.credit_account_id)).collect::<Vec<_>>(),
                &transfers.iter().map(|t| t.amount).collect::<Vec<_>>(),
                &transfers.iter().map(|t| bytes(t.pending_id)).collect::<Vec<_>>(),
                &transfers.iter().map(|t| i64::from(t.timeout_s)).collect::<Vec<_>>(),
                &transfers.iter().map(|t| i64::from(t.ledger)).collect::<Vec<_>>(),
                &transfers.iter().map(|t| i32::from(t.code)).collect::<Vec<_>>(),
                &transfers.iter().map(|t| i32::from(t.flags.bits())).collect::<Vec<_>>(),
                &transfers.iter().map(|t| bytes(t.user_data)).collect::<Vec<_>>(),
                &transfers.iter().map(|t| t.timestamp as i64).collect::<Vec<_>>(),
                &batch_id,
            ],
        )?;
    }
    if !changes.expired.is_empty() {
        transaction.execute(
            "INSERT INTO ledger_expiries SELECT *, $3 FROM unnest($1::bytea[], $2::int8[])",
            &[
                &changes.expired.iter().map(|e| bytes(e.pending_id)).collect::<Vec<_>>(),
                &changes.expired.iter().map(|e| e.timestamp as i64).collect::<Vec<_>>(),
                &batch_id,
            ],
        )?;
    }
    if !changes.failed.is_empty() {
        transaction.execute(
            "INSERT INTO ledger_failed_ids SELECT *, $4 FROM unnest($1::bytea[], $2::text[], $3::int8[])",
            &[
                &changes.failed.iter().map(|f| bytes(f.id)).collect::<Vec<_>>(),
                &changes.failed.iter().map(|f| f.reason.code().to_owned()).collect::<Vec<_>>(),
                &changes.failed.iter().map(|f| f.timestamp as i64).collect::<Vec<_>>(),
                &batch_id,
            ],
        )?;
    }
    let after = &changes.accounts_after;
    if !after.is_empty() {
        let updated = transaction.execute(
            "UPDATE ledger_accounts AS a SET debits_pending = u.dp, debits_posted = u.dpo, credits_pending = u.cp, \
             credits_posted = u.cpo FROM unnest($1::bytea[], $2::int8[], $3::int8[], $4::int8[], $5::int8[]) \
             AS u(id, dp, dpo, cp, cpo) WHERE a.id = u.id",
            &[
                &after.iter().map(|a| bytes(a.id)).collect::<Vec<_>>(),
                &after.iter().map(|a| a.debits_pending).collect::<Vec<_>>(),
                &after.iter().map(|a| a.debits_posted).collect::<Vec<_>>(),
                &after.iter().map(|a| a.credits_pending).collect::<Vec<_>>(),
                &after.iter().map(|a| a.credits_posted).collect::<Vec<_>>(),
            ],
        )?;
        if updated as usize != after.len() {
            return Err(StoreError::Malformed(format!(
                "{} of {} changed accounts are missing",
                after.len() - updated as usize,
                after.len()
            )));
        }
    }
    Ok(batch_id as u64)
}
