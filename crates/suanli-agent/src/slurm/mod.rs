//! `suanli agent slurm`: a provider's connector beside its Slurm controller (with slurmdbd).
//!
//! One pass does three things, each from what the server and Slurm say now, so a pass can be
//! repeated, interrupted or run after a crash without harm:
//!
//! 1. **Orders become Slurm limits.** Each order placed or running at one of the provider's
//!    mapped pools gets an account named after it under a parent account (`suanli-ord-12` under
//!    `suanli`; users submit with `sbatch -A suanli-ord-12`),
//!    with `GrpTRES=gres/gpu=N` (the GPUs ordered, at once) and `GrpTRESMins=gres/gpu=N×hours×60`
//!    (the GPU-minutes ordered, in all; an extension raises it). The agent then starts a placed
//!    order and only after that lets the enterprise's Slurm users submit to the account, in the
//!    pool's partition only, so no job runs before its order does. An account whose order has
//!    ended is closed (`GrpTRES=gres/gpu=0`) and its jobs cancelled.
//! 2. **Accounting becomes signed usage.** Job allocations that finished since the cursor (less a
//!    lag that covers slurmdbd's delay) become one usage record each: GPUs allocated × the time
//!    they ran, clipped to the order's run, with the id `slurm:{cluster}:{job}:{start}` (stable
//!    across the agent's restarts and distinct for each run of a requeued job). Batches are signed
//!    and sent with retries and backoff; the cursor moves only once the server has answered, and
//!    the server answers a record it already has `exists`, so nothing is lost or counted twice.
//! 3. **Nodes become utilization telemetry.** Each mapped pool's busy GPUs are the GPUs allocated
//!    now on the nodes of its partition, to every job (not only orders' jobs).

mod cluster;
pub mod parse;
mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use suanli_domain::{EnterpriseId, OrderId, PoolId, ProviderId};
use suanli_wire::{Client, ClientError, USAGE_BATCH_RECORDS_MAX, UsageInput, UtilizationInput, retry};

use cluster::Slurm;
pub use state::State;

/// How the agent is set up.
pub struct Config {
    pub provider: ProviderId,
    pub key: SigningKey,
    /// Each pool of the provider the agent serves, with the Slurm partition that runs it.
    pub pools: BTreeMap<PoolId, String>,
    /// The Slurm users who may run an enterprise's orders.
    pub users: BTreeMap<EnterpriseId, Vec<String>>,
    /// The account under which each order's account is made.
    pub parent: String,
    pub state_file: PathBuf,
    /// How late a finished job may reach accounting: each query reaches back this far.
    pub lag_s: i64,
    /// How far back the first query (with no state file) reaches.
    pub first_window_s: i64,
    /// Attempts for each call to the server while it is unavailable or unreachable.
    pub attempts: u32,
    /// Print what would be done; change nothing in Slurm, on the server or in the state file.
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("slurm: {0}")]
    Slurm(String),
    #[error("server: {0}")]
    Server(#[from] ClientError),
    #[error("state file: {0}")]
    State(String),
}

/// What one pass did (or, dry, would do).
#[derive(Debug, Default, Serialize)]
pub struct PassReport {
    pub dry_run: bool,
    /// Orders placed or running at the mapped pools.
    pub orders_open: usize,
    pub accounts_added: Vec<String>,
    pub limits_changed: Vec<String>,
    pub orders_started: Vec<String>,
    /// `user@account`.
    pub users_added: Vec<String>,
    pub accounts_closed: Vec<String>,
    /// Finished job allocations read from accounting.
    pub jobs_read: usize,
    pub usage_sent: usize,
    pub usage_recorded: usize,
    pub usage_duplicates: usize,
    /// (record id, code, message).
    pub usage_refused: Vec<(String, String, String)>,
    /// The records a dry run would send.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub usage_planned: Vec<suanli_wire::UsageRecord>,
    /// (pool, busy GPUs) sent as telemetry.
    pub utilization: Vec<(String, u32)>,
    /// The Slurm commands a dry run would run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slurm_planned: Vec<String>,
}

/// An order as the API answers it, the fields the agent needs.
#[derive(Clone, Debug, Deserialize)]
struct OrderSeen {
    id: OrderId,
    enterprise: EnterpriseId,
    pool: PoolId,
    state: String,
    quote: QuoteSeen,
    #[serde(default)]
    extended_hours: u32,
    /// RFC 3339, as the API writes instants.
    #[serde(default, rename = "started_at", deserialize_with = "instant")]
    started_at_s: Option<i64>,
    #[serde(default, rename = "ended_at", deserialize_with = "instant")]
    ended_at_s: Option<i64>,
}

