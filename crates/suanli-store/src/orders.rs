//! Archived orders: an order that ended long enough ago that nothing can change it any more
//! leaves the writer's memory and lives here, written in the same transaction as the log entry
//! that archives it. Readers find it by id and page through archived orders by who may see them.
//!
//! The row keeps the order as the service last held it (its JSON, `body`) and the columns that
//! lists filter on.

use postgres::GenericClient;
use rusqlite::{OptionalExtension, params};

use crate::StoreError;

/// One archived order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRow {
    pub id: u64,
    pub program: u64,
    /// The programme's authority, so an authority's list is one indexed filter.
    pub authority: u64,
    pub enterprise: u64,
    pub provider: u64,
    /// `completed` or `cancelled`.
    pub state: String,
    pub placed_at_s: i64,
    pub cost_fen: i64,
    /// The order as the service held it, in JSON.
    pub body: String,
}

/// Which archived orders a list shows: every filter that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub program: Option<u64>,
    pub authority: Option<u64>,
    pub enterprise: Option<u64>,
    pub provider: Option<u64>,
    pub state: Option<String>,
}

impl OrderFilter {
    fn values(&self) -> [Option<i64>; 4] {
        [self.program, self.authority, self.enterprise, self.provider].map(|v| v.map(|v| v as i64))
    }
}

const MATCHING: &str = "FROM orders_archive WHERE ({1} IS NULL OR program = {1}) AND ({2} IS NULL OR authority = {2}) \
     AND ({3} IS NULL OR enterprise = {3}) AND ({4} IS NULL OR provider = {4}) AND ({5} IS NULL OR state = {5})";

/// PostgreSQL plans each call with the values bound, so one statement serves every filter.
fn matching_postgres() -> String {
    let mut sql = MATCHING.to_owned();
    for n in 1..=5 {
        let placeholder = if n == 5 { "$5::text".to_owned() } else { format!("${n}::int8") };
        sql = sql.replace(&format!("{{{n}}}"), &placeholder);
    }
    sql
}

const INSERT: &str = "INTO orders_archive (id, program, authority, enterprise, provider, state, placed_at_s, \
     cost_fen, body) VALUES ";

pub(crate) fn insert_sqlite(transaction: &rusqlite::Transaction<'_>, rows: &[OrderRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = transaction.prepare_cached(&format!("INSERT {INSERT} (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"))?;
    for r in rows {
        insert.execute(params![
            r.id as i64,
            r.program as i64,
            r.authority as i64,
            r.enterprise as i64,
            r.provider as i64,
            r.state,
            r.placed_at_s,
            r.cost_fen,
            r.body
        ])?;
    }
    Ok(())
}

