//! Batches as they travel: the JSON a provider sends and the values the service takes from it.

use serde::{Deserialize, Serialize};
use suanli_domain::{OrderId, PoolId};

use crate::times::{format_timestamp, parse_timestamp};

/// A usage record as the service takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageInput {
    /// The provider's id for this record; a retry carries the same id.
    pub id: String,
    pub order: OrderId,
    pub gpu_seconds: i64,
    pub period_start_s: i64,
    pub period_end_s: i64,
}

/// One utilization sample as the service takes it: at `at_s`, `busy_gpus` of the pool's GPUs
/// were busy with any work (the platform's orders or not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UtilizationInput {
    pub pool: PoolId,
    pub at_s: i64,
    pub busy_gpus: u32,
}

/// A field of a batch that is not as it must be, named by its path (`records[3].order`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: String, message: impl Into<String>) -> FieldError {
        FieldError { field, message: message.into() }
    }
}

/// A usage batch as a provider sends it (`POST /api/v1/providers/{provider}/usage`).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageBatch {
    #[schemars(length(min = 1, max = 4000))]
    pub records: Vec<UsageRecord>,
}

/// One usage record in JSON: ids as text (`ord-3`), times in RFC 3339.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageRecord {
    /// The provider's id for the record, the same each time it is sent: 1 to 128 bytes, no
    /// control characters.
    #[schemars(length(min = 1, max = 128), regex(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"))]
    pub id: String,
    #[schemars(with = "suanli_domain::OrderId")]
    pub order: String,
    #[schemars(range(min = 1))]
    pub gpu_seconds: i64,
    #[schemars(extend("format" = "date-time"))]
    pub period_start: String,
    #[schemars(extend("format" = "date-time"))]
    pub period_end: String,
}

impl UsageRecord {
    /// The record of `input`, its times written in Asia/Shanghai.
    pub fn of(input: &UsageInput) -> UsageRecord {
        UsageRecord {
            id: input.id.clone(),
            order: input.order.to_string(),
            gpu_seconds: input.gpu_seconds,
            period_start: format_timestamp(input.period_start_s),
            period_end: format_timestamp(input.period_end_s),
        }
    }

    /// The value the service takes, or the first field that is wrong (`records[index].…`).
    pub fn to_input(&self, index: usize) -> Result<UsageInput, FieldError> {
        let at = |field: &str| format!("records[{index}].{field}");
        let time = |field: &str, text: &str| {
            parse_timestamp(text).ok_or_else(|| FieldError::new(at(field), "must be an RFC 3339 time"))
        };
        Ok(UsageInput {
            id: self.id.clone(),
            order: OrderId::parse(&self.order).map_err(|e| FieldError::new(at("order"), e.to_string()))?,
            gpu_seconds: self.gpu_seconds,
            period_start_s: time("period_start", &self.period_start)?,
            period_end_s: time("period_end", &self.period_end)?,
        })
    }
}

/// A utilization batch as a provider sends it (`POST /api/v1/providers/{provider}/utilization`).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UtilizationBatch {
    #[schemars(length(min = 1, max = 4000))]
    pub samples: Vec<UtilizationSample>,
}

/// One utilization sample in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UtilizationSample {
    #[schemars(with = "suanli_domain::PoolId")]
    pub pool: String,
    /// RFC 3339.
    #[schemars(extend("format" = "date-time"))]
    pub at: String,
    pub busy_gpus: u32,
}

impl UtilizationSample {
    /// The sample of `input`, its time written in Asia/Shanghai.
    pub fn of(input: &UtilizationInput) -> UtilizationSample {
        UtilizationSample { pool: input.pool.to_string(), at: format_timestamp(input.at_s), busy_gpus: input.busy_gpus }
    }

    /// The value the service takes, or the first field that is wrong (`samples[index].…`).
    pub fn to_input(&self, index: usize) -> Result<UtilizationInput, FieldError> {
        let at = |field: &str| format!("samples[{index}].{field}");
        Ok(UtilizationInput {
            pool: PoolId::parse(&self.pool).map_err(|e| FieldError::new(at("pool"), e.to_string()))?,
            at_s: parse_timestamp(&self.at).ok_or_else(|| FieldError::new(at("at"), "must be an RFC 3339 time"))?,
            busy_gpus: self.busy_gpus,
        })
    }
}

/// The answer to a usage batch: one result per record, in the batch's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UsageAnswer {
    pub results: Vec<UsageResult>,
}

/// What became of one usage record: `ok` (priced and posted now), `exists` (posted before; these
/// are its first figures) or `error` with a stable code and a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UsageResult {
    pub id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_fen: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voucher_part_fen: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise_part_fen: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The answer to a utilization batch: one result per sample, in the batch's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UtilizationAnswer {
    pub results: Vec<SampleResult>,
}

/// What became of one sample: `ok` (stored now), `exists` (the same sample was stored before)
/// or `error` with a code and a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SampleResult {
    pub pool: String,
    /// RFC 3339.
    pub at: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
