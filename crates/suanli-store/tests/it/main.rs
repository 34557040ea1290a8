//! Storage tests against a real SQLite file: recovery, the audit, and refusals.

use std::path::Path;

use suanli_ledger::{AccountFlags, Event, NewAccount, Outcome, Transfer, TransferFlags, state_hash};
use suanli_store::{Durable, FsyncMode, SqliteStore, StoreError, audit};

const LEDGER: u32 = 156;

fn open(path: &Path) -> Durable<SqliteStore> {
    Durable::open(SqliteStore::open(path, FsyncMode::Full).unwrap()).unwrap()
}

fn account(id: u128, flags: AccountFlags) -> Event {
    Event::CreateAccount(NewAccount { id, ledger: LEDGER, code: 1, flags, user_data: id * 7 })
}

fn transfer(id: u128, debit: u128, credit: u128, amount: i64, flags: TransferFlags) -> Event {
    Event::CreateTransfer(Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: LEDGER,
        code: 2,
        flags,
        timeout_s: if flags.contains(TransferFlags::PENDING) { 30 } else { 0 },
        user_data: id,
        ..Transfer::default()
    })
}

/// A few batches exercising every kind of record: accounts, single-phase and pending transfers,
/// a post, a void, an expiry and failed ids.
fn populate(durable: &mut Durable<SqliteStore>) {
    let plain = TransferFlags::empty();
    let second = 1_000_000_000;
    durable
        .apply(
            second,
            &[
                account(1, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
                account(2, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
                account(3, AccountFlags::empty()),
                transfer(10, 1, 2, 100_000, plain),
            ],
        )
        .unwrap();
    for round in 0..20u128 {
        let base = 1_000 + round * 10;
        let events = [
            transfer(base, 2, 3, 100, TransferFlags::PENDING),
            transfer(base + 1, 2, 3, 50, plain),
            transfer(base + 2, 2, 3, 1_000_000, plain), // fails: exceeds credits
            Event::CreateTransfer(Transfer {
                id: base + 3,
                pending_id: base - 10,
                amount: 60,
                flags: TransferFlags::POST_PENDING,
                ..Transfer::default()
            }),
        ];
        durable.apply(second * (2 + round as u64 * 10), &events).unwrap();
    }
    durable
        .apply(
            second * 400,
            &[Event::CreateTransfer(Transfer {
                id: 5_000,
                pending_id: 1_190,
                flags: TransferFlags::VOID_PENDING,
                ..Transfer::default()
            })],
        )
        .unwrap();
}

#[test]
fn a_reopened_store_has_the_same_state_and_passes_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut durable = open(&path);
    populate(&mut durable);
    let hash = state_hash(durable.ledger());
    let head = durable.journal_head();
    let account_two = *durable.ledger().account(2).unwrap();
    assert!(durable.ledger().failed_ids().count() >= 20);
    drop(durable);

    let reopened = open(&path);
    assert_eq!(state_hash(reopened.ledger()), hash);
    assert_eq!(reopened.journal_head(), head);
    assert_eq!(*reopened.ledger().account(2).unwrap(), account_two);
    drop(reopened);

    let report = audit(&mut SqliteStore::open_existing(&path).unwrap()).unwrap();
    assert!(report.passed(), "{:?}", report.violations);
    assert_eq!(report.state_hash, Some(hash));
    assert_eq!(report.journal_head, head);
    assert!(report.holds_expired > 0, "the timeouts in populate() expire holds");
}

fn tampered(sql: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut durable = open(&path);
    populate(&mut durable);
    drop(durable);
    let mut store = SqliteStore::open_existing(&path).unwrap();
    store.connection().execute_batch(sql).unwrap();
    let report = audit(&mut store).unwrap();
    assert!(!report.passed(), "the audit missed: {sql}");
    report.violations
}

#[test]
fn the_audit_notices_each_kind_of_tampering() {
    let changed_amount = tampered(
        "UPDATE ledger_transfers SET amount = amount + 1 WHERE id = (SELECT min(id) FROM ledger_transfers WHERE amount = 50)",
    );
    assert!(changed_amount.iter().any(|v| v.contains("does not match its hash")), "{changed_amount:?}");
    let balance = tampered(
        "UPDATE ledger_accounts SET credits_posted = credits_posted + 5 WHERE id = x'00000000000000000000000000000003'",
    );
    assert!(balance.iter().any(|v| v.contains("its transfers give")), "{balance:?}");
    let deleted =
        tampered("DELETE FROM ledger_transfers WHERE id = (SELECT max(id) FROM ledger_transfers WHERE amount = 50)");
    assert!(deleted.iter().any(|v| v.contains("does not match its hash")), "{deleted:?}");
    let relinked = tampered("UPDATE ledger_batches SET previous_hash = zeroblob(32) WHERE batch_id = 3");
    assert!(relinked.iter().any(|v| v.contains("does not link")), "{relinked:?}");
    let dropped_batch = tampered("PRAGMA foreign_keys = OFF; DELETE FROM ledger_batches WHERE batch_id = 5");
    assert!(dropped_batch.iter().any(|v| v.contains("batch 5")), "{dropped_batch:?}");
    let failure = tampered("DELETE FROM ledger_failed_ids WHERE id = (SELECT min(id) FROM ledger_failed_ids)");
    assert!(failure.iter().any(|v| v.contains("does not match its hash")), "{failure:?}");
}

#[test]
fn a_failed_commit_leaves_memory_equal_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut durable = open(&path);
    populate(&mut durable);
    let before = state_hash(durable.ledger());
    // Make the next commit fail inside its transaction, after some rows were written.
    durable
        .storage_mut()
        .connection()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON ledger_transfers WHEN NEW.amount = 666 \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let events = [transfer(9_000, 2, 3, 1, TransferFlags::empty()), transfer(9_001, 2, 3, 666, TransferFlags::empty())];
    assert!(matches!(durable.apply(u64::MAX / 4, &events), Err(suanli_store::DurableError::Store(_))));
    assert_eq!(state_hash(durable.ledger()), before, "memory was rebuilt from disk");
    assert!(durable.ledger().transfer(9_000).is_none());
    // The ledger keeps working, and the same ids can be used since they never took effect.
    let result = durable.apply(u64::MAX / 4, &events[..1]).unwrap();
    assert!(matches!(result.outcomes[0], Outcome::Ok(_)));
    drop(durable);
    let report = audit(&mut SqliteStore::open_existing(&path).unwrap()).unwrap();
    assert!(report.passed(), "{:?}", report.violations);
}

#[test]
fn a_newer_schema_or_a_foreign_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let newer = dir.path().join("newer.db");
    drop(SqliteStore::open(&newer, FsyncMode::Full).unwrap());
    rusqlite::Connection::open(&newer).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
    let error = SqliteStore::open(&newer, FsyncMode::Full).err().unwrap();
    assert!(matches!(error, StoreError::SchemaTooNew { found: 99, supported, .. } if supported < 99), "{error}");
    assert!(error.to_string().contains("newer than this program's"));

    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE notes (body TEXT)").unwrap();
    assert!(matches!(SqliteStore::open(&foreign, FsyncMode::Full), Err(StoreError::NotSuanli { .. })));

    let missing = dir.path().join("missing.db");
    assert!(matches!(SqliteStore::open_existing(&missing), Err(StoreError::Missing { .. })));
    assert!(!missing.exists(), "opening for audit must not create a database");
}
