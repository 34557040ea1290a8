//! The writer the crash test kills: numbered batches with predictable ids, an `ack` after each
//! commit, resuming after the last batch found in the database.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use suanli_ledger::{AccountFlags, Event, NewAccount, Transfer, TransferFlags};
use suanli_store::Storage;
use suanli_store::{Durable, FsyncMode, SqliteStore};

const LEDGER: u32 = 156;
pub const SOURCE: u128 = 1;
pub const VOUCHER: u128 = 2;
pub const SINK: u128 = 3;

/// The id of record `index` of batch `batch`.
pub fn record_id(batch: u64, index: u64) -> u128 {
    (u128::from(batch) << 32) | u128::from(index)
}

pub fn writer(path: &Path, batches: u64, batch_size: u64) -> anyhow::Result<ExitCode> {
    let mut durable = Durable::open(SqliteStore::open(path, FsyncMode::Full)?)?;
    let clock =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    if durable.ledger().account(VOUCHER).is_none() {
        let account = |id, flags| Event::CreateAccount(NewAccount { id, ledger: LEDGER, code: 1, flags, user_data: 0 });
        let fund = Transfer {
            id: 1,
            debit_account_id: SOURCE,
            credit_account_id: VOUCHER,
            amount: i64::MAX / 2,
            ledger: LEDGER,
            code: 1,
            ..Transfer::default()
        };
        let events = [
            account(SOURCE, AccountFlags::empty()),
            account(VOUCHER, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            account(SINK, AccountFlags::empty()),
            Event::CreateTransfer(fund),
        ];
        durable.apply(clock(), &events)?;
    }
    // Settled transfers live in storage: the next batch is the first whose first id is not there.
    let mut first = 1;
    while !durable.storage_mut().transfers_by_id(&[record_id(first, 0)])?.is_empty() {
        first += 1;
    }
    let mut out = std::io::stdout().lock();
    for batch in first..=batches {
        // Every fifth record is a hold and the next one posts it, so a batch mixes all phases.
        let events: Vec<Event> = (0..batch_size)
            .map(|index| {
                let id = record_id(batch, index);
                let transfer = match index % 5 {
                    3 => Transfer { flags: TransferFlags::PENDING, ..plain(id) },
                    4 => Transfer {
                        id,
                        pending_id: id - 1,
                        amount: 1,
                        flags: TransferFlags::POST_PENDING,
                        ..Transfer::default()
                    },
                    _ => plain(id),
                };
                Event::CreateTransfer(transfer)
            })
            .collect();
        let result = durable.apply(clock(), &events)?;
        anyhow::ensure!(
            result.changes.transfers_created.len() as u64 == batch_size,
            "batch {batch} was not fully applied"
        );
        writeln!(out, "ack {batch}")?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn plain(id: u128) -> Transfer {
    Transfer {
        id,
        debit_account_id: VOUCHER,
        credit_account_id: SINK,
        amount: (id % 1_000) as i64 + 1,
        ledger: LEDGER,
        code: 2,
        ..Transfer::default()
    }
}
