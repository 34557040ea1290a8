//! Pages of the audit log read from storage, on a connection of their own, so an auditor paging
//! the log never waits for the writer and the writer never waits for the auditor.
//!
//! Sequences run 1, 2, 3, … without gaps, so a page is a range of sequences found through the
//! primary key: its cost does not grow with the log.

use std::path::Path;

use postgres::{Client, NoTls};
use rusqlite::{Connection, OpenFlags};

use suanli_ledger::Hash;

use crate::merkle::TreeSource;
use crate::orders;
use crate::{LogEntry, StoreError};

pub struct LogReader {
    backend: Reader,
    /// The PostgreSQL URL, to connect again after the connection was lost.
    url: Option<String>,
}

enum Reader {
    Sqlite(Connection),
    Postgres(Box<Client>),
    Closed,
}

/// The most entries one page holds.
pub const LOG_PAGE_ENTRIES_MAX: usize = 1_000;

impl LogReader {
    pub fn sqlite(path: &Path) -> Result<LogReader, StoreError> {
        let shown = path.display().to_string();
        let connection =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|source| StoreError::Open { path: shown, source })?;
        connection.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")?;
        Ok(LogReader { backend: Reader::Sqlite(connection), url: None })
    }

    pub fn postgres(url: &str) -> Result<LogReader, StoreError> {
        let client = Client::connect(url, NoTls)
            .map_err(|e| StoreError::Postgres { url: crate::redact(url), message: e.to_string() })?;
        Ok(LogReader { backend: Reader::Postgres(Box::new(client)), url: Some(url.to_owned()) })
    }

    /// The entries after sequence `after`, at most `limit` of them, in order, and how many
    /// entries the log holds. A PostgreSQL connection that was lost is made again once.
    pub fn page(&mut self, after: u64, limit: usize) -> Result<(Vec<LogEntry>, u64), StoreError> {
        match self.page_once(after, limit) {
            Err(error) if matches!(&self.backend, Reader::Postgres(client) if client.is_closed()) => {
                let Some(url) = self.url.clone() else { return Err(error) };
                *self = LogReader::postgres(&url)?;
                self.page_once(after, limit)
            }
            other => other,
        }
    }

    fn page_once(&mut self, after: u64, limit: usize) -> Result<(Vec<LogEntry>, u64), StoreError> {
        let limit = limit.min(LOG_PAGE_ENTRIES_MAX) as i64;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        match &mut self.backend {
            Reader::Sqlite(connection) => {
                let transaction = connection.transaction()?;
                let total: i64 =
                    transaction.query_row("SELECT coalesce(max(sequence), 0) FROM audit_log", [], |r| r.get(0))?;
                let entries = {
                    let mut statement = transaction.prepare_cached(&format!(
                        "{} WHERE sequence > ?1 ORDER BY sequence LIMIT ?2",
                        crate::sqlite::LOG_COLUMNS
                    ))?;
                    statement.query_map([after, limit], crate::sqlite::log_row)?.collect::<Result<Vec<_>, _>>()?
                };
                transaction.commit()?;
                Ok((entries, total as u64))
            }
            Reader::Postgres(client) => {
                let mut transaction = snapshot(client)?;
                let total: i64 =
                    transaction.query_one("SELECT coalesce(max(sequence), 0)::int8 FROM audit_log", &[])?.get(0);
                let rows = transaction.query(
                    "SELECT sequence, time_s, actor, action, object, body, ledger_batch_id, previous_hash, hash \
                     FROM audit_log WHERE sequence > $1 ORDER BY sequence LIMIT $2",
                    &[&after, &limit],
                )?;
                transaction.commit()?;
                let entries = rows.iter().map(postgres_log_row).collect::<Result<Vec<_>, StoreError>>()?;
                Ok((entries, total as u64))
            }
            Reader::Closed => Err(StoreError::Malformed("the log reader is closed".into())),
        }
    }
}

