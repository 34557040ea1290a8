//! One layered configuration for every command, through `figment`: the configuration file
//! (`--config`, else `SUANLI_CONFIG`, else `./suanli.toml` when there is one), then `SUANLI_*`
//! variables named after its keys (`SUANLI_QUEUE_JOBS_MAX`), then flags; what none of them sets
//! keeps its default where it is used. `serve` reads every key; the other commands read
//! `database`, so `serve` and `program load` use the same database with one file.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The configuration's keys (suanli.example.toml documents each); every one optional.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_jobs_max: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_requests: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_subject_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_ack_wait_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_entries: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_skew_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heads_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure_cookies: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_window_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clearing_interval_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_wait_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round_solve_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement_utilization_target_bp: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement_underused_credit_fen_per_gpu_hour: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement_domestic_weight_bp: Option<i64>,
}

/// The keys a `SUANLI_*` variable may set (other `SUANLI_*` variables, such as `SUANLI_TOKEN`,
/// belong to single commands and are not configuration).
const KEYS: [&str; 23] = [
    "database",
    "listen",
    "queue_jobs_max",
    "log_format",
    "log_requests",
    "nats",
    "nats_stream",
    "nats_subject_prefix",
    "nats_ack_wait_s",
    "checkpoint_entries",
    "checkpoint_seconds",
    "clock_skew_seconds",
    "schedule_seconds",
    "heads_dir",
    "signing_key",
    "secure_cookies",
    "schedule_window_seconds",
    "clearing_interval_seconds",
    "request_wait_seconds",
    "round_solve_ms",
    "placement_utilization_target_bp",
    "placement_underused_credit_fen_per_gpu_hour",
    "placement_domestic_weight_bp",
];

/// The configuration: the file at `path` (else `SUANLI_CONFIG`, else `./suanli.toml` if it
/// exists), then the environment, then `flags` (the keys the command line set).
pub(crate) fn load(path: Option<&Path>, flags: &Config) -> anyhow::Result<Config> {
    let path = path
        .map(ToOwned::to_owned)
        .or_else(|| std::env::var_os("SUANLI_CONFIG").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from("suanli.toml")).filter(|p| p.exists()));
    let mut figment = Figment::new();
    if let Some(path) = &path {
        anyhow::ensure!(path.is_file(), "--config: cannot read {}: no such file", path.display());
        figment = figment.merge(Toml::file_exact(path));
    }
    figment
        .merge(Env::prefixed("SUANLI_").only(&KEYS))
        .merge(Serialized::defaults(flags))
        .extract()
        .map_err(|error| anyhow::anyhow!("configuration: {error}"))
}

impl Config {
    /// The scheduling loop's settings and the placement policy's weights this configuration sets
    /// (the defaults where it sets none), checked. `serve` and every command that places orders
    /// run with them.
    pub(crate) fn scheduling(&self) -> anyhow::Result<(suanli_service::RoundSettings, suanli_placement::Policy)> {
        let defaults = suanli_service::RoundSettings::default();
        let rounds = suanli_service::RoundSettings {
            wait_s: self.request_wait_seconds.unwrap_or(defaults.wait_s),
            solve_ms_max: self.round_solve_ms.unwrap_or(defaults.solve_ms_max),
            ..defaults
        };
        anyhow::ensure!(
            (0..=suanli_service::REQUEST_WAIT_MAX_S).contains(&rounds.wait_s),
            "request_wait_seconds: must be between 0 and {}",
            suanli_service::REQUEST_WAIT_MAX_S
        );
        anyhow::ensure!((1..=10_000).contains(&rounds.solve_ms_max), "round_solve_ms: must be between 1 and 10000");
        let weights = suanli_service::requests::PlacementWeights {
            utilization_target_bp: self.placement_utilization_target_bp,
            underused_credit_fen_per_gpu_hour: self.placement_underused_credit_fen_per_gpu_hour,
            domestic_weight_bp: self.placement_domestic_weight_bp,
        };
        weights.check().map_err(|(field, message)| anyhow::anyhow!("placement_{field}: {message}"))?;
        Ok((rounds, weights.over(suanli_service::PLACEMENT_POLICY)))
    }
}
