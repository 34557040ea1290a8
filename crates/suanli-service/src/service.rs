//! The single writer: every command checks its input against the state, turns into events and
//! ledger transfers, and commits both in one transaction before it answers.
//!
//! A command runs in three steps. **Check**: every rule that could refuse it is checked first,
//! against the state and the clock, so a refusal changes nothing. **Record**: the events are
//! applied to the in-memory state one by one (a batch of usage records needs each record to see
//! the ones before it), and the ledger transfers they imply are collected. **Commit**: the ledger
//! applies the transfers (its own limits re-check every balance), and the ledger batch and the
//! audit-log entries are written in one storage transaction. If the ledger refuses anything or
//! the commit fails, the state is rebuilt from storage, so memory never holds what disk does not.

use std::path::Path;
use std::sync::Arc;

use suanli_domain::{
    ApplicantKind, ApplicationId, EnterpriseId, Fen, OrderId, PoolId, Profile, ProgramId, ProviderId, RateBp,
    RegionCode, Rule, SiteId, StatementId, Uscc, Verdict, VoucherId,
};
use suanli_ledger::{Event as LedgerEvent, Outcome};
use suanli_store::{
    AnyStore, Durable, DurableError, FsyncMode, LogEntry, NewLogEntry, Opened, PostgresStore, Recovered, SqliteStore,
    Storage, UsageRow,
};

use crate::access::{Role, Token, User};
use crate::books::{AccountKind, TransferKind, account_id, create_account, link, release, return_to_budget, transfer};
use crate::calendar::{YearMonth, format_timestamp, shanghai_year};
use crate::clock::Clock;
use crate::error::{ErrorCode, Result, ServiceError};
use crate::event::Event;
use crate::model::{
    Anomaly, Application, ApplicationState, Authority, Enterprise, OperatorKind, Order, OrderState, Pool, Program,
    ProgramState, Provider, ProviderRule, Purpose, Quote, Site, SiteSpec, Statement, StatementState, UsageInput,
    UsageOutcome, UsageRecord, Voucher, VoucherState,
};
use crate::program_file::parse_program;
use crate::state::{State, UsageEntry, UsageFacts, usage_decision};

mod choose;
pub use choose::{PoolChoice, PoolRequest};

