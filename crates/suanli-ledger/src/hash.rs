//! Canonical bytes and hashes.
//!
//! Every record has one fixed-width little-endian encoding. The journal's hash chain and the
//! state hash are SHA-256 over these bytes, so two stores that hold the same ledger print the same
//! hashes whatever their backend, and an auditor can recompute them from the rows alone.

use sha2::{Digest, Sha256};

use crate::state::{Changes, Ledger};
use crate::types::{Account, Expiry, FailedId, PendingStatus, Transfer};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The hash before the first batch of a journal.
pub const GENESIS: Hash = [0; 32];

pub fn encode_account(out: &mut Vec<u8>, a: &Account) {
    out.extend_from_slice(&a.id.to_le_bytes());
    out.extend_from_slice(&a.ledger.to_le_bytes());
    out.extend_from_slice(&a.code.to_le_bytes());
    out.extend_from_slice(&a.flags.bits().to_le_bytes());
    out.extend_from_slice(&a.user_data.to_le_bytes());
    for balance in [a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted] {
        out.extend_from_slice(&balance.to_le_bytes());
    }
    out.extend_from_slice(&a.timestamp.to_le_bytes());
}

pub fn encode_transfer(out: &mut Vec<u8>, t: &Transfer) {
    out.extend_from_slice(&t.id.to_le_bytes());
    out.extend_from_slice(&t.debit_account_id.to_le_bytes());
    out.extend_from_slice(&t.credit_account_id.to_le_bytes());
    out.extend_from_slice(&t.amount.to_le_bytes());
    out.extend_from_slice(&t.pending_id.to_le_bytes());
    out.extend_from_slice(&t.timeout_s.to_le_bytes());
    out.extend_from_slice(&t.ledger.to_le_bytes());
    out.extend_from_slice(&t.code.to_le_bytes());
    out.extend_from_slice(&t.flags.bits().to_le_bytes());
    out.extend_from_slice(&t.user_data.to_le_bytes());
    out.extend_from_slice(&t.timestamp.to_le_bytes());
}

fn encode_expiry(out: &mut Vec<u8>, e: &Expiry) {
    out.extend_from_slice(&e.pending_id.to_le_bytes());
    out.extend_from_slice(&e.timestamp.to_le_bytes());
}

fn encode_failed(out: &mut Vec<u8>, f: &FailedId) {
    out.extend_from_slice(&f.id.to_le_bytes());
    let code = f.reason.code().as_bytes();
    out.push(u8::try_from(code.len()).expect("codes are short"));
    out.extend_from_slice(code);
    out.extend_from_slice(&f.timestamp.to_le_bytes());
}

fn encode_count(out: &mut Vec<u8>, count: usize) {
    out.extend_from_slice(&(count as u64).to_le_bytes());
}

/// The journal hash of one batch: SHA-256 of the previous hash and everything the batch created.
/// Accounts are hashed as created (zero balances): their later balances follow from transfers.
/// `accounts_after` is not hashed, since it is derived.
pub fn batch_hash(previous: &Hash, changes: &Changes) -> Hash {
    let mut bytes = Vec::with_capacity(
        64 + changes.accounts_created.len() * 80 + changes.transfers_created.len() * 108 + changes.expired.len() * 24,
    );
    bytes.extend_from_slice(b"suanli-batch-v1");
    bytes.extend_from_slice(previous);
    bytes.extend_from_slice(&changes.timestamp_first.to_le_bytes());
    bytes.extend_from_slice(&changes.timestamp_last.to_le_bytes());
    encode_count(&mut bytes, changes.accounts_created.len());
    changes.accounts_created.iter().for_each(|a| encode_account(&mut bytes, a));
    encode_count(&mut bytes, changes.transfers_created.len());
    changes.transfers_created.iter().for_each(|t| encode_transfer(&mut bytes, t));
    encode_count(&mut bytes, changes.expired.len());
    changes.expired.iter().for_each(|e| encode_expiry(&mut bytes, e));
    encode_count(&mut bytes, changes.failed.len());
    changes.failed.iter().for_each(|f| encode_failed(&mut bytes, f));
    Sha256::digest(&bytes).into()
}

/// A hash of the whole state: every account with its balances, how many transfers were ever
/// created, every pending status, every failed id and the clock. Equal states give equal hashes,
/// whether settled transfers are held in memory or only in storage (their effect is in the
/// balances, and the journal's hash chain covers each of them); it takes linear time in accounts
/// plus a sort, so it is for checks, not for every batch.
pub fn state_hash(ledger: &Ledger) -> Hash {
    let mut hasher = Sha256::new();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"suanli-state-v2");
    bytes.extend_from_slice(&ledger.last_timestamp().to_le_bytes());
    let mut accounts: Vec<&Account> = ledger.accounts().collect();
    accounts.sort_unstable_by_key(|a| a.id);
    encode_count(&mut bytes, accounts.len());
    for account in accounts {
        encode_account(&mut bytes, account);
        if bytes.len() > 1 << 16 {
            hasher.update(&bytes);
            bytes.clear();
        }
    }
    bytes.extend_from_slice(&ledger.transfers_total().to_le_bytes());
    let mut pending: Vec<(u128, PendingStatus)> = ledger.pending_statuses().collect();
    pending.sort_unstable_by_key(|p| p.0);
    encode_count(&mut bytes, pending.len());
    for (id, status) in pending {
        bytes.extend_from_slice(&id.to_le_bytes());
        bytes.push(status as u8);
    }
    let mut failed: Vec<&FailedId> = ledger.failed_ids().collect();
    failed.sort_unstable_by_key(|f| f.id);
    encode_count(&mut bytes, failed.len());
    failed.iter().for_each(|f| encode_failed(&mut bytes, f));
    hasher.update(&bytes);
    hasher.finalize().into()
}

/// Lower-case hex, for printing hashes.
pub fn to_hex(hash: &Hash) -> String {
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}