impl LogReader {
    /// The utilization series of each of `pools` in buckets of `step` seconds (an hour or a day)
    /// over `[from_s, to_s)`, all read in one snapshot.
    pub fn utilization(
        &mut self,
        pools: &[u64],
        from_s: i64,
        to_s: i64,
        step: i64,
    ) -> Result<Vec<Vec<crate::utilization::Point>>, StoreError> {
        use crate::utilization::{series_postgres, series_sqlite};
        match &mut self.backend {
            Reader::Sqlite(connection) => {
                let transaction = connection.transaction()?;
                let series = pools
                    .iter()
                    .map(|pool| series_sqlite(&transaction, *pool, from_s, to_s, step))
                    .collect::<Result<Vec<_>, _>>()?;
                transaction.commit()?;
                Ok(series)
            }
            Reader::Postgres(client) => {
                let mut transaction = snapshot(client)?;
                let series = pools
                    .iter()
                    .map(|pool| series_postgres(&mut transaction, *pool, from_s, to_s, step))
                    .collect::<Result<Vec<_>, _>>()?;
                transaction.commit()?;
                Ok(series)
            }
            Reader::Closed => Err(StoreError::Malformed("the log reader is closed".into())),
        }
    }
}

/// Which anomalies to page through: of one kind, about one object.
#[derive(Clone, Debug, Default)]
pub struct AnomalyFilter {
    pub kind: Option<String>,
    pub object: Option<String>,
}

impl LogReader {
    /// The log entries that record anomalies (`anomaly.flagged`, `usage.refused`) matching
    /// `filter`, in log order from `offset`, at most `limit`, and how many match in all.
    pub fn anomalies(
        &mut self,
        filter: &AnomalyFilter,
        offset: u64,
        limit: usize,
    ) -> Result<(Vec<LogEntry>, u64), StoreError> {
        let limit = limit.min(LOG_PAGE_ENTRIES_MAX) as i64;
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let (kind, object) = (filter.kind.clone(), filter.object.clone());
        match &mut self.backend {
            Reader::Sqlite(connection) => {
                let matching = "FROM audit_log WHERE action IN ('anomaly.flagged', 'usage.refused') \
                     AND (?1 IS NULL OR object = ?1) \
                     AND (?2 IS NULL OR coalesce(json_extract(body, '$.anomaly.kind'), json_extract(body, '$.code')) = ?2)";
                let transaction = connection.transaction()?;
                let total: i64 = transaction.query_row(
                    &format!("SELECT count(*) {matching}"),
                    rusqlite::params![object, kind],
                    |r| r.get(0),
                )?;
                let entries = {
                    let columns = crate::sqlite::LOG_COLUMNS.trim_end_matches(" FROM audit_log");
                    let mut statement = transaction
                        .prepare_cached(&format!("{columns} {matching} ORDER BY sequence LIMIT ?3 OFFSET ?4"))?;
                    statement
                        .query_map(rusqlite::params![object, kind, limit, offset], crate::sqlite::log_row)?
                        .collect::<Result<Vec<_>, _>>()?
                };
                transaction.commit()?;
                Ok((entries, total as u64))
            }
            Reader::Postgres(client) => {
                let matching = "FROM audit_log WHERE action IN ('anomaly.flagged', 'usage.refused') \
                     AND ($1::text IS NULL OR object = $1) \
                     AND ($2::text IS NULL OR coalesce(body::jsonb #>> '{anomaly,kind}', body::jsonb ->> 'code') = $2)";
                let mut transaction = snapshot(client)?;
                let total: i64 =
                    transaction.query_one(&format!("SELECT count(*) {matching}"), &[&object, &kind])?.get(0);
                let rows = transaction.query(
                    &format!(
                        "SELECT sequence, time_s, actor, action, object, body, ledger_batch_id, previous_hash, hash \
                         {matching} ORDER BY sequence LIMIT $3 OFFSET $4"
                    ),
                    &[&object, &kind, &limit, &offset],
                )?;
                transaction.commit()?;
                let entries = rows.iter().map(postgres_log_row).collect::<Result<Vec<_>, StoreError>>()?;
                Ok((entries, total as u64))
            }
            Reader::Closed => Err(StoreError::Malformed("the log reader is closed".into())),
        }
    }

