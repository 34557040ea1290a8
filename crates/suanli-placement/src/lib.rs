//! Suanli's placement engine: a batch of compute orders onto GPU pools across the national
//! network, minimizing cost plus penalties for orders left unplaced, with a valid lower bound on
//! every answer so its distance from the optimum is always known.
//!
//! The crate does no I/O. [`format`] holds the v1 batch shapes of `docs/placement-format.md` and
//! checks them into a [`Problem`]; [`solve`] answers it (Lagrangian bound, guided greedy, local
//! search, branch and bound for small batches, each within a time limit); [`explain`] says why an
//! order went where it did; [`market`] clears capacity traded between hub nodes; [`network`] builds the default 10-cluster network and seeded batches.

pub mod explain;
pub mod format;
pub mod market;
pub mod model;
pub mod network;
pub mod solve;

pub use explain::{Explanation, PoolVerdict, explain};
pub use model::{Exclusion, Operator, Order, Origin, Policy, Pool, Problem, Site, Terms, rtt_ms};
pub use solve::{Breakdown, Limits, Method, PolicyCost, Solution, breakdown, policy_cost, solve};
