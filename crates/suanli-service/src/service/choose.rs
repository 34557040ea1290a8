//! Choosing a pool for an order through the placement engine.
//!
//! An enterprise can pin a pool; otherwise the service asks `suanli-placement` where the order
//! should run. The engine sees every pool the order may use: the chip it accepts, free GPUs, and
//! the programme's provider rule, resolved to sites. It weighs list cost against two policy terms:
//! - a credit per GPU-hour on sites below the target load, so subsidized work fills idle centres;
//! - a credit on domestic chips where the programme pays more for them.
//!
//! The answer is the chosen pool's quote, the next best alternatives with their quotes, and why
//! every other pool was left out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use suanli_domain::{EnterpriseId, PoolId, SiteId, VoucherId};
use suanli_placement::{Exclusion, Operator, Order, Origin, Policy, PoolVerdict, Problem, Site, explain};

use super::View;
use crate::error::{ErrorCode, Result, ServiceError};
use crate::model::{OperatorKind, Purpose, Quote};
use crate::state::State;

/// An order before its pool is chosen.
#[derive(Clone, Debug)]
pub struct PoolRequest {
    pub enterprise: EnterpriseId,
    pub voucher: VoucherId,
    /// Only pools of this chip, when given.
    pub chip: Option<String>,
    pub gpu_count: u32,
    /// The hours bought; for an order of [`Needs::work`], the most the work may take (its
    /// deadline).
    pub hours: u32,
    pub purpose: Purpose,
    /// What the order needs beyond GPUs and hours: work to be done, where its data is, a latency
    /// bound.
    pub needs: Needs,
}

/// Work stated as reference GPU-hours (one A800 for an hour) of a work class of the speed table
/// (`data/speed.csv`): on each chip it takes the hours that chip's speed gives it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Work {
    pub class: String,
    pub reference_gpu_hours: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Needs {
    pub work: Option<Work>,
    /// The hub the order's data is in: data moved to a site of another hub costs egress
    /// ([`EGRESS_FEN_PER_GB`] per GB of `data_gb`), and a latency bound is measured from it.
    pub origin_hub: Option<String>,
    pub data_gb: f64,
    /// The round trip to the data's hub, at most, in milliseconds.
    pub rtt_ms_max: Option<f64>,
}

/// What moving a GB of data between hubs is taken to cost, as the default network prices it.
pub const EGRESS_FEN_PER_GB: i64 = 30;

/// The engine's work class of orders that buy hours: every chip runs an hour in an hour.
const HOURS_CLASS: &str = "gpu_hours";

/// What leaving an order unplaced weighs, per reference GPU-hour, as a multiple of the dearest
/// placement any order of the problem has: placing is always better than not, and of two orders
/// competing for GPUs the one with more work goes first unless the other is far cheaper. A
/// penalty no larger than it needs to be keeps the engine's lower bound close (a penalty of
/// ¥10M per GPU-hour left the bound 4–7% under a 10,000-order answer).
const UNPLACED_PENALTY_TIMES_DEAREST: f64 = 2.0;

/// The most every order's penalty may add up to, in fen (i64 holds about 9.2 × 10¹⁸).
const PENALTIES_FEN_MAX: f64 = 1e17;

/// One chip's speed for a work class: how many reference GPUs one of its GPUs is worth.
fn speed(class: &str, chip: &str) -> Option<f64> {
    static TABLE: std::sync::LazyLock<HashMap<String, HashMap<String, f64>>> =
        std::sync::LazyLock::new(suanli_placement::network::speed_table);
    TABLE.get(class).and_then(|chips| chips.get(&chip.to_lowercase())).copied()
}

/// The work classes of the speed table.
pub fn work_classes() -> Vec<String> {
    let mut classes: Vec<String> = suanli_placement::network::speed_table().into_keys().collect();
    classes.sort();
    classes
}

impl PoolRequest {
    /// The hours the order runs on `chip`: those bought, or for work its reference GPU-hours
    /// over the GPUs and the chip's speed, rounded up to whole hours and within the deadline.
    pub fn hours_on(&self, chip: &str) -> Result<u32> {
        let Some(work) = &self.needs.work else { return Ok(self.hours) };
        let refused = |why: String| ServiceError::new(ErrorCode::NoPoolAvailable, format!("pool: {why}"));
        let speed = speed(&work.class, chip)
            .ok_or_else(|| refused(format!("the speed table has no speed for {} on {chip}", work.class)))?;
        let hours = (f64::from(work.reference_gpu_hours) / (f64::from(self.gpu_count) * speed)).ceil().max(1.0);
        if hours > f64::from(self.hours) {
            return Err(refused(format!(
                "the work takes {hours} hours on {chip}, past the deadline of {} hours",
                self.hours
            )));
        }
        Ok(hours as u32)
    }
}

