//! Typed identifiers, so an order id can never be passed where a voucher id is meant.
//!
//! Each is a positive 64-bit number shown with a short prefix (`prg-12`, `vch-7`); parsing
//! accepts exactly that spelling.

use std::fmt;

/// Why an identifier was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} id must look like {prefix}-N with N a positive number, got {text:?}")]
    Malformed { kind: &'static str, prefix: &'static str, text: String },
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(std::num::NonZeroU64);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// `None` for zero, which is never an id.
            pub fn new(value: u64) -> Option<$name> {
                std::num::NonZeroU64::new(value).map($name)
            }

            pub const fn get(self) -> u64 {
                self.0.get()
            }

            pub fn parse(text: &str) -> Result<$name, IdError> {
                text.strip_prefix(concat!($prefix, "-"))
                    .filter(|digits| !digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|digits| digits.parse::<u64>().ok())
                    .and_then($name::new)
                    .ok_or_else(|| IdError::Malformed { kind: $kind, prefix: $prefix, text: text.to_owned() })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}-{}", $prefix, self.0)
            }
        }
    };
}

typed_id!(/// A city or province programme office.
    AuthorityId, "authority", "ath");
typed_id!(/// A voucher programme.
    ProgramId, "program", "prg");
typed_id!(/// An enterprise (its USCC is its public identity; this is the internal key).
    EnterpriseId, "enterprise", "ent");
typed_id!(/// An application to a programme.
    ApplicationId, "application", "app");
typed_id!(/// A voucher.
    VoucherId, "voucher", "vch");
typed_id!(/// A data-centre operator.
    ProviderId, "provider", "prv");
typed_id!(/// A data-centre site.
    SiteId, "site", "sit");
typed_id!(/// A pool of identical GPUs at a site.
    PoolId, "pool", "pol");
typed_id!(/// A compute order.
    OrderId, "order", "ord");
typed_id!(/// An order waiting for the scheduling loop to place it.
    RequestId, "request", "req");
typed_id!(/// A provider's offer of capacity to the market between hub nodes.
    OfferId, "offer", "off");
typed_id!(/// A monthly settlement statement.
    StatementId, "statement", "stm");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_other_spellings() {
        let id = VoucherId::new(42).unwrap();
        assert_eq!(id.to_string(), "vch-42");
        assert_eq!(VoucherId::parse("vch-42"), Ok(id));
        for bad in ["vch-0", "vch-042", "vch-", "prg-42", "vch-4x", "vch--4", "vch-99999999999999999999"] {
            assert!(VoucherId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(VoucherId::new(0), None);
    }
}
