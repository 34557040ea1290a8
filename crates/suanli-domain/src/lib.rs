//! Suanli's domain types and rules: money in fen, rates in basis points, the Unified Social
//! Credit Code, GB/T 2260 regions, typed ids and the eligibility rule language.
//!
//! This crate does no I/O and depends on no runtime, database or web crate. Every type follows
//! "parse, don't validate": fields are private, a value is built only through a constructor that
//! checks it, and once it exists it is valid.

pub mod eligibility;
pub mod ids;
pub mod money;
pub mod region;
pub mod uscc;

#[cfg(feature = "serde")]
mod schema_impls;
#[cfg(feature = "serde")]
mod serde_impls;

pub use eligibility::{ApplicantKind, KindError, Profile, Rule, RuleError, Verdict, Wording};
pub use ids::{
    ApplicationId, AuthorityId, EnterpriseId, IdError, OfferId, OrderId, PoolId, ProgramId, ProviderId, RequestId,
    SiteId, StatementId, VoucherId,
};
pub use money::{Fen, MoneyError, RateBp, RateError};
pub use region::{RegionCode, RegionError, RegionLevel, RegionName};
pub use uscc::{Uscc, UsccError};