impl View {
    /// The order on a given pool (a pinned pool, or the one the engine chose), for the hours it
    /// runs on that pool's chip.
    pub fn pinned(&self, request: &PoolRequest, pool: PoolId) -> Result<super::OrderInput> {
        let chip = &self.state.pools.get(&pool).ok_or_else(|| ServiceError::not_found(pool))?.chip;
        Ok(super::OrderInput {
            enterprise: request.enterprise,
            voucher: request.voucher,
            pool,
            chip: request.chip.clone(),
            gpu_count: request.gpu_count,
            hours: request.hours_on(chip)?,
            purpose: request.purpose,
        })
    }
}

/// The engine's answer for one order.
#[derive(Clone, Debug, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct PoolChoice {
    pub chosen: Quote,
    /// The policy credits behind the choice, in fen (zero or negative).
    pub underused_credit_fen: i64,
    pub domestic_credit_fen: i64,
    /// The next best pools, best first, each with its quote.
    pub alternatives: Vec<Quote>,
    /// Every other pool and the first rule that excluded it.
    pub excluded: Vec<(String, String)>,
    /// Moving the order's data to the chosen site's hub, as the engine weighed it (paid to the
    /// network, not through the voucher; zero in the data's own hub).
    pub egress_fen: i64,
    /// For a programme with tiers: the tier that served the order (`city (Chengdu)`), and why
    /// each tier below it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub escalated: Vec<String>,
    /// The same, as the engine decided it, for words in other languages (a full pool is
    /// `TooBig`).
    #[serde(skip)]
    pub excluded_why: Vec<(String, Exclusion)>,
}

/// The service's policy weights (DESIGN.md §5): sites under 60% load earn ¥0.50 per GPU-hour;
/// half of a programme's extra domestic-chip subsidy counts toward choosing a domestic pool.
pub const PLACEMENT_POLICY: Policy =
    Policy { utilization_target: 0.6, underused_credit_fen_per_gpu_hour: 50, domestic_weight_bp: 5_000 };

/// How many alternatives a quote lists.
pub const ALTERNATIVES_MAX: usize = 3;

impl View {
    /// Chooses the pool for an order through the placement engine and quotes it, with the best
    /// alternatives and the reason each other pool was left out.
    pub fn choose_pool(&self, request: &PoolRequest) -> Result<PoolChoice> {
        self.quote_choice(request, &self.engine(request)?)
    }

    /// The quote of an order on a pool it pins, with what the policy terms would weigh there and
    /// the egress of moving its data to it (no alternatives: the pool was chosen by the caller).
    pub fn pinned_choice(&self, request: &PoolRequest, pool: PoolId) -> Result<PoolChoice> {
        let chosen = self.quote(&self.pinned(request, pool)?)?;
        let market = self.market();
        let order = self.engine_order(request, &market.network, "order".to_owned(), None)?;
        let problem = market.problem(vec![order], self.placement_policy);
        let (terms, egress_fen) = match market.network.pool_ids.iter().position(|id| *id == pool) {
            Some(index) => weighed(&problem, &problem.orders[0], &problem.pools[index]),
            None => (suanli_placement::model::Terms::default(), 0),
        };
        Ok(PoolChoice {
            chosen,
            underused_credit_fen: terms.underused_fen,
            domestic_credit_fen: terms.domestic_fen,
            alternatives: Vec::new(),
            excluded: Vec::new(),
            egress_fen,
            tier: None,
            escalated: Vec::new(),
            excluded_why: Vec::new(),
        })
    }

    /// The engine's answer for one order, through its programme's tiers.
    fn engine(&self, request: &PoolRequest) -> Result<Engined> {
        let (_, program) =
            self.check_voucher_use(request.enterprise, request.voucher, request.purpose, self.now_s())?;
        let market = self.market();
        let (tier, problem, solution, escalated) = self.engine_tiered(request, &market, program)?;
        Ok(Engined { problem, solution, pool_ids: market.network.pool_ids.clone(), tier, escalated })
    }