    /// The usage ids decided for `order` with their first results (the service's JSON), in the
    /// order of their periods from `offset`, at most `limit`, and how many the order has in all.
    pub fn order_usage(
        &mut self,
        order: u64,
        offset: u64,
        limit: usize,
    ) -> Result<(Vec<(String, String)>, u64), StoreError> {
        let limit = limit.min(LOG_PAGE_ENTRIES_MAX) as i64;
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let order = i64::try_from(order).unwrap_or(i64::MAX);
        match &mut self.backend {
            Reader::Sqlite(connection) => {
                let transaction = connection.transaction()?;
                let total: i64 =
                    transaction
                        .query_row("SELECT count(*) FROM usage_ids WHERE order_id = ?1", [order], |r| r.get(0))?;
                let rows = {
                    let mut statement = transaction.prepare_cached(
                        "SELECT id, entry FROM usage_ids WHERE order_id = ?1 ORDER BY period_start_s, id LIMIT ?2 OFFSET ?3",
                    )?;
                    statement
                        .query_map([order, limit, offset], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<Result<Vec<_>, _>>()?
                };
                transaction.commit()?;
                Ok((rows, total as u64))
            }
            Reader::Postgres(client) => {
                let mut transaction = snapshot(client)?;
                let total: i64 =
                    transaction.query_one("SELECT count(*) FROM usage_ids WHERE order_id = $1", &[&order])?.get(0);
                let rows = transaction.query(
                    "SELECT id, entry FROM usage_ids WHERE order_id = $1 ORDER BY period_start_s, id LIMIT $2 OFFSET $3",
                    &[&order, &limit, &offset],
                )?;
                transaction.commit()?;
                Ok((rows.iter().map(|r| (r.get(0), r.get(1))).collect(), total as u64))
            }
            Reader::Closed => Err(StoreError::Malformed("the log reader is closed".into())),
        }
    }

    /// Runs `sqlite` or `postgres` in one read snapshot.
    fn in_snapshot<T>(
        &mut self,
        sqlite: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError>,
        postgres: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &mut self.backend {
            Reader::Sqlite(connection) => {
                let transaction = connection.transaction()?;
                let answer = sqlite(&transaction)?;
                transaction.commit()?;
                Ok(answer)
            }
            Reader::Postgres(client) => {
                let mut transaction = snapshot(client)?;
                let answer = postgres(&mut transaction)?;
                transaction.commit()?;
                Ok(answer)
            }
            Reader::Closed => Err(StoreError::Malformed("the log reader is closed".into())),
        }
    }

    /// The sequence of the last log entry with `action`, if there is one.
    pub fn last_of(&mut self, action: &str) -> Result<Option<u64>, StoreError> {
        let sql = "SELECT max(sequence) FROM audit_log WHERE action = ";
        self.in_snapshot(
            |c| Ok(c.query_row(&format!("{sql}?1"), [action], |r| r.get::<_, Option<i64>>(0))?),
            |t| Ok(t.query_one(&format!("{sql}$1"), &[&action])?.get::<_, Option<i64>>(0)),
        )
        .map(|last| last.map(|s| s as u64))
    }

    /// The archived order `id` as the service held it (JSON), if it is archived.
    pub fn archived_order(&mut self, id: u64) -> Result<Option<String>, StoreError> {
        self.in_snapshot(|c| orders::find_sqlite(c, id), |t| orders::find_postgres(t, id))
    }

    /// The ids of the first `limit` archived orders matching `filter`, in id order, and how many
    /// match in all.
    pub fn archived_order_ids(
        &mut self,
        filter: &orders::OrderFilter,
        limit: u64,
    ) -> Result<(Vec<u64>, u64), StoreError> {
        self.in_snapshot(|c| orders::ids_sqlite(c, filter, limit), |t| orders::ids_postgres(t, filter, limit))
    }

    /// The archived orders among `ids` (JSON), in the order asked.
    pub fn archived_orders(&mut self, ids: &[u64]) -> Result<Vec<String>, StoreError> {
        self.in_snapshot(
            |c| ids.iter().filter_map(|id| orders::find_sqlite(c, *id).transpose()).collect(),
            |t| ids.iter().filter_map(|id| orders::find_postgres(t, *id).transpose()).collect(),
        )
    }

    /// The archived statement lines `of` asks for: (statement, line JSON), by statement and order.
    pub fn archived_lines(&mut self, of: orders::LinesOf) -> Result<Vec<(u64, String)>, StoreError> {
        self.in_snapshot(|c| orders::lines_sqlite(c, of), |t| orders::lines_postgres(t, of))
    }

    /// What each of `enterprises` spent (fen) on archived orders placed at or after `since_s`;
    /// enterprises with none are left out.
    pub fn archived_bought(&mut self, enterprises: &[u64], since_s: i64) -> Result<Vec<(u64, i64)>, StoreError> {
        self.in_snapshot(
            |c| orders::bought_sqlite(c, enterprises, since_s),
            |t| orders::bought_postgres(t, enterprises, since_s),
        )
    }

    /// Hashes read in one statement: `sql` takes a lower and an upper bound (exclusive, inclusive)
    /// and selects one 32-byte column; exactly `count` rows must come back.
    fn hashes(&mut self, sql: &str, low: i64, high: i64, count: u64) -> Result<Vec<Hash>, StoreError> {
        let malformed = || StoreError::Malformed("a stored hash is not 32 bytes".into());
        let hashes: Vec<Hash> = match &mut self.backend {
            Reader::Sqlite(connection) => {
                let mut statement = connection.prepare_cached(sql)?;
                let rows = statement.query_map([low, high], |r| r.get::<_, Vec<u8>>(0))?;
                rows.map(|r| r?.as_slice().try_into().map_err(|_| malformed())).collect::<Result<_, _>>()?
            }
            Reader::Postgres(client) => {
                let sql = sql.replace("?1", "$1").replace("?2", "$2");
                let rows = client.query(&sql, &[&low, &high])?;
                rows.iter()
                    .map(|r| r.get::<_, &[u8]>(0).try_into().map_err(|_| malformed()))
                    .collect::<Result<_, _>>()?
            }
            Reader::Closed => return Err(StoreError::Malformed("the log reader is closed".into())),
        };
        if hashes.len() as u64 != count {
            return Err(StoreError::Malformed(format!("expected {count} stored hashes, found {}", hashes.len())));
        }
        Ok(hashes)
    }
}

impl TreeSource for LogReader {
    fn leaf_hashes(&mut self, first: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        let sql = "SELECT hash FROM audit_log WHERE sequence > ?1 AND sequence <= ?2 ORDER BY sequence";
        let entries = self.hashes(sql, first as i64, (first + count) as i64, count)?;
        Ok(entries.iter().map(crate::merkle::leaf_hash).collect())
    }