/// An RFC 3339 instant of the API's JSON (or null) as Unix seconds.
fn instant<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) => suanli_wire::parse_timestamp(&text)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time"))),
    }
}

#[derive(Clone, Debug, Deserialize)]
struct QuoteSeen {
    gpu_count: u32,
    hours: u32,
}

#[derive(Deserialize)]
struct OrderPage {
    items: Vec<OrderSeen>,
    total: u64,
}

impl OrderSeen {
    fn gpus(&self) -> u64 {
        u64::from(self.quote.gpu_count)
    }

    fn gpu_minutes(&self) -> u64 {
        self.gpus() * (u64::from(self.quote.hours) + u64::from(self.extended_hours)) * 60
    }
}

pub struct Agent {
    config: Config,
    client: Client,
}

impl Agent {
    pub fn new(config: Config, client: Client) -> Agent {
        Agent { config, client }
    }

    /// The Slurm account of an order: `suanli-ord-12` under the parent account `suanli`.
    fn account(&self, order: OrderId) -> String {
        format!("{}-{order}", self.config.parent)
    }

    /// The order whose account is `account`, if it is one of the agent's.
    fn order_of(&self, account: &str) -> Option<OrderId> {
        let order = account.strip_prefix(self.config.parent.as_str())?.strip_prefix('-')?;
        OrderId::parse(order).ok()
    }

    /// One pass at `now_s` (epoch seconds): orders to Slurm, accounting to usage, nodes to
    /// telemetry.
    pub fn pass(&self, now_s: i64) -> Result<PassReport, AgentError> {
        let mut report = PassReport { dry_run: self.config.dry_run, ..PassReport::default() };
        // One agent per state file at a time: two would read the same accounting twice.
        let _lock = State::lock(&self.config.state_file)?;
        let mut slurm = Slurm::new(self.config.dry_run);
        let open = self.open_orders()?;
        report.orders_open = open.len();
        self.map_orders(&mut slurm, &open, &mut report)?;
        self.report_usage(&slurm, &open, now_s, &mut report)?;
        self.report_utilization(&slurm, now_s, &mut report)?;
        report.slurm_planned = std::mem::take(&mut slurm.planned);
        Ok(report)
    }

    fn call<T>(&self, what: &str, call: impl FnMut() -> Result<T, ClientError>) -> Result<T, AgentError> {
        let attempts = self.config.attempts;
        Ok(retry(
            attempts,
            call,
            |error, wait, attempt| tracing::warn!(%error, wait_s = wait, attempt, attempts, "{what}: trying again"),
        )?)
    }

    /// The orders placed or running at the mapped pools, by id.
    fn open_orders(&self) -> Result<BTreeMap<OrderId, OrderSeen>, AgentError> {
        let mut open = BTreeMap::new();
        for state in ["placed", "running"] {
            let mut offset = 0u64;
            loop {
                let query = format!("state={state}&limit=500&offset={offset}");
                let value = self.call("reading orders", || self.client.orders(&query))?;
                let page: OrderPage = serde_json::from_value(value)
                    .map_err(|e| ClientError::Malformed(format!("GET /api/v1/orders: {e}")))?;
                let read = page.items.len() as u64;
                for order in page.items {
                    if self.config.pools.contains_key(&order.pool) {
                        open.insert(order.id, order);
                    } else {
                        tracing::warn!(order = %order.id, pool = %order.pool, "the order's pool is not mapped to a partition (--pool); left alone");
                    }
                }
                offset += read;
                if read == 0 || offset >= page.total {
                    break;
                }
            }
        }
        Ok(open)
    }

