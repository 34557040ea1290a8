//! The test vectors of `docs/signing.md`, built here from the document's tables by an encoder
//! written in this test (not the crate's), then compared with the document and with the crate:
//! a connector written from the page alone signs what the server verifies.

use ed25519_dalek::{Signer, SigningKey, Verifier};
use suanli_domain::{OrderId, PoolId, ProviderId};
use suanli_wire::{UsageInput, UsageRecord, UtilizationInput, UtilizationSample};

const DOC: &str = include_str!("../../../docs/signing.md");

/// The document's line `label  hex…`.
fn documented(label: &str, after: &str) -> String {
    let section = &DOC[DOC.find(after).expect("the section is in the document")..];
    let line = section.lines().find(|l| l.starts_with(label)).expect("the line is in the document");
    line[label.len()..].trim().to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_usage_batch_signs_as_the_document_says() {
    // {"id": "r-1", "order": "ord-3", "gpu_seconds": 3600, "period_start": "2026-03-01T10:00:00+08:00", …}
    let record = UsageRecord {
        id: "r-1".into(),
        order: "ord-3".into(),
        gpu_seconds: 3_600,
        period_start: "2026-03-01T10:00:00+08:00".into(),
        period_end: "2026-03-01T11:00:00+08:00".into(),
    };
    let input = record.to_input(0).unwrap();
    assert_eq!(input.order, OrderId::parse("ord-3").unwrap());
    // The table, field by field.
    let mut mine = b"suanli-usage-v1\0".to_vec();
    mine.extend(7u64.to_le_bytes()); // prv-7
    mine.extend(1u64.to_le_bytes()); // one record
    mine.extend(3u64.to_le_bytes()); // "r-1" is 3 bytes
    mine.extend(b"r-1");
    mine.extend(3u64.to_le_bytes()); // ord-3
    mine.extend(3_600i64.to_le_bytes());
    mine.extend(1_772_330_400i64.to_le_bytes()); // 2026-03-01T02:00:00Z
    mine.extend(1_772_334_000i64.to_le_bytes());
    let after = "Usage, provider `prv-7`";
    assert_eq!(hex(&mine), documented("bytes", after));
    let provider = ProviderId::parse("prv-7").unwrap();
    assert_eq!(suanli_wire::usage_signing_bytes(provider, &[input]), mine);
    let key = SigningKey::from_bytes(&[7; 32]);
    assert_eq!(hex(key.verifying_key().as_bytes()), "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c");
    assert_eq!(hex(&key.sign(&mine).to_bytes()), documented("signature", after));
    assert_eq!(suanli_wire::sign(&key, &mine), documented("signature", after));
}

#[test]
fn a_utilization_batch_signs_as_the_document_says() {
    let sample = UtilizationSample { pool: "pol-2".into(), at: "2026-03-01T10:00:00+08:00".into(), busy_gpus: 5 };
    let input: UtilizationInput = sample.to_input(0).unwrap();
    assert_eq!(input.pool, PoolId::parse("pol-2").unwrap());
    let mut mine = b"suanli-utilization-v1\0".to_vec();
    mine.extend(7u64.to_le_bytes());
    mine.extend(1u64.to_le_bytes());
    mine.extend(2u64.to_le_bytes()); // pol-2
    mine.extend(1_772_330_400i64.to_le_bytes());
    mine.extend(5u32.to_le_bytes());
    let after = "Utilization, provider `prv-7`";
    assert_eq!(hex(&mine), documented("bytes", after));
    let provider = ProviderId::parse("prv-7").unwrap();
    assert_eq!(suanli_wire::utilization_signing_bytes(provider, &[input]), mine);
    let key = SigningKey::from_bytes(&[7; 32]);
    let signature = key.sign(&mine);
    assert_eq!(hex(&signature.to_bytes()), documented("signature", after));
    // A usage signature never verifies a utilization batch: the prefixes differ.
    let usage = suanli_wire::usage_signing_bytes(
        provider,
        &[UsageInput {
            id: "r-1".into(),
            order: OrderId::parse("ord-3").unwrap(),
            gpu_seconds: 3_600,
            period_start_s: 1_772_330_400,
            period_end_s: 1_772_334_000,
        }],
    );
    assert!(key.verifying_key().verify(&usage, &signature).is_err());
}

#[test]
fn a_field_that_is_wrong_is_named_by_its_path() {
    let record = UsageRecord {
        id: "x".into(),
        order: "ord-1".into(),
        gpu_seconds: 1,
        period_start: "yesterday".into(),
        period_end: "2026-03-01T11:00:00+08:00".into(),
    };
    let error = record.to_input(4).unwrap_err();
    assert_eq!((error.field.as_str(), error.message.as_str()), ("records[4].period_start", "must be an RFC 3339 time"));
    let sample = UtilizationSample { pool: "pool-9".into(), at: "2026-03-01T10:00:00+08:00".into(), busy_gpus: 1 };
    assert_eq!(sample.to_input(2).unwrap_err().field, "samples[2].pool");
    // Written back, a record reads the same.
    let input = UsageRecord { period_start: "2026-03-01T02:00:00Z".into(), ..record }.to_input(0).unwrap();
    assert_eq!(UsageRecord::of(&input).to_input(0).unwrap(), input);
    assert_eq!(UsageRecord::of(&input).period_start, "2026-03-01T10:00:00+08:00");
}