pub(crate) fn insert_postgres(client: &mut impl GenericClient, rows: &[OrderRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let insert = client.prepare(&format!("INSERT {INSERT} ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))?;
    for r in rows {
        client.execute(
            &insert,
            &[
                &(r.id as i64),
                &(r.program as i64),
                &(r.authority as i64),
                &(r.enterprise as i64),
                &(r.provider as i64),
                &r.state,
                &r.placed_at_s,
                &r.cost_fen,
                &r.body,
            ],
        )?;
    }
    Ok(())
}

/// The body of archived order `id`, if it is archived.
pub(crate) fn find_sqlite(connection: &rusqlite::Connection, id: u64) -> Result<Option<String>, StoreError> {
    let mut statement = connection.prepare_cached("SELECT body FROM orders_archive WHERE id = ?1")?;
    Ok(statement.query_row([id as i64], |r| r.get(0)).optional()?)
}

pub(crate) fn find_postgres(client: &mut impl GenericClient, id: u64) -> Result<Option<String>, StoreError> {
    Ok(client.query_opt("SELECT body FROM orders_archive WHERE id = $1", &[&(id as i64)])?.map(|r| r.get(0)))
}

/// The ids of the first `limit` archived orders matching `filter`, in id order, and how many
/// match in all.
pub(crate) fn ids_sqlite(
    connection: &rusqlite::Connection,
    filter: &OrderFilter,
    limit: u64,
) -> Result<(Vec<u64>, u64), StoreError> {
    // Only the filters set are written, so SQLite's planner sees which index serves them (a
    // count with no filter walks the smallest index, not the rows and their bodies).
    use rusqlite::types::Value;
    let [program, authority, enterprise, provider] = filter.values();
    let mut conditions = Vec::new();
    let mut values: Vec<(&str, Value)> = Vec::new();
    for (name, value) in
        [("program", program), ("authority", authority), ("enterprise", enterprise), ("provider", provider)]
    {
        if let Some(value) = value {
            conditions.push(format!("{name} = :{name}"));
            values.push((name, Value::Integer(value)));
        }
    }
    if let Some(state) = &filter.state {
        conditions.push("state = :state".to_owned());
        values.push(("state", Value::Text(state.clone())));
    }
    let names: Vec<String> = values.iter().map(|(name, _)| format!(":{name}")).collect();
    let mut bound: Vec<(&str, &dyn rusqlite::ToSql)> =
        names.iter().zip(&values).map(|(name, (_, value))| (name.as_str(), value as &dyn rusqlite::ToSql)).collect();
    let matching = if conditions.is_empty() {
        "FROM orders_archive".to_owned()
    } else {
        format!("FROM orders_archive WHERE {}", conditions.join(" AND "))
    };
    let total: i64 =
        connection.prepare_cached(&format!("SELECT count(*) {matching}"))?.query_row(&*bound, |r| r.get(0))?;
    let limit = Value::Integer(limit.min(i64::MAX as u64) as i64);
    bound.push((":limit", &limit));
    let mut statement = connection.prepare_cached(&format!("SELECT id {matching} ORDER BY id LIMIT :limit"))?;
    let ids = statement
        .query_map(&*bound, |r| r.get::<_, i64>(0))?
        .map(|id| id.map(|id| id as u64))
        .collect::<Result<Vec<u64>, _>>()?;
    Ok((ids, total as u64))
}

pub(crate) fn ids_postgres(
    client: &mut impl GenericClient,
    filter: &OrderFilter,
    limit: u64,
) -> Result<(Vec<u64>, u64), StoreError> {
    let [program, authority, enterprise, provider] = filter.values();
    let state = filter.state.clone();
    let matching = matching_postgres();
    let total: i64 = client
        .query_one(&format!("SELECT count(*) {matching}"), &[&program, &authority, &enterprise, &provider, &state])?
        .get(0);
    let limit = limit.min(i64::MAX as u64) as i64;
    let rows = client.query(
        &format!("SELECT id {matching} ORDER BY id LIMIT $6"),
        &[&program, &authority, &enterprise, &provider, &state, &limit],
    )?;
    Ok((rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect(), total as u64))
}

const BOUGHT: &str = "SELECT enterprise, CAST(sum(cost_fen) AS BIGINT) FROM orders_archive \
     WHERE enterprise = {1} AND placed_at_s >= {2} GROUP BY enterprise";

/// What each of `enterprises` spent (cost in fen) on archived orders placed at or after
/// `since_s`.
pub(crate) fn bought_sqlite(
    connection: &rusqlite::Connection,
    enterprises: &[u64],
    since_s: i64,
) -> Result<Vec<(u64, i64)>, StoreError> {
    let mut statement = connection.prepare_cached(&BOUGHT.replace("{1}", "?1").replace("{2}", "?2"))?;
    let mut bought = Vec::new();
    for &enterprise in enterprises {
        if let Some(sum) = statement.query_row(params![enterprise as i64, since_s], |r| r.get(1)).optional()? {
            bought.push((enterprise, sum));
        }
    }
    Ok(bought)
}

pub(crate) fn bought_postgres(
    client: &mut impl GenericClient,
    enterprises: &[u64],
    since_s: i64,
) -> Result<Vec<(u64, i64)>, StoreError> {
    let statement = client.prepare(&BOUGHT.replace("{1}", "$1").replace("{2}", "$2"))?;
    let mut bought = Vec::new();
    for &enterprise in enterprises {
        if let Some(row) = client.query_opt(&statement, &[&(enterprise as i64), &since_s])? {
            bought.push((enterprise, row.get(1)));
        }
    }
    Ok(bought)
}

/// One line of an approved statement (an order's usage in the statement's month), kept here
/// once the statement's lines leave memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineRow {
    pub statement: u64,
    pub order: u64,
    pub enterprise: u64,
    /// The line as the service held it, in JSON.
    pub body: String,
}

/// What leaves memory in one commit: orders and statement lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Archive {
    pub orders: Vec<OrderRow>,
    pub lines: Vec<LineRow>,
}

impl Archive {
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty() && self.lines.is_empty()
    }

    pub fn extend(&mut self, other: Archive) {
        self.orders.extend(other.orders);
        self.lines.extend(other.lines);
    }
}

const INSERT_LINE: &str = "INSERT INTO statement_lines (statement, order_id, enterprise, body) VALUES ";

pub(crate) fn insert_lines_sqlite(transaction: &rusqlite::Transaction<'_>, rows: &[LineRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = transaction.prepare_cached(&format!("{INSERT_LINE} (?1, ?2, ?3, ?4)"))?;
    for r in rows {
        insert.execute(params![r.statement as i64, r.order as i64, r.enterprise as i64, r.body])?;
    }
    Ok(())
}

pub(crate) fn insert_lines_postgres(client: &mut impl GenericClient, rows: &[LineRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let insert = client.prepare(&format!("{INSERT_LINE} ($1, $2, $3, $4)"))?;
    for r in rows {
        client.execute(&insert, &[&(r.statement as i64), &(r.order as i64), &(r.enterprise as i64), &r.body])?;
    }
    Ok(())
}

/// Which archived lines to read: one statement's, or one enterprise's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinesOf {
    Statement(u64),
    Enterprise(u64),
}

impl LinesOf {
    fn sql(self, sqlite: bool) -> (String, i64) {
        let (column, value) = match self {
            LinesOf::Statement(id) => ("statement", id),
            LinesOf::Enterprise(id) => ("enterprise", id),
        };
        let placeholder = if sqlite { "?1" } else { "$1" };
        (
            format!(
                "SELECT statement, body FROM statement_lines WHERE {column} = {placeholder} ORDER BY statement, order_id"
            ),
            value as i64,
        )
    }
}

/// The archived lines `of` asks for: (statement, line JSON), by statement and order.
pub(crate) fn lines_sqlite(connection: &rusqlite::Connection, of: LinesOf) -> Result<Vec<(u64, String)>, StoreError> {
    let (sql, value) = of.sql(true);
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement
        .query_map([value], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(crate) fn lines_postgres(client: &mut impl GenericClient, of: LinesOf) -> Result<Vec<(u64, String)>, StoreError> {
    let (sql, value) = of.sql(false);
    Ok(client.query(&sql, &[&value])?.iter().map(|r| (r.get::<_, i64>(0) as u64, r.get(1))).collect())
}