    /// The network as orders placed now see it: each site's load (GPUs promised over GPUs) and
    /// each pool's free GPUs.
    pub(super) fn market(&self) -> Market {
        let state = &self.state;
        let network = self.network.of(state);
        let mut load = vec![(0u64, 0u64); network.sites.len()];
        for pool in state.pools.values() {
            if let Some(&index) = network.site_index.get(&pool.site) {
                load[index].0 += u64::from(pool.gpus_reserved);
                load[index].1 += u64::from(pool.gpu_count);
            }
        }
        let mut sites = network.sites.clone();
        for (site, (reserved, total)) in sites.iter_mut().zip(&load) {
            site.utilization = utilization(*reserved, *total);
        }
        let mut pools = network.pools.clone();
        for (pool, id) in pools.iter_mut().zip(&network.pool_ids) {
            let now = &state.pools[id];
            pool.gpus_free = now.gpu_count - now.gpus_reserved;
        }
        Market { network, sites, pools, load }
    }

    /// One order as the engine sees it, after the checks an order makes before any pool is
    /// considered (the voucher, the purpose, GPUs, hours, work, origin).
    pub(super) fn engine_order(
        &self,
        request: &PoolRequest,
        network: &Network,
        id: String,
        area: Option<&crate::tiers::Area>,
    ) -> Result<Order> {
        let now = self.now_s();
        let (_, program) = self.check_voucher_use(request.enterprise, request.voucher, request.purpose, now)?;
        if request.gpu_count == 0 {
            return Err(ServiceError::field("gpus", "must be at least 1"));
        }
        if request.hours == 0 || request.hours > super::ORDER_HOURS_MAX {
            return Err(ServiceError::field("hours", format!("must be between 1 and {}", super::ORDER_HOURS_MAX)));
        }
        // The programme's provider rule, resolved to the sites it allows (in the tier's area).
        let sites_allowed = self.sites_in(program, network, area);
        let chips: Vec<String> = match &request.chip {
            Some(chip) => vec![crate::chips::require("chip", chip)?.name.clone()],
            None => network.chips.clone(),
        };
        // Hours bought are hours of whatever chip runs them, so every chip counts one (the class
        // `HOURS_CLASS`); work is compared by each chip's speed for its class, and a chip without
        // one cannot run it.
        let (class, work) = match &request.needs.work {
            None => (HOURS_CLASS.to_owned(), f64::from(request.gpu_count) * f64::from(request.hours)),
            Some(work) => {
                if speed(&work.class, "a800").is_none() {
                    let known = work_classes().join(", ");
                    return Err(ServiceError::field("work.class", format!("{:?} is not one of {known}", work.class)));
                }
                if work.reference_gpu_hours == 0 {
                    return Err(ServiceError::field("work.reference_gpu_hours", "must be at least 1"));
                }
                (work.class.clone(), f64::from(work.reference_gpu_hours))
            }
        };
        let origin = match &request.needs.origin_hub {
            None => Origin { hub: String::new(), lat: 0.0, lon: 0.0 },
            Some(hub) => {
                let site = network.sites.iter().find(|s| &s.hub == hub).ok_or_else(|| {
                    ServiceError::new(
                        ErrorCode::NotFound,
                        format!("origin.hub: {hub:?} is not the hub of any site on the network"),
                    )
                })?;
                Origin { hub: hub.clone(), lat: site.lat, lon: site.lon }
            }
        };
        if !(0.0..=1e9).contains(&request.needs.data_gb) {
            return Err(ServiceError::field("origin.data_gb", "must be between 0 and 1,000,000,000"));
        }
        if request.needs.rtt_ms_max.is_some() && request.needs.origin_hub.is_none() {
            return Err(ServiceError::field("origin.rtt_ms_max", "a latency bound needs the data's hub"));
        }
        if request.needs.rtt_ms_max.is_some_and(|rtt| !(0.0..=1e6).contains(&rtt)) {
            return Err(ServiceError::field("origin.rtt_ms_max", "must be between 0 and 1,000,000"));
        }
        let domestic_extra_bp = program.terms.domestic_chip_rate_bp.map_or(0, |rate| {
            u32::from(rate.basis_points().saturating_sub(program.terms.subsidy_rate_bp.basis_points()))
        });
        let weights = program.terms.placement;
        Ok(Order {
            id,
            class,
            gpus: request.gpu_count,
            work_ref_gpu_hours: work,
            chips,
            origin,
            data_gb: request.needs.data_gb,
            deadline_hours: f64::from(request.hours),
            rtt_ms_max: request.needs.rtt_ms_max,
            sites_allowed: Some(sites_allowed),
            domestic_extra_bp,
            policy: (!weights.is_empty()).then(|| weights.over(self.placement_policy)),
        })
    }

