//! Utilization telemetry in storage: idempotent samples, conflicts refused, and the tiers folded
//! with age so storage stays bounded while every sum stays exact.

use suanli_store::Storage;
use suanli_store::utilization::{DAY_S, HOUR_S, Point, RAW_KEEP_S, Sample, SampleAnswer, bucket};

use super::Database;

const POOL: u64 = 7;
/// 2026-03-02 00:00 Asia/Shanghai.
const T0: i64 = 1_772_380_800;

fn sample(at_s: i64, busy_gpus: u32) -> Sample {
    Sample { pool: POOL, at_s, busy_gpus, gpus: 8 }
}

fn series(database: &Database, from: i64, to: i64, step: i64) -> Vec<Point> {
    let mut reader = database.reader().log_reader().unwrap();
    reader.utilization(&[POOL], from, to, step).unwrap().pop().unwrap()
}

pub fn samples_are_idempotent_and_conflicts_are_refused() {
    let database = Database::fresh();
    let mut store = database.store();
    let first = [sample(T0, 2), sample(T0 + 60, 4)];
    assert_eq!(store.record_utilization(&first, T0 + 120).unwrap(), vec![SampleAnswer::Stored; 2]);
    let again = [sample(T0, 2), sample(T0 + 60, 5), sample(T0 + 120, 8)];
    assert_eq!(
        store.record_utilization(&again, T0 + 180).unwrap(),
        vec![SampleAnswer::Duplicate, SampleAnswer::Conflict { busy_gpus: 4, gpus: 8 }, SampleAnswer::Stored]
    );
    drop(store);
    // One hour bucket: (2 + 4 + 8) of (3 × 8) GPUs, so 58.33% busy.
    let hour = series(&database, T0, T0 + HOUR_S, HOUR_S);
    assert_eq!(hour, vec![Point { at_s: T0, busy_sum: 14, gpus_sum: 24, samples: 3 }]);
    assert_eq!(hour[0].load_bp(), Some(5_833));
}

pub fn old_samples_are_folded_into_hours_and_days_with_exact_sums() {
    let database = Database::fresh();
    let mut store = database.store();
    // Two samples an hour for 3 days, busy 1 then 3 (mean 2 of 8 = 25%).
    let samples: Vec<Sample> = (0..3 * 48).map(|i| sample(T0 + i * 1_800, if i % 2 == 0 { 1 } else { 3 })).collect();
    store.record_utilization(&samples, T0 + 3 * DAY_S).unwrap();
    let before = series(&database, T0, T0 + 3 * DAY_S, DAY_S);
    assert_eq!(before.len(), 3);
    assert!(before.iter().all(|p| *p == Point { at_s: p.at_s, busy_sum: 96, gpus_sum: 384, samples: 48 }));

    // A week later the first days' samples are folded into hours; 400 days later into days.
    let later = T0 + 3 * DAY_S + RAW_KEEP_S;
    store.record_utilization(&[sample(later, 0)], later).unwrap();
    let hours = series(&database, T0, T0 + DAY_S, HOUR_S);
    assert_eq!(hours.len(), 24);
    assert!(hours.iter().all(|p| p.busy_sum == 4 && p.gpus_sum == 16 && p.samples == 2), "{hours:?}");
    let replay = store.record_utilization(&[sample(T0, 1)], later + 60).unwrap();
    assert_eq!(replay, vec![SampleAnswer::Stored], "a folded sample is no longer known as reported");
    store.record_utilization(&[sample(later + 401 * DAY_S, 0)], later + 401 * DAY_S).unwrap();
    let days = series(&database, T0, T0 + 3 * DAY_S, HOUR_S);
    assert_eq!(days.len(), 3, "hours older than 400 days are days now: {days:?}");
    assert_eq!(days[0], Point { at_s: T0, busy_sum: 97, gpus_sum: 392, samples: 49 });
    assert_eq!(days[1].busy_sum, 96);
    assert_eq!(bucket(T0 + 5 * HOUR_S, DAY_S), T0);
    drop(store);
    let rows = |store: &mut suanli_store::AnyStore| -> i64 {
        if let Some(sqlite) = store.as_sqlite() {
            return sqlite.connection().query_row("SELECT count(*) FROM utilization", [], |r| r.get(0)).unwrap();
        }
        let client = store.as_postgres().unwrap().client();
        client.query_one("SELECT count(*) FROM utilization", &[]).unwrap().get(0)
    };
    let mut store = database.store();
    // 3 days (one re-sent sample in day 1), the week-later sample folded into its day, the last.
    assert_eq!(rows(&mut store), 5);
}