    fn tile_roots(&mut self, first: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        let sql = "SELECT root FROM merkle_tiles WHERE tile > ?1 AND tile <= ?2 ORDER BY tile";
        self.hashes(sql, first as i64 - 1, (first + count) as i64 - 1, count)
    }
}

/// One read-only, repeatable-read snapshot: a page and its total agree.
fn snapshot(client: &mut Client) -> Result<postgres::Transaction<'_>, StoreError> {
    Ok(client.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).read_only(true).start()?)
}

fn postgres_log_row(r: &postgres::Row) -> Result<LogEntry, StoreError> {
    Ok(LogEntry {
        sequence: r.get::<_, i64>(0) as u64,
        time_s: r.get(1),
        actor: r.get(2),
        action: r.get(3),
        object: r.get(4),
        body: r.get(5),
        ledger_batch_id: r.get::<_, Option<i64>>(6).map(|b| b as u64),
        previous_hash: r.get::<_, &[u8]>(7).try_into().map_err(|_| bad_hash())?,
        hash: r.get::<_, &[u8]>(8).try_into().map_err(|_| bad_hash())?,
    })
}

impl Drop for LogReader {
    /// The synchronous PostgreSQL client blocks on its own runtime when dropped, which panics
    /// inside an async runtime (where the API drops its last handle); it is dropped on a thread
    /// of its own instead.
    fn drop(&mut self) {
        if let Reader::Postgres(client) = std::mem::replace(&mut self.backend, Reader::Closed) {
            let _ = std::thread::Builder::new().name("suanli-log-reader-close".into()).spawn(move || drop(client));
        }
    }
}

fn bad_hash() -> StoreError {
    StoreError::Malformed("a log hash is not 32 bytes".into())
}
