//! Suanli's double-entry ledger: accounts with balance limits, single-phase and two-phase
//! (pending → posted or voided, with timeouts) transfers, linked chains that apply all or
//! nothing, and idempotent client-chosen ids.
//!
//! The ledger is a deterministic state machine with one owner: [`Ledger::apply`] takes a batch
//! and the clock's reading and returns outcomes and the changes to persist. It does no I/O;
//! storage and the clock live outside. TigerBeetle's design is the model, simplified where this
//! project needs less (no balancing transfers, no history queries).

pub mod hash;
mod state;
mod types;

pub use hash::{GENESIS, Hash, batch_hash, state_hash, to_hex};
pub use state::{BATCH_EVENTS_MAX, BatchError, BatchResult, Changes, InvariantViolation, Ledger};
pub use types::{
    Account, AccountFlags, Event, Expiry, FailedId, NewAccount, Outcome, PendingStatus, Receipt, Reject, Transfer,
    TransferFlags,
};
