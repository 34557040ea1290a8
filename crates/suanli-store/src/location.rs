//! Where a database is, decided once from the `--database` text: `postgres://…` (or
//! `postgresql://…`) for PostgreSQL, `sqlite://PATH` or a plain path for the embedded file.
//! Every command, the service and the audit open databases through this.

use std::path::PathBuf;

use crate::{AnyStore, FsyncMode, PostgresStore, SqliteStore, StoreError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    /// The URL as given (it may hold a password: show it with [`Location::shown`]).
    Postgres(String),
}

impl Location {
    pub fn parse(database: &str) -> Result<Location, StoreError> {
        if database.starts_with("postgres://") || database.starts_with("postgresql://") {
            return Ok(Location::Postgres(database.to_owned()));
        }
        let path = database.strip_prefix("sqlite://").unwrap_or(database);
        if path.contains("://") || path.is_empty() {
            return Err(StoreError::BadLocation { database: crate::redact(database) });
        }
        Ok(Location::Sqlite(PathBuf::from(path)))
    }

    /// The location for messages, without a password.
    pub fn shown(&self) -> String {
        match self {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(url) => crate::redact(url),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }

    /// Opens the database as its one writer (creating a SQLite file, migrating either).
    pub fn open_writer(&self, fsync: FsyncMode) -> Result<AnyStore, StoreError> {
        match self {
            Location::Sqlite(path) => Ok(AnyStore::sqlite(SqliteStore::open(path, fsync)?)),
            Location::Postgres(url) => Ok(AnyStore::postgres(PostgresStore::open(url)?)),
        }
    }

    /// Opens the database to read beside its writer: no lock, no migration, commits refused.
    pub fn open_reader(&self) -> Result<AnyStore, StoreError> {
        match self {
            Location::Sqlite(path) => Ok(AnyStore::sqlite(SqliteStore::open_reader(path)?)),
            Location::Postgres(url) => Ok(AnyStore::postgres(PostgresStore::open_reader(url)?)),
        }
    }
}
