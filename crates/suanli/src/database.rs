//! Which database a command talks to, from its `--database` argument.

use std::path::PathBuf;

/// Reads `PATH` or `sqlite://PATH`. PostgreSQL is the next backend; until it lands a
/// `postgres://` URL is refused with a clear message rather than misread as a file name.
pub fn sqlite_path(database: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = database.strip_prefix("sqlite://") {
        return Ok(PathBuf::from(path));
    }
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        anyhow::bail!("--database: the PostgreSQL backend is not built yet; use a file path or sqlite://PATH");
    }
    if database.contains("://") {
        anyhow::bail!("--database: {database:?} is neither a file path nor a sqlite:// URL");
    }
    Ok(PathBuf::from(database))
}
