//! Signed heads: the platform's Ed25519 signature over the size and Merkle root of its audit log
//! (with the ledger journal's head and the state hash), published as files outside the
//! database. Anyone who kept a head can later prove that a database is a consistent extension
//! of it (`suanli audit verify --heads DIR`): a log cut short or rewritten and re-hashed no longer
//! matches. The format is in `docs/signed-heads.md`.
//!
//! A head is written once, to `DIR/head-<size, 12 digits>.json` (never overwritten: the
//! directory only grows, so a witness may copy it with `rsync --ignore-existing` or the like).
//! `DIR/public-key` holds the key's public half in hex; the signing key itself lives apart (its
//! own file, mode 0600), never in the published directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::access::hex;
use crate::calendar::format_timestamp;

/// The first line of the bytes a head's signature covers.
pub const HEAD_DOMAIN: &str = "suanli-signed-head-v1";

/// A signed head, as published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub version: u32,
    /// Entries in the audit log; the tree's leaves.
    pub log_size: u64,
    /// The RFC 9162 Merkle root over the first `log_size` entries (hex).
    pub log_root: String,
    /// The chain hash of entry `log_size` (hex).
    pub log_head: String,
    /// Batches in the ledger journal, and the newest one's hash (hex).
    pub journal_batches: u64,
    pub journal_head: String,
    /// The ledger's state hash (hex).
    pub state_hash: String,
    /// When it was signed (RFC 3339, Asia/Shanghai).
    #[schemars(extend("format" = "date-time"))]
    pub time: String,
    /// The first 16 hex digits of SHA-256 of the public key that signed it.
    pub key_id: String,
    /// Ed25519 over [`Head::signed_bytes`] (hex).
    pub signature: String,
}

impl Head {
    /// What the signature covers: the domain line, then each field on its own line, in order.
    pub fn signed_bytes(&self) -> Vec<u8> {
        format!(
            "{HEAD_DOMAIN}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.log_size,
            self.log_root,
            self.log_head,
            self.journal_batches,
            self.journal_head,
            self.state_hash,
            self.time,
            self.key_id
        )
        .into_bytes()
    }

    /// Checks the signature with `key`; answers why not.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), String> {
        if self.version != 1 {
            return Err(format!("version {} is not 1", self.version));
        }
        if self.key_id != key_id(key) {
            return Err(format!("it was signed by key {}, not by the platform's key {}", self.key_id, key_id(key)));
        }
        let bytes: [u8; 64] = crate::access::unhex::<64>(&self.signature).ok_or("its signature is not 64 hex bytes")?;
        key.verify(&self.signed_bytes(), &Signature::from_bytes(&bytes))
            .map_err(|_| "its signature does not verify with the platform's key".to_owned())
    }

    /// The hashes the head names, decoded: the log's root and head, the journal's head.
    pub fn hashes(&self) -> Result<(suanli_ledger::Hash, suanli_ledger::Hash, suanli_ledger::Hash), String> {
        let root = crate::access::unhex::<32>(&self.log_root).ok_or("log_root is not 32 hex bytes")?;
        let head = crate::access::unhex::<32>(&self.log_head).ok_or("log_head is not 32 hex bytes")?;
        let journal = crate::access::unhex::<32>(&self.journal_head).ok_or("journal_head is not 32 hex bytes")?;
        Ok((root, head, journal))
    }
}

pub fn key_id(key: &VerifyingKey) -> String {
    hex(&Sha256::digest(key.as_bytes())[..8])
}

/// What a head is signed over, before it is signed.
pub struct HeadFacts {
    pub log_size: u64,
    pub log_root: suanli_ledger::Hash,
    pub log_head: suanli_ledger::Hash,
    pub journal_batches: u64,
    pub journal_head: suanli_ledger::Hash,
    pub state_hash: suanli_ledger::Hash,
    pub time_s: i64,
}

/// Signs heads with the platform key and publishes them to a directory. Clones share the latest
/// head, which the API serves.
#[derive(Clone)]
pub struct HeadSigner {
    key: Arc<SigningKey>,
    dir: PathBuf,
    latest: Arc<Mutex<Option<Head>>>,
}

impl HeadSigner {
    /// Opens (or, the first time, creates) the signing key at `key_path` and the directory heads
    /// are published to. A directory already holding another key's public half is refused.
    pub fn open(key_path: &Path, dir: &Path) -> Result<HeadSigner, String> {
        let key = load_or_create_key(key_path)?;
        std::fs::create_dir_all(dir).map_err(|e| format!("heads directory {}: {e}", dir.display()))?;
        let public = hex(key.verifying_key().as_bytes());
        let public_path = dir.join("public-key");
        match std::fs::read_to_string(&public_path) {
            Ok(kept) if kept.trim() == public => {}
            Ok(kept) => {
                return Err(format!(
                    "heads directory {}: its public-key is {}, not this signing key's {public}; heads of one log are \
                     signed by one key",
                    dir.display(),
                    kept.trim()
                ));
            }
            Err(_) => write_new(&public_path, format!("{public}\n").as_bytes(), false)?,
        }
        let latest = read_heads(dir)?.pop().map(|(_, head)| head);
        Ok(HeadSigner { key: Arc::new(key), dir: dir.to_owned(), latest: Arc::new(Mutex::new(latest)) })
    }

