//! Scratch PostgreSQL databases and the conformance switch, for tests and benchmarks.
//!
//! A conformance test is written once and declared with [`conformance!`](crate::conformance): it
//! runs on SQLite always, and again on PostgreSQL when `SUANLI_TEST_POSTGRES` names a server (the
//! PostgreSQL run is skipped, with a note, when it is unset, and fails when it is set and the server
//! cannot be reached). Inside the test, [`postgres_requested`] tells the world builder which backend
//! to open.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::StoreError;

/// A uniquely named PostgreSQL database, dropped (connections and all) when this value drops.
pub struct ScratchDatabase {
    /// The database's URL.
    pub url: String,
    admin_url: String,
    name: String,
}

impl ScratchDatabase {
    /// Creates a fresh database on the server `admin_url` reaches (any database of it).
    pub fn create(admin_url: &str) -> Result<ScratchDatabase, StoreError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("suanli_scratch_{}_{nanos}_{n}", std::process::id());
        let failed =
            |e: ::postgres::Error| StoreError::Postgres { url: crate::redact(admin_url), message: e.to_string() };
        let mut client = ::postgres::Client::connect(admin_url, ::postgres::NoTls).map_err(failed)?;
        client.batch_execute(&format!("CREATE DATABASE {name}")).map_err(failed)?;
        let base = admin_url.rsplit_once('/').map_or(admin_url, |(base, _)| base);
        Ok(ScratchDatabase { url: format!("{base}/{name}"), admin_url: admin_url.to_owned(), name })
    }

    /// The URL of the server's database this one was created from (for administration).
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A scratch database on the server `SUANLI_TEST_POSTGRES` names, or `None` when it is unset.
    /// Panics when it is set and the server cannot be reached: a test asked for PostgreSQL must
    /// not pass without it.
    pub fn from_test_env() -> Option<ScratchDatabase> {
        let admin_url = std::env::var("SUANLI_TEST_POSTGRES").ok()?;
        Some(
            ScratchDatabase::create(&admin_url)
                .unwrap_or_else(|e| panic!("SUANLI_TEST_POSTGRES is set but a database cannot be created there: {e}")),
        )
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = ::postgres::Client::connect(&self.admin_url, ::postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

thread_local! {
    static POSTGRES_REQUESTED: Cell<bool> = const { Cell::new(false) };
}

/// Whether the running conformance test is its PostgreSQL run.
pub fn postgres_requested() -> bool {
    POSTGRES_REQUESTED.with(Cell::get)
}

/// Runs `test` as its PostgreSQL run, or skips it with a note when `SUANLI_TEST_POSTGRES` is unset.
pub fn run_on_postgres(test: fn()) {
    with_postgres(test);
}

/// Runs `work` with [`postgres_requested`] true, or answers `None` (with a note) when
/// `SUANLI_TEST_POSTGRES` is unset.
pub fn with_postgres<T>(work: impl FnOnce() -> T) -> Option<T> {
    if std::env::var_os("SUANLI_TEST_POSTGRES").is_none() {
        eprintln!("SUANLI_TEST_POSTGRES is unset: skipping the PostgreSQL run");
        return None;
    }
    POSTGRES_REQUESTED.with(|requested| requested.set(true));
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            POSTGRES_REQUESTED.with(|requested| requested.set(false));
        }
    }
    let _reset = Reset;
    Some(work())
}

/// Declares conformance tests: each function named runs as `sqlite::NAME` and `postgres::NAME`.
/// The functions themselves carry no `#[test]`.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name() })*
        }
        mod postgres {
            $(#[test] fn $name() { $crate::scratch::run_on_postgres(super::$name) })*
        }
    };
}
