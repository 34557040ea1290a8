//! Who may do what: roles with their scopes, API tokens stored hashed, provider signing keys and
//! the canonical bytes a usage batch is signed over.
//!
//! A token's secret is made by the caller (the CLI or the API, from the operating system's random
//! source) and shown once; the service keeps only its SHA-256, so a stolen database yields no
//! usable token. Tokens are revocable. A provider registers an Ed25519 public key; each usage
//! batch it sends carries a signature over [`usage_signing_bytes`], checked before any record is
//! looked at.

use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use suanli_domain::{AuthorityId, EnterpriseId, ProviderId};

use crate::error::{ErrorCode, Result, ServiceError};
use crate::model::UsageInput;

/// A role and the one object it is scoped to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    PlatformAdmin,
    AuthorityAdmin(AuthorityId),
    AuthorityReviewer(AuthorityId),
    Enterprise(EnterpriseId),
    Provider(ProviderId),
    /// Reads everything, changes nothing.
    Auditor,
}

impl Role {
    /// `admin`, `authority-admin:ath-1`, `authority-reviewer:ath-1`, `enterprise:ent-1`,
    /// `provider:prv-1`, `auditor`.
    pub fn parse(text: &str) -> Result<Role> {
        let role = match text.split_once(':') {
            None if text == "admin" => Some(Role::PlatformAdmin),
            None if text == "auditor" => Some(Role::Auditor),
            Some(("authority-admin", id)) => AuthorityId::parse(id).ok().map(Role::AuthorityAdmin),
            Some(("authority-reviewer", id)) => AuthorityId::parse(id).ok().map(Role::AuthorityReviewer),
            Some(("enterprise", id)) => EnterpriseId::parse(id).ok().map(Role::Enterprise),
            Some(("provider", id)) => ProviderId::parse(id).ok().map(Role::Provider),
            _ => None,
        };
        role.ok_or_else(|| {
            ServiceError::field(
                "role",
                format!(
                    "must be admin, auditor, authority-admin:ath-N, authority-reviewer:ath-N, enterprise:ent-N or \
                     provider:prv-N, got {text:?}"
                ),
            )
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::PlatformAdmin => f.write_str("admin"),
            Role::AuthorityAdmin(id) => write!(f, "authority-admin:{id}"),
            Role::AuthorityReviewer(id) => write!(f, "authority-reviewer:{id}"),
            Role::Enterprise(id) => write!(f, "enterprise:{id}"),
            Role::Provider(id) => write!(f, "provider:{id}"),
            Role::Auditor => f.write_str("auditor"),
        }
    }
}

/// An API token as the service keeps it: never the secret, only its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub id: u64,
    pub secret_sha256_hex: String,
    pub role: String,
    pub issued_at_s: i64,
    pub revoked: bool,
    /// When the token stops working (tokens issued before expiries existed have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_s: Option<i64>,
    /// The person a login token was issued to (machine tokens have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// How long a token lasts unless its issuer says otherwise: 90 days for machine tokens.
pub const TOKEN_TTL_DEFAULT_S: i64 = 90 * 86_400;
/// The longest a token may be issued for: one year.
pub const TOKEN_TTL_MAX_S: i64 = 366 * 86_400;
/// How long a token from a password login lasts: 12 hours.
pub const LOGIN_TOKEN_TTL_S: i64 = 12 * 3_600;

/// A person who logs in with a password; the service keeps only the argon2 PHC string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub password_phc: String,
    pub role: String,
    pub created_at_s: i64,
    /// A disabled person cannot log in; disabling revoked the sessions it had.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

pub use suanli_wire::hex;

/// Lowercase or uppercase hex into bytes; `None` if the text is not hex of the expected length.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let digits = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(out)
}

/// The bytes a provider signs for each kind of batch (`docs/signing.md`), defined with the
/// batches in `suanli-wire`.
pub use suanli_wire::{usage_signing_bytes, utilization_signing_bytes};

/// Checks a usage batch's signature against the provider's registered key.
pub fn verify_usage(
    public_key_hex: Option<&str>,
    provider: ProviderId,
    records: &[UsageInput],
    signature_hex: &str,
) -> Result<()> {
    verify_signed(public_key_hex, provider, "usage", &usage_signing_bytes(provider, records), signature_hex)
}

/// Checks a utilization batch's signature against the provider's registered key.
pub fn verify_utilization(
    public_key_hex: Option<&str>,
    provider: ProviderId,
    samples: &[crate::model::UtilizationInput],
    signature_hex: &str,
) -> Result<()> {
    verify_signed(public_key_hex, provider, "utilization", &utilization_signing_bytes(provider, samples), signature_hex)
}

fn verify_signed(
    public_key_hex: Option<&str>,
    provider: ProviderId,
    what: &str,
    bytes: &[u8],
    signature_hex: &str,
) -> Result<()> {
    let Some(public_key_hex) = public_key_hex else {
        return Err(ServiceError::new(
            ErrorCode::SignatureInvalid,
            format!("signature: {provider} has registered no public key, so its {what} cannot be verified"),
        ));
    };
    let key = unhex::<32>(public_key_hex).and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok()).ok_or_else(|| {
        ServiceError::new(ErrorCode::Internal, format!("{provider}'s stored public key is malformed"))
    })?;
    let signature = unhex::<64>(signature_hex).map(|bytes| Signature::from_bytes(&bytes)).ok_or_else(|| {
        ServiceError::new(ErrorCode::SignatureInvalid, "signature: must be 128 hex characters (an Ed25519 signature)")
    })?;
    key.verify_strict(bytes, &signature).map_err(|_| {
        ServiceError::new(ErrorCode::SignatureInvalid, "signature: does not match the batch and the provider's key")
    })
}

/// Checks that text is an Ed25519 public key in hex.
pub fn check_public_key(public_key_hex: &str) -> Result<()> {
    let key = unhex::<32>(public_key_hex)
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| ServiceError::field("public_key", "must be 64 hex characters of an Ed25519 public key"))?;
    // A key of small order verifies signatures anyone can make.
    if key.is_weak() {
        return Err(ServiceError::field("public_key", "is a weak Ed25519 key (of small order); make a new key pair"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_of_small_order_is_refused_and_a_real_one_taken() {
        // The identity point and the all-zero encoding are of small order: anyone can make
        // signatures they verify.
        for weak in [format!("01{}", "00".repeat(31)), "00".repeat(32)] {
            let refused = check_public_key(&weak).unwrap_err();
            assert!(refused.message.contains("weak"), "{weak}: {refused}");
        }
        let real = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        check_public_key(&hex(real.as_bytes())).unwrap();
    }
}
