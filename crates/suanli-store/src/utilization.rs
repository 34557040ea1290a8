//! Utilization telemetry: each pool's busy GPUs over time, as its provider reports them (all
//! work on the pool, not only the platform's orders), kept in bounded storage.
//!
//! One table, `utilization`, holds three tiers of the same series: samples as reported
//! (`resolution_s = 0`, one row per pool and instant), hourly sums and daily sums. A row carries
//! sums (busy GPUs, GPUs, samples), so a coarser row is the exact sum of the finer rows it
//! replaced and a load is always `busy_sum / gpus_sum`, the mean over the samples. Samples are
//! kept as reported for [`RAW_KEEP_S`] (where a replay is checked against them: same sample,
//! the first answer again; different, refused), then folded into hours; hours are kept for
//! [`HOURLY_KEEP_S`], then folded into days, which are kept. So a pool reporting every minute
//! holds about 10,080 + 9,600 + 365 rows a year, whatever it reports after. Folding happens in
//! the transaction that records a pool's samples, for that pool only. Buckets are aligned to
//! days in Asia/Shanghai (UTC+8).
//!
//! The writer records; reads (`LogReader::utilization`) run on a connection of their own.

use postgres::Client;
use rusqlite::{OptionalExtension, params};

use crate::StoreError;

/// How long samples are kept as reported, in seconds (7 days).
pub const RAW_KEEP_S: i64 = 7 * 86_400;
/// How long hourly sums are kept before they are folded into days, in seconds (400 days: a
/// programme year and its comparison period stay hourly).
pub const HOURLY_KEEP_S: i64 = 400 * 86_400;
pub const HOUR_S: i64 = 3_600;
pub const DAY_S: i64 = 86_400;
/// Asia/Shanghai is UTC+8 all year: days begin at 16:00 UTC.
const DAY_OFFSET_S: i64 = 8 * 3_600;

/// One reported sample: at `at_s`, `busy_gpus` of the pool's `gpus` were busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub pool: u64,
    pub at_s: i64,
    pub busy_gpus: u32,
    pub gpus: u32,
}

/// What became of one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleAnswer {
    Stored,
    /// The same sample was stored before.
    Duplicate,
    /// Another sample for the same pool and instant was stored before: (busy GPUs, GPUs).
    Conflict {
        busy_gpus: u32,
        gpus: u32,
    },
}

/// One point of a series: the sums over a bucket starting at `at_s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Point {
    pub at_s: i64,
    pub busy_sum: i64,
    pub gpus_sum: i64,
    pub samples: i64,
}

impl Point {
    /// The mean share of GPUs busy, in basis points.
    pub fn load_bp(&self) -> Option<u32> {
        (self.gpus_sum > 0).then(|| (i128::from(self.busy_sum) * 10_000 / i128::from(self.gpus_sum)) as u32)
    }

    fn add(&mut self, other: &Point) {
        self.busy_sum = self.busy_sum.saturating_add(other.busy_sum);
        self.gpus_sum = self.gpus_sum.saturating_add(other.gpus_sum);
        self.samples = self.samples.saturating_add(other.samples);
    }
}

/// The mean load over `[from_s, to_s)` of a series' points, in basis points (none without
/// samples there).
pub fn load_between(points: &[Point], from_s: i64, to_s: i64) -> Option<u32> {
    let (mut busy, mut gpus) = (0i128, 0i128);
    for point in points.iter().filter(|p| p.at_s >= from_s && p.at_s < to_s) {
        busy += i128::from(point.busy_sum);
        gpus += i128::from(point.gpus_sum);
    }
    (gpus > 0).then(|| (busy * 10_000 / gpus) as u32)
}

/// The start of the bucket of `step` seconds (an hour or a day, Asia/Shanghai) holding `at_s`.
pub fn bucket(at_s: i64, step: i64) -> i64 {
    at_s - (at_s + DAY_OFFSET_S).rem_euclid(step)
}

/// Merges several pools' series (each in time order) into one, bucket by bucket.
pub fn merge(series: &[Vec<Point>]) -> Vec<Point> {
    let mut sums: std::collections::BTreeMap<i64, Point> = std::collections::BTreeMap::new();
    for point in series.iter().flatten() {
        sums.entry(point.at_s).or_insert(Point { at_s: point.at_s, ..Point::default() }).add(point);
    }
    sums.into_values().collect()
}