/// Who asks for a change; recorded on every audit-log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    pub fn operator() -> Actor {
        Actor("operator".to_owned())
    }

    /// `operator`, `auditor`, `authority:ath-1`, `enterprise:ent-3`, `provider:prv-2`, or
    /// `operator:NAME` for a named operator.
    pub fn parse(text: &str) -> Result<Actor> {
        let valid = match text.split_once(':') {
            None => matches!(text, "operator" | "auditor" | "admin"),
            Some(("authority-admin" | "authority-reviewer", id)) => suanli_domain::AuthorityId::parse(id).is_ok(),
            Some(("authority", id)) => suanli_domain::AuthorityId::parse(id).is_ok(),
            Some(("enterprise", id)) => EnterpriseId::parse(id).is_ok(),
            Some(("provider", id)) => ProviderId::parse(id).is_ok(),
            Some(("operator", name)) => {
                !name.is_empty()
                    && name.len() <= 64
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }
            Some(_) => false,
        };
        if valid {
            Ok(Actor(text.to_owned()))
        } else {
            Err(ServiceError::field(
                "actor",
                format!(
                    "must be operator, auditor, operator:NAME, authority:ath-N, enterprise:ent-N or provider:prv-N, got {text:?}"
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The actor a role acts as.
    pub fn of(role: Role) -> Actor {
        Actor(role.to_string())
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An enterprise's profile as submitted.
#[derive(Clone, Debug)]
pub struct EnterpriseInput {
    pub uscc: Uscc,
    pub name: String,
    pub region: RegionCode,
    pub kind: ApplicantKind,
    pub headcount: u32,
    pub revenue_fen: Fen,
    pub research_projects: Vec<String>,
    pub related_parties: Vec<Uscc>,
}

#[derive(Clone, Debug)]
pub struct PoolInput {
    pub site: SiteId,
    pub chip: String,
    pub gpu_count: u32,
    pub domestic: bool,
    pub price_fen_per_gpu_hour: Fen,
}

/// A compute order as an enterprise asks for it.
#[derive(Clone, Debug)]
pub struct OrderInput {
    pub enterprise: EnterpriseId,
    pub voucher: VoucherId,
    pub pool: PoolId,
    /// The chip the enterprise expects, checked against the pool when given.
    pub chip: Option<String>,
    pub gpu_count: u32,
    pub hours: u32,
    pub purpose: Purpose,
}

/// One provider's usage records, as one request sent them.
#[derive(Clone, Debug)]
pub struct UsageGroup {
    pub actor: Actor,
    pub provider: ProviderId,
    pub records: Vec<UsageInput>,
}

/// What an expiry sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    pub expired: Vec<VoucherId>,
    pub returned_fen: Fen,
}

/// Limits on one command, so no request can hold the writer for long.
/// At most two ledger transfers per usage record, so a full batch stays within the ledger's
/// `BATCH_EVENTS_MAX` of 8,190 events and commits as one transaction.
pub const USAGE_BATCH_RECORDS_MAX: usize = 4_000;
/// Vouchers expired per commit by a sweep (one transfer each).
pub const SWEEP_VOUCHERS_PER_COMMIT_MAX: usize = 4_000;
pub const ORDER_HOURS_MAX: u32 = 24 * 366;
pub const TEXT_BYTES_MAX: usize = 500;

/// A set of changes being recorded.
struct Change {
    first_sequence: u64,
    events: Vec<Event>,
    ledger: Vec<LedgerEvent>,
    /// Who recorded the events from each index on, when a commit groups several requests;
    /// events before the first entry belong to the commit's actor.
    actors: Vec<(usize, Actor)>,
    /// Usage ids this change decided, written to storage with the commit.
    usage_rows: Vec<UsageRow>,
    /// The same decisions, for a later record of the same change with the same id.
    decided: std::collections::HashMap<(ProviderId, String), UsageEntry>,
}

impl Change {
    /// The log sequence the next recorded event will get; ledger transfers derive their ids
    /// from it.
    fn next_sequence(&self) -> u64 {
        self.first_sequence + self.events.len() as u64
    }
}

/// What reads need: the state and the clock. Every read (`voucher`, `quote`, `eligibility`, ...)
/// is a method of `View`, so it runs the same on the writer's working state and on a copy the
/// writer published after a commit, which handlers read without queueing.
#[derive(Clone)]
pub struct View {
    state: State,
    clock: Arc<dyn Clock>,
}

/// When the writer checkpoints its state: after `every_log_entries` new log entries, or after
/// `every_s` seconds with at least one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    pub every_log_entries: u64,
    pub every_s: i64,
}

impl Default for CheckpointPolicy {
    fn default() -> CheckpointPolicy {
        CheckpointPolicy { every_log_entries: 20_000, every_s: 300 }
    }
}

pub struct Service {
    durable: Durable<AnyStore>,
    policy: CheckpointPolicy,
    /// The log sequence and time of the latest checkpoint.
    checkpointed: (u64, i64),
    /// The state a command is changing: events apply to it as they are recorded.
    view: View,
    /// The state as of the last commit (a constant-time persistent copy): a refused commit returns
    /// the working state to it, so memory is never ahead of storage.
    committed: State,
}

impl std::ops::Deref for Service {
    type Target = View;

    fn deref(&self) -> &View {
        &self.view
    }
}

impl std::ops::DerefMut for Service {
    fn deref_mut(&mut self) -> &mut View {
        &mut self.view
    }
}

impl Service {
    /// Opens (creating if needed) the SQLite database at `path` and rebuilds the state by
    /// replaying the audit log.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Service> {
        Service::open_with(path, FsyncMode::Full, clock)
    }

    pub fn open_with(path: &Path, fsync: FsyncMode, clock: Arc<dyn Clock>) -> Result<Service> {
        let store = SqliteStore::open(path, fsync).map_err(open_error)?;
        Service::open_store(AnyStore::sqlite(store), clock)
    }

    /// Opens the database a URL names: `postgres://…` (or `postgresql://…`) for PostgreSQL,
    /// `sqlite://PATH` or a plain path for the embedded file.
    pub fn open_database(database: &str, clock: Arc<dyn Clock>) -> Result<Service> {
        if database.starts_with("postgres://") || database.starts_with("postgresql://") {
            let store = PostgresStore::open(database).map_err(open_error)?;
            return Service::open_store(AnyStore::postgres(store), clock);
        }
        let path = database.strip_prefix("sqlite://").unwrap_or(database);
        if path.contains("://") {
            return Err(ServiceError::field(
                "database",
                format!("{database:?} is neither a path, sqlite://PATH nor postgres://…"),
            ));
        }
        Service::open_with(Path::new(path), FsyncMode::Full, clock)
    }

    /// Opens a database to read beside a running writer, for audits and CLI reads. It takes no
    /// lock and the store refuses any change (`database_locked`); on PostgreSQL each load is one
    /// repeatable-read snapshot, on SQLite WAL lets readers in beside the writer.
    pub fn open_reader(database: &str, clock: Arc<dyn Clock>) -> Result<Service> {
        let storage = |e: suanli_store::StoreError| ServiceError::new(ErrorCode::Storage, e.to_string());
        if database.starts_with("postgres://") || database.starts_with("postgresql://") {
            let store = PostgresStore::open_reader(database).map_err(storage)?;
            return Service::open_store(AnyStore::postgres(store), clock);
        }
        let path = database.strip_prefix("sqlite://").unwrap_or(database);
        let store = SqliteStore::open_reader(Path::new(path)).map_err(storage)?;
        Service::open_store(AnyStore::sqlite(store), clock)
    }

    fn open_store(store: AnyStore, clock: Arc<dyn Clock>) -> Result<Service> {
        let (mut durable, opened) = Durable::open_with_log(store).map_err(storage_error)?;
        let state = restore(&opened)?;
        match &opened.checkpoint {
            None => backfill_usage(&mut durable, &state, &opened.log)?,
            // A checkpoint is trusted only as far as it agrees with the ledger's balances.
            Some(checkpoint) => {
                let problems = crate::check::check_books(&state, durable.ledger());
                if !problems.is_empty() {
                    return Err(ServiceError::new(
                        ErrorCode::Storage,
                        format!(
                            "the checkpoint at log entry {} disagrees with the ledger: {}",
                            checkpoint.log_sequence,
                            problems.join("; ")
                        ),
                    ));
                }
            }
        }
        let checkpointed = opened.checkpoint.as_ref().map_or((0, clock.now_s()), |c| (c.log_sequence, clock.now_s()));
        Ok(Service {
            durable,
            committed: state.clone(),
            view: View { state, clock },
            policy: CheckpointPolicy::default(),
            checkpointed,
        })
    }

    /// When the writer checkpoints its state.
    pub fn set_checkpoint_policy(&mut self, policy: CheckpointPolicy) {
        self.policy = policy;
    }

    /// Writes a checkpoint of the state as of the last commit, bound to both chains' heads; a
    /// start then loads it and replays only the log after it.
    pub fn checkpoint(&mut self) -> Result<u64> {
        let now = self.now_s();
        let text = self.committed.to_checkpoint();
        let checkpoint = self.durable.checkpoint(now, text).map_err(storage_error)?;
        self.checkpointed = (checkpoint.log_sequence, now);
        Ok(checkpoint.log_sequence)
    }

    /// Checkpoints when the policy says it is time: enough new log entries, or enough time with
    /// at least one. Answers the log sequence checkpointed, if one was written.
    pub fn maybe_checkpoint(&mut self) -> Result<Option<u64>> {
        let (at, when) = self.checkpointed;
        let new = self.durable.log_count().saturating_sub(at);
        let due = new >= self.policy.every_log_entries
            || (new > 0 && self.now_s().saturating_sub(when) >= self.policy.every_s);
        if !due || !self.durable.is_ready() {
            return Ok(None);
        }
        self.checkpoint().map(Some)
    }

    /// The switch that makes this service's commits fail on demand, for tests of what a refused
    /// commit leaves behind.
    #[doc(hidden)]
    pub fn fault_switch(&self) -> suanli_store::FaultSwitch {
        self.durable.storage().fault_switch()
    }

    /// Whether writes can be taken now: storage answered the last commit (or was found again
    /// since) and the writer still holds its lock. `/readyz` answers this.
    pub fn is_ready(&self) -> bool {
        self.durable.is_ready()
    }

    /// After a failed commit: reaches storage again (reconnecting, re-taking the lock) and
    /// reloads if the failed commit was stored after all. Writes call it first; the server's
    /// writer also calls it while idle so readiness comes back without a write.
    pub fn recover(&mut self) -> Result<()> {
        if self.durable.is_ready() {
            return Ok(());
        }
        match self.durable.recover() {
            Ok(Recovered::Unchanged) => Ok(()),
            Ok(Recovered::Reloaded(opened)) => self.reload(&opened),
            Err(error) => Err(storage_error(error)),
        }
    }

    fn reload(&mut self, opened: &Opened) -> Result<()> {
        let state = restore(opened)?;
        self.committed = state.clone();
        self.state = state;
        Ok(())
    }

    /// A copy of what the last commit left, for reads beside the writer (constant time: the
    /// state's maps are shared, not copied). Between commands it equals the working state.
    pub fn committed_view(&self) -> View {
        View { state: self.committed.clone(), clock: self.view.clock.clone() }
    }

    /// A reader of the audit log on a connection of its own, for pages read beside the writer.
    pub fn log_reader(&self) -> Result<suanli_store::LogReader> {
        self.durable.storage().log_reader().map_err(|e| ServiceError::new(ErrorCode::Storage, e.to_string()))
    }

    /// What was first decided for the usage ids among `keys`, read from storage.
    pub fn usage_decisions(
        &mut self,
        keys: &[(ProviderId, &str)],
    ) -> Result<std::collections::HashMap<(ProviderId, String), UsageEntry>> {
        let wanted: Vec<(u64, &str)> = keys.iter().map(|&(provider, id)| (provider.get(), id)).collect();
        // Storage in doubt after a fault is found again first (a reload cannot happen here
        // unnoticed: nothing of this command is recorded yet).
        self.recover()?;
        let rows = self.durable.usage_lookup(&wanted).map_err(storage_error)?;
        rows.into_iter()
            .map(|row| {
                let provider = ProviderId::new(row.provider).ok_or_else(|| bad_usage_row(&row.id))?;
                let entry: UsageEntry = serde_json::from_str(&row.entry).map_err(|_| bad_usage_row(&row.id))?;
                Ok(((provider, row.id), entry))
            })
            .collect()
    }
}

impl View {
    pub fn state(&self) -> &State {
        &self.state
    }
}

impl Service {
    pub fn durable(&self) -> &Durable<AnyStore> {
        &self.durable
    }
}

impl View {
    pub fn now_s(&self) -> i64 {
        self.clock.now_s()
    }
}

impl Service {
    fn begin(&self) -> Change {
        Change {
            first_sequence: self.durable.log_count() + 1,
            events: Vec::new(),
            ledger: Vec::new(),
            actors: Vec::new(),
            usage_rows: Vec::new(),
            decided: std::collections::HashMap::new(),
        }
    }

    /// Applies `event` to the state now and keeps it for the commit.
    fn record(&mut self, change: &mut Change, event: Event, now_s: i64) {
        self.state.apply(&event, now_s);
        if let Some(((provider, id), entry)) = usage_decision(&event) {
            change.usage_rows.push(UsageRow {
                provider: provider.get(),
                id: id.clone(),
                entry: serde_json::to_string(&entry).expect("usage entries serialize"),
            });
            change.decided.insert((provider, id), entry);
        }
        change.events.push(event);
    }

    /// Returns memory to the last commit (usage decisions were never in memory beyond the change).
    fn forget(&mut self, _change: &Change) {
        self.state = self.committed.clone();
    }

    fn commit(&mut self, actor: &Actor, now_s: i64, change: Change) -> Result<()> {
        // Storage failed before and is still in doubt: find it again first. Unchanged, memory is
        // what storage holds and the change stands; reloaded, the change was decided against a
        // stale state and is refused (the client retries).
        if !self.durable.is_ready() {
            match self.durable.recover() {
                Ok(Recovered::Unchanged) => {}
                Ok(Recovered::Reloaded(opened)) => {
                    self.forget(&change);
                    self.reload(&opened)?;
                    return Err(ServiceError::new(
                        ErrorCode::StorageUnavailable,
                        "storage was reloaded after a fault; nothing was stored; retry",
                    ));
                }
                Err(error) => {
                    self.forget(&change);
                    return Err(storage_error(error));
                }
            }
        }
        let now_ns = u64::try_from(now_s).unwrap_or(0).saturating_mul(1_000_000_000);
        let events = &change.events;
        let actors = &change.actors;
        let actor_of = |index: usize| {
            actors.iter().rev().find(|(start, _)| *start <= index).map_or(actor, |(_, actor)| actor).to_string()
        };
        let mut refused = None;
        let result = self.durable.commit(now_ns, &change.ledger, &change.usage_rows, |batch| {
            if let Some(batch) = batch
                && let Some((index, outcome)) =
                    batch.outcomes.iter().enumerate().find(|(_, o)| !matches!(o, Outcome::Ok(_)))
            {
                refused = Some(format!("ledger refused event {index} of the change: {outcome:?}"));
                return None;
            }
            Some(
                events
                    .iter()
                    .enumerate()
                    .map(|(index, event)| NewLogEntry {
                        time_s: now_s,
                        actor: actor_of(index),
                        action: event.action().to_owned(),
                        object: event.object(),
                        body: serde_json::to_string(event).expect("events serialize"),
                    })
                    .collect(),
            )
        });
        match result {
            Ok(_) => {
                self.committed = self.state.clone();
                Ok(())
            }
            Err(error) => {
                // Nothing of the change was stored: memory returns to the last commit (the
                // ledger took its batch back already).
                self.forget(&change);
                match refused {
                    Some(message) => Err(ServiceError::new(ErrorCode::Internal, message)),
                    None => Err(storage_error(error)),
                }
            }
        }
    }

    fn ensure_account(&self, change: &mut Change, kind: AccountKind, a: u64, b: u64) {
        let id = account_id(kind, a, b);
        let pending = change.ledger.iter().any(|e| matches!(e, LedgerEvent::CreateAccount(n) if n.id == id));
        if self.durable.ledger().account(id).is_none() && !pending {
            change.ledger.push(create_account(kind, a, b));
        }
    }

    // ---------------------------------------------------------------- programmes

    /// Loads a programme file as a draft. Loading the same file again is a no-op that returns the
    /// same id; a different file with the same key is refused.
    pub fn load_program(&mut self, actor: &Actor, source: &str) -> Result<ProgramId> {
        let terms = parse_program(source)?;
        if let Some(id) = self.state.program_by_key.get(&terms.key) {
            if self.state.programs[id].terms == terms {
                return Ok(*id);
            }
            return Err(ServiceError::new(
                ErrorCode::ProgramExists,
                format!("key: programme {:?} is already loaded as {id} with different terms", terms.key),
            ));
        }
        let now = self.now_s();
        let mut change = self.begin();
        let authority = match self.state.authority_by_region.get(&terms.authority_region) {
            Some(id) => *id,
            None => {
                let id = self.state.next_authority();
                self.ensure_account(&mut change, AccountKind::Appropriation, id.get(), 0);
                let authority = Authority { id, region: terms.authority_region, name: terms.authority_name.clone() };
                self.record(&mut change, Event::AuthorityCreated { authority }, now);
                id
            }
        };
        let id = self.state.next_program();
        self.ensure_account(&mut change, AccountKind::Budget, id.get(), 0);
        self.ensure_account(&mut change, AccountKind::Settlement, id.get(), 0);
        let program = Program {
            id,
            authority,
            terms,
            state: ProgramState::Draft,
            budget_remaining_fen: Fen::ZERO,
            issued_fen: Fen::ZERO,
            returned_fen: Fen::ZERO,
            spent_fen: Fen::ZERO,
            settled_fen: Fen::ZERO,
        };
        self.record(&mut change, Event::ProgramLoaded { program: Box::new(program) }, now);
        self.commit(actor, now, change)?;
        Ok(id)
    }
}

impl View {
    pub fn program(&self, id: ProgramId) -> Result<&Program> {
        self.state.programs.get(&id).ok_or_else(|| ServiceError::not_found(id))
    }
}

impl View {
    /// Finds a programme by id (`prg-1`) or key (`shanghai-compute`).
    pub fn find_program(&self, text: &str) -> Result<ProgramId> {
        if let Ok(id) = ProgramId::parse(text) {
            return self.program(id).map(|p| p.id);
        }
        self.state
            .program_by_key
            .get(text)
            .copied()
            .ok_or_else(|| ServiceError::not_found(format!("programme {text:?}")))
    }
}

impl Service {
    /// Draft → open: the budget moves from the authority's appropriation to the programme.
    pub fn open_program(&mut self, actor: &Actor, id: ProgramId) -> Result<()> {
        let program = self.program(id)?;
        require_program_state(program, ProgramState::Draft, "open")?;
        let (authority, budget) = (program.authority, program.terms.budget_fen);
        let now = self.now_s();
        let mut change = self.begin();
        change.ledger.push(transfer(
            change.next_sequence(),
            0,
            TransferKind::Fund,
            account_id(AccountKind::Appropriation, authority.get(), 0),
            account_id(AccountKind::Budget, id.get(), 0),
            budget.fen(),
        ));
        self.record(&mut change, Event::ProgramOpened { program: id, funded_fen: budget }, now);
        self.commit(actor, now, change)
    }

    /// Open → closed: no new applications; reviews, orders and usage go on.
    pub fn close_program(&mut self, actor: &Actor, id: ProgramId) -> Result<()> {
        require_program_state(self.program(id)?, ProgramState::Open, "close")?;
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::ProgramClosed { program: id }, now);
        self.commit(actor, now, change)
    }

    /// Closed → finished: once no voucher is active or suspended and no order holds money, the
    /// unissued budget returns to the authority's appropriation.
    pub fn finish_program(&mut self, actor: &Actor, id: ProgramId) -> Result<Fen> {
        let program = self.program(id)?;
        require_program_state(program, ProgramState::Closed, "finish")?;
        let open: Vec<String> = self
            .state
            .vouchers
            .values()
            .filter(|v| v.program == id && matches!(v.state, VoucherState::Active | VoucherState::Suspended))
            .map(|v| v.id.to_string())
            .chain(
                self.state
                    .orders
                    .values()
                    .filter(|o| o.program == id && o.hold_remaining_fen > Fen::ZERO)
                    .map(|o| o.id.to_string()),
            )
            .collect();
        if !open.is_empty() {
            return Err(ServiceError::new(
                ErrorCode::ProgramHasOpenVouchers,
                format!("program: {id} still has open vouchers or held orders: {}", open.join(", ")),
            ));
        }
        let (authority, returned) = (program.authority, program.budget_remaining_fen);
        let now = self.now_s();
        let mut change = self.begin();
        if returned > Fen::ZERO {
            change.ledger.push(transfer(
                change.next_sequence(),
                0,
                TransferKind::ReturnToAppropriation,
                account_id(AccountKind::Budget, id.get(), 0),
                account_id(AccountKind::Appropriation, authority.get(), 0),
                returned.fen(),
            ));
        }
        self.record(&mut change, Event::ProgramFinished { program: id, returned_fen: returned }, now);
        self.commit(actor, now, change)?;
        Ok(returned)
    }

    // ---------------------------------------------------------------- enterprises and applications

    pub fn register_enterprise(&mut self, actor: &Actor, input: EnterpriseInput) -> Result<EnterpriseId> {
        check_text("name", &input.name)?;
        for (index, project) in input.research_projects.iter().enumerate() {
            check_text(&format!("research_projects[{index}]"), project)?;
        }
        if input.related_parties.contains(&input.uscc) {
            return Err(ServiceError::field("related_parties", "an enterprise is not its own related party"));
        }
        if let Some(existing) = self.state.enterprise_by_uscc.get(&input.uscc) {
            return Err(ServiceError::new(
                ErrorCode::AlreadyExists,
                format!("uscc: {} is already registered as {existing}", input.uscc),
            ));
        }
        let now = self.now_s();
        let mut change = self.begin();
        let id = self.state.next_enterprise();
        self.ensure_account(&mut change, AccountKind::Enterprise, id.get(), 0);
        let enterprise = Enterprise {
            id,
            uscc: input.uscc,
            name: input.name,
            region: input.region,
            kind: input.kind,
            headcount: input.headcount,
            revenue_fen: input.revenue_fen,
            research_projects: input.research_projects,
            related_parties: input.related_parties,
            registered_at_s: now,
            paid_fen: Fen::ZERO,
        };
        self.record(&mut change, Event::EnterpriseRegistered { enterprise: Box::new(enterprise) }, now);
        self.commit(actor, now, change)?;
        Ok(id)
    }
}

impl View {
    pub fn enterprise(&self, id: EnterpriseId) -> Result<&Enterprise> {
        self.state.enterprises.get(&id).ok_or_else(|| ServiceError::not_found(id))
    }
}

impl View {
    /// Every eligibility verdict of `enterprise` for `program`, the applicant-kind rule first.
    pub fn eligibility(&self, enterprise: EnterpriseId, program: ProgramId) -> Result<Vec<(String, Verdict)>> {
        let enterprise = self.enterprise(enterprise)?;
        let program = self.program(program)?;
        let profile = Profile {
            kind: enterprise.kind,
            region: enterprise.region,
            headcount: enterprise.headcount,
            revenue: enterprise.revenue_fen,
            research_projects: u32::try_from(enterprise.research_projects.len()).unwrap_or(u32::MAX),
        };
        let kinds = &program.terms.applicant_kinds;
        let kind_names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let kind_verdict = Verdict {
            passed: kinds.contains(&enterprise.kind),
            reason: format!(
                "kind {} is {}one of {}",
                enterprise.kind,
                if kinds.contains(&enterprise.kind) { "" } else { "not " },
                kind_names.join(", ")
            ),
        };
        let mut verdicts = vec![("applicant_kind".to_owned(), kind_verdict)];
        for named in &program.terms.eligibility {
            let rule = Rule::parse(&named.rule).map_err(|e| ServiceError::new(ErrorCode::Internal, e.to_string()))?;
            verdicts.push((named.name.clone(), rule.evaluate(&profile)));
        }
        Ok(verdicts)
    }
}

impl Service {
    pub fn create_application(
        &mut self,
        actor: &Actor,
        enterprise: EnterpriseId,
        program: ProgramId,
        requested: Fen,
        note: &str,
    ) -> Result<ApplicationId> {
        self.enterprise(enterprise)?;
        let terms = &self.program(program)?.terms;
        if requested <= Fen::ZERO {
            return Err(ServiceError::field("amount", "must be positive"));
        }
        if requested > terms.enterprise_cap_fen {
            return Err(ServiceError::new(
                ErrorCode::EnterpriseCapExceeded,
                format!("amount: {requested} is above the programme's per-enterprise cap {}", terms.enterprise_cap_fen),
            ));
        }
        check_text_allow_empty("note", note)?;
        let now = self.now_s();
        let mut change = self.begin();
        let id = self.state.next_application();
        let application = Application {
            id,
            enterprise,
            program,
            requested_fen: requested,
            note: note.to_owned(),
            state: ApplicationState::Draft,
            created_at_s: now,
            submitted_at_s: None,
            decided_at_s: None,
            approved_fen: None,
            reason: None,
            voucher: None,
        };
        self.record(&mut change, Event::ApplicationCreated { application: Box::new(application) }, now);
        self.commit(actor, now, change)?;
        Ok(id)
    }
}

impl View {
    pub fn application(&self, id: ApplicationId) -> Result<&Application> {
        self.state.applications.get(&id).ok_or_else(|| ServiceError::not_found(id))
    }
}

impl Service {
    /// Draft → submitted, inside the programme's application window while it is open.
    pub fn submit_application(&mut self, actor: &Actor, id: ApplicationId) -> Result<()> {
        let application = self.application(id)?;
        require_application_state(application, ApplicationState::Draft, "submit")?;
        let program = self.program(application.program)?;
        let now = self.now_s();
        if program.state != ProgramState::Open {
            return Err(ServiceError::new(
                ErrorCode::ProgramState,
                format!("program: {} is {:?}, not open, so it takes no applications", program.id, program.state),
            ));
        }
        let terms = &program.terms;
        if now < terms.applications_open_s || now >= terms.applications_close_s {
            return Err(ServiceError::new(
                ErrorCode::ApplicationWindowClosed,
                format!(
                    "submitted_at: {} is outside the application window {} to {}",
                    format_timestamp(now),
                    format_timestamp(terms.applications_open_s),
                    format_timestamp(terms.applications_close_s)
                ),
            ));
        }
        let mut change = self.begin();
        self.record(&mut change, Event::ApplicationSubmitted { application: id }, now);
        self.commit(actor, now, change)
    }

    pub fn withdraw_application(&mut self, actor: &Actor, id: ApplicationId) -> Result<()> {
        let application = self.application(id)?;
        if !matches!(application.state, ApplicationState::Draft | ApplicationState::Submitted) {
            return Err(ServiceError::new(
                ErrorCode::ApplicationState,
                format!("application: {id} is {:?} and can no longer be withdrawn", application.state),
            ));
        }
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::ApplicationWithdrawn { application: id }, now);
        self.commit(actor, now, change)
    }

    pub fn reject_application(&mut self, actor: &Actor, id: ApplicationId, reason: &str) -> Result<()> {
        require_application_state(self.application(id)?, ApplicationState::Submitted, "reject")?;
        check_text("reason", reason)?;
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::ApplicationRejected { application: id, reason: reason.to_owned() }, now);
        self.commit(actor, now, change)
    }

    /// Submitted → approved with `amount`: a voucher is issued and its face value taken from the
    /// budget now. Refused, with the reason, for an ineligible applicant, beyond the request, the
    /// per-enterprise cap, the stacking rule or the remaining budget, and when money still free
    /// is owed to applications submitted earlier.
    pub fn approve_application(&mut self, actor: &Actor, id: ApplicationId, amount: Fen) -> Result<VoucherId> {
        let application = self.application(id)?.clone();
        require_application_state(&application, ApplicationState::Submitted, "approve")?;
        let program = self.program(application.program)?.clone();
        if !matches!(program.state, ProgramState::Open | ProgramState::Closed) {
            return Err(ServiceError::new(
                ErrorCode::ProgramState,
                format!("program: {} is {:?}; approvals need it open or closed", program.id, program.state),
            ));
        }
        if amount <= Fen::ZERO {
            return Err(ServiceError::field("amount", "must be positive"));
        }
        if amount > application.requested_fen {
            return Err(ServiceError::new(
                ErrorCode::AmountAboveRequest,
                format!("amount: {amount} is more than the {} requested", application.requested_fen),
            ));
        }
        let failed: Vec<String> = self
            .eligibility(application.enterprise, program.id)?
            .into_iter()
            .filter(|(_, verdict)| !verdict.passed)
            .map(|(name, verdict)| format!("{name}: {}", verdict.reason))
            .collect();
        if !failed.is_empty() {
            return Err(ServiceError::new(
                ErrorCode::NotEligible,
                format!("enterprise: {} is not eligible: {}", application.enterprise, failed.join("; ")),
            ));
        }
        self.check_caps(&application, &program, amount)?;
        // First come, first served: money still free is owed first to applications submitted
        // earlier and not yet decided.
        let submitted_at = application.submitted_at_s.unwrap_or(i64::MAX);
        let earlier: Vec<&Application> = self
            .state
            .applications
            .values()
            .filter(|a| {
                a.program == program.id
                    && a.state == ApplicationState::Submitted
                    && a.id != id
                    && (a.submitted_at_s, a.id) < (Some(submitted_at), id)
            })
            .collect();
        let owed_earlier = earlier.iter().map(|a| a.requested_fen).try_fold(Fen::ZERO, |sum, r| sum.checked_add(r))?;
        if amount > program.budget_remaining_fen {
            return Err(ServiceError::new(
                ErrorCode::BudgetExceeded,
                format!(
                    "amount: {amount} is more than the {} left in {}'s budget",
                    program.budget_remaining_fen, program.id
                ),
            ));
        }
        let free = program.budget_remaining_fen.checked_sub(owed_earlier)?;
        if amount > free {
            let names: Vec<String> = earlier.iter().map(|a| a.id.to_string()).collect();
            return Err(ServiceError::new(
                ErrorCode::BudgetReservedForEarlierApplications,
                format!(
                    "amount: {amount} is more than the {} not owed to earlier applications ({}, asking {owed_earlier}); \
                     decide those first",
                    Fen::new(free.fen().max(0)),
                    names.join(", ")
                ),
            ));
        }
        let now = self.now_s();
        let mut change = self.begin();
        let voucher_id = self.state.next_voucher();
        self.ensure_account(&mut change, AccountKind::Voucher, voucher_id.get(), 0);
        change.ledger.push(transfer(
            change.next_sequence(),
            0,
            TransferKind::Issue,
            account_id(AccountKind::Budget, program.id.get(), 0),
            account_id(AccountKind::Voucher, voucher_id.get(), 0),
            amount.fen(),
        ));
        let voucher = Voucher {
            id: voucher_id,
            enterprise: application.enterprise,
            program: program.id,
            application: id,
            face_value_fen: amount,
            issued_at_s: now,
            expires_at_s: now + i64::from(program.terms.voucher_validity_days) * 86_400,
            state: VoucherState::Active,
            available_fen: amount,
            held_fen: Fen::ZERO,
            spent_fen: Fen::ZERO,
            returned_fen: Fen::ZERO,
            reason: None,
        };
        self.record(&mut change, Event::ApplicationApproved { application: id, voucher: Box::new(voucher) }, now);
        self.commit(actor, now, change)?;
        Ok(voucher_id)
    }
}

