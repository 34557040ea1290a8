//! What the agent reads from Slurm's commands, parsed into plain values: finished jobs from
//! `sacct --json`, associations from `sacctmgr -n -P show assoc`, and each node's partitions and
//! allocated GPUs from `scontrol -o show node`. Pure functions, tested on captured output.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One finished job allocation as accounting recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub cluster: String,
    pub job_id: u64,
    pub account: String,
    pub state: String,
    /// Epoch seconds; 0 when the job never started.
    pub start_s: i64,
    pub end_s: i64,
    /// GPUs allocated to the job (its `gres/gpu` TRES), 0 for a job without GPUs.
    pub gpus: u32,
}

#[derive(Deserialize)]
struct SacctAnswer {
    #[serde(default, deserialize_with = "null_default")]
    jobs: Vec<serde_json::Value>,
    #[serde(default, deserialize_with = "null_default")]
    errors: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct SacctJob {
    #[serde(default, deserialize_with = "null_default")]
    cluster: String,
    job_id: u64,
    #[serde(default)]
    account: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    state: SacctState,
    #[serde(default, deserialize_with = "null_default")]
    time: SacctTime,
    #[serde(default, deserialize_with = "null_default")]
    tres: SacctTres,
}

// Slurm writes null for what a job never had (the start of a job cancelled while pending).
#[derive(Default, Deserialize)]
struct SacctState {
    #[serde(default)]
    current: Option<String>,
}

#[derive(Default, Deserialize)]
struct SacctTime {
    #[serde(default)]
    start: Option<i64>,
    #[serde(default)]
    end: Option<i64>,
}

#[derive(Default, Deserialize)]
struct SacctTres {
    #[serde(default, deserialize_with = "null_default")]
    allocated: Vec<Tres>,
}

#[derive(Deserialize)]
struct Tres {
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    count: Option<i64>,
}

fn null_default<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The jobs of a `sacct --json` answer (Slurm 22.05's `openapi/dbv0.0.38` shape), or why it is
/// not one.
pub fn sacct_jobs(text: &str) -> Result<Vec<Job>, String> {
    let answer: SacctAnswer = serde_json::from_str(text).map_err(|e| format!("sacct --json: {e}"))?;
    // Slurm 22.05 answers an empty query with an error of its own (9003, "Nothing found").
    let empty = |e: &serde_json::Value| e.get("error_number").and_then(serde_json::Value::as_i64) == Some(9003);
    if let Some(error) = answer.errors.iter().find(|e| !empty(e)) {
        return Err(format!("sacct --json answered an error: {error}"));
    }
    // A job this parser cannot read (another Slurm's layout) is logged and left out, so one odd
    // record does not stop every other job's usage.
    let readable: Vec<SacctJob> = answer
        .jobs
        .into_iter()
        .filter_map(|job| match serde_json::from_value::<SacctJob>(job.clone()) {
            Ok(job) => Some(job),
            Err(error) => {
                let id = job.get("job_id").cloned().unwrap_or_default();
                tracing::warn!(job = %id, %error, "a job in sacct --json that cannot be read; left out");
                None
            }
        })
        .collect();
    Ok(readable
        .into_iter()
        .map(|job| {
            let gpus = job
                .tres
                .allocated
                .iter()
                .filter(|t| t.kind == "gres" && t.name.as_deref() == Some("gpu"))
                .filter_map(|t| t.count)
                .sum::<i64>();
            Job {
                cluster: job.cluster,
                job_id: job.job_id,
                account: job.account.unwrap_or_default(),
                state: job.state.current.unwrap_or_default(),
                start_s: job.time.start.unwrap_or(0),
                end_s: job.time.end.unwrap_or(0),
                gpus: u32::try_from(gpus.max(0)).unwrap_or(u32::MAX),
            }
        })
        .collect())
}

/// An account under the agent's parent account, with its limits and the users (and the
/// partition each may use) associated with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// `GrpTRES`' `gres/gpu`: GPUs at once; `Some(0)` once the agent closed it.
    pub gpus: Option<u64>,
    /// `GrpTRESMins`' `gres/gpu`: GPU-minutes in all.
    pub gpu_minutes: Option<u64>,
    /// (user, partition), the partition empty when the user may use any.
    pub users: Vec<(String, String)>,
}

/// The accounts whose parent is `parent` in the rows of
/// `sacctmgr -n -P show assoc format=account,user,partition,parentname,grptres,grptresmins`.
pub fn associations(text: &str, parent: &str) -> BTreeMap<String, Account> {
    let rows: Vec<Vec<&str>> = text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.split('|').collect()).collect();
    let mut accounts: BTreeMap<String, Account> = rows
        .iter()
        .filter(|r| r.len() >= 6 && r[1].is_empty() && r[3] == parent)
        .map(|r| {
            let account = Account { gpus: gpu_tres(r[4]), gpu_minutes: gpu_tres(r[5]), users: Vec::new() };
            (r[0].to_owned(), account)
        })
        .collect();
    for row in rows.iter().filter(|r| r.len() >= 6 && !r[1].is_empty()) {
        if let Some(account) = accounts.get_mut(row[0]) {
            account.users.push((row[1].to_owned(), row[2].to_owned()));
        }
    }
    accounts
}

