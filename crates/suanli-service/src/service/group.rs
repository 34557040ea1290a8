//! Several commands in one commit, for bulk work (a simulation's month of orders, an import):
//! each command checks and records as it always does, against the state the earlier ones left,
//! but their changes are gathered and stored together, in one transaction, when the group ends.
//! A group holds at most one ledger batch of events.
//!
//! A command refused by its checks records nothing and the group goes on. A command that fails
//! after recording (which returns memory to the last commit) fails the group: what it gathered
//! since the last commit is dropped, and the group answers the failure. The clock must not move
//! within a group: every log entry of a commit carries one time, and replaying the log must give
//! the state the commands made.

use super::*;

pub(super) struct Group {
    pub(super) change: Change,
    pub(super) actor: Actor,
    pub(super) now_s: i64,
    pub(super) failed: bool,
}

impl Service {
    /// Runs `work` with every command it makes gathered into one commit. Answers `work`'s answer
    /// once all of it is stored; nothing of it, if any part failed.
    pub fn in_one_commit<T>(&mut self, actor: &Actor, work: impl FnOnce(&mut Service) -> Result<T>) -> Result<T> {
        if self.group.is_some() {
            return Err(ServiceError::new(ErrorCode::Internal, "groups of commands do not nest"));
        }
        self.recover()?;
        let now_s = self.now_s();
        self.group = Some(Group { change: Change::empty(), actor: actor.clone(), now_s, failed: false });
        let answer = work(self);
        let group = self.group.take().expect("the group is this call's");
        if group.failed {
            self.state = self.committed.clone();
            return Err(answer.err().unwrap_or_else(|| {
                ServiceError::new(
                    ErrorCode::Internal,
                    "a command of the group failed after recording; nothing since the last commit was kept",
                )
            }));
        }
        if self.now_s() != now_s {
            self.state = self.committed.clone();
            return Err(ServiceError::new(ErrorCode::Internal, "the clock moved within a group of commands"));
        }
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                // The work gave up: nothing it gathered is kept.
                self.state = self.committed.clone();
                return Err(error);
            }
        };
        if !group.change.events.is_empty() {
            self.commit(&group.actor, now_s, group.change)?;
        }
        Ok(answer)
    }

    /// Adds a command's change to the group. A group whose ledger events would not fit one
    /// ledger batch fails (make smaller groups).
    pub(super) fn gather(&mut self, actor: &Actor, now_s: i64, change: Change) -> Result<()> {
        let group = self.group.as_mut().expect("gathering happens in a group");
        if group.failed {
            return Ok(());
        }
        if now_s != group.now_s {
            group.failed = true;
            return Err(ServiceError::new(ErrorCode::Internal, "the clock moved within a group of commands"));
        }
        let gathered = &mut group.change;
        if gathered.ledger.len() + change.ledger.len() > suanli_ledger::BATCH_EVENTS_MAX {
            group.failed = true;
            return Err(ServiceError::new(
                ErrorCode::Internal,
                format!(
                    "a group of commands holds at most {} ledger events; make smaller groups",
                    suanli_ledger::BATCH_EVENTS_MAX
                ),
            ));
        }
        if gathered.events.is_empty() {
            gathered.first_sequence = change.first_sequence;
        }
        let offset = gathered.events.len();
        gathered.actors.push((offset, actor.clone()));
        gathered.actors.extend(change.actors.into_iter().map(|(index, actor)| (index + offset, actor)));
        gathered.events.extend(change.events);
        gathered.ledger.extend(change.ledger);
        gathered.usage_rows.extend(change.usage_rows);
        gathered.archive.extend(change.archive);
        gathered.decided.extend(change.decided);
        Ok(())
    }

    /// Usage decisions the group has gathered and not yet stored.
    pub(super) fn gathered_decisions(&self) -> Option<&std::collections::HashMap<(ProviderId, String), UsageEntry>> {
        self.group.as_ref().map(|g| &g.change.decided)
    }
}