impl View {
    fn check_caps(&self, application: &Application, program: &Program, amount: Fen) -> Result<()> {
        let enterprise = application.enterprise;
        let issued_here = self
            .state
            .vouchers
            .values()
            .filter(|v| v.enterprise == enterprise && v.program == program.id && v.state != VoucherState::Revoked)
            .map(|v| v.face_value_fen)
            .try_fold(Fen::ZERO, |sum, f| sum.checked_add(f))?;
        if issued_here.checked_add(amount)? > program.terms.enterprise_cap_fen {
            return Err(ServiceError::new(
                ErrorCode::EnterpriseCapExceeded,
                format!(
                    "amount: {amount} on top of {issued_here} already issued to {enterprise} exceeds the per-enterprise cap {}",
                    program.terms.enterprise_cap_fen
                ),
            ));
        }
        let others: Vec<&Voucher> = self
            .state
            .vouchers
            .values()
            .filter(|v| {
                v.enterprise == enterprise
                    && v.program != program.id
                    && matches!(v.state, VoucherState::Active | VoucherState::Suspended)
            })
            .collect();
        for other in &others {
            let other_program = self.program(other.program)?;
            for (rules, name) in [(program, program.id), (other_program, other_program.id)] {
                if !rules.terms.stacking.allowed {
                    return Err(ServiceError::new(
                        ErrorCode::StackingNotAllowed,
                        format!(
                            "enterprise: {enterprise} holds {} of {} and {name} does not allow holding vouchers of several programmes",
                            other.id, other.program
                        ),
                    ));
                }
            }
        }
        let held_everywhere = others
            .iter()
            .map(|v| v.face_value_fen)
            .chain(
                self.state
                    .vouchers
                    .values()
                    .filter(|v| {
                        v.enterprise == enterprise
                            && v.program == program.id
                            && matches!(v.state, VoucherState::Active | VoucherState::Suspended)
                    })
                    .map(|v| v.face_value_fen),
            )
            .try_fold(amount, |sum, f| sum.checked_add(f))?;
        let caps = std::iter::once(program)
            .chain(others.iter().filter_map(|v| self.state.programs.get(&v.program)))
            .filter_map(|p| p.terms.stacking.cap_fen.map(|cap| (p.id, cap)));
        for (capped_by, cap) in caps {
            if held_everywhere > cap {
                return Err(ServiceError::new(
                    ErrorCode::StackingCapExceeded,
                    format!(
                        "amount: vouchers held by {enterprise} across programmes would total {held_everywhere}, above {capped_by}'s cap of {cap}"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl View {
    pub fn voucher(&self, id: VoucherId) -> Result<&Voucher> {
        self.state.vouchers.get(&id).ok_or_else(|| ServiceError::not_found(id))
    }
}

impl Service {
    // ---------------------------------------------------------------- providers

    pub fn register_provider(
        &mut self,
        actor: &Actor,
        uscc: Uscc,
        name: &str,
        operator: OperatorKind,
    ) -> Result<ProviderId> {
        check_text("name", name)?;
        if let Some(existing) = self.state.provider_by_uscc.get(&uscc) {
            return Err(ServiceError::new(
                ErrorCode::AlreadyExists,
                format!("uscc: {uscc} is already registered as {existing}"),
            ));
        }
        let now = self.now_s();
        let mut change = self.begin();
        let id = self.state.next_provider();
        self.ensure_account(&mut change, AccountKind::ProviderDirect, id.get(), 0);
        let provider = Provider { id, uscc, name: name.to_owned(), operator, public_key_hex: None };
        self.record(&mut change, Event::ProviderRegistered { provider }, now);
        self.commit(actor, now, change)?;
        Ok(id)
    }

    pub fn add_site(&mut self, actor: &Actor, input: SiteSpec) -> Result<SiteId> {
        if !self.state.providers.contains_key(&input.provider) {
            return Err(ServiceError::not_found(input.provider));
        }
        check_text("name", &input.name)?;
        check_text("hub", &input.hub)?;
        if !(-90.0..=90.0).contains(&input.latitude) {
            return Err(ServiceError::field("latitude", "must be between -90 and 90"));
        }
        if !(-180.0..=180.0).contains(&input.longitude) {
            return Err(ServiceError::field("longitude", "must be between -180 and 180"));
        }
        if input.pue.is_some_and(|pue| !(1.0..=3.0).contains(&pue)) {
            return Err(ServiceError::field("pue", "must be between 1.0 and 3.0"));
        }
        if input.power_price_fen_per_kwh.is_some_and(|p| p <= Fen::ZERO) {
            return Err(ServiceError::field("power_price", "must be positive"));
        }
        let now = self.now_s();
        let mut change = self.begin();
        let id = self.state.next_site();
        let site = Site { id, spec: input };
        self.record(&mut change, Event::SiteAdded { site: Box::new(site) }, now);
        self.commit(actor, now, change)?;
        Ok(id)
    }

    pub fn add_pool(&mut self, actor: &Actor, input: PoolInput) -> Result<PoolId> {
        if !self.state.sites.contains_key(&input.site) {
            return Err(ServiceError::not_found(input.site));
        }
        check_text("chip", &input.chip)?;
        if input.gpu_count == 0 || input.gpu_count > 1_000_000 {
            return Err(ServiceError::field("gpus", "must be between 1 and 1000000"));
        }
        if input.price_fen_per_gpu_hour <= Fen::ZERO {
            return Err(ServiceError::field("price", "must be positive"));
        }
        let now = self.now_s();
        let mut change = self.begin();
        let id = self.state.next_pool();
        let pool = Pool {
            id,
            site: input.site,
            chip: input.chip,
            gpu_count: input.gpu_count,
            domestic: input.domestic,
            price_fen_per_gpu_hour: input.price_fen_per_gpu_hour,
            gpus_reserved: 0,
        };
        self.record(&mut change, Event::PoolAdded { pool }, now);
        self.commit(actor, now, change)?;
        Ok(id)
    }
}

impl View {
    fn provider_of_pool(&self, pool: &Pool) -> (&Site, &Provider) {
        let site = &self.state.sites[&pool.site];
        (site, &self.state.providers[&site.spec.provider])
    }
}

impl View {
    /// Whether `program`'s provider rule allows `pool`, and if not, why.
    pub(crate) fn provider_allowed(&self, program: &Program, pool: &Pool) -> Result<()> {
        let (site, provider) = self.provider_of_pool(pool);
        let refusal = match &program.terms.providers {
            ProviderRule::Any => None,
            ProviderRule::GovernmentRun => (site.spec.operator != OperatorKind::Government).then(|| {
                format!(
                    "{} is run by a {} operator; {} allows government-run sites only",
                    site.id,
                    site.spec.operator.as_str(),
                    program.id
                )
            }),
            ProviderRule::Listed { providers } => (!providers.contains(&provider.uscc))
                .then(|| format!("{} ({}) is not among {}'s listed providers", provider.id, provider.uscc, program.id)),
            ProviderRule::WithinRegion => (!site.spec.region.within(program.terms.authority_region)).then(|| {
                format!(
                    "{} is in region {}, outside {}'s region {}",
                    site.id, site.spec.region, program.id, program.terms.authority_region
                )
            }),
        };
        match refusal {
            None => Ok(()),
            Some(message) => Err(ServiceError::new(ErrorCode::ProviderNotAllowed, format!("pool: {message}"))),
        }
    }
}

impl Service {
    // ---------------------------------------------------------------- orders
}

impl View {
    /// Prices an order without placing it: list cost, the voucher's share and the enterprise's.
    pub fn quote(&self, input: &OrderInput) -> Result<Quote> {
        let now = self.now_s();
        let (voucher, program, pool) = self.check_order(input, now)?;
        self.price(voucher, program, pool, input.gpu_count, input.hours, now)
    }
}

impl View {
    /// The checks an order makes before any pool is considered: the voucher is the enterprise's,
    /// active, unexpired, and its programme funds the purpose.
    pub(crate) fn check_voucher_use(
        &self,
        enterprise: EnterpriseId,
        voucher: VoucherId,
        purpose: Purpose,
        now: i64,
    ) -> Result<(&Voucher, &Program)> {
        self.enterprise(enterprise)?;
        let voucher = self.voucher(voucher)?;
        if voucher.enterprise != enterprise {
            return Err(ServiceError::new(
                ErrorCode::VoucherOfAnotherEnterprise,
                format!("voucher: {} belongs to another enterprise; vouchers cannot be transferred", voucher.id),
            ));
        }
        if voucher.state != VoucherState::Active {
            return Err(ServiceError::new(
                ErrorCode::VoucherState,
                format!("voucher: {} is {}", voucher.id, voucher.state_name()),
            ));
        }
        if now >= voucher.expires_at_s {
            return Err(ServiceError::new(
                ErrorCode::VoucherExpired,
                format!("voucher: {} expired at {}", voucher.id, format_timestamp(voucher.expires_at_s)),
            ));
        }
        let program = self.program(voucher.program)?;
        if !program.terms.purposes.contains(&purpose) {
            let allowed: Vec<&str> = program.terms.purposes.iter().map(|p| p.as_str()).collect();
            return Err(ServiceError::new(
                ErrorCode::PurposeNotAllowed,
                format!(
                    "purpose: {} is not funded by {}; it funds {}",
                    purpose.as_str(),
                    program.id,
                    allowed.join(", ")
                ),
            ));
        }
        Ok((voucher, program))
    }
}

impl View {
    fn check_order(&self, input: &OrderInput, now: i64) -> Result<(&Voucher, &Program, &Pool)> {
        let (voucher, program) = self.check_voucher_use(input.enterprise, input.voucher, input.purpose, now)?;
        let pool = self.state.pools.get(&input.pool).ok_or_else(|| ServiceError::not_found(input.pool))?;
        if let Some(chip) = &input.chip
            && chip != &pool.chip
        {
            return Err(ServiceError::new(
                ErrorCode::ChipNotInPool,
                format!("chip: {} has {} GPUs, not {chip}", pool.id, pool.chip),
            ));
        }
        if input.gpu_count == 0 {
            return Err(ServiceError::field("gpus", "must be at least 1"));
        }
        if input.hours == 0 || input.hours > ORDER_HOURS_MAX {
            return Err(ServiceError::field("hours", format!("must be between 1 and {ORDER_HOURS_MAX}")));
        }
        let free = pool.gpu_count - pool.gpus_reserved;
        if input.gpu_count > free {
            return Err(ServiceError::new(
                ErrorCode::PoolCapacityExceeded,
                format!(
                    "gpus: {} asks for {} GPUs and only {free} of {} are free",
                    pool.id, input.gpu_count, pool.gpu_count
                ),
            ));
        }
        self.provider_allowed(program, pool)?;
        Ok((voucher, program, pool))
    }
}

impl View {
    pub(crate) fn price(
        &self,
        voucher: &Voucher,
        program: &Program,
        pool: &Pool,
        gpus: u32,
        hours: u32,
        now: i64,
    ) -> Result<Quote> {
        let list_cost = pool.price_fen_per_gpu_hour.checked_mul(i64::from(gpus))?.checked_mul(i64::from(hours))?;
        let rate = rate_for(program, pool);
        let by_rate = rate.share_floor(list_cost);
        let mut share = by_rate;
        let mut limited_by = None;
        if voucher.available_fen < share {
            share = voucher.available_fen;
            limited_by = Some(format!("the voucher's available balance {}", voucher.available_fen));
        }
        if let Some(cap) = program.terms.annual_cap_fen {
            let left =
                Fen::new(cap.checked_sub(self.state.annual_used(voucher.enterprise, program.id, now))?.fen().max(0));
            if left < share {
                share = left;
                limited_by = Some(format!("the annual cap: {left} left of {cap} in {}", shanghai_year(now)));
            }
        }
        Ok(Quote {
            pool: pool.id,
            gpu_count: gpus,
            hours,
            price_fen_per_gpu_hour: pool.price_fen_per_gpu_hour,
            rate_bp: rate,
            list_cost_fen: list_cost,
            voucher_share_fen: share,
            enterprise_share_fen: list_cost.checked_sub(share)?,
            limited_by,
        })
    }
}

impl Service {
    /// Places an order: the price is locked and the voucher's share is held for it.
    pub fn place_order(&mut self, actor: &Actor, input: OrderInput) -> Result<OrderId> {
        let now = self.now_s();
        let (voucher, program, pool) = self.check_order(&input, now)?;
        let quote = self.price(voucher, program, pool, input.gpu_count, input.hours, now)?;
        let (_, provider) = self.provider_of_pool(pool);
        let enterprise = &self.state.enterprises[&input.enterprise];
        let mut flags = Vec::new();
        if enterprise.related_parties.contains(&provider.uscc) {
            flags.push(format!(
                "related_party: {} lists provider {} ({}) as a related party",
                enterprise.id, provider.id, provider.uscc
            ));
        }
        let (program_id, provider_id) = (program.id, provider.id);
        let mut change = self.begin();
        let id = self.state.next_order();
        let hold = quote.voucher_share_fen;
        let sequence = change.next_sequence();
        self.ensure_account(&mut change, AccountKind::Hold, id.get(), 0);
        self.ensure_account(&mut change, AccountKind::ProviderReceivable, provider_id.get(), program_id.get());
        if hold > Fen::ZERO {
            change.ledger.push(transfer(
                sequence,
                0,
                TransferKind::Hold,
                account_id(AccountKind::Voucher, input.voucher.get(), 0),
                account_id(AccountKind::Hold, id.get(), 0),
                hold.fen(),
            ));
        }
        let order = Order {
            id,
            enterprise: input.enterprise,
            voucher: input.voucher,
            program: program_id,
            pool: input.pool,
            provider: provider_id,
            purpose: input.purpose,
            quote,
            state: OrderState::Placed,
            placed_at_s: now,
            started_at_s: None,
            ended_at_s: None,
            hold_fen: hold,
            hold_remaining_fen: hold,
            gpu_seconds: 0,
            usage_until_s: None,
            cost_fen: Fen::ZERO,
            voucher_paid_fen: Fen::ZERO,
            enterprise_paid_fen: Fen::ZERO,
            usage_records: 0,
            flags: flags.clone(),
        };
        self.record(&mut change, Event::OrderPlaced { order: Box::new(order) }, now);
        for flag in flags {
            let anomaly =
                Anomaly { time_s: now, kind: "related_party".to_owned(), object: id.to_string(), detail: flag };
            self.record(&mut change, Event::AnomalyFlagged { anomaly }, now);
        }
        self.commit(actor, now, change)?;
        Ok(id)
    }
}

impl View {
    pub fn order(&self, id: OrderId) -> Result<&Order> {
        self.state.orders.get(&id).ok_or_else(|| ServiceError::not_found(id))
    }
}

impl Service {
    /// Placed → running: the provider starts the job.
    pub fn start_order(&mut self, actor: &Actor, id: OrderId) -> Result<()> {
        let order = self.order(id)?;
        if order.state != OrderState::Placed {
            return Err(ServiceError::new(
                ErrorCode::OrderState,
                format!("order: {id} is {:?}, not placed", order.state),
            ));
        }
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::OrderStarted { order: id }, now);
        self.commit(actor, now, change)
    }

    /// Running → completed: what is left of the hold goes back to the voucher (and on to the
    /// budget if the voucher is no longer active).
    pub fn complete_order(&mut self, actor: &Actor, id: OrderId) -> Result<Fen> {
        let order = self.order(id)?;
        if order.state != OrderState::Running {
            return Err(ServiceError::new(
                ErrorCode::OrderState,
                format!("order: {id} is {:?}, not running", order.state),
            ));
        }
        self.end_order(actor, id, OrderState::Completed)
    }

    /// Placed → cancelled, before it starts: the whole hold is released.
    pub fn cancel_order(&mut self, actor: &Actor, id: OrderId) -> Result<Fen> {
        let order = self.order(id)?;
        if order.state != OrderState::Placed {
            return Err(ServiceError::new(
                ErrorCode::OrderState,
                format!("order: {id} is {:?}; only a placed order that has not started can be cancelled", order.state),
            ));
        }
        self.end_order(actor, id, OrderState::Cancelled)
    }

    fn end_order(&mut self, actor: &Actor, id: OrderId, state: OrderState) -> Result<Fen> {
        let order = &self.state.orders[&id];
        let voucher = &self.state.vouchers[&order.voucher];
        let released = order.hold_remaining_fen;
        let voucher_closed = matches!(voucher.state, VoucherState::Expired | VoucherState::Revoked);
        let returned = if voucher_closed { released } else { Fen::ZERO };
        let (voucher_id, program) = (voucher.id, voucher.program);
        let now = self.now_s();
        let mut change = self.begin();
        let sequence = change.next_sequence();
        let mut legs = Vec::new();
        if released > Fen::ZERO {
            legs.push(release(sequence, 0, id.get(), voucher_id.get(), released.fen()));
        }
        if returned > Fen::ZERO {
            legs.push(return_to_budget(sequence, 1, voucher_id.get(), program.get(), returned.fen()));
        }
        link(&mut legs);
        change.ledger.extend(legs);
        self.record(
            &mut change,
            Event::OrderEnded { order: id, state, released_fen: released, returned_fen: returned },
            now,
        );
        self.commit(actor, now, change)?;
        Ok(released)
    }

    // ---------------------------------------------------------------- usage

    /// Records a batch of usage records from `provider` in one commit. Each record gets its own
    /// answer: recorded, a duplicate of one recorded before (same id, same body: the first result
    /// again), or refused. A refusal that depends on the state (physics, the order's run) is
    /// kept, so that id stays failed; a record with the same id and a different body is refused
    /// without being kept.
    pub fn record_usage(
        &mut self,
        actor: &Actor,
        provider: ProviderId,
        records: &[UsageInput],
    ) -> Result<Vec<UsageOutcome>> {
        let group = UsageGroup { actor: actor.clone(), provider, records: records.to_vec() };
        Ok(self.record_usage_groups(actor, std::slice::from_ref(&group))?.pop().expect("one group in, one out"))
    }

    /// Records several providers' batches in **one commit** (group commit): the HTTP writer
    /// gathers the batches waiting in its queue and commits them together, each record still
    /// answered on its own and each log entry naming the actor that sent it. At most
    /// [`USAGE_BATCH_RECORDS_MAX`] records in all.
    pub fn record_usage_groups(&mut self, actor: &Actor, groups: &[UsageGroup]) -> Result<Vec<Vec<UsageOutcome>>> {
        if let Some(group) = groups.iter().find(|g| !self.state.providers.contains_key(&g.provider)) {
            return Err(ServiceError::not_found(group.provider));
        }
        let total: usize = groups.iter().map(|g| g.records.len()).sum();
        if total > USAGE_BATCH_RECORDS_MAX {
            return Err(ServiceError::field(
                "records",
                format!("a batch holds at most {USAGE_BATCH_RECORDS_MAX} records, got {total}"),
            ));
        }
        let now = self.now_s();
        // Every id of the batch is looked up in storage at once; ids decided earlier in the same
        // batch are found in the change itself.
        let keys: Vec<(ProviderId, &str)> =
            groups.iter().flat_map(|g| g.records.iter().map(|r| (g.provider, r.id.as_str()))).collect();
        let known = self.usage_decisions(&keys)?;
        let mut change = self.begin();
        let mut answers = Vec::with_capacity(groups.len());
        for group in groups {
            change.actors.push((change.events.len(), group.actor.clone()));
            let outcomes: Vec<UsageOutcome> = group
                .records
                .iter()
                .map(|input| self.record_one(&mut change, &known, group.provider, input, now))
                .collect();
            answers.push(outcomes);
        }
        self.commit(actor, now, change)?;
        Ok(answers)
    }

    fn record_one(
        &mut self,
        change: &mut Change,
        known: &std::collections::HashMap<(ProviderId, String), UsageEntry>,
        provider: ProviderId,
        input: &UsageInput,
        now: i64,
    ) -> UsageOutcome {
        let refused = |error: ServiceError| UsageOutcome::Refused {
            id: input.id.clone(),
            code: error.code.as_str().to_owned(),
            message: error.message,
        };
        if input.id.is_empty() || input.id.len() > 128 || input.id.chars().any(char::is_control) {
            return refused(ServiceError::field("id", "must be 1-128 bytes without control characters"));
        }
        let key = (provider, input.id.clone());
        match change.decided.get(&key).or_else(|| known.get(&key)) {
            Some(&UsageEntry::Recorded(facts, cost_fen, voucher_part_fen, enterprise_part_fen))
                if facts == UsageFacts::of(input) =>
            {
                return UsageOutcome::Duplicate {
                    id: input.id.clone(),
                    cost_fen,
                    voucher_part_fen,
                    enterprise_part_fen,
                };
            }
            Some(UsageEntry::Recorded(..)) => {
                return refused(ServiceError::new(
                    ErrorCode::UsageRecordConflict,
                    format!("id: usage record {:?} was already recorded with a different body", input.id),
                ));
            }
            Some(UsageEntry::Refused(_, code, message)) => {
                return refused(ServiceError::new(
                    ErrorCode::UsageIdAlreadyFailed,
                    format!("id: usage record {:?} already failed ({code}: {message})", input.id),
                ));
            }
            None => {}
        }
        match self.check_usage(provider, input, now) {
            Ok(record) => {
                let outcome = UsageOutcome::Recorded {
                    id: input.id.clone(),
                    cost_fen: record.cost_fen,
                    voucher_part_fen: record.voucher_part_fen,
                    enterprise_part_fen: record.enterprise_part_fen,
                };
                let sequence = change.next_sequence();
                let order = &self.state.orders[&input.order];
                let mut legs = Vec::with_capacity(2);
                if record.voucher_part_fen > Fen::ZERO {
                    legs.push(transfer(
                        sequence,
                        0,
                        TransferKind::UsageVoucherPart,
                        account_id(AccountKind::Hold, order.id.get(), 0),
                        account_id(AccountKind::ProviderReceivable, provider.get(), order.program.get()),
                        record.voucher_part_fen.fen(),
                    ));
                }
                if record.enterprise_part_fen > Fen::ZERO {
                    legs.push(transfer(
                        sequence,
                        1,
                        TransferKind::UsageEnterprisePart,
                        account_id(AccountKind::Enterprise, order.enterprise.get(), 0),
                        account_id(AccountKind::ProviderDirect, provider.get(), 0),
                        record.enterprise_part_fen.fen(),
                    ));
                }
                link(&mut legs);
                change.ledger.extend(legs);
                self.record(change, Event::UsageRecorded { record: Box::new(record) }, now);
                outcome
            }
            Err(error) if error.code == ErrorCode::InvalidField || error.code == ErrorCode::NotFound => refused(error),
            Err(error) => {
                let event = Event::UsageRefused {
                    provider,
                    input: input.clone(),
                    code: error.code.as_str().to_owned(),
                    message: error.message.clone(),
                };
                self.record(change, event, now);
                refused(error)
            }
        }
    }
}

impl View {
    fn check_usage(&self, provider: ProviderId, input: &UsageInput, now: i64) -> Result<UsageRecord> {
        let order = self.order(input.order)?;
        if order.provider != provider {
            return Err(ServiceError::new(
                ErrorCode::OrderOfAnotherProvider,
                format!("order: {} runs at another provider", order.id),
            ));
        }
        if input.gpu_seconds <= 0 {
            return Err(ServiceError::field("gpu_seconds", "must be positive"));
        }
        if input.period_end_s <= input.period_start_s {
            return Err(ServiceError::field("period_end", "must be after period_start"));
        }
        let Some(started) = order.started_at_s else {
            return Err(ServiceError::new(
                ErrorCode::OrderState,
                format!("order: {} is {:?}; usage needs a started order", order.id, order.state),
            ));
        };
        if input.period_end_s > now {
            return Err(ServiceError::new(
                ErrorCode::UsageInFuture,
                format!(
                    "period_end: {} is after now ({})",
                    format_timestamp(input.period_end_s),
                    format_timestamp(now)
                ),
            ));
        }
        let run_end = order.ended_at_s.unwrap_or(now);
        if input.period_start_s < started || input.period_end_s > run_end {
            return Err(ServiceError::new(
                ErrorCode::UsageOutsideOrderRun,
                format!(
                    "period: {} to {} is outside the order's run {} to {}",
                    format_timestamp(input.period_start_s),
                    format_timestamp(input.period_end_s),
                    format_timestamp(started),
                    format_timestamp(run_end)
                ),
            ));
        }
        let gpus = i64::from(order.quote.gpu_count);
        let period = input.period_end_s - input.period_start_s;
        if input.gpu_seconds > gpus.saturating_mul(period) {
            return Err(ServiceError::new(
                ErrorCode::UsageExceedsPhysics,
                format!("gpu_seconds: {} is more than {gpus} GPUs can run in {period} s", input.gpu_seconds),
            ));
        }
        // All records of the order together cannot exceed its GPUs over the time it has run.
        let until = order.usage_until_s.map_or(input.period_end_s, |u| u.max(input.period_end_s));
        let total = order.gpu_seconds.saturating_add(input.gpu_seconds);
        if total > gpus.saturating_mul(until - started) {
            return Err(ServiceError::new(
                ErrorCode::UsageExceedsPhysics,
                format!(
                    "gpu_seconds: the order's records would total {total} GPU-seconds, more than {gpus} GPUs can run in the {} s since it started",
                    until - started
                ),
            ));
        }
        let cost = cost_of(input.gpu_seconds, order.quote.price_fen_per_gpu_hour)?;
        let program = self.program(order.program)?;
        let voucher = self.voucher(order.voucher)?;
        let mut voucher_part = order.quote.rate_bp.share_floor(cost).min(order.hold_remaining_fen);
        if voucher.state != VoucherState::Active {
            // A suspended or revoked voucher pays nothing; expired vouchers still honour the
            // holds of orders placed while they were valid.
            if voucher.state != VoucherState::Expired {
                voucher_part = Fen::ZERO;
            }
        }
        if let Some(cap) = program.terms.annual_cap_fen {
            let left = cap.checked_sub(self.state.annual_used(order.enterprise, program.id, now))?;
            voucher_part = voucher_part.min(Fen::new(left.fen().max(0)));
        }
        let record = UsageRecord {
            provider,
            input: input.clone(),
            program: program.id,
            cost_fen: cost,
            voucher_part_fen: voucher_part,
            enterprise_part_fen: cost.checked_sub(voucher_part)?,
            recorded_at_s: now,
        };
        self.check_totals(order, &record)?;
        Ok(record)
    }
}

impl View {
    /// Refuses a record that would carry a running total past what an `i64` holds: the order's
    /// GPU-seconds and money and the enterprise's payments (the statement lines of one order are
    /// part of the order's totals; voucher and programme totals are bounded by face values and
    /// budgets). Applying the record then cannot overflow.
    fn check_totals(&self, order: &Order, record: &UsageRecord) -> Result<()> {
        let overflow = |what: &str| {
            ServiceError::new(
                ErrorCode::AmountOverflow,
                format!("gpu_seconds: this record would carry {what} past the largest amount kept"),
            )
        };
        order.gpu_seconds.checked_add(record.input.gpu_seconds).ok_or_else(|| overflow("the order's GPU-seconds"))?;
        for (total, part) in [
            (order.cost_fen, record.cost_fen),
            (order.voucher_paid_fen, record.voucher_part_fen),
            (order.enterprise_paid_fen, record.enterprise_part_fen),
        ] {
            total.checked_add(part).map_err(|_| overflow("the order's cost"))?;
        }
        let enterprise = self.enterprise(order.enterprise)?;
        enterprise
            .paid_fen
            .checked_add(record.enterprise_part_fen)
            .map_err(|_| overflow("the enterprise's payments"))?;
        Ok(())
    }
}

impl Service {
    // ---------------------------------------------------------------- vouchers

    /// Expires every active or suspended voucher whose validity has ended; its unspent balance
    /// returns to the budget. Holds of running orders stay until those orders end.
    pub fn sweep(&mut self, actor: &Actor) -> Result<SweepReport> {
        let now = self.now_s();
        let due: Vec<(VoucherId, ProgramId, Fen)> = self
            .state
            .vouchers
            .values()
            .filter(|v| matches!(v.state, VoucherState::Active | VoucherState::Suspended) && v.expires_at_s <= now)
            .map(|v| (v.id, v.program, v.available_fen))
            .collect();
        let mut report = SweepReport::default();
        // Each commit stays within one ledger batch; a sweep that stops half-way leaves every
        // voucher either expired with its balance returned or untouched, and the next sweep goes on.
        for chunk in due.chunks(SWEEP_VOUCHERS_PER_COMMIT_MAX) {
            let mut change = self.begin();
            for &(voucher, program, returned) in chunk {
                if returned > Fen::ZERO {
                    change.ledger.push(return_to_budget(
                        change.next_sequence(),
                        0,
                        voucher.get(),
                        program.get(),
                        returned.fen(),
                    ));
                }
                self.record(&mut change, Event::VoucherExpired { voucher, returned_fen: returned }, now);
            }
            self.commit(actor, now, change)?;
            for &(voucher, _, returned) in chunk {
                report.expired.push(voucher);
                report.returned_fen = report.returned_fen.checked_add(returned)?;
            }
        }
        Ok(report)
    }

    pub fn suspend_voucher(&mut self, actor: &Actor, id: VoucherId, reason: &str) -> Result<()> {
        let voucher = self.voucher(id)?;
        if voucher.state != VoucherState::Active {
            return Err(ServiceError::new(
                ErrorCode::VoucherState,
                format!("voucher: {id} is {}", voucher.state_name()),
            ));
        }
        check_text("reason", reason)?;
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::VoucherSuspended { voucher: id, reason: reason.to_owned() }, now);
        self.commit(actor, now, change)
    }

    pub fn reinstate_voucher(&mut self, actor: &Actor, id: VoucherId) -> Result<()> {
        let voucher = self.voucher(id)?;
        if voucher.state != VoucherState::Suspended {
            return Err(ServiceError::new(
                ErrorCode::VoucherState,
                format!("voucher: {id} is {}, not suspended", voucher.state_name()),
            ));
        }
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::VoucherReinstated { voucher: id }, now);
        self.commit(actor, now, change)
    }

    /// Revokes a voucher: every hold of its orders is released and its whole balance returns to
    /// the budget. Its orders may go on running; the enterprise pays for them in full.
    pub fn revoke_voucher(&mut self, actor: &Actor, id: VoucherId, reason: &str) -> Result<Fen> {
        let voucher = self.voucher(id)?;
        if !matches!(voucher.state, VoucherState::Active | VoucherState::Suspended) {
            return Err(ServiceError::new(
                ErrorCode::VoucherState,
                format!("voucher: {id} is {}", voucher.state_name()),
            ));
        }
        check_text("reason", reason)?;
        let program = voucher.program;
        let released: Vec<(OrderId, Fen)> = self
            .state
            .orders
            .values()
            .filter(|o| o.voucher == id && o.hold_remaining_fen > Fen::ZERO)
            .map(|o| (o.id, o.hold_remaining_fen))
            .collect();
        let returned = released.iter().try_fold(voucher.available_fen, |sum, (_, amount)| sum.checked_add(*amount))?;
        let now = self.now_s();
        let mut change = self.begin();
        let sequence = change.next_sequence();
        let mut legs = Vec::new();
        for (leg, (order, amount)) in released.iter().enumerate() {
            let leg =
                u8::try_from(leg + 1).map_err(|_| ServiceError::new(ErrorCode::Internal, "too many open orders"))?;
            legs.push(release(sequence, leg, order.get(), id.get(), amount.fen()));
        }
        if returned > Fen::ZERO {
            legs.push(return_to_budget(sequence, 0, id.get(), program.get(), returned.fen()));
        }
        link(&mut legs);
        change.ledger.extend(legs);
        let event = Event::VoucherRevoked { voucher: id, reason: reason.to_owned(), released, returned_fen: returned };
        self.record(&mut change, event, now);
        self.commit(actor, now, change)?;
        Ok(returned)
    }

    // ---------------------------------------------------------------- settlement

    /// Issues the statement of `provider` and `program` for a month that has ended: one line per
    /// order, the totals and the voucher total in words.
    pub fn issue_statement(
        &mut self,
        actor: &Actor,
        provider: ProviderId,
        program: ProgramId,
        month: YearMonth,
    ) -> Result<StatementId> {
        if !self.state.providers.contains_key(&provider) {
            return Err(ServiceError::not_found(provider));
        }
        self.program(program)?;
        let now = self.now_s();
        if month >= YearMonth::of(now) {
            return Err(ServiceError::new(
                ErrorCode::MonthNotEnded,
                format!("month: {month} has not ended (it is {} in Asia/Shanghai)", YearMonth::of(now)),
            ));
        }
        let month_text = month.to_string();
        if let Some(existing) = self
            .state
            .statements
            .values()
            .find(|s| s.provider == provider && s.program == program && s.month == month_text)
        {
            return Err(ServiceError::new(
                ErrorCode::StatementExists,
                format!("month: {} already has statement {} for {provider} and {program}", month_text, existing.id),
            ));
        }
        let Some(lines) = self.state.unsettled.get(&(provider, program, month)) else {
            return Err(ServiceError::new(
                ErrorCode::StatementEmpty,
                format!("month: {provider} recorded no usage for {program} in {month_text}"),
            ));
        };
        let lines: Vec<_> = lines.values().cloned().collect();
        let sum = |f: fn(&crate::model::StatementLine) -> Fen| {
            lines.iter().map(f).try_fold(Fen::ZERO, |a, b| a.checked_add(b))
        };
        let (cost, voucher_total, enterprise_total) =
            (sum(|l| l.cost_fen)?, sum(|l| l.voucher_part_fen)?, sum(|l| l.enterprise_part_fen)?);
        let id = self.state.next_statement();
        let statement = Statement {
            id,
            provider,
            program,
            month: month_text,
            lines,
            cost_fen: cost,
            voucher_total_fen: voucher_total,
            enterprise_total_fen: enterprise_total,
            voucher_total_uppercase: voucher_total.to_chinese_uppercase(),
            state: StatementState::Issued,
            issued_at_s: now,
            approved_at_s: None,
        };
        let mut change = self.begin();
        self.record(&mut change, Event::StatementIssued { statement: Box::new(statement) }, now);
        self.commit(actor, now, change)?;
        Ok(id)
    }

    /// The authority approves a statement: its voucher total moves from the provider's receivable
    /// to the programme's settlement account, and the statement can never change again.
    pub fn approve_statement(&mut self, actor: &Actor, id: StatementId) -> Result<()> {
        let statement = self.state.statements.get(&id).ok_or_else(|| ServiceError::not_found(id))?;
        if statement.state != StatementState::Issued {
            return Err(ServiceError::new(ErrorCode::StatementState, format!("statement: {id} is already approved")));
        }
        let (provider, program, total) = (statement.provider, statement.program, statement.voucher_total_fen);
        let now = self.now_s();
        let mut change = self.begin();
        if total > Fen::ZERO {
            change.ledger.push(transfer(
                change.next_sequence(),
                0,
                TransferKind::Settle,
                account_id(AccountKind::ProviderReceivable, provider.get(), program.get()),
                account_id(AccountKind::Settlement, program.get(), 0),
                total.fen(),
            ));
        }
        self.record(&mut change, Event::StatementApproved { statement: id }, now);
        self.commit(actor, now, change)
    }
}

/// The one rounding rule for usage: `gpu_seconds × price_fen_per_gpu_hour / 3600`, rounded half
/// up to the fen, once per record, in `i128`.
pub fn cost_of(gpu_seconds: i64, price_fen_per_gpu_hour: Fen) -> Result<Fen> {
    let numerator = i128::from(gpu_seconds) * i128::from(price_fen_per_gpu_hour.fen());
    let fen = (numerator + 1_800).div_euclid(3_600);
    i64::try_from(fen)
        .map(Fen::new)
        .map_err(|_| ServiceError::new(ErrorCode::AmountOverflow, "gpu_seconds: the cost does not fit in 64-bit fen"))
}

fn rate_for(program: &Program, pool: &Pool) -> RateBp {
    match (pool.domestic, program.terms.domestic_chip_rate_bp) {
        (true, Some(rate)) => rate,
        _ => program.terms.subsidy_rate_bp,
    }
}

fn require_program_state(program: &Program, expected: ProgramState, verb: &str) -> Result<()> {
    if program.state == expected {
        Ok(())
    } else {
        Err(ServiceError::new(
            ErrorCode::ProgramState,
            format!(
                "program: {} is {:?}; only a {:?} programme can be told to {verb}",
                program.id, program.state, expected
            ),
        ))
    }
}

fn require_application_state(application: &Application, expected: ApplicationState, verb: &str) -> Result<()> {
    if application.state == expected {
        Ok(())
    } else {
        Err(ServiceError::new(
            ErrorCode::ApplicationState,
            format!(
                "application: {} is {:?}; only a {:?} application can be told to {verb}",
                application.id, application.state, expected
            ),
        ))
    }
}

fn check_text(field: &str, text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(ServiceError::field(field, "must not be empty"));
    }
    check_text_allow_empty(field, text)
}

fn check_text_allow_empty(field: &str, text: &str) -> Result<()> {
    if text.len() > TEXT_BYTES_MAX {
        return Err(ServiceError::field(field, format!("must be at most {TEXT_BYTES_MAX} bytes")));
    }
    if text.chars().any(char::is_control) {
        return Err(ServiceError::field(field, "must not contain control characters"));
    }
    Ok(())
}

/// Why a database could not be opened: another writer holds it (`database_locked`), or storage
/// failed.
fn open_error(error: suanli_store::StoreError) -> ServiceError {
    match error {
        suanli_store::StoreError::Locked { .. } => ServiceError::new(ErrorCode::DatabaseLocked, error.to_string()),
        error => ServiceError::new(ErrorCode::Storage, error.to_string()),
    }
}

fn storage_error(error: DurableError) -> ServiceError {
    if let DurableError::LockLost = error {
        return ServiceError::new(ErrorCode::StorageUnavailable, error.to_string());
    }
    match error.fault() {
        Some(suanli_store::Fault::Full) => return ServiceError::new(ErrorCode::StorageFull, error.to_string()),
        Some(suanli_store::Fault::Unavailable)
            if !matches!(error, DurableError::Store(suanli_store::StoreError::ReadOnly { .. })) =>
        {
            return ServiceError::new(ErrorCode::StorageUnavailable, error.to_string());
        }
        _ => {}
    }
    match error {
        // A reader beside the writer asked to change something.
        DurableError::Store(suanli_store::StoreError::ReadOnly { .. }) => {
            ServiceError::new(ErrorCode::DatabaseLocked, error.to_string())
        }
        error => ServiceError::new(ErrorCode::Storage, error.to_string()),
    }
}

/// A database written before usage ids were kept apart gets them from its log, once, when a
/// writer opens it (a reader only reads what is there).
fn backfill_usage(durable: &mut Durable<AnyStore>, state: &State, log: &[LogEntry]) -> Result<()> {
    let decided = state.usage_recorded + state.usage_refused;
    let storage = |e: suanli_store::StoreError| storage_error(e.into());
    if decided == 0 || durable.storage_mut().usage_count().map_err(storage)? >= decided {
        return Ok(());
    }
    let mut rows = Vec::new();
    for entry in log.iter().filter(|e| e.action.starts_with("usage.")) {
        let event: Event = serde_json::from_str(&entry.body)
            .map_err(|e| ServiceError::new(ErrorCode::Internal, format!("log entry {}: {e}", entry.sequence)))?;
        if let Some(((provider, id), decision)) = usage_decision(&event) {
            let entry = serde_json::to_string(&decision).expect("usage entries serialize");
            rows.push(UsageRow { provider: provider.get(), id, entry });
        }
    }
    match durable.storage_mut().backfill_usage(&rows) {
        Ok(()) | Err(suanli_store::StoreError::ReadOnly { .. }) => Ok(()),
        Err(error) => Err(storage(error)),
    }
}

fn bad_usage_row(id: &str) -> ServiceError {
    ServiceError::new(ErrorCode::Internal, format!("the stored decision for usage id {id:?} cannot be read"))
}

/// Rebuilds the state from a checkpoint (if there is one) and the log after it.
fn restore(opened: &Opened) -> Result<State> {
    let state = match &opened.checkpoint {
        Some(checkpoint) => State::from_checkpoint(&checkpoint.state).map_err(|e| {
            ServiceError::new(ErrorCode::Internal, format!("checkpoint at log entry {}: {e}", checkpoint.log_sequence))
        })?,
        None => State::default(),
    };
    replay_onto(state, &opened.log)
}

/// Applies the log's entries to `state`, in order.
pub(crate) fn replay_onto(mut state: State, log: &[LogEntry]) -> Result<State> {
    for entry in log {
        let event: Event = serde_json::from_str(&entry.body).map_err(|e| {
            ServiceError::new(ErrorCode::Internal, format!("audit log entry {} cannot be read: {e}", entry.sequence))
        })?;
        if event.action() != entry.action || event.object() != entry.object {
            return Err(ServiceError::new(
                ErrorCode::Internal,
                format!(
                    "audit log entry {} says {} {} but its body is {} {}",
                    entry.sequence,
                    entry.action,
                    entry.object,
                    event.action(),
                    event.object()
                ),
            ));
        }
        state.apply(&event, entry.time_s);
    }
    Ok(state)
}

impl Service {
    /// Compares the replayed state with the ledger; see [`crate::check::check_books`].
    pub fn check_books(&self) -> Vec<String> {
        crate::check::check_books(&self.state, self.durable.ledger())
    }
}

impl Service {
    /// Replays the whole log from its first entry, a page at a time (memory bounded by the state,
    /// not the log), and compares the state at every kept checkpoint with the checkpoint, and the
    /// entry it names with its hash. Answers what differs.
    pub fn verify_checkpoints(&mut self) -> Result<(usize, Vec<String>)> {
        let storage = |e: suanli_store::StoreError| ServiceError::new(ErrorCode::Storage, e.to_string());
        let checkpoints = self.durable.storage_mut().all_checkpoints().map_err(storage)?;
        let mut problems = Vec::new();
        let mut pending = checkpoints.iter().peekable();
        let mut state = State::default();
        let mut compare = |state: &State, hash: Option<&suanli_ledger::Hash>, checkpoint: &suanli_store::Checkpoint| {
            if hash.is_some_and(|hash| *hash != checkpoint.log_head) {
                problems.push(format!("checkpoint at log entry {}: the entry's hash differs", checkpoint.log_sequence));
            }
            if state.to_checkpoint() != checkpoint.state {
                problems.push(format!(
                    "checkpoint at log entry {}: its state differs from the log replayed up to it",
                    checkpoint.log_sequence
                ));
            }
        };
        while let Some(checkpoint) = pending.next_if(|c| c.log_sequence == 0) {
            compare(&state, None, checkpoint);
        }
        if pending.peek().is_some() {
            let mut reader = self.log_reader()?;
            let mut after = 0;
            'pages: loop {
                let (page, _) = reader.page(after, suanli_store::LOG_PAGE_ENTRIES_MAX).map_err(storage)?;
                if page.is_empty() {
                    break;
                }
                for entry in page {
                    state = replay_onto(state, std::slice::from_ref(&entry))?;
                    after = entry.sequence;
                    while let Some(checkpoint) = pending.next_if(|c| c.log_sequence == after) {
                        compare(&state, Some(&entry.hash), checkpoint);
                    }
                    if pending.peek().is_none() {
                        break 'pages;
                    }
                }
            }
        }
        for checkpoint in pending {
            problems.push(format!("checkpoint at log entry {} is beyond the end of the log", checkpoint.log_sequence));
        }
        Ok((checkpoints.len(), problems))
    }

    /// The audit log as stored, read back from the database.
    pub fn log_entries(&mut self) -> Result<Vec<LogEntry>> {
        self.durable.reload_log().map_err(storage_error)
    }
}

impl View {
    /// Refuses a role whose scope (authority, enterprise, provider) does not exist.
    fn check_role_scope(&self, role: Role) -> Result<()> {
        let exists = match role {
            Role::PlatformAdmin | Role::Auditor => true,
            Role::AuthorityAdmin(id) | Role::AuthorityReviewer(id) => self.state.authorities.contains_key(&id),
            Role::Enterprise(id) => self.state.enterprises.contains_key(&id),
            Role::Provider(id) => self.state.providers.contains_key(&id),
        };
        match exists {
            true => Ok(()),
            false => Err(ServiceError::new(ErrorCode::NotFound, format!("role: the scope of {role} does not exist"))),
        }
    }
}

impl Service {
    /// Registers a token for `role` by the SHA-256 of its secret (the caller made the secret and
    /// shows it once). The role's scope must exist.
    pub fn issue_token(&mut self, actor: &Actor, role: Role, secret_sha256_hex: &str) -> Result<u64> {
        self.check_role_scope(role)?;
        if crate::access::unhex::<32>(secret_sha256_hex).is_none() {
            return Err(ServiceError::field("secret_sha256_hex", "must be 64 hex characters"));
        }
        if self.state.token_by_hash.contains_key(secret_sha256_hex) {
            return Err(ServiceError::new(ErrorCode::AlreadyExists, "token: this secret is already registered"));
        }
        let now = self.now_s();
        let id = self.state.tokens.len() as u64 + 1;
        let token = Token {
            id,
            secret_sha256_hex: secret_sha256_hex.to_owned(),
            role: role.to_string(),
            issued_at_s: now,
            revoked: false,
        };
        let mut change = self.begin();
        self.record(&mut change, Event::TokenIssued { token }, now);
        self.commit(actor, now, change)?;
        Ok(id)
    }

    pub fn revoke_token(&mut self, actor: &Actor, id: u64) -> Result<()> {
        match self.state.tokens.get(&id) {
            None => return Err(ServiceError::not_found(format!("token-{id}"))),
            Some(token) if token.revoked => {
                return Err(ServiceError::new(
                    ErrorCode::AlreadyExists,
                    format!("token: token-{id} is already revoked"),
                ));
            }
            Some(_) => {}
        }
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::TokenRevoked { token: id }, now);
        self.commit(actor, now, change)
    }

    /// Adds a person who logs in with a password; `password_phc` is the argon2 hash (PHC string)
    /// the caller computed. Names are 1-64 characters of a-z, 0-9, '.', '_' and '-'.
    pub fn add_user(&mut self, actor: &Actor, name: &str, role: Role, password_phc: &str) -> Result<()> {
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(ServiceError::field("name", "must be 1-64 characters of a-z, 0-9, '.', '_' and '-'"));
        }
        if !password_phc.starts_with("$argon2") {
            return Err(ServiceError::field("password", "must be stored as an argon2 hash"));
        }
        if self.state.users.contains_key(name) {
            return Err(ServiceError::new(ErrorCode::AlreadyExists, format!("name: user {name:?} exists")));
        }
        self.check_role_scope(role)?;
        let now = self.now_s();
        let user = User {
            name: name.to_owned(),
            password_phc: password_phc.to_owned(),
            role: role.to_string(),
            created_at_s: now,
        };
        let mut change = self.begin();
        self.record(&mut change, Event::UserCreated { user }, now);
        self.commit(actor, now, change)
    }
}

