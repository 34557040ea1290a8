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
    RegionCode, Rule, SiteId, StatementId, Uscc, Verdict, VoucherId, Wording,
};
use suanli_ledger::{Event as LedgerEvent, Outcome};
use suanli_store::{
    AnyStore, Durable, DurableError, FsyncMode, LogEntry, NewLogEntry, Opened, Recovered, SqliteStore, Storage,
    UsageRow,
};

use crate::access::{Role, User};
use crate::books::{AccountKind, TransferKind, account_id, create_account, link, release, return_to_budget, transfer};
use crate::calendar::{YearMonth, format_timestamp, shanghai_year};
use crate::clock::Clock;
use crate::error::{ErrorCode, Result, ServiceError};
use crate::event::{
    Event, NewApplication, NewEnterprise, NewOrder, NewPool, NewProgram, NewProvider, NewSite, NewStatement, NewToken,
    NewVoucher,
};
use crate::model::{
    Anomaly, Application, ApplicationState, Authority, Enterprise, OperatorKind, Order, OrderState, Pool, Program,
    ProgramState, Provider, ProviderRule, Purpose, Quote, Site, SiteSpec, StatementState, UsageInput, UsageOutcome,
    UsageRecord, Voucher, VoucherState,
};
use crate::program_file::parse_program;
use crate::state::{State, UsageEntry, UsageFacts, usage_decision};

mod applications;
mod archive;
pub use archive::{ARCHIVE_AFTER_S, OrderPage, OrderQuery, Standing, TOKEN_PURGE_AFTER_S, UsagePart};
mod choose;
mod group;
mod lottery;
mod orders;
mod programs;
mod providers;
mod schedule;
mod tiered;
mod trading;
pub use schedule::{REQUEST_WAIT_DEFAULT_S, REQUEST_WAIT_MAX_S, REQUESTS_WAITING_MAX, RoundSettings};
pub use trading::OfferInput;
mod statements;
mod usage;
mod utilization;
pub use utilization::UTILIZATION_BATCH_SAMPLES_MAX;
mod vouchers;
pub use applications::ProgramPreview;
pub use choose::{EGRESS_FEN_PER_GB, Needs, PLACEMENT_POLICY, PoolChoice, PoolRequest, Work, work_classes};

/// Who asks for a change; recorded on every audit-log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    pub fn operator() -> Actor {
        Actor("operator".to_owned())
    }

    /// The server itself, for what it notices on its own (a login throttled).
    pub fn server() -> Actor {
        Actor("server".to_owned())
    }

    /// Someone not logged in: an enterprise registering itself through the console.
    pub fn visitor() -> Actor {
        Actor("visitor".to_owned())
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
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct SweepReport {
    pub expired: Vec<VoucherId>,
    pub returned_fen: Fen,
}

/// Limits on one command, so no request can hold the writer for long.
/// At most two ledger transfers per usage record, so a full batch stays within the ledger's
/// `BATCH_EVENTS_MAX` of 8,190 events and commits as one transaction.
pub use suanli_wire::USAGE_BATCH_RECORDS_MAX;
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
    /// Orders and statement lines this change archives, written to storage with the commit.
    archive: suanli_store::orders::Archive,
    /// The same decisions, for a later record of the same change with the same id.
    decided: std::collections::HashMap<(ProviderId, String), UsageEntry>,
}

impl Change {
    fn empty() -> Change {
        Change {
            first_sequence: 0,
            events: Vec::new(),
            ledger: Vec::new(),
            actors: Vec::new(),
            usage_rows: Vec::new(),
            archive: suanli_store::orders::Archive::default(),
            decided: std::collections::HashMap::new(),
        }
    }

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
    /// How far past the server's clock a usage period may end (a provider's clock running ahead).
    clock_skew_s: i64,
    /// The placement engine's policy weights: [`PLACEMENT_POLICY`] unless the deployment (or a
    /// simulation's variant) sets others.
    placement_policy: suanli_placement::model::Policy,
    /// The placement engine's view of the network, reused while pools and sites stay as they
    /// were (shared by the copies the writer publishes).
    network: choose::NetworkCache,
}