/// The `gres/gpu` count of a TRES list such as `cpu=4,gres/gpu=2`.
fn gpu_tres(list: &str) -> Option<u64> {
    list.split(',').find_map(|item| item.strip_prefix("gres/gpu=")).and_then(|n| n.parse().ok())
}

/// One node: its partitions, its GPUs and those allocated to jobs now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub partitions: Vec<String>,
    pub gpus: u64,
    pub busy_gpus: u64,
}

/// The nodes of `scontrol -o show node` (one line a node, `Key=Value` pairs).
pub fn nodes(text: &str) -> Vec<Node> {
    text.lines()
        .filter(|l| l.starts_with("NodeName="))
        .map(|line| {
            let field = |key: &str| {
                line.split_whitespace().find_map(|pair| pair.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            };
            Node {
                name: field("NodeName").unwrap_or_default().to_owned(),
                partitions: field("Partitions")
                    .map(|p| p.split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect())
                    .unwrap_or_default(),
                gpus: field("CfgTRES").and_then(gpu_tres).unwrap_or(0),
                busy_gpus: field("AllocTRES").and_then(gpu_tres).unwrap_or(0),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from Debian's Slurm 22.05.8 with slurmdbd (`.ci/slurm.sh`), trimmed.
    const SACCT: &str = r#"{"meta":{"plugin":{"type":"openapi/dbv0.0.38"}},"errors":[],"jobs":[
      {"account":"ord-7","cluster":"suanlitest","job_id":1,"state":{"current":"PENDING","reason":"AssocGrpGRESMinutes"},
       "time":{"elapsed":0,"end":0,"start":0},"tres":{"allocated":[],"requested":[{"type":"gres","name":"gpu","id":1001,"count":2}]}},
      {"account":"ord-7","cluster":"suanlitest","job_id":3,"state":{"current":"CANCELLED"},"time":{"start":null,"end":null},"tres":null},
      {"account":"ord-7","cluster":null,"job_id":"not a number"},
      {"account":"ord-7","cluster":"suanlitest","job_id":2,"state":{"current":"COMPLETED"},
       "time":{"elapsed":2,"end":1796464001,"start":1796463999},
       "tres":{"allocated":[{"type":"cpu","name":null,"id":1,"count":1},{"type":"energy","name":null,"id":3,"count":null},
                            {"type":"gres","name":"gpu","id":1001,"count":1}]}}]}"#;

    #[test]
    fn sacct_jobs_take_the_allocated_gpus_and_times() {
        let jobs = sacct_jobs(SACCT).unwrap();
        assert_eq!(jobs.len(), 3);
        assert_eq!((jobs[1].start_s, jobs[1].end_s, jobs[1].gpus), (0, 0, 0));
        assert_eq!((jobs[0].gpus, jobs[0].start_s, jobs[0].state.as_str()), (0, 0, "PENDING"));
        assert_eq!(
            jobs[2],
            Job {
                cluster: "suanlitest".into(),
                job_id: 2,
                account: "ord-7".into(),
                state: "COMPLETED".into(),
                start_s: 1_796_463_999,
                end_s: 1_796_464_001,
                gpus: 1,
            }
        );
        assert!(sacct_jobs(r#"{"errors":[{"error":"no db"}],"jobs":[]}"#).unwrap_err().contains("no db"));
        let nothing = r#"{"errors":[{"description":"Nothing found","error":"Nothing found with query","error_number":9003,"source":"slurmdb_jobs_get"}],"jobs":[]}"#;
        assert_eq!(sacct_jobs(nothing).unwrap(), []);
        assert!(sacct_jobs("sacct: error: Problem talking to the database").is_err());
    }

    #[test]
    fn associations_are_the_parents_children_with_their_users() {
        let text = "root||||||\nsuanli|||root||\nord-7|||suanli|gres/gpu=2|gres/gpu=120\nord-7|alice|debug|||\n\
                    ord-9|||suanli|gres/gpu=0|gres/gpu=60\nother|||root|gres/gpu=1|\nother|bob||||\n";
        let found = associations(text, "suanli");
        assert_eq!(found.keys().collect::<Vec<_>>(), ["ord-7", "ord-9"]);
        assert_eq!(
            found["ord-7"],
            Account { gpus: Some(2), gpu_minutes: Some(120), users: vec![("alice".into(), "debug".into())] }
        );
        assert_eq!(found["ord-9"].gpus, Some(0));
    }

    #[test]
    fn nodes_read_partitions_and_gpus() {
        let text = "NodeName=vm Arch=x86_64 Gres=gpu:fake:4 State=MIXED Partitions=debug,big  CfgTRES=cpu=2,mem=4000M,billing=2,gres/gpu=4 AllocTRES=cpu=1,mem=100M,gres/gpu=3 CapWatts=n/a\n\
                    NodeName=n2 Partitions=debug CfgTRES=cpu=2 AllocTRES= State=IDLE\n";
        let found = nodes(text);
        assert_eq!(
            found[0],
            Node { name: "vm".into(), partitions: vec!["debug".into(), "big".into()], gpus: 4, busy_gpus: 3 }
        );
        assert_eq!((found[1].gpus, found[1].busy_gpus), (0, 0));
    }
}
