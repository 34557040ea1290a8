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

/// Where a deployment keeps its head-signing key and publishes its signed heads unless told
/// otherwise: beside an embedded database (`data/suanli.db` → `data/suanli-signing.key` and
/// `data/suanli-heads/`), in the working directory for PostgreSQL (`suanli-signing.key`,
/// `suanli-heads/`).
pub fn default_heads(database: &str) -> (PathBuf, PathBuf) {
    match Location::parse(database) {
        Ok(Location::Sqlite(path)) => {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("suanli").to_owned();
            let dir = path.parent().map(PathBuf::from).unwrap_or_default();
            (dir.join(format!("{stem}-signing.key")), dir.join(format!("{stem}-heads")))
        }
        _ => (PathBuf::from("suanli-signing.key"), PathBuf::from("suanli-heads")),
    }
}
