//! Which database a command talks to, from its `--database` argument.

use std::path::PathBuf;

/// Whether `--database` names a PostgreSQL database.
pub fn is_postgres(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// Reads `PATH` or `sqlite://PATH`, for the commands that work on the embedded file only (the
/// demo, which replaces its file); a `postgres://` URL is refused with a clear message rather
/// than misread as a file name.
pub fn sqlite_path(database: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = database.strip_prefix("sqlite://") {
        return Ok(PathBuf::from(path));
    }
    if is_postgres(database) {
        anyhow::bail!("--database: this command works on the embedded file; use a file path or sqlite://PATH");
    }
    if database.contains("://") {
        anyhow::bail!("--database: {database:?} is neither a file path nor a sqlite:// URL");
    }
    Ok(PathBuf::from(database))
}
