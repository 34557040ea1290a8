//! The bytes a provider signs for a batch (`docs/signing.md`): a prefix naming the kind of batch
//! and its version, the provider, then each record length-prefixed or fixed-width, all integers
//! little-endian, so no two batches share an encoding and a signature over one kind never verifies
//! the other.

use ed25519_dalek::{Signer, SigningKey};
use suanli_domain::ProviderId;

use crate::batch::{UsageInput, UtilizationInput};

/// The HTTP header (and NATS message header) that carries a batch's signature, 128 hex
/// characters.
pub const SIGNATURE_HEADER: &str = "Suanli-Signature";

/// The bytes a provider signs for a usage batch.
pub fn usage_signing_bytes(provider: ProviderId, records: &[UsageInput]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + records.len() * 56);
    out.extend_from_slice(b"suanli-usage-v1\0");
    out.extend_from_slice(&provider.get().to_le_bytes());
    out.extend_from_slice(&(records.len() as u64).to_le_bytes());
    for record in records {
        out.extend_from_slice(&(record.id.len() as u64).to_le_bytes());
        out.extend_from_slice(record.id.as_bytes());
        out.extend_from_slice(&record.order.get().to_le_bytes());
        out.extend_from_slice(&record.gpu_seconds.to_le_bytes());
        out.extend_from_slice(&record.period_start_s.to_le_bytes());
        out.extend_from_slice(&record.period_end_s.to_le_bytes());
    }
    out
}

/// The bytes a provider signs for a utilization batch.
pub fn utilization_signing_bytes(provider: ProviderId, samples: &[UtilizationInput]) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + samples.len() * 20);
    out.extend_from_slice(b"suanli-utilization-v1\0");
    out.extend_from_slice(&provider.get().to_le_bytes());
    out.extend_from_slice(&(samples.len() as u64).to_le_bytes());
    for sample in samples {
        out.extend_from_slice(&sample.pool.get().to_le_bytes());
        out.extend_from_slice(&sample.at_s.to_le_bytes());
        out.extend_from_slice(&sample.busy_gpus.to_le_bytes());
    }
    out
}

/// The signature of `bytes` with `key`, as the header carries it: 128 lower-case hex characters.
pub fn sign(key: &SigningKey, bytes: &[u8]) -> String {
    hex(&key.sign(bytes).to_bytes())
}

/// Bytes as lower-case hex (keys and signatures travel so).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