    fn map_orders(
        &self,
        slurm: &mut Slurm,
        open: &BTreeMap<OrderId, OrderSeen>,
        report: &mut PassReport,
    ) -> Result<(), AgentError> {
        let parent = &self.config.parent;
        let (parent_exists, accounts) = slurm.accounts(parent)?;
        if !parent_exists {
            slurm.add_parent(parent)?;
            tracing::info!(account = %parent, "parent account added");
        }
        for order in open.values() {
            let account = self.account(order.id);
            let partition = &self.config.pools[&order.pool];
            let (gpus, minutes) = (order.gpus(), order.gpu_minutes());
            let users = match accounts.get(&account) {
                None => {
                    slurm.add_account(&account, parent, gpus, minutes)?;
                    tracing::info!(order = %order.id, gpus, gpu_minutes = minutes, "account added");
                    report.accounts_added.push(account.clone());
                    Vec::new()
                }
                Some(found) => {
                    if found.gpus != Some(gpus) || found.gpu_minutes != Some(minutes) {
                        slurm.set_limits(&account, gpus, minutes)?;
                        tracing::info!(order = %order.id, gpus, gpu_minutes = minutes, "limits changed");
                        report.limits_changed.push(account.clone());
                    }
                    found.users.clone()
                }
            };
            if order.state == "placed" {
                if !self.config.dry_run {
                    match self.call("starting an order", || self.client.order_action(order.id, "start")) {
                        Ok(_) => {}
                        // Cancelled meanwhile, say: no user is let in; the next pass closes it.
                        Err(AgentError::Server(error @ ClientError::Refused { .. })) => {
                            tracing::warn!(order = %order.id, %error, "the order could not be started; no user let in");
                            continue;
                        }
                        Err(error) => return Err(error),
                    }
                }
                tracing::info!(order = %order.id, "order started");
                report.orders_started.push(account.clone());
            }
            let Some(wanted) = self.config.users.get(&order.enterprise) else {
                tracing::warn!(order = %order.id, enterprise = %order.enterprise, "no Slurm user is mapped to the enterprise (--users); nobody can run the order");
                continue;
            };
            for user in wanted {
                if !users.iter().any(|(u, p)| u == user && p == partition) {
                    slurm.add_user(user, &account, partition)?;
                    tracing::info!(order = %order.id, user, partition, "user added");
                    report.users_added.push(format!("{user}@{account}"));
                }
            }
        }
        // An open account whose order is not among the open ones is closed once the server says
        // the order ended (or does not know it): not merely because its pool is no longer mapped.
        let open_accounts: BTreeSet<String> = open.keys().map(|id| self.account(*id)).collect();
        for (account, found) in &accounts {
            if found.gpus == Some(0) || open_accounts.contains(account) {
                continue;
            }
            let Some(order) = self.order_of(account) else { continue };
            let ended = match self.call("reading an order", || self.client.order(order)) {
                Ok(value) => matches!(value["state"].as_str(), Some("completed" | "cancelled")),
                Err(AgentError::Server(ClientError::Refused { status: 404, .. })) => true,
                Err(error) => return Err(error),
            };
            if ended {
                slurm.close(account)?;
                tracing::info!(account, "order ended: account closed");
                report.accounts_closed.push(account.clone());
            } else {
                tracing::warn!(account, "the order is still open but its pool is not mapped (--pool); left open");
            }
        }
        Ok(())
    }

