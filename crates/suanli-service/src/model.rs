//! The service's nouns as it holds them (DESIGN.md §3).
//!
//! These records are what the audit log carries in its bodies and what `--json` prints, so they
//! derive `Serialize`/`Deserialize`; their domain fields (money, codes, ids) are the checked
//! domain types, read back through the same parsers. Balances kept here (`available`, `held`,
//! `hold_remaining`, …) mirror the ledger for fast decisions; the audit compares them with the
//! ledger's own balances.

use serde::{Deserialize, Serialize};
use suanli_domain::{
    ApplicantKind, ApplicationId, AuthorityId, EnterpriseId, Fen, OrderId, PoolId, ProgramId, ProviderId, RateBp,
    RegionCode, SiteId, StatementId, Uscc, VoucherId,
};

/// What the subsidised compute is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Training,
    Inference,
    FineTuning,
    Data,
}

impl Purpose {
    pub const ALL: [Purpose; 4] = [Purpose::Training, Purpose::Inference, Purpose::FineTuning, Purpose::Data];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Training => "training",
            Purpose::Inference => "inference",
            Purpose::FineTuning => "fine_tuning",
            Purpose::Data => "data",
        }
    }

    pub fn parse(text: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// Who runs a data centre.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperatorKind {
    Government,
    StateOwned,
    Commercial,
}

impl OperatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorKind::Government => "government",
            OperatorKind::StateOwned => "state_owned",
            OperatorKind::Commercial => "commercial",
        }
    }

    pub fn parse(text: &str) -> Option<OperatorKind> {
        [OperatorKind::Government, OperatorKind::StateOwned, OperatorKind::Commercial]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// Which providers a programme's vouchers may be spent at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderRule {
    Any,
    /// Government-run data centres only (operator kind government).
    GovernmentRun,
    /// Only the providers listed by USCC.
    Listed {
        providers: Vec<Uscc>,
    },
    /// Only sites inside the authority's region.
    WithinRegion,
}

impl std::fmt::Display for ProviderRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderRule::Any => f.write_str("any provider"),
            ProviderRule::GovernmentRun => f.write_str("government-run data centres only"),
            ProviderRule::Listed { providers } => {
                let listed: Vec<String> = providers.iter().map(ToString::to_string).collect();
                write!(f, "only the listed providers: {}", listed.join(", "))
            }
            ProviderRule::WithinRegion => f.write_str("sites within the authority's region only"),
        }
    }
}

impl std::fmt::Display for Stacking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.allowed, self.cap_fen) {
            (false, _) => f.write_str("not allowed (no voucher of another programme may be held with it)"),
            (true, None) => f.write_str("allowed"),
            (true, Some(cap)) => write!(f, "allowed up to {cap} across programmes"),
        }
    }
}

/// May an enterprise hold this programme's voucher alongside vouchers of other programmes, and
/// up to what total face value across all of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stacking {
    pub allowed: bool,
    pub cap_fen: Option<Fen>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedRule {
    pub name: String,
    pub rule: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProgramState {
    Draft,
    Open,
    Closed,
    Finished,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Authority {
    pub id: AuthorityId,
    pub region: RegionCode,
    pub name: String,
}

/// The terms of a programme, as its file states them (checked).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProgramTerms {
    pub key: String,
    pub name: String,
    pub authority_region: RegionCode,
    pub authority_name: String,
    pub budget_fen: Fen,
    pub subsidy_rate_bp: RateBp,
    pub domestic_chip_rate_bp: Option<RateBp>,
    pub enterprise_cap_fen: Fen,
    pub annual_cap_fen: Option<Fen>,
    /// The most the programme issues in one calendar year (Asia/Shanghai) across every
    /// enterprise, as Chengdu's "no more than 10 million yuan a year".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_annual_cap_fen: Option<Fen>,
    /// How an oversubscribed round is decided: first come, first served (the default), or a
    /// verifiable lottery among the eligible applications, whose applicants not drawn form a
    /// control group (`lottery`).
    #[serde(default, skip_serializing_if = "Allocation::is_first_come")]
    pub allocation: Allocation,
    /// The programme's own placement policy weights, over the deployment's.
    #[serde(default, skip_serializing_if = "crate::requests::PlacementWeights::is_empty")]
    pub placement: crate::requests::PlacementWeights,
    /// Where in the scheduling hierarchy its orders are placed first, and how far up they may go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<crate::tiers::TierTerms>,
    pub voucher_validity_days: u32,
    /// First second applications are accepted (Asia/Shanghai midnight of the opening date).
    pub applications_open_s: i64,
    /// First second applications are no longer accepted (midnight after the closing date).
    pub applications_close_s: i64,
    pub applicant_kinds: Vec<ApplicantKind>,
    pub purposes: Vec<Purpose>,
    pub providers: ProviderRule,
    pub stacking: Stacking,
    pub eligibility: Vec<NamedRule>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Allocation {
    #[default]
    FirstCome,
    Lottery,
}

impl Allocation {
    pub fn is_first_come(&self) -> bool {
        *self == Allocation::FirstCome
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Allocation::FirstCome => "first_come",
            Allocation::Lottery => "lottery",
        }
    }
}

/// One lottery round of a programme: the seed's SHA-256 committed before the round closes, then
/// the seed revealed and the draw made from it (`lottery::draw`), which anyone can redo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LotteryRound {
    pub round: u32,
    /// Hex SHA-256 of the seed's UTF-8 bytes.
    pub seed_sha256: String,
    pub committed_at_s: i64,
    /// Applications submitted before this instant take part; the draw comes after it.
    pub closes_at_s: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawn_at_s: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// The eligible applications that took part and the amount each could be granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<(ApplicationId, Fen)>,
    /// The budget left when the draw was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_fen: Option<Fen>,
    /// The applications drawn, in the order drawn; the others are the control group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drawn: Vec<ApplicationId>,
}

