//! `suanli agent slurm`: the provider's Slurm connector (`suanli_agent::slurm`) on the command
//! line. Logs go to stderr as JSON lines through `tracing` (`SUANLI_LOG` sets the level, for
//! example `debug`); each pass's report goes to stdout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use suanli_agent::slurm::{Agent, Config, PassReport};
use suanli_domain::{EnterpriseId, PoolId, ProviderId};

#[derive(clap::Subcommand)]
pub enum AgentCommand {
    /// Beside a Slurm controller with accounting: orders placed at the provider's pools become
    /// Slurm accounts with their GPU limits, finished jobs become signed usage, and the nodes'
    /// allocated GPUs become utilization telemetry. Slurm's commands (sacctmgr, sacct, scontrol,
    /// scancel) are run as they are found on PATH, with SLURM_CONF as the environment sets it.
    Slurm(SlurmOptions),
}

#[derive(clap::Args)]
pub struct SlurmOptions {
    #[command(flatten)]
    connection: crate::usage_send::Connection,
    /// A pool served by a Slurm partition, as POOL=PARTITION (pol-3=gpu); repeat for each pool.
    /// Orders at pools not named here are left alone.
    #[arg(long = "pool", value_name = "POOL=PARTITION", required = true)]
    pools: Vec<String>,
    /// The Slurm users who run an enterprise's orders, as ENTERPRISE=USER[,USER…]
    /// (ent-5=alice,bob); repeat for each enterprise.
    #[arg(long = "users", value_name = "ENTERPRISE=USERS")]
    users: Vec<String>,
    /// The Slurm account under which each order's account is made.
    #[arg(long, default_value = "suanli")]
    parent_account: String,
    /// Where the agent keeps its accounting cursor between runs.
    #[arg(long, default_value = "suanli-agent-slurm.json")]
    state: PathBuf,
    /// How late a finished job may reach accounting: each read of accounting reaches back this far.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(i64).range(0..=86_400))]
    lag_seconds: i64,
    /// How far back the first read of accounting reaches when there is no state file yet.
    #[arg(long, default_value_t = 31 * 86_400, value_parser = clap::value_parser!(i64).range(0..=366 * 86_400))]
    first_window_seconds: i64,
    /// Seconds between passes in loop mode.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    interval_seconds: u64,
    /// Attempts for each call to the server while it is unavailable or unreachable, waiting 1 s,
    /// 2 s, 4 s … (at most 60 s) between them.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    attempts: u32,
    /// One pass, then exit (for cron); without it the agent runs a pass every interval.
    #[arg(long)]
    once: bool,
    /// Print what one pass would do and change nothing: no Slurm command that changes anything,
    /// no order started, no usage or telemetry sent, the state file untouched. Implies --once.
    #[arg(long)]
    dry_run: bool,
    /// Print each pass's report as JSON.
    #[arg(long)]
    json: bool,
}

/// `POOL=PARTITION` and `ENTERPRISE=USER,USER` pairs, each part checked.
fn pairs<K: Ord, V>(
    option: &str,
    values: &[String],
    key: impl Fn(&str) -> anyhow::Result<K>,
    value: impl Fn(&str) -> Option<V>,
) -> anyhow::Result<BTreeMap<K, V>> {
    let mut map = BTreeMap::new();
    for item in values {
        let (k, v) = item.split_once('=').with_context(|| format!("{option} {item}: expected KEY=VALUE"))?;
        let k = key(k.trim()).with_context(|| format!("{option} {item}"))?;
        let v = value(v.trim())
            .with_context(|| format!("{option} {item}: the value after = is empty or not a Slurm name"))?;
        if map.insert(k, v).is_some() {
            bail!("{option} {item}: named twice");
        }
    }
    Ok(map)
}

/// A Slurm account, user or partition name as the agent will pass it to Slurm's commands: lower
/// case (sacctmgr lowers account names, so another case would never be found again), and not
/// starting with `-` (it would read as an option).
fn slurm_name(name: &str) -> Option<String> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    fine.then(|| name.to_owned())
}

fn config(options: &SlurmOptions, provider: ProviderId, key: ed25519_dalek::SigningKey) -> anyhow::Result<Config> {
    let pools = pairs("--pool", &options.pools, |p| Ok(PoolId::parse(p)?), slurm_name)?;
    let users = pairs(
        "--users",
        &options.users,
        |e| Ok(EnterpriseId::parse(e)?),
        |list| list.split(',').map(|u| slurm_name(u.trim())).collect::<Option<Vec<String>>>(),
    )?;
    let parent = slurm_name(&options.parent_account).context("--parent-account: not a Slurm account name")?;
    Ok(Config {
        provider,
        key,
        pools,
        users,
        parent,
        state_file: options.state.clone(),
        lag_s: options.lag_seconds,
        first_window_s: options.first_window_seconds,
        attempts: options.attempts,
        dry_run: options.dry_run,
    })
}

fn text(report: &PassReport) -> String {
    let list = |items: &[String]| if items.is_empty() { "-".to_owned() } else { items.join(" ") };
    let mut out = format!(
        "{}orders open       {}\naccounts added    {}\nlimits changed    {}\norders started    {}\nusers added       {}\naccounts closed   {}\n\
         jobs read         {}\nusage sent        {} (recorded {}, already there {}, refused {})\n",
        if report.dry_run { "DRY RUN: nothing was changed\n" } else { "" },
        report.orders_open,
        list(&report.accounts_added),
        list(&report.limits_changed),
        list(&report.orders_started),
        list(&report.users_added),
        list(&report.accounts_closed),
        report.jobs_read,
        report.usage_sent,
        report.usage_recorded,
        report.usage_duplicates,
        report.usage_refused.len(),
    );
    for (id, code, message) in &report.usage_refused {
        out.push_str(&format!("  refused {id}: {code}: {message}\n"));
    }
    for record in &report.usage_planned {
        out.push_str(&format!(
            "  would send {} order {} {} GPU-s {} .. {}\n",
            record.id, record.order, record.gpu_seconds, record.period_start, record.period_end
        ));
    }
    let busy: Vec<String> = report.utilization.iter().map(|(pool, busy)| format!("{pool}={busy}")).collect();
    out.push_str(&format!("busy GPUs         {}\n", list(&busy)));
    for command in &report.slurm_planned {
        out.push_str(&format!("  would run: {command}\n"));
    }
    out
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

pub fn run(command: AgentCommand) -> anyhow::Result<ExitCode> {
    let AgentCommand::Slurm(options) = command;
    suanli_api::log::init(suanli_api::log::Format::Json);
    let (provider, key, client) = options.connection.open()?;
    let agent = Agent::new(config(&options, provider, key)?, client);
    loop {
        let report = agent.pass(now_s());
        match report {
            Ok(report) => {
                if options.json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    print!("{}", text(&report));
                }
            }
            Err(error) if options.once || options.dry_run => return Err(error.into()),
            // In loop mode a failed pass is logged and the next one tries again: nothing moved
            // past what the server answered.
            Err(error) => tracing::error!(%error, "the pass failed; the next one tries again"),
        }
        if options.once || options.dry_run {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(options.interval_seconds));
    }
}