    fn report_usage(
        &self,
        slurm: &Slurm,
        open: &BTreeMap<OrderId, OrderSeen>,
        now_s: i64,
        report: &mut PassReport,
    ) -> Result<(), AgentError> {
        let mut state = State::load(&self.config.state_file)?;
        let cursor = state.cursor_s.unwrap_or(now_s - self.config.first_window_s);
        let jobs = slurm.finished_jobs(cursor - self.config.lag_s, now_s)?;
        report.jobs_read = jobs.len();
        let mut orders: BTreeMap<OrderId, Option<OrderSeen>> =
            open.iter().map(|(id, order)| (*id, Some(order.clone()))).collect();
        let mut records = Vec::new();
        let mut ends = BTreeMap::new();
        // The earliest end of a record the server could not take yet: the cursor stays before it.
        let mut deferred_end: Option<i64> = None;
        for job in &jobs {
            let Some(order_id) = self.order_of(&job.account) else { continue };
            if job.gpus == 0 || job.start_s <= 0 || job.end_s <= job.start_s {
                continue;
            }
            let id = format!("slurm:{}:{}:{}", job.cluster, job.job_id, job.start_s);
            if state.answered.contains_key(&id) {
                continue;
            }
            let order = match orders.get(&order_id) {
                Some(order) => order.clone(),
                None => {
                    let found = match self.call("reading an order", || self.client.order(order_id)) {
                        Ok(value) => serde_json::from_value::<OrderSeen>(value).ok(),
                        Err(AgentError::Server(ClientError::Refused { .. })) => None,
                        Err(error) => return Err(error),
                    };
                    orders.insert(order_id, found.clone());
                    found
                }
            };
            // The run within the order's: what ran before it started or after it ended is not
            // the order's to pay. An order the server does not show is sent as it is, for the
            // server to refuse with its reason.
            let start = order.as_ref().and_then(|o| o.started_at_s).map_or(job.start_s, |s| job.start_s.max(s));
            let end = order.as_ref().and_then(|o| o.ended_at_s).map_or(job.end_s, |e| job.end_s.min(e));
            if end <= start {
                tracing::info!(record = %id, order = %order_id, "the job ran outside its order's run: nothing to report");
                ends.insert(id.clone(), job.end_s);
                if !self.config.dry_run {
                    state.answered.insert(id, job.end_s);
                }
                continue;
            }
            if (start, end) != (job.start_s, job.end_s) {
                tracing::info!(record = %id, order = %order_id, "clipped to the order's run");
            }
            ends.insert(id.clone(), job.end_s);
            records.push(UsageInput {
                id,
                order: order_id,
                gpu_seconds: i64::from(job.gpus) * (end - start),
                period_start_s: start,
                period_end_s: end,
            });
        }
        if self.config.dry_run {
            report.usage_planned = records.iter().map(suanli_wire::UsageRecord::of).collect();
            return Ok(());
        }
        for chunk in records.chunks(USAGE_BATCH_RECORDS_MAX.min(1_000)) {
            let results =
                self.call("sending usage", || self.client.send_usage(self.config.provider, &self.config.key, chunk))?;
            for result in results {
                report.usage_sent += 1;
                match result.status.as_str() {
                    "ok" => report.usage_recorded += 1,
                    "exists" => report.usage_duplicates += 1,
                    _ => {
                        let code = result.code.unwrap_or_default();
                        let message = result.message.unwrap_or_default();
                        // A period the server's clock has not reached yet is sent again later.
                        if code == "usage_in_future" {
                            tracing::warn!(record = %result.id, code, message, "usage refused for now");
                            let end = ends.get(&result.id).copied().unwrap_or(now_s);
                            deferred_end = Some(deferred_end.map_or(end, |d: i64| d.min(end)));
                            continue;
                        }
                        tracing::warn!(record = %result.id, code, message, "usage refused");
                        report.usage_refused.push((result.id.clone(), code, message));
                    }
                }
                let end = ends.get(&result.id).copied().unwrap_or(now_s);
                state.answered.insert(result.id, end);
            }
            state.save(&self.config.state_file)?;
        }
        // The cursor moves to where the previous read ended, not to now: a job that ends now but
        // reaches accounting late is read again by the next pass (its id keeps it from counting
        // twice), and never past a record the server could not take yet.
        let mut next = state.last_read_s.unwrap_or(cursor).max(cursor).min(now_s);
        if let Some(end) = deferred_end {
            next = next.min(end);
        }
        state.cursor_s = Some(next);
        state.last_read_s = Some(now_s);
        state.forget_before(next - self.config.lag_s);
        state.save(&self.config.state_file)
    }

    fn report_utilization(&self, slurm: &Slurm, now_s: i64, report: &mut PassReport) -> Result<(), AgentError> {
        if self.config.pools.is_empty() {
            return Ok(());
        }
        let nodes = slurm.nodes()?;
        let samples: Vec<UtilizationInput> = self
            .config
            .pools
            .iter()
            .map(|(pool, partition)| {
                let busy: u64 =
                    nodes.iter().filter(|n| n.partitions.iter().any(|p| p == partition)).map(|n| n.busy_gpus).sum();
                UtilizationInput { pool: *pool, at_s: now_s, busy_gpus: u32::try_from(busy).unwrap_or(u32::MAX) }
            })
            .collect();
        report.utilization = samples.iter().map(|s| (s.pool.to_string(), s.busy_gpus)).collect();
        if self.config.dry_run {
            return Ok(());
        }
        let results = self.call("sending utilization", || {
            self.client.send_utilization(self.config.provider, &self.config.key, &samples)
        })?;
        for result in results.into_iter().filter(|r| r.status != "ok" && r.status != "exists") {
            tracing::warn!(pool = result.pool, code = ?result.code, message = ?result.message, "utilization refused");
        }
        Ok(())
    }
}
