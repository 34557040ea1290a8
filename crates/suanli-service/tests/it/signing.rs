//! The signing bytes and signatures of docs/signing.md, as test vectors: the document's numbers
//! are checked here against the code that verifies batches, so the two cannot drift apart.

use ed25519_dalek::{Signer, SigningKey};
use suanli_domain::{OrderId, PoolId, ProviderId};
use suanli_service::access::{hex, usage_signing_bytes, utilization_signing_bytes, verify_usage, verify_utilization};
use suanli_service::model::{UsageInput, UtilizationInput};

const DOC: &str = include_str!("../../../../docs/signing.md");

fn vectors() -> [(String, String); 2] {
    let key = SigningKey::from_bytes(&[7; 32]);
    let provider = ProviderId::parse("prv-7").unwrap();
    let usage = [UsageInput {
        id: "r-1".into(),
        order: OrderId::parse("ord-3").unwrap(),
        gpu_seconds: 3_600,
        period_start_s: 1_772_330_400,
        period_end_s: 1_772_334_000,
    }];
    let utilization = [UtilizationInput { pool: PoolId::parse("pol-2").unwrap(), at_s: 1_772_330_400, busy_gpus: 5 }];
    let public = hex(key.verifying_key().as_bytes());
    let u = usage_signing_bytes(provider, &usage);
    let t = utilization_signing_bytes(provider, &utilization);
    let (us, ts) = (hex(&key.sign(&u).to_bytes()), hex(&key.sign(&t).to_bytes()));
    verify_usage(Some(&public), provider, &usage, &us).unwrap();
    verify_utilization(Some(&public), provider, &utilization, &ts).unwrap();
    // A usage signature never verifies the telemetry batch, or the reverse.
    assert!(verify_utilization(Some(&public), provider, &utilization, &us).is_err());
    [(hex(&u), us), (hex(&t), ts)]
}

#[test]
fn the_documented_vectors_are_what_the_code_signs_and_verifies() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = hex(key.verifying_key().as_bytes());
    let vectors = vectors();
    let missing: Vec<&String> = std::iter::once(&public)
        .chain(vectors.iter().flat_map(|(bytes, signature)| [bytes, signature]))
        .filter(|text| !DOC.contains(text.as_str()))
        .collect();
    assert!(missing.is_empty(), "docs/signing.md lacks {missing:#?}");
}
