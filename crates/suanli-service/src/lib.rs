//! Suanli's use cases: voucher programmes run end to end on the ledger.
//!
//! An authority loads a programme file and opens it (its budget moves from the appropriation);
//! enterprises register and apply; approval issues a voucher and takes its face value from the
//! budget; orders lock a price and hold the voucher's share; providers report metered usage,
//! which is priced, split between voucher and enterprise and posted; an expiry sweep returns
//! unspent balances; monthly statements settle with providers.
//!
//! [`Service`] is the single writer. Its state is rebuilt at start-up by replaying the
//! hash-chained audit log, and every change is committed with its ledger batch in one
//! transaction. Time comes from an injected [`Clock`].

pub mod access;
pub mod books;
pub mod calendar;
pub mod check;
pub mod chips;
pub mod clock;
pub mod error;
pub mod evaluation;
pub mod event;
pub mod heads;
pub mod lottery;
pub mod market;
pub mod model;
pub mod occupancy;
pub mod outcome;
pub mod program_file;
pub mod requests;
pub mod service;
pub mod state;
pub mod tiers;

pub use access::Role;
pub use clock::{Clock, ManualClock, RunningClock, SystemClock};
pub use error::{ErrorCode, ServiceError};
pub use model::SiteSpec;
pub use service::{
    ARCHIVE_AFTER_S, Actor, CLOCK_SKEW_DEFAULT_S, CheckpointPolicy, EGRESS_FEN_PER_GB, EnterpriseInput, Needs,
    OfferInput, OrderInput, OrderPage, OrderQuery, PLACEMENT_POLICY, PoolChoice, PoolInput, PoolRequest,
    REQUEST_WAIT_DEFAULT_S, REQUEST_WAIT_MAX_S, RoundSettings, Service, SweepReport, TOKEN_PURGE_AFTER_S, UsageGroup,
    View, Work, cost_of, work_classes,
};
pub use state::State;