impl View {
    /// The role of a live token's secret, if any.
    pub fn authenticate(&self, secret: &str) -> Option<Role> {
        let id = self.state.token_by_hash.get(&crate::access::sha256_hex(secret))?;
        Role::parse(&self.state.tokens[id].role).ok()
    }
}

impl Service {
    /// Registers (or replaces) the Ed25519 key a provider signs its usage with.
    pub fn register_provider_key(&mut self, actor: &Actor, provider: ProviderId, public_key_hex: &str) -> Result<()> {
        if !self.state.providers.contains_key(&provider) {
            return Err(ServiceError::not_found(provider));
        }
        crate::access::check_public_key(public_key_hex)?;
        let now = self.now_s();
        let mut change = self.begin();
        let event = Event::ProviderKeyRegistered { provider, public_key_hex: public_key_hex.to_ascii_lowercase() };
        self.record(&mut change, event, now);
        self.commit(actor, now, change)
    }
}

impl View {
    /// Checks a usage batch's signature against the provider's key; nothing is recorded.
    pub fn verify_usage(&self, provider: ProviderId, records: &[UsageInput], signature_hex: &str) -> Result<()> {
        let provider_record = self.state.providers.get(&provider).ok_or_else(|| ServiceError::not_found(provider))?;
        crate::access::verify_usage(provider_record.public_key_hex.as_deref(), provider, records, signature_hex)
    }
}