impl LotteryRound {
    /// A round as its commitment opens it.
    pub fn committed(round: u32, seed_sha256: &str, committed_at_s: i64, closes_at_s: i64) -> LotteryRound {
        LotteryRound {
            round,
            seed_sha256: seed_sha256.to_owned(),
            committed_at_s,
            closes_at_s,
            drawn_at_s: None,
            seed: None,
            participants: Vec::new(),
            budget_fen: None,
            drawn: Vec::new(),
        }
    }

    /// The draw, as `lottery.drawn` records it.
    pub fn record_draw(
        &mut self,
        at_s: i64,
        seed: &str,
        participants: &[(ApplicationId, Fen)],
        budget: Fen,
        drawn: &[ApplicationId],
    ) {
        self.drawn_at_s = Some(at_s);
        self.seed = Some(seed.to_owned());
        self.participants = participants.to_vec();
        self.budget_fen = Some(budget);
        self.drawn = drawn.to_vec();
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Program {
    pub id: ProgramId,
    pub authority: AuthorityId,
    pub terms: ProgramTerms,
    pub state: ProgramState,
    /// Money in the budget account now: funded, less issued, plus returned.
    pub budget_remaining_fen: Fen,
    pub issued_fen: Fen,
    pub returned_fen: Fen,
    /// Voucher parts of usage: the subsidy actually spent.
    pub spent_fen: Fen,
    pub settled_fen: Fen,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lotteries: Vec<LotteryRound>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Enterprise {
    pub id: EnterpriseId,
    pub uscc: Uscc,
    pub name: String,
    pub region: RegionCode,
    pub kind: ApplicantKind,
    pub headcount: u32,
    pub revenue_fen: Fen,
    pub research_projects: Vec<String>,
    pub related_parties: Vec<Uscc>,
    pub registered_at_s: i64,
    /// Enterprise shares of usage paid so far.
    pub paid_fen: Fen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationState {
    Draft,
    Submitted,
    Approved,
    Rejected,
    Withdrawn,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Application {
    pub id: ApplicationId,
    pub enterprise: EnterpriseId,
    pub program: ProgramId,
    pub requested_fen: Fen,
    pub note: String,
    pub state: ApplicationState,
    pub created_at_s: i64,
    pub submitted_at_s: Option<i64>,
    pub decided_at_s: Option<i64>,
    pub approved_fen: Option<Fen>,
    pub reason: Option<String>,
    pub voucher: Option<VoucherId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VoucherState {
    Active,
    Suspended,
    Revoked,
    Expired,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Voucher {
    pub id: VoucherId,
    pub enterprise: EnterpriseId,
    pub program: ProgramId,
    pub application: ApplicationId,
    pub face_value_fen: Fen,
    pub issued_at_s: i64,
    pub expires_at_s: i64,
    pub state: VoucherState,
    /// In the voucher account: neither held for an order nor spent nor returned.
    pub available_fen: Fen,
    /// Held for open orders.
    pub held_fen: Fen,
    pub spent_fen: Fen,
    pub returned_fen: Fen,
    pub reason: Option<String>,
    /// The subsidy rate chosen at approval, at most the programme's (`subsidy_rate_bp` is then a
    /// maximum, as Shanghai's "up to 80%"); none means the programme's rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_bp: Option<RateBp>,
}

impl Voucher {
    /// Active with nothing left to spend and nothing held: shown as exhausted.
    pub fn is_exhausted(&self) -> bool {
        self.state == VoucherState::Active && self.available_fen == Fen::ZERO && self.held_fen == Fen::ZERO
    }

    pub fn state_name(&self) -> &'static str {
        match self.state {
            VoucherState::Active if self.is_exhausted() => "exhausted",
            VoucherState::Active => "active",
            VoucherState::Suspended => "suspended",
            VoucherState::Revoked => "revoked",
            VoucherState::Expired => "expired",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Provider {
    pub id: ProviderId,
    pub uscc: Uscc,
    pub name: String,
    pub operator: OperatorKind,
    /// The Ed25519 key its usage batches are signed with, in hex.
    #[serde(default)]
    pub public_key_hex: Option<String>,
}

/// A data-centre site as its provider describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SiteSpec {
    pub provider: ProviderId,
    pub name: String,
    pub hub: String,
    pub region: RegionCode,
    pub latitude: f64,
    pub longitude: f64,
    pub operator: OperatorKind,
    pub power_price_fen_per_kwh: Option<Fen>,
    pub pue: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Site {
    pub id: SiteId,
    #[serde(flatten)]
    pub spec: SiteSpec,
    /// When the platform admin verified the site's operator kind and region; until then they are
    /// the provider's claims and count for no provider rule.
    #[serde(default)]
    pub verified_at_s: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Pool {
    pub id: PoolId,
    pub site: SiteId,
    pub chip: String,
    pub gpu_count: u32,
    pub domestic: bool,
    pub price_fen_per_gpu_hour: Fen,
    /// GPUs promised to placed or running orders.
    pub gpus_reserved: u32,
    /// When the provider retired it: no new order is placed on it; orders on it run to their end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at_s: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    Placed,
    Running,
    Completed,
    Cancelled,
}

impl OrderState {
    /// The state as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Placed => "placed",
            OrderState::Running => "running",
            OrderState::Completed => "completed",
            OrderState::Cancelled => "cancelled",
        }
    }
}

/// A price for an order before it is placed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Quote {
    pub pool: PoolId,
    pub gpu_count: u32,
    pub hours: u32,
    pub price_fen_per_gpu_hour: Fen,
    pub rate_bp: RateBp,
    pub list_cost_fen: Fen,
    pub voucher_share_fen: Fen,
    pub enterprise_share_fen: Fen,
    /// What bounded the voucher share, when it is less than the rate would give.
    pub limited_by: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Order {
    pub id: OrderId,
    pub enterprise: EnterpriseId,
    pub voucher: VoucherId,
    pub program: ProgramId,
    pub pool: PoolId,
    pub provider: ProviderId,
    pub purpose: Purpose,
    pub quote: Quote,
    pub state: OrderState,
    pub placed_at_s: i64,
    pub started_at_s: Option<i64>,
    pub ended_at_s: Option<i64>,
    pub hold_fen: Fen,
    pub hold_remaining_fen: Fen,
    pub gpu_seconds: i64,
    /// The latest end of any usage period reported for this order.
    pub usage_until_s: Option<i64>,
    pub cost_fen: Fen,
    pub voucher_paid_fen: Fen,
    pub enterprise_paid_fen: Fen,
    pub usage_records: u32,
    /// Anomalies noticed when it was placed (for example a related party).
    pub flags: Vec<String>,
    /// Hours added to the order after it was placed (each extension with its own hold).
    #[serde(default)]
    pub extended_hours: u32,
    /// The order request a round of the scheduling loop placed it for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<suanli_domain::RequestId>,
    /// The work it was bought for (reference GPU-hours of a class), when it bought work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<crate::service::Work>,
}

impl Order {
    /// The hours bought: those quoted and every extension.
    pub fn hours_ordered(&self) -> u32 {
        self.quote.hours.saturating_add(self.extended_hours)
    }
}

/// A usage record and a utilization sample as a provider reports them: defined with their wire
/// format in `suanli-wire`, which connectors use without the service.
pub use suanli_wire::{UsageInput, UtilizationInput};

/// What became of one utilization sample: `ok` (stored now), `exists` (the same sample was
/// stored before) or `error` with a code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct UtilizationOutcome {
    pub pool: PoolId,
    pub at_s: i64,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A usage record as priced and posted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UsageRecord {
    pub provider: ProviderId,
    pub input: UsageInput,
    pub program: ProgramId,
    pub cost_fen: Fen,
    pub voucher_part_fen: Fen,
    pub enterprise_part_fen: Fen,
    pub recorded_at_s: i64,
}

/// The answer to one usage record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum UsageOutcome {
    /// Priced and posted now.
    Recorded {
        id: String,
        cost_fen: Fen,
        voucher_part_fen: Fen,
        enterprise_part_fen: Fen,
    },
    /// The same record was already posted; this is its first result.
    Duplicate {
        id: String,
        cost_fen: Fen,
        voucher_part_fen: Fen,
        enterprise_part_fen: Fen,
    },
    Refused {
        id: String,
        code: String,
        message: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatementState {
    Issued,
    Approved,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatementLine {
    pub order: OrderId,
    pub enterprise: EnterpriseId,
    pub pool: PoolId,
    pub usage_records: u32,
    pub gpu_seconds: i64,
    pub cost_fen: Fen,
    pub voucher_part_fen: Fen,
    pub enterprise_part_fen: Fen,
}

/// Statement lines summed: what the reports keep of an approved statement's lines once they
/// leave memory for storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LineSums {
    pub usage_records: u64,
    pub gpu_seconds: i64,
    pub cost_fen: Fen,
    pub voucher_part_fen: Fen,
    pub enterprise_part_fen: Fen,
}

impl LineSums {
    pub fn of(line: &StatementLine) -> LineSums {
        LineSums {
            usage_records: u64::from(line.usage_records),
            gpu_seconds: line.gpu_seconds,
            cost_fen: line.cost_fen,
            voucher_part_fen: line.voucher_part_fen,
            enterprise_part_fen: line.enterprise_part_fen,
        }
    }

    /// Adds `other`; the sums are bounded by the ledger's, so an overflow is a bug.
    pub fn add(&mut self, other: &LineSums) {
        self.usage_records += other.usage_records;
        self.gpu_seconds = self.gpu_seconds.checked_add(other.gpu_seconds).expect("bounded by the orders");
        self.cost_fen = self.cost_fen.checked_add(other.cost_fen).expect("bounded by the ledger");
        self.voucher_part_fen =
            self.voucher_part_fen.checked_add(other.voucher_part_fen).expect("bounded by the ledger");
        self.enterprise_part_fen =
            self.enterprise_part_fen.checked_add(other.enterprise_part_fen).expect("bounded by the ledger");
    }
}

/// What the lines of archived statements are summed by: the programme, the month recorded, the
/// pool, and the enterprise's kind, province and size band (the outcome report's groups), so the
/// sums stay bounded by programmes, months and pools, not by orders or enterprises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SettledKey {
    pub program: ProgramId,
    /// `(year, month)` in Asia/Shanghai.
    pub month: (i32, u8),
    pub pool: PoolId,
    pub kind: ApplicantKind,
    pub province: RegionCode,
    /// An index into the outcome report's size bands.
    pub size_band: u8,
}

/// The outcome report's size bands, by headcount.
pub const SIZE_BANDS: [&str; 4] = ["1-19", "20-99", "100-299", "300+"];

/// The size band of `headcount` (an index into [`SIZE_BANDS`]).
pub fn size_band(headcount: u32) -> u8 {
    match headcount {
        0..=19 => 0,
        20..=99 => 1,
        100..=299 => 2,
        _ => 3,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Statement {
    pub id: StatementId,
    pub provider: ProviderId,
    pub program: ProgramId,
    /// `2026-10`: usage recorded in this Asia/Shanghai month.
    pub month: String,
    pub lines: Vec<StatementLine>,
    pub cost_fen: Fen,
    pub voucher_total_fen: Fen,
    pub enterprise_total_fen: Fen,
    /// The voucher total in words, as the statement is paid (人民币大写).
    pub voucher_total_uppercase: String,
    pub state: StatementState,
    pub issued_at_s: i64,
    pub approved_at_s: Option<i64>,
}

/// Something a reviewer or auditor should look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Anomaly {
    pub time_s: i64,
    pub kind: String,
    pub object: String,
    pub detail: String,
}

/// Who controls an enterprise or a provider, as it declares it: its legal representative (kept
/// only as the SHA-256 of the normalised identity number) and the USCCs of its organisational
/// shareholders. Matched between the two sides of an order, it finds related parties that
/// neither named.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ownership {
    pub legal_representative_sha256: Option<String>,
    pub shareholders: Vec<Uscc>,
}

/// A data-centre cluster of the national network, with its hub: the registry a site's hub is
/// checked against once a deployment has imported the network (`suanli network import`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkCluster {
    pub id: String,
    pub hub: String,
    pub latitude: f64,
    pub longitude: f64,
}

impl NetworkCluster {
    /// The clusters of the default national network (`data/network.csv`).
    pub fn national() -> Vec<NetworkCluster> {
        suanli_placement::network::default_problem()
            .sites
            .into_iter()
            .map(|site| NetworkCluster { id: site.id, hub: site.hub, latitude: site.lat, longitude: site.lon })
            .collect()
    }

    /// Great-circle kilometres from this cluster to a point.
    pub fn distance_km(&self, latitude: f64, longitude: f64) -> f64 {
        // The placement engine's round-trip time is 3 ms per 200 km of great circle.
        suanli_placement::model::rtt_ms(self.latitude, self.longitude, latitude, longitude) * 200.0 / 3.0
    }
}

/// How far a site may lie from the nearest cluster of the hub it names and still be verified.
pub const SITE_DISTANCE_FROM_HUB_KM_MAX: f64 = 300.0;
