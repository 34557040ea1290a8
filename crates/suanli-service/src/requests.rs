//! Order requests: orders submitted to the scheduling loop instead of placed at once.
//!
//! A request says what an order says without a pool: voucher, GPUs, hours (or work), purpose,
//! where its data is. It waits until the next round of the loop (`Service::run_round`), which
//! places every waiting request together through the batch engine. Each round decides some:
//! placed (an order, with what each policy term weighed in money), or refused with the reason once
//! it has waited as long as it may. The rest wait for the next round.

use serde::{Deserialize, Serialize};
use suanli_domain::{EnterpriseId, Fen, OrderId, PoolId, ProgramId, RequestId, VoucherId};

use crate::model::Purpose;
use crate::service::{Needs, PoolRequest, Work};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Waiting,
    Placed,
    Refused,
    Withdrawn,
}

impl RequestState {
    pub const ALL: [RequestState; 4] =
        [RequestState::Waiting, RequestState::Placed, RequestState::Refused, RequestState::Withdrawn];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Waiting => "waiting",
            RequestState::Placed => "placed",
            RequestState::Refused => "refused",
            RequestState::Withdrawn => "withdrawn",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrderRequest {
    pub id: RequestId,
    pub enterprise: EnterpriseId,
    pub voucher: VoucherId,
    pub program: ProgramId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chip: Option<String>,
    pub gpu_count: u32,
    /// The hours bought; for work, the most it may take (its deadline).
    pub hours: u32,
    pub purpose: Purpose,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<Work>,
    /// The hub the order's data is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_hub: Option<String>,
    #[serde(default)]
    pub data_gb: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms_max: Option<f64>,
    /// The most the enterprise pays per GPU-hour (of the hours it asked for) for capacity bought
    /// between hub nodes, when its programme trades: a request with a limit that its highest tier
    /// cannot serve is a bid in the next clearing of the market (`crate::market`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_fen_per_gpu_hour: Option<Fen>,
    pub submitted_at_s: i64,
    /// Not placed by this instant, the request is refused at the next round.
    pub expires_at_s: i64,
    pub state: RequestState,
    /// What the round that decided it found, once one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

impl OrderRequest {
    /// The order it asks for, as the placement engine is asked.
    pub fn pool_request(&self) -> PoolRequest {
        PoolRequest {
            enterprise: self.enterprise,
            voucher: self.voucher,
            chip: self.chip.clone(),
            gpu_count: self.gpu_count,
            hours: self.hours,
            purpose: self.purpose,
            needs: Needs {
                work: self.work.clone(),
                origin_hub: self.origin_hub.clone(),
                data_gb: self.data_gb,
                rtt_ms_max: self.rtt_ms_max,
            },
        }
    }
}

/// How a round decided one request, with the money behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Decision {
    pub round: u64,
    pub decided_at_s: i64,
    pub state: RequestState,
    /// The order placed for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolId>,
    /// The hours it runs on the chosen pool's chip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<u32>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the policy terms weighed, in fen (zero or negative credits), and the egress the
    /// engine counted for moving the data (paid to the network, not through the voucher).
    #[serde(default)]
    pub list_cost_fen: Fen,
    #[serde(default)]
    pub underused_credit_fen: i64,
    #[serde(default)]
    pub domestic_credit_fen: i64,
    #[serde(default)]
    pub egress_fen: i64,
    /// For a programme with tiers: the tier that served it (`city (Chengdu)`), and why each tier
    /// below could not (for a refused request, every tier it was tried in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalated: Vec<String>,
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RoundReport {
    /// The round's number (0 when nothing was waiting and no round ran).
    pub round: u64,
    pub waiting_before: u32,
    pub placed: Vec<(RequestId, OrderId)>,
    pub refused: Vec<(RequestId, String)>,
    pub still_waiting: u32,
    /// The engine's gap to its own lower bound, in basis points (10,000 when it had no bound).
    pub gap_bp: u32,
    pub solve_ms: u64,
    /// Sums over the orders placed, in fen.
    pub list_cost_fen: Fen,
    pub underused_credit_fen: i64,
    pub domestic_credit_fen: i64,
    pub egress_fen: i64,
}

/// A programme's own placement policy weights, each overriding the deployment's where given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementWeights {
    /// Sites busier than this share of their GPUs (basis points) earn no under-used credit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_target_bp: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underused_credit_fen_per_gpu_hour: Option<i64>,
    /// The weight on the programme's extra domestic-chip subsidy, in basis points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domestic_weight_bp: Option<i64>,
}

impl PlacementWeights {
    /// The deployment's `policy` with these weights over it.
    pub fn over(self, policy: suanli_placement::Policy) -> suanli_placement::Policy {
        suanli_placement::Policy {
            utilization_target: self.utilization_target_bp.map_or(policy.utilization_target, |bp| f64::from(bp) / 1e4),
            underused_credit_fen_per_gpu_hour: self
                .underused_credit_fen_per_gpu_hour
                .unwrap_or(policy.underused_credit_fen_per_gpu_hour),
            domestic_weight_bp: self.domestic_weight_bp.unwrap_or(policy.domestic_weight_bp),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == PlacementWeights::default()
    }

    /// Each weight within its range, or the field and why not.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.utilization_target_bp.is_some_and(|bp| bp > 10_000) {
            return Err(("utilization_target_bp", "must be between 0 and 10000"));
        }
        if self.underused_credit_fen_per_gpu_hour.is_some_and(|fen| !(0..=1_000_000).contains(&fen)) {
            return Err(("underused_credit_fen_per_gpu_hour", "must be between 0 and 1000000"));
        }
        if self.domestic_weight_bp.is_some_and(|bp| !(0..=10_000).contains(&bp)) {
            return Err(("domestic_weight_bp", "must be between 0 and 10000"));
        }
        Ok(())
    }
}
