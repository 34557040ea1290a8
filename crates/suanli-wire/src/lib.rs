//! What a provider's connector sends to Suanli, in one place for the server and for connectors:
//!
//! - [`UsageInput`] and [`UtilizationInput`], a usage record and a utilization sample as the
//!   service takes them, and their JSON batches ([`UsageBatch`], [`UtilizationBatch`]) as
//!   `POST /api/v1/providers/{provider}/usage` and `…/utilization` (and the NATS subjects) carry
//!   them, with the answer to a usage batch ([`UsageAnswer`]);
//! - the bytes a provider signs for each batch ([`usage_signing_bytes`],
//!   [`utilization_signing_bytes`]), specified in `docs/signing.md` with test vectors;
//! - RFC 3339 times as the API reads and writes them ([`parse_timestamp`], [`format_timestamp`]);
//! - a small blocking HTTP [`Client`] that signs and sends batches and reads a provider's orders.
//!
//! The crate depends on no database and no web framework, so a connector (the Slurm agent, a
//! data centre's own billing) can use it alone.

mod batch;
mod client;
mod signing;
mod times;

pub use batch::{
    FieldError, SampleResult, UsageAnswer, UsageBatch, UsageInput, UsageRecord, UsageResult, UtilizationAnswer,
    UtilizationBatch, UtilizationInput, UtilizationSample,
};
pub use client::{Client, ClientError, retry};
pub use signing::{SIGNATURE_HEADER, hex, sign, usage_signing_bytes, utilization_signing_bytes};
pub use times::{SHANGHAI, format_timestamp, parse_timestamp, shanghai};

/// Records in one usage batch at most (one ledger batch: two transfers a record).
pub const USAGE_BATCH_RECORDS_MAX: usize = 4_000;
/// Samples in one utilization batch at most.
pub const UTILIZATION_BATCH_SAMPLES_MAX: usize = 4_000;