/// The default clock-skew tolerance for usage periods: five minutes.
pub const CLOCK_SKEW_DEFAULT_S: i64 = 300;

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
    /// Signs and publishes heads at every checkpoint and on demand, when set.
    heads: Option<crate::heads::HeadSigner>,
    /// Commands gathered into one commit (`in_one_commit`), when they are.
    group: Option<group::Group>,
    /// How the scheduling loop runs.
    rounds: RoundSettings,
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

    /// Opens the database a URL names ([`suanli_store::Location`]): `postgres://…` for
    /// PostgreSQL, `sqlite://PATH` or a plain path for the embedded file.
    pub fn open_database(database: &str, clock: Arc<dyn Clock>) -> Result<Service> {
        let store = location(database)?.open_writer(FsyncMode::Full).map_err(open_error)?;
        Service::open_store(store, clock)
    }

    /// Opens a database to read beside a running writer, for audits and CLI reads. It takes no
    /// lock and the store refuses any change (`database_locked`); on PostgreSQL each load is one
    /// repeatable-read snapshot, on SQLite WAL lets readers in beside the writer.
    pub fn open_reader(database: &str, clock: Arc<dyn Clock>) -> Result<Service> {
        let store =
            location(database)?.open_reader().map_err(|e| ServiceError::new(ErrorCode::Storage, e.to_string()))?;
        Service::open_store(store, clock)
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
            view: View {
                state,
                clock,
                clock_skew_s: CLOCK_SKEW_DEFAULT_S,
                placement_policy: PLACEMENT_POLICY,
                network: choose::NetworkCache::default(),
            },
            policy: CheckpointPolicy::default(),
            checkpointed,
            heads: None,
            group: None,
            rounds: RoundSettings::default(),
        })
    }

    /// Signs a head at every checkpoint (and on [`Service::publish_head`]) and publishes it.
    pub fn set_head_signer(&mut self, signer: crate::heads::HeadSigner) {
        self.heads = Some(signer);
    }

    pub fn head_signer(&self) -> Option<&crate::heads::HeadSigner> {
        self.heads.as_ref()
    }

    /// Signs the committed log's size and Merkle root (with the journal's head and the state
    /// hash) and publishes the head outside the database.
    pub fn publish_head(&mut self) -> Result<crate::heads::Head> {
        let signer =
            self.heads.clone().ok_or_else(|| ServiceError::new(ErrorCode::Internal, "no head signer is configured"))?;
        let log_size = self.durable.log_count();
        let storage = |e: suanli_store::StoreError| ServiceError::new(ErrorCode::StorageUnavailable, e.to_string());
        let mut reader = self.log_reader()?;
        let log_root = suanli_store::merkle::root(&mut reader, log_size).map_err(storage)?;
        let facts = crate::heads::HeadFacts {
            log_size,
            log_root,
            log_head: self.durable.log_head(),
            journal_batches: self.durable.batch_count(),
            journal_head: self.durable.journal_head(),
            state_hash: suanli_ledger::state_hash(self.durable.ledger()),
            time_s: self.now_s(),
        };
        signer.publish(&facts).map_err(|e| ServiceError::new(ErrorCode::Storage, format!("publishing a head: {e}")))
    }

    /// How far past the server's clock a usage period may end before it is refused
    /// `usage_in_future` (such a refusal is not kept: the same id may be sent again later).
    pub fn set_clock_skew_tolerance(&mut self, seconds: i64) {
        self.view.clock_skew_s = seconds.max(0);
    }

    /// The placement policy's weights for the orders placed from now on (a simulation tries
    /// variants side by side).
    pub fn set_placement_policy(&mut self, policy: suanli_placement::model::Policy) {
        self.view.placement_policy = policy;
    }

    /// When the writer checkpoints its state.
    pub fn set_checkpoint_policy(&mut self, policy: CheckpointPolicy) {
        self.policy = policy;
    }

    /// Writes a checkpoint of the state as of the last commit, bound to both chains' heads; a
    /// start then loads it and replays only the log after it.
    pub fn checkpoint(&mut self) -> Result<u64> {
        let now = self.now_s();
        // Nothing new since the last checkpoint (a stop right after one): it stands.
        let at = self.durable.log_count();
        if at > 0 && at == self.checkpointed.0 {
            return Ok(at);
        }
        let text = self.committed.to_checkpoint();
        let checkpoint = self.durable.checkpoint(now, text).map_err(storage_error)?;
        self.checkpointed = (checkpoint.log_sequence, now);
        if self.heads.is_some() {
            self.publish_head()?;
        }
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
        // What has become final leaves memory first, so no checkpoint holds it.
        self.archive(&Actor::server())?;
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
        View {
            state: self.committed.clone(),
            clock: self.view.clock.clone(),
            clock_skew_s: self.view.clock_skew_s,
            placement_policy: self.view.placement_policy,
            network: self.view.network.clone(),
        }
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
        let mut known: std::collections::HashMap<(ProviderId, String), UsageEntry> = rows
            .into_iter()
            .map(|row| {
                let provider = ProviderId::new(row.provider).ok_or_else(|| bad_usage_row(&row.id))?;
                let entry: UsageEntry = serde_json::from_str(&row.entry).map_err(|_| bad_usage_row(&row.id))?;
                Ok(((provider, row.id), entry))
            })
            .collect::<Result<_>>()?;
        // Decided earlier in a group of commands, not stored yet.
        if let Some(gathered) = self.gathered_decisions() {
            for (provider, id) in keys {
                if let Some(entry) = gathered.get(&(*provider, (*id).to_owned())) {
                    known.insert((*provider, (*id).to_owned()), entry.clone());
                }
            }
        }
        Ok(known)
    }
}