/// Where the tiers end at `now_s`: samples before the first are folded into hours, hours
/// before the second into days.
fn cutoffs(now_s: i64) -> (i64, i64) {
    (bucket(now_s - RAW_KEEP_S, HOUR_S), bucket(now_s - HOURLY_KEEP_S, DAY_S))
}

// The SQL is the same on both backends but for the placeholders. A grouped query compares its
// pool with `CAST(… AS BIGINT)`: with a bare parameter, SQLite propagates the bound value into
// the grouping and prepares the statement again whenever the value changes (about one call in
// three, the telemetry fold's whole cost in a profile); the cast keeps the plan and the index.
const FOLD: &str = "INSERT INTO utilization (pool, resolution_s, at_s, busy_sum, gpus_sum, samples) \
     SELECT pool, {to}, at_s - ((at_s + 28800) % {to}), CAST(sum(busy_sum) AS BIGINT), \
     CAST(sum(gpus_sum) AS BIGINT), CAST(sum(samples) AS BIGINT) \
     FROM utilization WHERE pool = CAST({p1} AS BIGINT) AND resolution_s = {from} AND at_s < {p2} \
     GROUP BY pool, at_s - ((at_s + 28800) % {to}) \
     ON CONFLICT (pool, resolution_s, at_s) DO UPDATE SET busy_sum = utilization.busy_sum + excluded.busy_sum, \
     gpus_sum = utilization.gpus_sum + excluded.gpus_sum, samples = utilization.samples + excluded.samples";
const DROP: &str = "DELETE FROM utilization WHERE pool = {p1} AND resolution_s = {from} AND at_s < {p2}";

fn fold_sql(template: &str, from: i64, to: i64, sqlite: bool) -> String {
    let (p1, p2) = if sqlite { ("?1", "?2") } else { ("$1", "$2") };
    template
        .replace("{to}", &to.to_string())
        .replace("{from}", &from.to_string())
        .replace("{p1}", p1)
        .replace("{p2}", p2)
}

fn compare(stored: (i64, i64), sample: &Sample) -> SampleAnswer {
    if stored == (i64::from(sample.busy_gpus), i64::from(sample.gpus)) {
        SampleAnswer::Duplicate
    } else {
        SampleAnswer::Conflict { busy_gpus: stored.0 as u32, gpus: stored.1 as u32 }
    }
}

fn pools_of(samples: &[Sample]) -> Vec<i64> {
    let mut pools: Vec<i64> = samples.iter().map(|s| s.pool as i64).collect();
    pools.sort_unstable();
    pools.dedup();
    pools
}

/// Records samples and folds the tiers of their pools, in one SQLite transaction.
pub(crate) fn record_sqlite(
    connection: &mut rusqlite::Connection,
    samples: &[Sample],
    now_s: i64,
) -> Result<Vec<SampleAnswer>, StoreError> {
    let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut answers = Vec::with_capacity(samples.len());
    {
        let mut find = transaction.prepare_cached(
            "SELECT busy_sum, gpus_sum FROM utilization WHERE pool = ?1 AND resolution_s = 0 AND at_s = ?2",
        )?;
        let mut insert = transaction.prepare_cached(
            "INSERT INTO utilization (pool, resolution_s, at_s, busy_sum, gpus_sum, samples) VALUES (?1, 0, ?2, ?3, ?4, 1)",
        )?;
        for sample in samples {
            let key = params![sample.pool as i64, sample.at_s];
            match find.query_row(key, |r| Ok((r.get(0)?, r.get(1)?))).optional()? {
                Some(stored) => answers.push(compare(stored, sample)),
                None => {
                    insert.execute(params![
                        sample.pool as i64,
                        sample.at_s,
                        i64::from(sample.busy_gpus),
                        i64::from(sample.gpus)
                    ])?;
                    answers.push(SampleAnswer::Stored);
                }
            }
        }
    }
    let (raw_until, hourly_until) = cutoffs(now_s);
    for pool in pools_of(samples) {
        for (from, to, until) in [(0, HOUR_S, raw_until), (HOUR_S, DAY_S, hourly_until)] {
            transaction.prepare_cached(&fold_sql(FOLD, from, to, true))?.execute(params![pool, until])?;
            transaction.prepare_cached(&fold_sql(DROP, from, to, true))?.execute(params![pool, until])?;
        }
    }
    transaction.commit()?;
    Ok(answers)
}

