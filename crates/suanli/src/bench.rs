//! `suanli bench ledger`: the apply loop in memory and durable in SQLite.
//!
//! The workload is a voucher programme's spending: 1,000 voucher accounts that may not go below
//! zero pay 1,000 provider accounts. A record is one transfer; one in four is a hold that the next
//! record posts, as orders do. Events are built before the clock starts, so only applying (and,
//! for SQLite, committing) is timed.

use std::process::ExitCode;
use std::time::Instant;

use suanli_ledger::{AccountFlags, BATCH_EVENTS_MAX, Event, Ledger, NewAccount, Outcome, Transfer, TransferFlags};
use suanli_store::{Durable, FsyncMode, SqliteStore};

#[derive(clap::Args)]
pub struct LedgerOptions {
    /// Records applied in memory.
    #[arg(long, default_value_t = 4_000_000)]
    records_in_memory: u64,
    /// Records committed to SQLite for each batch size.
    #[arg(long, default_value_t = 400_000)]
    records_sqlite: u64,
    /// Batch sizes to measure, comma-separated (at most 8,190).
    #[arg(long, value_delimiter = ',', default_value = "1000,4000,8000")]
    batch_sizes: Vec<usize>,
}

const LEDGER: u32 = 156;
const VOUCHERS: u128 = 1_000;
const PROVIDERS: u128 = 1_000;
const SOURCE: u128 = 1;

fn setup_events() -> Vec<Vec<Event>> {
    let account = |id, flags| Event::CreateAccount(NewAccount { id, ledger: LEDGER, code: 1, flags, user_data: 0 });
    let mut events = vec![account(SOURCE, AccountFlags::empty())];
    for v in 0..VOUCHERS {
        events.push(account(voucher(v), AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS));
        events.push(account(provider(v), AccountFlags::empty()));
    }
    let funding = (0..VOUCHERS).map(|v| {
        Event::CreateTransfer(Transfer {
            id: 1 + v,
            debit_account_id: SOURCE,
            credit_account_id: voucher(v),
            amount: i64::MAX / 4 / VOUCHERS as i64,
            ledger: LEDGER,
            code: 1,
            ..Transfer::default()
        })
    });
    events.extend(funding);
    events.chunks(BATCH_EVENTS_MAX).map(<[Event]>::to_vec).collect()
}

fn voucher(index: u128) -> u128 {
    1_000 + index
}

fn provider(index: u128) -> u128 {
    1_000 + VOUCHERS + index % PROVIDERS
}

/// `count` records from id `first` on, in batches of `batch_size`.
fn workload(first: u128, count: u64, batch_size: usize) -> Vec<Vec<Event>> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64; // a fixed seed: the same workload every run
    let events: Vec<Event> = (0..u128::from(count))
        .map(|index| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let id = first + index;
            let v = u128::from(state) % VOUCHERS;
            let base = Transfer {
                id,
                debit_account_id: voucher(v),
                credit_account_id: provider(v),
                amount: (state % 100_000) as i64 + 1,
                ledger: LEDGER,
                code: 2,
                ..Transfer::default()
            };
            Event::CreateTransfer(match index % 4 {
                2 => Transfer { flags: TransferFlags::PENDING, timeout_s: 3_600, ..base },
                3 => Transfer { id, pending_id: id - 1, flags: TransferFlags::POST_PENDING, ..Transfer::default() },
                _ => base,
            })
        })
        .collect();
    events.chunks(batch_size).map(<[Event]>::to_vec).collect()
}

fn check_all_ok(outcomes: &[Outcome]) {
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Ok(_))), "the benchmark workload must apply cleanly");
}

pub fn ledger(options: &LedgerOptions) -> anyhow::Result<ExitCode> {
    if let Some(size) = options.batch_sizes.iter().find(|&&s| s == 0 || s > BATCH_EVENTS_MAX) {
        anyhow::bail!("--batch-sizes: {size} is not between 1 and {BATCH_EVENTS_MAX}");
    }
    println!("machine: {} logical cores, {}", std::thread::available_parallelism().map_or(0, |n| n.get()), cpu_model());

    let transfers_max = options.records_in_memory as usize + VOUCHERS as usize;
    let mut ledger = Ledger::with_capacity(1 + 2 * VOUCHERS as usize, transfers_max);
    for batch in setup_events() {
        check_all_ok(&ledger.apply(1, &batch)?.outcomes);
    }
    let batches = workload(1_000_000, options.records_in_memory, BATCH_EVENTS_MAX);
    let started = Instant::now();
    for (index, batch) in batches.iter().enumerate() {
        check_all_ok(&ledger.apply(2 + index as u64, batch)?.outcomes);
    }
    let seconds = started.elapsed().as_secs_f64();
    ledger.check_invariants()?;
    println!(
        "ledger_apply_in_memory: {:.0} records/s ({} records, batch {BATCH_EVENTS_MAX}, maps sized up front)",
        options.records_in_memory as f64 / seconds,
        options.records_in_memory
    );

    for &batch_size in &options.batch_sizes {
        let dir = tempfile::tempdir()?;
        let mut durable = Durable::open(SqliteStore::open(&dir.path().join("bench.db"), FsyncMode::Full)?)?;
        for batch in setup_events() {
            check_all_ok(&durable.apply(1, &batch)?.outcomes);
        }
        let batches = workload(1_000_000, options.records_sqlite, batch_size);
        let started = Instant::now();
        for (index, batch) in batches.iter().enumerate() {
            check_all_ok(&durable.apply(2 + index as u64, batch)?.outcomes);
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "ledger_apply_sqlite: {:.0} records/s ({} records, batch {batch_size}, {}, WAL)",
            options.records_sqlite as f64 / seconds,
            options.records_sqlite,
            FsyncMode::Full.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
