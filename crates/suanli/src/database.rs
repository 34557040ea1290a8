//! Which database a command talks to, from its `--database` argument: decided by
//! [`suanli_store::Location`], in one place.

use std::path::PathBuf;

use suanli_store::Location;

/// Whether `--database` names a PostgreSQL database.
pub fn is_postgres(database: &str) -> bool {
    Location::parse(database).is_ok_and(|location| location.is_postgres())
}

/// Reads `PATH` or `sqlite://PATH`, for the commands that work on the embedded file only (the
/// demo, which replaces its file); a `postgres://` URL is refused with a clear message rather
/// than misread as a file name.
pub fn sqlite_path(database: &str) -> anyhow::Result<PathBuf> {
    match Location::parse(database)? {
        Location::Sqlite(path) => Ok(path),
        Location::Postgres(_) => {
            anyhow::bail!("--database: this command works on the embedded file; use a file path or sqlite://PATH")
        }
    }
}
