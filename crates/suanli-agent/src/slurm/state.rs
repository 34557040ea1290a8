//! What the agent keeps between runs, in one small JSON file replaced atomically: the accounting
//! cursor (jobs that finished before it have all been answered by the server) and the records
//! answered since a little before it, so the overlap that covers slurmdbd's lag is not sent twice.
//!
//! Losing the file loses nothing: the next run reads accounting again from its start window and
//! the server answers records it already has `exists`. A record is taken as done only once the
//! server has answered it, and the file is written after that, so a kill at any point leaves
//! either the old file or the new one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::AgentError;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Every job that finished before this time (epoch seconds) less the lag has been answered.
    pub cursor_s: Option<i64>,
    /// When the last answered read of accounting ended: the next pass's cursor, so a job that
    /// reached accounting late (slurmdbd behind or down) is still read by the pass after.
    #[serde(default)]
    pub last_read_s: Option<i64>,
    /// Record ids answered (recorded, already there, or refused) with their job's end.
    #[serde(default)]
    pub answered: BTreeMap<String, i64>,
}

impl State {
    /// The state in `path`, or a new one when there is no file yet.
    pub fn load(path: &Path) -> Result<State, AgentError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| AgentError::State(format!("{}: not the agent's state: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(AgentError::State(format!("{}: {e}", path.display()))),
        }
    }

    /// Writes the state to a file beside `path`, syncs it and renames it over `path`.
    pub fn save(&self, path: &Path) -> Result<(), AgentError> {
        let error = |e: std::io::Error| AgentError::State(format!("{}: {e}", path.display()));
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        // A name of this process's own, so two runs at once never write one temporary file.
        let temporary = dir.join(format!(
            ".{}.{}.new",
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "state".into()),
            std::process::id()
        ));
        let mut file = std::fs::File::create(&temporary).map_err(error)?;
        file.write_all(&serde_json::to_vec_pretty(self).expect("serializes")).map_err(error)?;
        file.sync_all().map_err(error)?;
        std::fs::rename(&temporary, path).map_err(error)?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(error)
    }

    /// Locks the state at `path` for this process (an advisory lock on `path.lock`, released
    /// when the returned file is dropped or the process dies), or says another agent holds it.
    pub fn lock(path: &Path) -> Result<std::fs::File, AgentError> {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let lock_path = std::path::PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| AgentError::State(format!("{}: {e}", lock_path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(AgentError::State(format!(
                "{}: another agent is running with this state file; run one agent per state file",
                path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(AgentError::State(format!("{}: {e}", lock_path.display()))),
        }
    }

    /// Forgets answered records of jobs that ended before `before_s`: no later query reaches them.
    pub fn forget_before(&mut self, before_s: i64) {
        self.answered.retain(|_, end| *end >= before_s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_agent_on_one_state_file_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.json");
        let first = State::lock(&path).unwrap();
        let refused = State::lock(&path).unwrap_err().to_string();
        assert!(refused.contains("another agent is running"), "{refused}");
        drop(first);
        State::lock(&path).unwrap();
    }

    #[test]
    fn the_state_round_trips_and_a_missing_file_is_a_new_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.json");
        assert_eq!(State::load(&path).unwrap(), State::default());
        let mut state = State { cursor_s: Some(100), last_read_s: Some(150), answered: BTreeMap::new() };
        state.answered.insert("slurm:c:1:10".into(), 40);
        state.answered.insert("slurm:c:2:50".into(), 90);
        state.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), state);
        state.forget_before(50);
        assert_eq!(state.answered.keys().collect::<Vec<_>>(), ["slurm:c:2:50"]);
        std::fs::write(&path, "not json").unwrap();
        assert!(State::load(&path).unwrap_err().to_string().contains("not the agent's state"));
    }
}
