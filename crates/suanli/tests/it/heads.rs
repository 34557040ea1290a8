//! Signed heads published outside the database, against an attacker who holds the database
//! file: cutting the log short, rewriting an entry and re-hashing everything after it, or
//! swapping a provider's key in the log each make `audit verify --heads` fail with the reason;
//! a head signed with another key is refused.

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey};
use suanli_store::{NewLogEntry, log_entry_hash};

use crate::{stdout, suanli};

const USCC: &str = "91310000MA1GW0016T";

/// A database with two programmes and a provider with a key, and a head published over it.
fn published(dir: &Path) {
    let program = |name: &str| format!("{}/../../programs/{name}", env!("CARGO_MANIFEST_DIR"));
    let run = |args: &[&str]| {
        let output = suanli(args, dir);
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output
    };
    run(&["program", "load", &program("ningbo.toml"), &program("shandong.toml"), "--database", "h.db"]);
    run(&["provider", "register", "--uscc", USCC, "--name", "P", "--operator", "commercial", "--database", "h.db"]);
    let key = SigningKey::from_bytes(&[5; 32]);
    let public = hex(key.verifying_key().as_bytes());
    run(&["provider", "set-key", "--provider", "prv-1", "--public-key", &public, "--database", "h.db"]);
    run(&["heads", "publish", "--database", "h.db"]);
    let audit = run(&["audit", "verify", "--database", "h.db", "--heads", "h-heads"]);
    assert!(stdout(&audit).contains("audit passed"), "{}", stdout(&audit));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn audit_with_heads(dir: &Path) -> (bool, String) {
    let output = suanli(&["audit", "verify", "--database", "h.db", "--heads", "h-heads"], dir);
    (output.status.success(), stdout(&output))
}

/// Rewrites entry `sequence`'s body with `edit` and recomputes every hash from it on, as an
/// attacker with the file and the (public) hashing rule would; the plain audit still passes.
fn rewrite_and_rehash(dir: &Path, sequence: i64, edit: impl Fn(&str) -> String) {
    let db = rusqlite::Connection::open(dir.join("h.db")).unwrap();
    type Row = (i64, i64, String, String, String, String, Vec<u8>, Option<Vec<u8>>);
    let rows: Vec<Row> = db
        .prepare(
            "SELECT sequence, time_s, actor, action, object, body, audit_log.previous_hash, b.hash FROM audit_log \
             LEFT JOIN ledger_batches b ON b.batch_id = audit_log.ledger_batch_id ORDER BY sequence",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut previous: [u8; 32] = rows[0].6.clone().try_into().unwrap();
    for (seq, time_s, actor, action, object, body, _, batch) in rows {
        let body = if seq == sequence { edit(&body) } else { body };
        let entry = NewLogEntry { time_s, actor, action, object, body: body.clone() };
        let batch: Option<[u8; 32]> = batch.map(|b| b.try_into().unwrap());
        let hash = log_entry_hash(&previous, &entry, seq as u64, batch.as_ref());
        db.execute(
            "UPDATE audit_log SET body = ?1, previous_hash = ?2, hash = ?3 WHERE sequence = ?4",
            rusqlite::params![body, &previous[..], &hash[..], seq],
        )
        .unwrap();
        previous = hash;
    }
    // The attacker also recomputes the Merkle tiles and drops the checkpoints.
    db.execute("DELETE FROM merkle_tiles", []).unwrap();
    db.execute("DELETE FROM checkpoints", []).unwrap();
}

#[test]
fn a_log_cut_short_fails_the_audit_against_published_heads() {
    let dir = tempfile::tempdir().unwrap();
    published(dir.path());
    let db = rusqlite::Connection::open(dir.path().join("h.db")).unwrap();
    db.execute("DELETE FROM audit_log WHERE sequence > 4", []).unwrap();
    drop(db);
    let (passed, text) = audit_with_heads(dir.path());
    assert!(!passed);
    assert!(text.contains("the log was cut short after it was published"), "{text}");
}

#[test]
fn a_log_rewritten_and_rehashed_fails_the_audit_against_published_heads() {
    let dir = tempfile::tempdir().unwrap();
    published(dir.path());
    rewrite_and_rehash(dir.path(), 2, |body| body.replace("Ningbo", "Nowhere"));
    let plain = suanli(&["audit", "verify", "--database", "h.db"], dir.path());
    assert!(stdout(&plain).contains("audit passed"), "without heads the rewrite is invisible:\n{}", stdout(&plain));
    let (passed, text) = audit_with_heads(dir.path());
    assert!(!passed);
    assert!(text.contains("the log was rewritten after it was published"), "{text}");
}

#[test]
fn a_provider_key_swapped_offline_fails_the_audit_against_published_heads() {
    let dir = tempfile::tempdir().unwrap();
    published(dir.path());
    let theirs = hex(SigningKey::from_bytes(&[5; 32]).verifying_key().as_bytes());
    let attacker = hex(SigningKey::from_bytes(&[6; 32]).verifying_key().as_bytes());
    let db = rusqlite::Connection::open(dir.path().join("h.db")).unwrap();
    let sequence: i64 = db
        .query_row("SELECT sequence FROM audit_log WHERE action = 'provider.key_registered'", [], |r| r.get(0))
        .unwrap();
    drop(db);
    rewrite_and_rehash(dir.path(), sequence, |body| body.replace(&theirs, &attacker));
    let (passed, text) = audit_with_heads(dir.path());
    assert!(!passed);
    assert!(text.contains("rewritten"), "{text}");
}

#[test]
fn a_head_signed_with_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    published(dir.path());
    let heads = dir.path().join("h-heads");
    let original = std::fs::read_dir(&heads)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("head-"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .unwrap();
    let mut forged: serde_json::Value = serde_json::from_str(&original).unwrap();
    let other = SigningKey::from_bytes(&[9; 32]);
    let mut head: suanli_service::heads::Head = serde_json::from_value(forged.clone()).unwrap();
    head.log_size += 1;
    head.key_id = suanli_service::heads::key_id(&other.verifying_key());
    head.signature = hex(&other.sign(&head.signed_bytes()).to_bytes());
    forged = serde_json::to_value(&head).unwrap();
    let name = format!("head-{:012}.json", head.log_size);
    std::fs::write(heads.join(&name), forged.to_string()).unwrap();
    let (passed, text) = audit_with_heads(dir.path());
    assert!(!passed);
    assert!(text.contains(&format!("{name} is refused: it was signed by key")), "{text}");
}

/// Asked to check against heads, a directory with none that verifies is a failure, not a pass
/// (deleting the heads is no way around the check).
#[test]
fn a_heads_directory_without_a_valid_head_fails_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    published(dir.path());
    for entry in std::fs::read_dir(dir.path().join("h-heads")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_str().unwrap().starts_with("head-") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let (passed, text) = audit_with_heads(dir.path());
    assert!(!passed);
    assert!(text.contains("holds no head signed by the platform's key"), "{text}");
}