    /// The quote of the engine's choice, with the best alternatives and why each other pool was
    /// left out.
    fn quote_choice(&self, request: &PoolRequest, engined: &Engined) -> Result<PoolChoice> {
        let Engined { problem, solution, pool_ids, tier, escalated } = engined;
        let now = self.now_s();
        let state = &self.state;
        let (voucher, program) = self.check_voucher_use(request.enterprise, request.voucher, request.purpose, now)?;
        let explanation = explain(problem, solution, 0);
        let quote_of = |index: usize| {
            let pool = &state.pools[&pool_ids[index]];
            self.price(voucher, program, pool, request.gpu_count, request.hours_on(&pool.chip)?, now)
        };
        let Some(chosen_index) = solution.pool_of[0] else {
            let reason = match tier {
                // Through tiers: the reason of each tier tried.
                Some(_) => format!(
                    "pool: no tier the programme allows can take {} GPUs for this order: {}",
                    request.gpu_count,
                    escalated.join(" | ")
                ),
                None => unplaced_reason(&explanation, request.gpu_count),
            };
            return Err(ServiceError::new(ErrorCode::NoPoolAvailable, reason));
        };
        let chosen_pool = &problem.pools[chosen_index];
        let order = &problem.orders[0];
        let (terms, egress_fen) = weighed(problem, order, chosen_pool);
        let mut ranked: Vec<(i64, usize)> = explanation
            .pools
            .iter()
            .enumerate()
            .filter_map(|(index, (_, verdict))| match verdict {
                PoolVerdict::Costlier { extra_fen, .. } => Some((*extra_fen, index)),
                _ => None,
            })
            .collect();
        ranked.sort_unstable();
        let alternatives =
            ranked.iter().take(ALTERNATIVES_MAX).map(|&(_, index)| quote_of(index)).collect::<Result<Vec<_>>>()?;
        let excluded_why: Vec<(String, Exclusion)> = explanation
            .pools
            .iter()
            .filter_map(|(pool, verdict)| match verdict {
                PoolVerdict::Excluded(why) => Some((pool.clone(), why.clone())),
                PoolVerdict::Full { gpus_left, gpus } => Some((
                    pool.clone(),
                    Exclusion::TooBig { gpus: *gpus, gpus_free: u32::try_from((*gpus_left).max(0)).unwrap_or(0) },
                )),
                _ => None,
            })
            .collect();
        let excluded = excluded_why.iter().map(|(pool, why)| (pool.clone(), describe(why))).collect();
        Ok(PoolChoice {
            chosen: quote_of(chosen_index)?,
            underused_credit_fen: terms.underused_fen,
            domestic_credit_fen: terms.domestic_fen,
            alternatives,
            excluded,
            egress_fen,
            excluded_why,
            tier: tier.clone(),
            escalated: escalated.clone(),
        })
    }
}

/// The engine's answer for one order: the problem it was given, its solution, the pool each of
/// the problem's pools stands for, the tier that served it (for a programme with tiers) and why
/// each tier below could not.
struct Engined {
    problem: Problem,
    solution: suanli_placement::solve::Solution,
    pool_ids: Vec<PoolId>,
    tier: Option<String>,
    escalated: Vec<String>,
}

impl super::Service {
    /// Quotes through the engine, then places the order on the chosen pool.
    pub fn place_order_anywhere(
        &mut self,
        actor: &super::Actor,
        request: &PoolRequest,
    ) -> Result<suanli_domain::OrderId> {
        // The engine's choice is all placing needs; the quote's alternatives and reasons are made
        // only when no pool can take the order (for the refusal's words).
        let engined = self.engine(request)?;
        let Some(chosen) = engined.solution.pool_of[0] else {
            let refusal = self.quote_choice(request, &engined).err();
            return Err(refusal.unwrap_or_else(|| {
                ServiceError::new(ErrorCode::NoPoolAvailable, "pool: no pool can take this order")
            }));
        };
        let input = self.pinned(request, engined.pool_ids[chosen])?;
        self.place_order_for(actor, input, None, request.needs.work.clone())
    }
}

/// What the policy terms weighed for `order` on `pool`, and the egress of moving its data there.
pub(super) fn weighed(
    problem: &Problem,
    order: &Order,
    pool: &suanli_placement::Pool,
) -> (suanli_placement::model::Terms, i64) {
    let speed = problem.speed_of(&order.class, &pool.chip).unwrap_or(1.0);
    let cost = problem.cost(order, pool, speed);
    let terms = problem.terms(order, pool, speed, cost);
    let egress_fen = if problem.sites[pool.site].hub == order.origin.hub {
        0
    } else {
        (order.data_gb * problem.egress_fen_per_gb as f64).round() as i64
    };
    (terms, egress_fen)
}

