//! Storage tests against a real SQLite file and, in their PostgreSQL runs, a real PostgreSQL
//! database: recovery, the audit, a failed commit, and refusals.

use std::path::PathBuf;

use suanli_ledger::{AccountFlags, Event, NewAccount, Outcome, Transfer, TransferFlags, state_hash};
use suanli_store::scratch::{ScratchDatabase, postgres_requested};
use suanli_store::{AnyStore, AuditReport, Durable, FsyncMode, PostgresStore, SqliteStore, StoreError, audit};

mod utilization;
use utilization::*;

const LEDGER: u32 = 156;

/// A fresh database of the backend the running test asks for.
enum Database {
    /// The directory lives as long as the database.
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres(ScratchDatabase),
}

impl Database {
    fn fresh() -> Database {
        if postgres_requested() {
            return Database::Postgres(ScratchDatabase::from_test_env().expect("the PostgreSQL run"));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        Database::Sqlite { _dir: dir, path }
    }

    fn store(&self) -> AnyStore {
        match self {
            Database::Sqlite { path, .. } => AnyStore::sqlite(SqliteStore::open(path, FsyncMode::Full).unwrap()),
            Database::Postgres(database) => AnyStore::postgres(PostgresStore::open(&database.url).unwrap()),
        }
    }

    /// A store that reads beside a writer (no lock).
    fn reader(&self) -> AnyStore {
        match self {
            Database::Sqlite { path, .. } => AnyStore::sqlite(SqliteStore::open_reader(path).unwrap()),
            Database::Postgres(database) => AnyStore::postgres(PostgresStore::open_reader(&database.url).unwrap()),
        }
    }

    fn open(&self) -> Durable<AnyStore> {
        Durable::open(self.store()).unwrap()
    }

    fn audit(&self) -> AuditReport {
        audit(&mut self.reader()).unwrap()
    }
}

/// Runs SQL on the store: the SQLite text or the PostgreSQL text, by backend.
fn execute(store: &mut AnyStore, sqlite: &str, postgres: &str) {
    if let Some(store) = store.as_sqlite() {
        store.connection().execute_batch(sqlite).unwrap();
    } else if let Some(store) = store.as_postgres() {
        store.client().batch_execute(postgres).unwrap();
    }
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
fn populate(durable: &mut Durable<AnyStore>) {
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

fn a_reopened_store_has_the_same_state_and_passes_the_audit() {
    let database = Database::fresh();
    let mut durable = database.open();
    populate(&mut durable);
    let hash = state_hash(durable.ledger());
    let head = durable.journal_head();
    let account_two = *durable.ledger().account(2).unwrap();
    assert!(durable.ledger().failed_ids().count() >= 20);
    drop(durable);

    let reopened = database.open();
    assert_eq!(state_hash(reopened.ledger()), hash);
    assert_eq!(reopened.journal_head(), head);
    assert_eq!(*reopened.ledger().account(2).unwrap(), account_two);
    drop(reopened);

    let report = database.audit();
    assert!(report.passed(), "{:?}", report.violations);
    assert_eq!(report.state_hash, Some(hash));
    assert_eq!(report.journal_head, head);
    assert!(report.holds_expired > 0, "the timeouts in populate() expire holds");
}

fn tampered(sqlite: &str, postgres: &str) -> Vec<String> {
    let database = Database::fresh();
    let mut durable = database.open();
    populate(&mut durable);
    drop(durable);
    let mut store = database.store();
    execute(&mut store, sqlite, postgres);
    let report = audit(&mut store).unwrap();
    assert!(!report.passed(), "the audit missed: {sqlite}");
    report.violations
}

fn the_audit_notices_each_kind_of_tampering() {
    let first_of_50 = "(SELECT id FROM ledger_transfers WHERE amount = 50 ORDER BY id LIMIT 1)";
    let sql = format!("UPDATE ledger_transfers SET amount = amount + 1 WHERE id = {first_of_50}");
    let changed_amount = tampered(&sql, &sql);
    assert!(changed_amount.iter().any(|v| v.contains("does not match its hash")), "{changed_amount:?}");
    let balance = tampered(
        "UPDATE ledger_accounts SET credits_posted = credits_posted + 5 WHERE id = x'00000000000000000000000000000003'",
        "UPDATE ledger_accounts SET credits_posted = credits_posted + 5 WHERE id = '\\x00000000000000000000000000000003'",
    );
    assert!(balance.iter().any(|v| v.contains("its transfers give")), "{balance:?}");
    let sql = "DELETE FROM ledger_transfers WHERE id = \
               (SELECT id FROM ledger_transfers WHERE amount = 50 ORDER BY id DESC LIMIT 1)";
    let deleted = tampered(sql, sql);
    assert!(deleted.iter().any(|v| v.contains("does not match its hash")), "{deleted:?}");
    let relinked = tampered(
        "UPDATE ledger_batches SET previous_hash = zeroblob(32) WHERE batch_id = 3",
        "UPDATE ledger_batches SET previous_hash = decode(repeat('00', 32), 'hex') WHERE batch_id = 3",
    );
    assert!(relinked.iter().any(|v| v.contains("does not link")), "{relinked:?}");
    let dropped_batch = tampered(
        "PRAGMA foreign_keys = OFF; DELETE FROM ledger_batches WHERE batch_id = 5",
        "SET session_replication_role = replica; DELETE FROM ledger_batches WHERE batch_id = 5",
    );
    assert!(dropped_batch.iter().any(|v| v.contains("batch 5")), "{dropped_batch:?}");
    let sql = "DELETE FROM ledger_failed_ids WHERE id = (SELECT id FROM ledger_failed_ids ORDER BY id LIMIT 1)";
    let failure = tampered(sql, sql);
    assert!(failure.iter().any(|v| v.contains("does not match its hash")), "{failure:?}");
}

fn a_failed_commit_leaves_memory_equal_to_disk() {
    let database = Database::fresh();
    let mut durable = database.open();
    populate(&mut durable);
    let before = state_hash(durable.ledger());
    // Make the next commit fail inside its transaction, after some rows were written.
    execute(
        durable.storage_mut(),
        "CREATE TRIGGER refuse BEFORE INSERT ON ledger_transfers WHEN NEW.amount = 666 \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.amount = 666 THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON ledger_transfers FOR EACH ROW EXECUTE FUNCTION refuse();",
    );
    let events = [transfer(9_000, 2, 3, 1, TransferFlags::empty()), transfer(9_001, 2, 3, 666, TransferFlags::empty())];
    assert!(matches!(durable.apply(u64::MAX / 4, &events), Err(suanli_store::DurableError::Store(_))));
    assert_eq!(state_hash(durable.ledger()), before, "the batch was taken back");
    assert!(durable.ledger().transfer(9_000).is_none());
    // Storage is in doubt until it is checked again: commits are refused, then recovery finds
    // storage holding what memory holds.
    assert!(!durable.is_ready());
    assert!(matches!(durable.apply(u64::MAX / 4, &events[..1]), Err(suanli_store::DurableError::Unavailable)));
    assert!(matches!(durable.recover(), Ok(suanli_store::Recovered::Unchanged)));
    assert!(durable.is_ready());
    // The ledger keeps working, and the same ids can be used since they never took effect.
    let result = durable.apply(u64::MAX / 4, &events[..1]).unwrap();
    assert!(matches!(result.outcomes[0], Outcome::Ok(_)));
    drop(durable);
    let report = database.audit();
    assert!(report.passed(), "{:?}", report.violations);
}

suanli_store::conformance!(
    a_reopened_store_has_the_same_state_and_passes_the_audit,
    the_audit_notices_each_kind_of_tampering,
    a_failed_commit_leaves_memory_equal_to_disk,
    samples_are_idempotent_and_conflicts_are_refused,
    old_samples_are_folded_into_hours_and_days_with_exact_sums,
);

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
