//! The Slurm commands the agent runs: reads (`sacctmgr show`, `sacct --json`, `scontrol show`)
//! always run; changes (`sacctmgr add|modify`, `scancel`) run unless the agent is dry, in which
//! case each is kept as the command line it would have run.
//!
//! Every command inherits the agent's environment, so `SLURM_CONF` chooses the cluster; `sacct`
//! runs with `TZ=UTC` because it reads and writes times without a zone.

use std::collections::BTreeMap;
use std::process::Command;

use super::AgentError;
use super::parse::{self, Account, Job, Node};

/// Job states that end a job: accounting holds its final start, end and allocation.
/// (`RQ`: a run ended by a requeue, which still held its GPUs.)
pub const FINISHED_STATES: &str = "BF,CA,CD,DL,F,NF,OOM,PR,RQ,TO";

pub struct Slurm {
    dry_run: bool,
    /// The changes a dry run would have made, as command lines.
    pub planned: Vec<String>,
}

fn run(program: &str, args: &[String], utc: bool) -> Result<String, AgentError> {
    let mut command = Command::new(program);
    command.args(args);
    if utc {
        command.env("TZ", "UTC");
    }
    let output = command.output().map_err(|e| AgentError::Slurm(format!("{program}: cannot run it: {e}")))?;
    if !output.status.success() {
        return Err(AgentError::Slurm(format!(
            "{program} {}: {} {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// A time as `sacct` reads it (UTC, for `TZ=UTC`).
fn sacct_time(epoch_s: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(epoch_s).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

impl Slurm {
    pub fn new(dry_run: bool) -> Slurm {
        Slurm { dry_run, planned: Vec::new() }
    }

    fn change(&mut self, program: &str, args: Vec<String>) -> Result<(), AgentError> {
        if self.dry_run {
            self.planned.push(format!("{program} {}", args.join(" ")));
            return Ok(());
        }
        run(program, &args, false).map(|_| ())
    }

    /// Whether `parent` exists, and the accounts under it.
    pub fn accounts(&self, parent: &str) -> Result<(bool, BTreeMap<String, Account>), AgentError> {
        let text = run(
            "sacctmgr",
            &strings(&["-n", "-P", "show", "assoc", "format=account,user,partition,parentname,grptres,grptresmins"]),
            false,
        )?;
        let exists = text.lines().any(|l| {
            let mut fields = l.split('|');
            fields.next() == Some(parent) && fields.next() == Some("")
        });
        Ok((exists, parse::associations(&text, parent)))
    }

    /// Job allocations that finished between `from_s` and `to_s`, every user's, each run of a
    /// requeued job on its own.
    pub fn finished_jobs(&self, from_s: i64, to_s: i64) -> Result<Vec<Job>, AgentError> {
        let args = [
            "--json".to_owned(),
            "-a".to_owned(),
            "-X".to_owned(),
            "-D".to_owned(),
            "-s".to_owned(),
            FINISHED_STATES.to_owned(),
            "-S".to_owned(),
            sacct_time(from_s),
            "-E".to_owned(),
            sacct_time(to_s),
        ];
        parse::sacct_jobs(&run("sacct", &args, true)?).map_err(AgentError::Slurm)
    }

    pub fn nodes(&self) -> Result<Vec<Node>, AgentError> {
        Ok(parse::nodes(&run("scontrol", &strings(&["-o", "show", "node"]), false)?))
    }

    pub fn add_parent(&mut self, parent: &str) -> Result<(), AgentError> {
        self.change(
            "sacctmgr",
            strings(&["-i", "add", "account", parent, "Description=suanli orders", "Organization=suanli"]),
        )
    }

    /// An account for one order: `gpus` at once and `gpu_minutes` in all, no user yet.
    pub fn add_account(&mut self, account: &str, parent: &str, gpus: u64, gpu_minutes: u64) -> Result<(), AgentError> {
        self.change(
            "sacctmgr",
            vec![
                "-i".into(),
                "add".into(),
                "account".into(),
                account.into(),
                format!("Parent={parent}"),
                format!("Description=suanli order {account}"),
                "Organization=suanli".into(),
                format!("GrpTRES=gres/gpu={gpus}"),
                format!("GrpTRESMins=gres/gpu={gpu_minutes}"),
            ],
        )
    }

    /// `sacctmgr modify account ACCOUNT set SETTINGS…`.
    fn modify(&mut self, account: &str, settings: &[String]) -> Result<(), AgentError> {
        let mut args: Vec<String> = strings(&["-i", "modify", "account", account, "set"]);
        args.extend_from_slice(settings);
        self.change("sacctmgr", args)
    }

    pub fn set_limits(&mut self, account: &str, gpus: u64, gpu_minutes: u64) -> Result<(), AgentError> {
        self.modify(account, &[format!("GrpTRES=gres/gpu={gpus}"), format!("GrpTRESMins=gres/gpu={gpu_minutes}")])
    }

    /// Lets `user` run jobs under `account`, in `partition` only.
    pub fn add_user(&mut self, user: &str, account: &str, partition: &str) -> Result<(), AgentError> {
        self.change(
            "sacctmgr",
            vec![
                "-i".into(),
                "add".into(),
                "user".into(),
                user.into(),
                format!("Account={account}"),
                format!("Partition={partition}"),
            ],
        )
    }

    /// Ends an order in Slurm: no GPU for the account from now on, and its jobs cancelled (their
    /// run is recorded by accounting and reported up to the order's end).
    pub fn close(&mut self, account: &str) -> Result<(), AgentError> {
        // Jobs first: a kill between the two leaves the account open, to be closed again.
        self.change("scancel", vec![format!("--account={account}")])?;
        self.modify(account, &["GrpTRES=gres/gpu=0".to_owned()])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sacct_times_are_utc() {
        assert_eq!(super::sacct_time(1_796_463_999), "2026-12-05T09:46:39");
    }
}