/// Why the engine left an order unplaced: each pool's verdict in the service's words.
pub(super) fn unplaced_reason(explanation: &suanli_placement::explain::Explanation, gpus: u32) -> String {
    let reasons: Vec<String> = explanation
        .pools
        .iter()
        .map(|(pool, verdict)| match verdict {
            PoolVerdict::Excluded(why) => format!("{pool}: {}", describe(why)),
            PoolVerdict::Full { gpus_left, .. } => format!("{pool}: only {gpus_left} GPUs free"),
            other => format!("{pool}: {other:?}"),
        })
        .collect();
    format!("pool: no pool can take {gpus} GPUs for this order: {}", reasons.join("; "))
}

/// The network as every order placed now sees it.
pub(super) struct Market {
    pub(super) network: Arc<Network>,
    sites: Vec<Site>,
    pools: Vec<suanli_placement::Pool>,
    /// Each site's GPUs promised and GPUs in all, as the engine numbers sites.
    load: Vec<(u64, u64)>,
}

/// A site's load: GPUs promised over GPUs (full when it has none).
fn utilization(reserved: u64, total: u64) -> f64 {
    if total == 0 { 1.0 } else { reserved as f64 / total as f64 }
}

impl Market {
    /// `gpus` of pool `index` taken by an order placed earlier in the same round: fewer free,
    /// and its site the busier for the under-used credit.
    pub(super) fn take(&mut self, index: usize, gpus: u32) {
        let pool = &mut self.pools[index];
        pool.gpus_free = pool.gpus_free.saturating_sub(gpus);
        let site = pool.site;
        let (reserved, total) = &mut self.load[site];
        *reserved += u64::from(gpus);
        self.sites[site].utilization = utilization(*reserved, *total);
    }

    /// The engine's problem of placing `orders` on this market.
    pub(super) fn problem(&self, orders: Vec<Order>, policy: Policy) -> Problem {
        let mut problem = Problem {
            egress_fen_per_gb: EGRESS_FEN_PER_GB,
            unplaced_penalty_fen_per_ref_gpu_hour: 0,
            speed: self.network.speed.clone(),
            sites: self.sites.clone(),
            pools: self.pools.clone(),
            orders,
            policy,
        };
        let mut dearest = 1.0f64;
        let mut work = 0.0f64;
        for order in &problem.orders {
            work += order.work_ref_gpu_hours;
            for pool in &problem.pools {
                if let Some(speed) = problem.speed_of(&order.class, &pool.chip) {
                    let per_unit = problem.cost(order, pool, speed) as f64 / order.work_ref_gpu_hours.max(1e-6);
                    dearest = dearest.max(per_unit);
                }
            }
        }
        // Every penalty together stays far inside i64, whatever the orders ask (an order whose
        // cost would pass that is left unplaced rather than overflow the engine's sums).
        let ceiling = (PENALTIES_FEN_MAX / work.max(1.0)).max(1.0);
        problem.unplaced_penalty_fen_per_ref_gpu_hour =
            (dearest * UNPLACED_PENALTY_TIMES_DEAREST).ceil().min(ceiling) as i64;
        problem
    }
}

/// An exclusion in the service's words.
pub(super) fn describe(why: &Exclusion) -> String {
    match why {
        Exclusion::ChipNotAccepted { chip } => format!("its chip is {chip}"),
        Exclusion::SiteNotAllowed { .. } => "the programme's provider rule does not allow this site".to_owned(),
        Exclusion::TooBig { gpus, gpus_free } => format!("only {gpus_free} GPUs free, {gpus} needed"),
        other => other.to_string(),
    }
}

/// The engine's view of the network apart from what every order changes (free GPUs, load): its
/// sites and pools with their names, chips and prices. Building it names every pool and looks up
/// every chip; a programme year places a million orders on the same network, so it is built
/// once and rebuilt only when a pool or site is added, retired or changed.
#[derive(Debug)]
pub(crate) struct Network {
    /// What it was built from: every pool and site as the state held them, free GPUs aside.
    built_from: (Vec<Pool>, Vec<crate::model::Site>),
    sites: Vec<Site>,
    pub(super) site_index: HashMap<SiteId, usize>,
    /// Pools of registered chips that are not retired, as the engine numbers them.
    pools: Vec<suanli_placement::Pool>,
    pub(super) pool_ids: Vec<PoolId>,
    /// Every chip of the network's pools, by its registered name.
    chips: Vec<String>,
    /// Each work class's speed on each chip of the network that has one, and every chip's
    /// speed of 1 for orders of hours.
    speed: HashMap<String, HashMap<String, f64>>,
}