    pub fn public_key_hex(&self) -> String {
        hex(self.key.verifying_key().as_bytes())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest head published.
    pub fn latest(&self) -> Option<Head> {
        self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Signs `facts` and publishes the head, unless a head of that size is published already
    /// (then that one is answered).
    pub fn publish(&self, facts: &HeadFacts) -> Result<Head, String> {
        if let Some(latest) = self.latest().filter(|h| h.log_size == facts.log_size) {
            return Ok(latest);
        }
        let mut head = Head {
            version: 1,
            log_size: facts.log_size,
            log_root: hex(&facts.log_root),
            log_head: hex(&facts.log_head),
            journal_batches: facts.journal_batches,
            journal_head: hex(&facts.journal_head),
            state_hash: hex(&facts.state_hash),
            time: format_timestamp(facts.time_s),
            key_id: key_id(&self.key.verifying_key()),
            signature: String::new(),
        };
        head.signature = hex(&self.key.sign(&head.signed_bytes()).to_bytes());
        let path = self.dir.join(format!("head-{:012}.json", head.log_size));
        let text = serde_json::to_string_pretty(&head).expect("heads serialize") + "\n";
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if !path.exists() {
            write_new(&path, text.as_bytes(), false)?;
        }
        *self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(head.clone());
        Ok(head)
    }
}

/// Every head in `dir`, by size.
pub fn read_heads(dir: &Path) -> Result<Vec<(PathBuf, Head)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("heads directory {}: {e}", dir.display()))?;
    let mut heads = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("heads directory {}: {e}", dir.display()))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("head-") && name.ends_with(".json")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if text.is_empty() {
            // A write torn by a crash in a release before heads were written whole: it holds
            // nothing signed (`publish` writes that head again).
            continue;
        }
        let head: Head =
            serde_json::from_str(&text).map_err(|e| format!("{}: not a signed head: {e}", path.display()))?;
        heads.push((path, head));
    }
    heads.sort_by_key(|(_, head)| head.log_size);
    Ok(heads)
}

/// The public key in `text` (64 hex digits, surrounding space ignored).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = crate::access::unhex::<32>(text.trim()).ok_or("a public key is 64 hex digits")?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

fn load_or_create_key(path: &Path) -> Result<SigningKey, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = crate::access::unhex::<32>(text.trim())
                .ok_or_else(|| format!("signing key {}: not 64 hex digits", path.display()))?;
            Ok(SigningKey::from_bytes(&bytes))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| format!("no randomness from the operating system: {e}"))?;
            let key = SigningKey::from_bytes(&seed);
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| format!("signing key {}: {e}", path.display()))?;
            }
            write_new(path, format!("{}\n", hex(&seed)).as_bytes(), true)?;
            Ok(key)
        }
        Err(error) => Err(format!("signing key {}: {error}", path.display())),
    }
}

/// Creates `path` with `bytes`, durably and whole; never replaces. The bytes go to a temporary
/// file first, synced, then linked under the final name and the directory synced: a crash at any
/// point leaves either no file or the whole one, never an empty or torn file that would stop the
/// next start. A private file is readable by its owner only (where the system has modes).
fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<(), String> {
    let error = |e: std::io::Error| format!("{}: {e}", path.display());
    let name =
        path.file_name().and_then(|n| n.to_str()).ok_or_else(|| format!("{}: not a file name", path.display()))?;
    // A name of its own, created new: nothing already there (a leftover, a link) is written
    // through.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let temporary = path.with_file_name(format!(".{name}.{}.{nanos}.partial", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&temporary).map_err(error)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(error)?;
    drop(file);
    // A hard link fails when `path` exists, so a published file is never replaced.
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    linked.map_err(error)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_file_is_whole_never_replaced_and_leaves_no_partial_file() {
        let dir = std::env::temp_dir().join(format!("suanli-heads-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("head-000000000001.json");
        let _ = std::fs::remove_file(&path);
        write_new(&path, b"first\n", false).unwrap();
        assert!(write_new(&path, b"second\n", false).is_err(), "an existing file is never replaced");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\n");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("head-000000000001.json")], "no partial file is left");
        // An empty head, torn by a crash in an older release, is passed over.
        std::fs::write(dir.join("head-000000000002.json"), "").unwrap();
        std::fs::write(dir.join("head-000000000001.json.x"), "").unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(read_heads(&dir).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
