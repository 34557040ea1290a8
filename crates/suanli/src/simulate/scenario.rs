//! A simulation scenario (TOML): the question it answers, the seed, the programme, the synthetic
//! enterprises and their demand, and the policy variants to run side by side.

use serde::Deserialize;

/// The most months a scenario runs (two programme years).
pub const MONTHS_MAX: u32 = 24;
/// The most synthetic enterprises one scenario makes.
pub const ENTERPRISES_MAX: u32 = 1_000_000;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// What the scenario asks, in a sentence (printed with its answer).
    pub question: String,
    pub seed: u64,
    /// Months simulated after a first month with no programme (the "before" of the load
    /// comparison).
    #[serde(default = "twelve")]
    pub months: u32,
    /// The programme: the key of a shipped programme (`programs/`), or a file path relative to
    /// the scenario.
    pub program: String,
    /// Synthetic enterprises, arriving evenly over the first half of the months.
    pub enterprises: u32,
    #[serde(default)]
    pub demand: Demand,
    /// The market between hub nodes, when the scenario has one: every provider offers part of
    /// each pool's idle GPUs each month, and a clearing runs every day.
    #[serde(default)]
    pub market: Option<MarketTerms>,
    #[serde(rename = "variant")]
    pub variants: Vec<Variant>,
}

fn twelve() -> u32 {
    12
}

/// Each enterprise's monthly demand for GPU-hours at the reference price, drawn uniformly between
/// the bounds, and how it responds to the price the enterprise pays itself:
/// `hours = base × (own price / reference)^(−elasticity)`, at most `boost_max` × base.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Demand {
    pub gpu_hours_min: u32,
    pub gpu_hours_max: u32,
    pub elasticity: f64,
    pub reference_fen_per_gpu_hour: i64,
    pub boost_max: f64,
    /// GPUs per order.
    pub gpus: u32,
    /// Orders each enterprise places a month (1 to 6), one after another.
    pub orders_per_month: u32,
}

impl Default for Demand {
    fn default() -> Demand {
        Demand {
            gpu_hours_min: 100,
            gpu_hours_max: 2_000,
            elasticity: 0.8,
            reference_fen_per_gpu_hour: 1_500,
            boost_max: 4.0,
            gpus: 8,
            orders_per_month: 1,
        }
    }
}

/// How the market between hub nodes is simulated.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketTerms {
    /// The share of each pool's idle GPUs (what its base load leaves) its provider offers at the
    /// start of each month, for 31 days.
    pub offer_share: f64,
    /// Each offer's reserve, in basis points of its pool's list price.
    pub reserve_bp: u32,
    /// The most each enterprise pays per GPU-hour for capacity bought between hub nodes: the limit
    /// of every order it submits (its orders are submitted to the scheduling loop, not placed).
    pub limit_fen_per_gpu_hour: i64,
}

/// One policy to try. Unset fields keep the programme file's terms and the service's placement
/// policy.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    /// `false`: no programme at all (the baseline every lift is measured against).
    #[serde(default = "yes")]
    pub subsidy: bool,
    /// The programme's budget instead of its file's.
    pub budget_fen: Option<i64>,
    pub subsidy_rate_bp: Option<i64>,
    pub domestic_chip_rate_bp: Option<i64>,
    pub enterprise_cap_fen: Option<i64>,
    /// `first_come` or `lottery` (a monthly round).
    pub allocation: Option<String>,
    /// `any`, `government_run` or `state_owned_or_government`.
    pub providers: Option<String>,
    pub underused_credit_fen_per_gpu_hour: Option<i64>,
    pub domestic_weight_bp: Option<i64>,
    pub utilization_target: Option<f64>,
    /// Whether the programme's work its highest tier cannot serve goes to the market between hub
    /// nodes (`tiers.trade`; the programme must name tiers).
    pub trade: Option<bool>,
}

fn yes() -> bool {
    true
}

impl Scenario {
    /// Parses and checks a scenario, naming the field at fault.
    pub fn parse(text: &str) -> anyhow::Result<Scenario> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| anyhow::anyhow!("scenario: {e}"))?;
        anyhow::ensure!((1..=MONTHS_MAX).contains(&scenario.months), "months: must be 1 to {MONTHS_MAX}");
        anyhow::ensure!(
            (1..=ENTERPRISES_MAX).contains(&scenario.enterprises),
            "enterprises: must be 1 to {ENTERPRISES_MAX}"
        );
        anyhow::ensure!(!scenario.variants.is_empty(), "variant: a scenario has at least one [[variant]]");
        let d = &scenario.demand;
        anyhow::ensure!(
            d.gpu_hours_min >= 1 && d.gpu_hours_min <= d.gpu_hours_max && d.gpu_hours_max <= 100_000,
            "demand.gpu_hours_min/max: 1 ≤ min ≤ max ≤ 100,000"
        );
        anyhow::ensure!((0.0..=5.0).contains(&d.elasticity), "demand.elasticity: must be 0 to 5");
        anyhow::ensure!((1.0..=20.0).contains(&d.boost_max), "demand.boost_max: must be 1 to 20");
        anyhow::ensure!(d.reference_fen_per_gpu_hour > 0, "demand.reference_fen_per_gpu_hour: must be positive");
        anyhow::ensure!((1..=64).contains(&d.gpus), "demand.gpus: must be 1 to 64");
        anyhow::ensure!((1..=6).contains(&d.orders_per_month), "demand.orders_per_month: must be 1 to 6");
        if let Some(m) = &scenario.market {
            anyhow::ensure!((0.0..=1.0).contains(&m.offer_share), "market.offer_share: must be 0 to 1");
            anyhow::ensure!((1..=100_000).contains(&m.reserve_bp), "market.reserve_bp: must be 1 to 100000");
            anyhow::ensure!(
                (1..=suanli_service::market::LIMIT_FEN_PER_GPU_HOUR_MAX).contains(&m.limit_fen_per_gpu_hour),
                "market.limit_fen_per_gpu_hour: must be 1 to {}",
                suanli_service::market::LIMIT_FEN_PER_GPU_HOUR_MAX
            );
        }
        let mut names: Vec<&str> = scenario.variants.iter().map(|v| v.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        anyhow::ensure!(names.len() == scenario.variants.len(), "variant.name: each variant needs its own name");
        for v in &scenario.variants {
            anyhow::ensure!(
                !v.name.is_empty() && v.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "variant.name: {:?} must be letters, digits, - or _",
                v.name
            );
            if let Some(a) = &v.allocation {
                anyhow::ensure!(
                    a == "first_come" || a == "lottery",
                    "variant {}: allocation {a:?} must be first_come or lottery",
                    v.name
                );
            }
            if let Some(t) = v.utilization_target {
                anyhow::ensure!((0.0..=1.0).contains(&t), "variant {}: utilization_target must be 0 to 1", v.name);
            }
            for (field, value) in [
                ("underused_credit_fen_per_gpu_hour", v.underused_credit_fen_per_gpu_hour),
                ("domestic_weight_bp", v.domestic_weight_bp),
            ] {
                anyhow::ensure!(
                    value.is_none_or(|x| (0..=1_000_000).contains(&x)),
                    "variant {}: {field} must be 0 to 1,000,000",
                    v.name
                );
            }
        }
        Ok(scenario)
    }
}