type Pool = crate::model::Pool;

/// The last network built, shared by a view and the copies published from it.
#[derive(Clone, Debug, Default)]
pub(crate) struct NetworkCache(Arc<Mutex<Option<Arc<Network>>>>);

impl NetworkCache {
    /// The network of `state`: the one built last if pools and sites are as they were then.
    fn of(&self, state: &State) -> Arc<Network> {
        let mut cached = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(network) = cached.as_ref().filter(|n| n.built_for(state)) {
            return network.clone();
        }
        let network = Arc::new(Network::of(state));
        *cached = Some(network.clone());
        network
    }
}

impl Network {
    fn of(state: &State) -> Network {
        let site_ids: Vec<_> = state.sites.keys().copied().collect();
        let site_index: HashMap<_, _> = site_ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        // Only pools of registered chips are offered (a pool added before the registry may name
        // a chip it does not know), and never a retired one.
        let pool_ids: Vec<_> = state
            .pools
            .iter()
            .filter(|(_, p)| crate::chips::find(&p.chip).is_some() && p.retired_at_s.is_none())
            .map(|(id, _)| *id)
            .collect();
        let sites = site_ids
            .iter()
            .map(|id| {
                let site = &state.sites[id];
                Site {
                    id: id.to_string(),
                    hub: site.spec.hub.clone(),
                    lat: site.spec.latitude,
                    lon: site.spec.longitude,
                    operator: match site.spec.operator {
                        OperatorKind::Government => Operator::Government,
                        OperatorKind::StateOwned => Operator::State,
                        OperatorKind::Commercial => Operator::Commercial,
                    },
                    utilization: 0.0,
                }
            })
            .collect();
        let pools = pool_ids
            .iter()
            .map(|id| {
                let pool = &state.pools[id];
                suanli_placement::Pool {
                    id: id.to_string(),
                    site: site_index[&pool.site],
                    chip: crate::chips::canonical(&pool.chip),
                    domestic: crate::chips::find(&pool.chip).is_some_and(|c| c.domestic),
                    gpus_free: 0,
                    price_fen_per_gpu_hour: pool.price_fen_per_gpu_hour.fen(),
                }
            })
            .collect();
        let mut chips: Vec<String> = state.pools.values().map(|p| crate::chips::canonical(&p.chip)).collect();
        chips.sort();
        chips.dedup();
        let mut speeds: HashMap<String, HashMap<String, f64>> = work_classes()
            .into_iter()
            .map(|class| {
                let of_class = chips.iter().filter_map(|c| speed(&class, c).map(|s| (c.clone(), s))).collect();
                (class, of_class)
            })
            .collect();
        speeds.insert(HOURS_CLASS.to_owned(), chips.iter().map(|c| (c.clone(), 1.0)).collect());
        Network {
            built_from: (
                state.pools.values().map(|p| Pool { gpus_reserved: 0, ..p.clone() }).collect(),
                state.sites.values().cloned().collect(),
            ),
            sites,
            site_index,
            pools,
            pool_ids,
            chips,
            speed: speeds,
        }
    }

    /// Whether `state`'s pools and sites are those this network was built from (free GPUs aside).
    fn built_for(&self, state: &State) -> bool {
        let (pools, sites) = &self.built_from;
        pools.len() == state.pools.len()
            && sites.len() == state.sites.len()
            && pools.iter().zip(state.pools.values()).all(|(was, now)| {
                // Every field but the reservations, named so that a new field must be placed here too.
                let Pool {
                    id,
                    site,
                    chip,
                    gpu_count,
                    domestic,
                    price_fen_per_gpu_hour,
                    gpus_reserved: _,
                    retired_at_s,
                } = now;
                (was.id, was.site, &was.chip, was.gpu_count, was.domestic, was.price_fen_per_gpu_hour, was.retired_at_s)
                    == (*id, *site, chip, *gpu_count, *domestic, *price_fen_per_gpu_hour, *retired_at_s)
            })
            && sites.iter().zip(state.sites.values()).all(|(was, now)| was == now)
    }
}
