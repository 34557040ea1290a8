//! The market between hub nodes: providers offer capacity, and demand a programme's tiers cannot
//! serve is matched to it by a periodic clearing.
//!
//! A provider posts an **offer**: GPUs of one of its pools (at a site whose region the platform
//! verified), free over a window, at no less than a reserve price per GPU-hour. A programme whose
//! tiers say `trade = true` sends the requests its highest tier could not serve to the market when
//! they carry a limit price (the most the enterprise pays per GPU-hour of the hours it asked for).
//! A **clearing** (`Service::run_clearing`, by the server every `clearing_interval_seconds`)
//! matches those bids to the offers outside each bid's highest tier with
//! [`suanli_placement::market::clear`]: a welfare-maximizing matching priced per offer at the
//! lowest competitive prices, with its welfare against the LP relaxation of the same round.
//!
//! Each trade becomes an order on the offer's pool at its clearing price (the voucher's
//! share held as for any order), and its usage is booked between the two regions in the ledger:
//! each record's cost moves from the buying programme's province account to the selling site's
//! (`AccountKind::RegionTrade`), so each region's balance is what its sites delivered less what
//! its programmes used across the network, and all regions' balances add up to zero.

use serde::{Deserialize, Serialize};
use suanli_domain::{Fen, OfferId, OrderId, PoolId, ProgramId, ProviderId, RegionCode, RequestId};

/// The longest window an offer may cover: 31 days.
pub const OFFER_WINDOW_MAX_S: i64 = 31 * 86_400;

/// The highest limit or reserve price per GPU-hour: ¥100,000 (so every trade's value fits in fen).
pub const LIMIT_FEN_PER_GPU_HOUR_MAX: i64 = 10_000_000;

/// The most offers one pool may have open or upcoming at once (each adds to every clearing's LP).
pub const OFFERS_PER_POOL_MAX: usize = 16;

/// The most bids one clearing takes (the oldest first); the rest wait for the next. The LPs of a
/// clearing grow faster than its bids: 500 on 28 offers clear in about 0.2 s, 1,000 in 1.1 s.
pub const CLEARING_BIDS_MAX: usize = 500;

/// The most of those bids one enterprise may have (a tenth): one enterprise's many waiting
/// requests cannot crowd the others out of a clearing.
pub const CLEARING_BIDS_PER_ENTERPRISE_MAX: usize = 50;

/// How often the server clears the market, unless the deployment says otherwise.
pub const CLEARING_INTERVAL_DEFAULT_S: u64 = 3_600;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OfferState {
    /// Its window has not begun.
    Upcoming,
    /// In its window with GPUs left: the next clearing may sell them.
    Open,
    /// Its window is over or every GPU is sold.
    Closed,
    Withdrawn,
}

impl OfferState {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferState::Upcoming => "upcoming",
            OfferState::Open => "open",
            OfferState::Closed => "closed",
            OfferState::Withdrawn => "withdrawn",
        }
    }
}

/// A provider's capacity offered to the market.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CapacityOffer {
    pub id: OfferId,
    pub provider: ProviderId,
    pub pool: PoolId,
    /// The region of the pool's site, as the platform verified it: the seller's side of the
    /// settlement between regions.
    pub region: RegionCode,
    pub gpus: u32,
    pub opens_at_s: i64,
    pub closes_at_s: i64,
    pub reserve_fen_per_gpu_hour: Fen,
    pub posted_at_s: i64,
    /// GPUs sold by clearings so far.
    #[serde(default)]
    pub gpus_sold: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_at_s: Option<i64>,
}

impl CapacityOffer {
    pub fn state_at(&self, now: i64) -> OfferState {
        if self.withdrawn_at_s.is_some() {
            OfferState::Withdrawn
        } else if now < self.opens_at_s {
            OfferState::Upcoming
        } else if now >= self.closes_at_s || self.gpus_sold >= self.gpus {
            OfferState::Closed
        } else {
            OfferState::Open
        }
    }

    /// Whole hours left in the window at `now`.
    pub fn hours_left(&self, now: i64) -> u32 {
        u32::try_from((self.closes_at_s - now.max(self.opens_at_s)).max(0) / 3_600).unwrap_or(u32::MAX)
    }
}

/// One bid matched to one offer by a clearing, and the order it became.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Trade {
    pub offer: OfferId,
    pub request: RequestId,
    pub order: OrderId,
    pub program: ProgramId,
    pub gpus: u32,
    pub hours: u32,
    /// Its offer's reserve plus the offer's GPU price over the trade's hours (or less, where
    /// `capped`).
    pub price_fen_per_gpu_hour: Fen,
    /// `price × gpus × hours`: the order's list cost, the most the buying region can come to owe
    /// the selling one for it (it owes what the order's usage costs).
    pub paid_fen: Fen,
    pub egress_fen: i64,
    /// The bid's value less the offer's reserve for the hours and the egress.
    pub surplus_fen: i64,
    /// Priced below the offer's clearing price, at the bid's limit (a trade the LP relaxation did
    /// not support).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capped: bool,
    /// The buying programme's region and the selling site's.
    pub buyer_region: RegionCode,
    pub seller_region: RegionCode,
}

/// One offer's price in a clearing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OfferPrice {
    pub offer: OfferId,
    pub gpus_offered: u32,
    pub gpus_sold: u32,
    /// The price of one of its GPUs for the window (0 where nothing made them scarce): each trade
    /// on the offer pays its reserve per GPU-hour plus this per GPU, so `reserve + gpu_price /
    /// hours` per GPU-hour.
    pub gpu_price_fen: Fen,
    pub reserve_fen_per_gpu_hour: Fen,
}

/// What one clearing did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Clearing {
    /// Its number, from 1.
    pub clearing: u64,
    pub cleared_at_s: i64,
    /// The bids it took (requests with a limit price that their highest tier left waiting).
    pub bids: u32,
    pub prices: Vec<OfferPrice>,
    pub trades: Vec<Trade>,
    /// The sum of the trades' surplus, in fen.
    pub welfare_fen: i64,
    /// The LP relaxation's optimum of the same round: no matching could reach more. Solved as a
    /// primal and as a dual, which agree (strong duality): both are kept, so anyone can check.
    pub lp_welfare_fen: i64,
    #[serde(default)]
    pub lp_dual_fen: i64,
    /// `(lp − welfare) / lp` in basis points.
    pub gap_bp: u32,
}