/// Records samples and folds the tiers of their pools, in one PostgreSQL transaction.
pub(crate) fn record_postgres(
    client: &mut Client,
    samples: &[Sample],
    now_s: i64,
) -> Result<Vec<SampleAnswer>, StoreError> {
    let mut transaction = client.transaction()?;
    let mut answers = Vec::with_capacity(samples.len());
    let find = transaction
        .prepare("SELECT busy_sum, gpus_sum FROM utilization WHERE pool = $1 AND resolution_s = 0 AND at_s = $2")?;
    let insert = transaction.prepare(
        "INSERT INTO utilization (pool, resolution_s, at_s, busy_sum, gpus_sum, samples) VALUES ($1, 0, $2, $3, $4, 1)",
    )?;
    for sample in samples {
        let pool = sample.pool as i64;
        match transaction.query_opt(&find, &[&pool, &sample.at_s])? {
            Some(row) => answers.push(compare((row.get(0), row.get(1)), sample)),
            None => {
                transaction
                    .execute(&insert, &[&pool, &sample.at_s, &i64::from(sample.busy_gpus), &i64::from(sample.gpus)])?;
                answers.push(SampleAnswer::Stored);
            }
        }
    }
    let (raw_until, hourly_until) = cutoffs(now_s);
    for pool in pools_of(samples) {
        for (from, to, until) in [(0, HOUR_S, raw_until), (HOUR_S, DAY_S, hourly_until)] {
            transaction.execute(&fold_sql(FOLD, from, to, false), &[&pool, &until])?;
            transaction.execute(&fold_sql(DROP, from, to, false), &[&pool, &until])?;
        }
    }
    transaction.commit()?;
    Ok(answers)
}

const SERIES: &str = "SELECT at_s - ((at_s + 28800) % {step}) AS b, CAST(sum(busy_sum) AS BIGINT), \
     CAST(sum(gpus_sum) AS BIGINT), CAST(sum(samples) AS BIGINT) \
     FROM utilization WHERE pool = CAST({p1} AS BIGINT) AND at_s >= {p2} AND at_s < {p3} \
     GROUP BY b ORDER BY b";

fn series_sql(step: i64, sqlite: bool) -> String {
    let (p1, p2, p3) = if sqlite { ("?1", "?2", "?3") } else { ("$1", "$2", "$3") };
    SERIES.replace("{step}", &step.to_string()).replace("{p1}", p1).replace("{p2}", p2).replace("{p3}", p3)
}

/// A pool's series in buckets of `step` seconds (an hour or a day) over `[from_s, to_s)`.
/// Rows already folded coarser than `step` appear once, at the start of their bucket.
pub(crate) fn series_sqlite(
    connection: &rusqlite::Connection,
    pool: u64,
    from_s: i64,
    to_s: i64,
    step: i64,
) -> Result<Vec<Point>, StoreError> {
    let mut statement = connection.prepare_cached(&series_sql(step, true))?;
    let points = statement
        .query_map(params![pool as i64, from_s, to_s], |r| {
            Ok(Point { at_s: r.get(0)?, busy_sum: r.get(1)?, gpus_sum: r.get(2)?, samples: r.get(3)? })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(points)
}

pub(crate) fn series_postgres(
    client: &mut impl postgres::GenericClient,
    pool: u64,
    from_s: i64,
    to_s: i64,
    step: i64,
) -> Result<Vec<Point>, StoreError> {
    let rows = client.query(&series_sql(step, false), &[&(pool as i64), &from_s, &to_s])?;
    Ok(rows
        .iter()
        .map(|r| Point { at_s: r.get(0), busy_sum: r.get(1), gpus_sum: r.get(2), samples: r.get(3) })
        .collect())
}
