//! Suanli's domain types and rules: money in fen, rates in basis points, the Unified Social
//! Credit Code, GB/T 2260 regions and typed ids.
//!
//! This crate does no I/O and depends on no runtime, database or web crate. Every type follows
//! "parse, don't validate": fields are private, a value is built only through a constructor that
//! checks it, and once it exists it is valid.

pub mod ids;
pub mod money;
pub mod region;
pub mod uscc;

pub use ids::{
    ApplicationId, AuthorityId, EnterpriseId, IdError, OrderId, PoolId, ProgramId, ProviderId, SiteId, StatementId,
    VoucherId,
};
pub use money::{Fen, MoneyError, RateBp, RateError};
pub use region::{RegionCode, RegionError, RegionLevel, RegionName};
pub use uscc::{Uscc, UsccError};