impl View {
    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn placement_policy(&self) -> suanli_placement::model::Policy {
        self.placement_policy
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
            // In a group, a command's events follow those gathered before it.
            first_sequence: self.durable.log_count()
                + 1
                + self.group.as_ref().map_or(0, |g| g.change.events.len() as u64),
            ..Change::empty()
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
                order: entry.facts().0.get(),
                period_start_s: entry.facts().2,
            });
            change.decided.insert((provider, id), entry);
        }
        change.events.push(event);
    }

    /// Returns memory to the last commit (usage decisions were never in memory beyond the change).
    fn forget(&mut self, _change: &Change) {
        self.state = self.committed.clone();
        if let Some(group) = &mut self.group {
            // What the group gathered is gone from memory with it: the group fails whole.
            group.failed = true;
            group.change = Change { first_sequence: group.change.first_sequence, ..Change::empty() };
        }
    }

    fn commit(&mut self, actor: &Actor, now_s: i64, change: Change) -> Result<()> {
        if self.group.is_some() {
            return self.gather(actor, now_s, change);
        }
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
        let result = self.durable.commit(now_ns, &change.ledger, &change.usage_rows, &change.archive, |batch| {
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
                        body: event.to_body(),
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
        let created =
            |ledger: &[LedgerEvent]| ledger.iter().any(|e| matches!(e, LedgerEvent::CreateAccount(n) if n.id == id));
        let pending = created(&change.ledger) || self.group.as_ref().is_some_and(|g| created(&g.change.ledger));
        if self.durable.ledger().account(id).is_none() && !pending {
            change.ledger.push(create_account(kind, a, b));
        }
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

/// The rate a pool's usage is subsidized at under a voucher: the voucher's own rate (chosen at
/// approval) or the programme's; on a chip the registry says is domestic, the programme's
/// domestic bonus on top, never above the programme's domestic rate (a pool's own flag, from
/// before the registry, is not believed).
fn rate_for(program: &Program, voucher: &Voucher, pool: &Pool) -> RateBp {
    let domestic = crate::chips::find(&pool.chip).is_some_and(|chip| chip.domestic);
    let base = voucher.rate_bp.unwrap_or(program.terms.subsidy_rate_bp);
    match (domestic, program.terms.domestic_chip_rate_bp) {
        (true, Some(rate)) => {
            let bonus = rate.basis_points().saturating_sub(program.terms.subsidy_rate_bp.basis_points());
            RateBp::new(i64::from(base.basis_points()) + i64::from(bonus)).map_or(rate, |r| r.min(rate))
        }
        _ => base,
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

fn location(database: &str) -> Result<suanli_store::Location> {
    suanli_store::Location::parse(database).map_err(|e| ServiceError::field("database", e))
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
        let event = Event::from_body(&entry.body)
            .map_err(|e| ServiceError::new(ErrorCode::Internal, format!("log entry {}: {e}", entry.sequence)))?;
        if let Some(((provider, id), decision)) = usage_decision(&event) {
            let entry = serde_json::to_string(&decision).expect("usage entries serialize");
            let facts = decision.facts();
            rows.push(UsageRow { provider: provider.get(), id, entry, order: facts.0.get(), period_start_s: facts.2 });
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
        let event = Event::from_body(&entry.body).map_err(|e| {
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
    /// entry it names with its hash, and every archived order with the order replayed up to its
    /// archiving. Answers what differs.
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
            // Everything but the occupancies is compared exactly; they are derived data, and a
            // version-1 checkpoint restores them as a conservative summary that later
            // checkpoints carry on, where a replay from the start has them exactly.
            if state.comparable_checkpoint() != State::comparable(&checkpoint.state) {
                problems.push(format!(
                    "checkpoint at log entry {}: its state differs from the log replayed up to it",
                    checkpoint.log_sequence
                ));
            }
        };
        while let Some(checkpoint) = pending.next_if(|c| c.log_sequence == 0) {
            compare(&state, None, checkpoint);
        }
        let mut reader = self.log_reader()?;
        let last_archive = ["orders.archived", "statements.archived"]
            .into_iter()
            .map(|action| reader.last_of(action).map_err(storage))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0);
        let mut differing = Vec::new();
        if pending.peek().is_some() || last_archive > 0 {
            let mut after = 0;
            'pages: loop {
                let (page, _) = reader.page(after, suanli_store::LOG_PAGE_ENTRIES_MAX).map_err(storage)?;
                if page.is_empty() {
                    break;
                }
                for entry in page {
                    if let Ok(Event::OrdersArchived { orders }) = Event::from_body(&entry.body)
                        && entry.action == "orders.archived"
                    {
                        for id in orders {
                            let kept = reader.archived_order(id.get()).map_err(storage)?;
                            let replayed = state.orders.get(&id).map(|o| serde_json::to_string(o).expect("serializes"));
                            if kept != replayed {
                                differing.push(format!(
                                    "archived {id}: the stored order differs from the log replayed up to entry {}",
                                    entry.sequence
                                ));
                            }
                        }
                    }
                    if let Ok(Event::StatementsArchived { statements }) = Event::from_body(&entry.body)
                        && entry.action == "statements.archived"
                    {
                        for id in statements {
                            let of = suanli_store::orders::LinesOf::Statement(id.get());
                            let mut kept: Vec<String> =
                                reader.archived_lines(of).map_err(storage)?.into_iter().map(|(_, l)| l).collect();
                            let mut replayed: Vec<String> = state.statements.get(&id).map_or_else(Vec::new, |st| {
                                st.lines.iter().map(|l| serde_json::to_string(l).expect("serializes")).collect()
                            });
                            kept.sort();
                            replayed.sort();
                            if kept != replayed {
                                differing.push(format!(
                                    "archived lines of {id}: the stored lines differ from the log replayed up to entry {}",
                                    entry.sequence
                                ));
                            }
                        }
                    }
                    state = replay_onto(state, std::slice::from_ref(&entry))?;
                    after = entry.sequence;
                    while let Some(checkpoint) = pending.next_if(|c| c.log_sequence == after) {
                        compare(&state, Some(&entry.hash), checkpoint);
                    }
                    if pending.peek().is_none() && after >= last_archive {
                        break 'pages;
                    }
                }
            }
        }
        for checkpoint in pending {
            problems.push(format!("checkpoint at log entry {} is beyond the end of the log", checkpoint.log_sequence));
        }
        problems.append(&mut differing);
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
    /// Issues a token that lasts [`TOKEN_TTL_DEFAULT_S`](crate::access::TOKEN_TTL_DEFAULT_S).
    pub fn issue_token(&mut self, actor: &Actor, role: Role, secret_sha256_hex: &str) -> Result<u64> {
        self.issue_token_for(actor, role, secret_sha256_hex, crate::access::TOKEN_TTL_DEFAULT_S)
    }

    /// Issues a token for `role` that stops working `ttl_s` seconds from now.
    pub fn issue_token_for(&mut self, actor: &Actor, role: Role, secret_sha256_hex: &str, ttl_s: i64) -> Result<u64> {
        self.issue_token_to(actor, role, secret_sha256_hex, ttl_s, None)
    }

    /// A login token for the person `name` (its role is the person's): refused if the person
    /// was disabled meanwhile. Disabling the person or setting its password revokes it.
    pub fn issue_login_token(&mut self, name: &str, secret_sha256_hex: &str, ttl_s: i64) -> Result<(u64, Role)> {
        let user = self.state.users.get(name).ok_or_else(|| ServiceError::not_found(format!("user {name:?}")))?;
        if user.disabled {
            return Err(ServiceError::new(ErrorCode::Forbidden, format!("name: user {name:?} is disabled")));
        }
        let role = Role::parse(&user.role)?;
        let id = self.issue_token_to(&Actor::of(role), role, secret_sha256_hex, ttl_s, Some(name))?;
        Ok((id, role))
    }

    fn issue_token_to(
        &mut self,
        actor: &Actor,
        role: Role,
        secret_sha256_hex: &str,
        ttl_s: i64,
        user: Option<&str>,
    ) -> Result<u64> {
        self.check_role_scope(role)?;
        if !(60..=crate::access::TOKEN_TTL_MAX_S).contains(&ttl_s) {
            return Err(ServiceError::field(
                "expires_in_s",
                format!("must be between 60 and {} seconds", crate::access::TOKEN_TTL_MAX_S),
            ));
        }
        if crate::access::unhex::<32>(secret_sha256_hex).is_none() {
            return Err(ServiceError::field("secret_sha256_hex", "must be 64 hex characters"));
        }
        if self.state.token_by_hash.contains_key(secret_sha256_hex) {
            return Err(ServiceError::new(ErrorCode::AlreadyExists, "token: this secret is already registered"));
        }
        let now = self.now_s();
        let id = self.state.tokens.len() as u64 + self.state.tokens_purged + 1;
        let token = NewToken {
            id,
            secret_sha256_hex: secret_sha256_hex.to_owned(),
            role: role.to_string(),
            issued_at_s: now,
            expires_at_s: Some(now.saturating_add(ttl_s)),
            user: user.map(str::to_owned),
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
    /// the caller computed. Names are 1-64 characters of a-z, 0-9, '.', '_' and '-', the first a
    /// letter or digit.
    pub fn add_user(&mut self, actor: &Actor, name: &str, role: Role, password_phc: &str) -> Result<()> {
        let now = self.now_s();
        let mut change = self.begin();
        self.add_user_into(&mut change, name, role, password_phc, now)?;
        self.commit(actor, now, change)
    }

    /// Checks a new person and records it into `change` (nothing is recorded when refused).
    fn add_user_into(
        &mut self,
        change: &mut Change,
        name: &str,
        role: Role,
        password_phc: &str,
        now: i64,
    ) -> Result<()> {
        // It starts with a letter or digit, so no name is `.` or `..` in a path.
        let name_ok = name.len() <= 64
            && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(ServiceError::field(
                "name",
                "must be 1-64 characters of a-z, 0-9, '.', '_' and '-', the first a letter or digit",
            ));
        }
        if !password_phc.starts_with("$argon2") {
            return Err(ServiceError::field("password", "must be stored as an argon2 hash"));
        }
        if self.state.users.contains_key(name) {
            return Err(ServiceError::new(ErrorCode::AlreadyExists, format!("name: user {name:?} exists")));
        }
        self.check_role_scope(role)?;
        let user = User {
            name: name.to_owned(),
            password_phc: password_phc.to_owned(),
            role: role.to_string(),
            created_at_s: now,
            disabled: false,
        };
        self.record(change, Event::UserCreated { user }, now);
        Ok(())
    }

    /// Disables a person's login and revokes the sessions it has.
    pub fn disable_user(&mut self, actor: &Actor, name: &str) -> Result<()> {
        match self.state.users.get(name) {
            None => return Err(ServiceError::not_found(format!("user {name:?}"))),
            Some(user) if user.disabled => {
                return Err(ServiceError::new(
                    ErrorCode::AlreadyExists,
                    format!("name: user {name:?} is already disabled"),
                ));
            }
            Some(_) => {}
        }
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::UserDisabled { name: name.to_owned() }, now);
        self.revoke_sessions(&mut change, name, now);
        self.commit(actor, now, change)
    }

    pub fn enable_user(&mut self, actor: &Actor, name: &str) -> Result<()> {
        match self.state.users.get(name) {
            None => return Err(ServiceError::not_found(format!("user {name:?}"))),
            Some(user) if !user.disabled => {
                return Err(ServiceError::new(
                    ErrorCode::AlreadyExists,
                    format!("name: user {name:?} is not disabled"),
                ));
            }
            Some(_) => {}
        }
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::UserEnabled { name: name.to_owned() }, now);
        self.commit(actor, now, change)
    }

    /// Sets a person's password (`password_phc`, the argon2 hash the caller computed) and
    /// revokes the sessions it has.
    pub fn set_password(&mut self, actor: &Actor, name: &str, password_phc: &str) -> Result<()> {
        if !self.state.users.contains_key(name) {
            return Err(ServiceError::not_found(format!("user {name:?}")));
        }
        if !password_phc.starts_with("$argon2") {
            return Err(ServiceError::field("password", "must be stored as an argon2 hash"));
        }
        let now = self.now_s();
        let mut change = self.begin();
        let event = Event::UserPasswordSet { name: name.to_owned(), password_phc: password_phc.to_owned() };
        self.record(&mut change, event, now);
        self.revoke_sessions(&mut change, name, now);
        self.commit(actor, now, change)
    }

    /// Revokes every live login token of the person `name` within `change`.
    fn revoke_sessions(&mut self, change: &mut Change, name: &str, now: i64) {
        let live: Vec<u64> = self
            .state
            .tokens
            .values()
            .filter(|t| !t.revoked && t.user.as_deref() == Some(name) && t.expires_at_s.is_none_or(|e| e > now))
            .map(|t| t.id)
            .collect();
        for token in live {
            self.record(change, Event::TokenRevoked { token }, now);
        }
    }
}

impl View {
    /// The role of a live token's secret, if any.
    pub fn authenticate(&self, secret: &str) -> Option<Role> {
        let id = self.state.token_by_hash.get(&crate::access::sha256_hex(secret))?;
        let token = &self.state.tokens[id];
        if token.expires_at_s.is_some_and(|expires| self.now_s() >= expires) {
            return None;
        }
        Role::parse(&token.role).ok()
    }
}

impl Service {
    /// Keeps an anomaly noticed outside a command (a login throttled, say) as evidence: an
    /// `anomaly.flagged` entry in the audit log.
    pub fn flag_anomaly(&mut self, actor: &Actor, kind: &str, object: &str, detail: &str) -> Result<()> {
        for (field, text) in [("kind", kind), ("object", object), ("detail", detail)] {
            if text.is_empty() || text.len() > 1_000 || text.chars().any(|c| c.is_control()) {
                return Err(ServiceError::field(field, "must be 1-1000 characters without control characters"));
            }
        }
        let now = self.now_s();
        let anomaly =
            Anomaly { time_s: now, kind: kind.to_owned(), object: object.to_owned(), detail: detail.to_owned() };
        let mut change = self.begin();
        self.record(&mut change, Event::AnomalyFlagged { anomaly }, now);
        self.commit(actor, now, change)
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
