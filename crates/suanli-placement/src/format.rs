//! The placement batch format v1 (`docs/placement-format.md`): reading an input, checking it into a
//! [`Problem`], and writing a [`Solution`] back.
//!
//! Unknown fields are refused at every level (the types deny them when deserialized); every other
//! problem names its field by path (`orders[3].gpus`). Reading the JSON text is the caller's: this
//! crate knows the shapes, not the wire.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::model::{Operator, Order, Origin, Pool, Problem, Site};
use crate::solve::{Solution, unplaced_reason};

/// Limits on one batch, so an input cannot ask for unbounded work.
pub const ORDERS_MAX: usize = 200_000;
pub const POOLS_MAX: usize = 10_000;
pub const SITES_MAX: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputV1 {
    pub version: u32,
    pub egress_fen_per_gb: i64,
    pub unplaced_penalty_fen_per_ref_gpu_hour: i64,
    pub speed: HashMap<String, HashMap<String, f64>>,
    pub sites: Vec<SiteV1>,
    pub pools: Vec<PoolV1>,
    pub orders: Vec<OrderV1>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteV1 {
    pub id: String,
    pub hub: String,
    pub lat: f64,
    pub lon: f64,
    pub operator: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolV1 {
    pub id: String,
    pub site: String,
    pub chip: String,
    pub domestic: bool,
    pub gpus_free: u32,
    pub price_fen_per_gpu_hour: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderV1 {
    pub id: String,
    pub class: String,
    pub gpus: u32,
    pub work_ref_gpu_hours: f64,
    pub chips: Vec<String>,
    pub origin: OriginV1,
    pub data_gb: f64,
    pub deadline_hours: f64,
    /// May be omitted, meaning null (no bound).
    pub rtt_ms_max: Option<f64>,
    /// May be omitted, meaning null (every site).
    pub sites_allowed: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginV1 {
    pub hub: String,
    pub lat: f64,
    pub lon: f64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct OutputV1 {
    pub version: u32,
    pub assignments: Vec<AssignmentV1>,
    pub unplaced: Vec<UnplacedV1>,
    pub objective_fen: i64,
    pub lower_bound_fen: i64,
    pub gap: f64,
    pub solve_ms: u64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct AssignmentV1 {
    pub order: String,
    pub pool: String,
    pub hours: f64,
    pub cost_fen: i64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct UnplacedV1 {
    pub order: String,
    pub reason: String,
}

/// Why an input was refused: the field's path and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FormatError {
    pub field: String,
    pub problem: String,
}

fn error(field: impl Into<String>, problem: impl Into<String>) -> FormatError {
    FormatError { field: field.into(), problem: problem.into() }
}

fn finite_in(field: &str, value: f64, low: f64, high: f64) -> Result<f64, FormatError> {
    if value.is_finite() && value >= low && value <= high {
        Ok(value)
    } else {
        Err(error(field, format!("must be between {low} and {high}, got {value}")))
    }
}

fn identifier(field: &str, text: &str) -> Result<(), FormatError> {
    if text.is_empty() || text.len() > 128 || text.chars().any(char::is_control) {
        return Err(error(field, "must be 1-128 characters without control characters"));
    }
    Ok(())
}

/// Checks an input into a problem.
pub fn check(input: InputV1) -> Result<Problem, FormatError> {
    if input.version != 1 {
        return Err(error("version", format!("must be 1, got {}", input.version)));
    }
    if input.egress_fen_per_gb < 0 {
        return Err(error("egress_fen_per_gb", "must not be negative"));
    }
    if input.unplaced_penalty_fen_per_ref_gpu_hour < 0 {
        return Err(error("unplaced_penalty_fen_per_ref_gpu_hour", "must not be negative"));
    }
    for (class, chips) in &input.speed {
        for (chip, speed) in chips {
            finite_in(&format!("speed.{class}.{chip}"), *speed, 1e-6, 1e6)?;
        }
    }
    if input.sites.len() > SITES_MAX || input.pools.len() > POOLS_MAX || input.orders.len() > ORDERS_MAX {
        return Err(error("input", format!("at most {SITES_MAX} sites, {POOLS_MAX} pools and {ORDERS_MAX} orders")));
    }
    let mut site_index = HashMap::new();
    let mut sites = Vec::with_capacity(input.sites.len());
    for (i, site) in input.sites.into_iter().enumerate() {
        let at = |f: &str| format!("sites[{i}].{f}");
        identifier(&at("id"), &site.id)?;
        identifier(&at("hub"), &site.hub)?;
        if site_index.insert(site.id.clone(), i).is_some() {
            return Err(error(at("id"), format!("{:?} appears twice", site.id)));
        }
        let operator = Operator::parse(&site.operator).ok_or_else(|| {
            error(at("operator"), format!("must be government, state or commercial, got {:?}", site.operator))
        })?;
        sites.push(Site {
            id: site.id,
            hub: site.hub,
            lat: finite_in(&at("lat"), site.lat, -90.0, 90.0)?,
            lon: finite_in(&at("lon"), site.lon, -180.0, 180.0)?,
            operator,
            utilization: 0.0,
        });
    }
    let mut pool_ids = HashSet::new();
    let mut pools = Vec::with_capacity(input.pools.len());
    for (i, pool) in input.pools.into_iter().enumerate() {
        let at = |f: &str| format!("pools[{i}].{f}");
        identifier(&at("id"), &pool.id)?;
        identifier(&at("chip"), &pool.chip)?;
        if !pool_ids.insert(pool.id.clone()) {
            return Err(error(at("id"), format!("{:?} appears twice", pool.id)));
        }
        let site = *site_index.get(&pool.site).ok_or_else(|| error(at("site"), format!("no site {:?}", pool.site)))?;
        if pool.price_fen_per_gpu_hour <= 0 || pool.price_fen_per_gpu_hour > 100_000_000 {
            return Err(error(at("price_fen_per_gpu_hour"), "must be between 1 and 100000000"));
        }
        pools.push(Pool {
            id: pool.id,
            site,
            chip: pool.chip,
            domestic: pool.domestic,
            gpus_free: pool.gpus_free,
            price_fen_per_gpu_hour: pool.price_fen_per_gpu_hour,
        });
    }
    let mut order_ids = HashSet::new();
    let mut orders = Vec::with_capacity(input.orders.len());
    for (i, order) in input.orders.into_iter().enumerate() {
        let at = |f: &str| format!("orders[{i}].{f}");
        identifier(&at("id"), &order.id)?;
        identifier(&at("class"), &order.class)?;
        if !order_ids.insert(order.id.clone()) {
            return Err(error(at("id"), format!("{:?} appears twice", order.id)));
        }
        if order.gpus == 0 || order.gpus > 100_000 {
            return Err(error(at("gpus"), "must be between 1 and 100000"));
        }
        if order.chips.is_empty() {
            return Err(error(at("chips"), "must name at least one chip"));
        }
        let sites_allowed = match order.sites_allowed {
            None => None,
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(k, id)| {
                        site_index
                            .get(id)
                            .copied()
                            .ok_or_else(|| error(format!("orders[{i}].sites_allowed[{k}]"), format!("no site {id:?}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        identifier(&at("origin.hub"), &order.origin.hub)?;
        orders.push(Order {
            id: order.id,
            class: order.class,
            gpus: order.gpus,
            work_ref_gpu_hours: finite_in(&at("work_ref_gpu_hours"), order.work_ref_gpu_hours, 1e-6, 1e9)?,
            chips: order.chips,
            origin: Origin {
                hub: order.origin.hub,
                lat: finite_in(&at("origin.lat"), order.origin.lat, -90.0, 90.0)?,
                lon: finite_in(&at("origin.lon"), order.origin.lon, -180.0, 180.0)?,
            },
            data_gb: finite_in(&at("data_gb"), order.data_gb, 0.0, 1e9)?,
            deadline_hours: finite_in(&at("deadline_hours"), order.deadline_hours, 1e-6, 1e7)?,
            rtt_ms_max: order.rtt_ms_max.map(|r| finite_in(&at("rtt_ms_max"), r, 0.0, 1e6)).transpose()?,
            sites_allowed,
            domestic_extra_bp: 0,
            policy: None,
        });
    }
    Ok(Problem {
        egress_fen_per_gb: input.egress_fen_per_gb,
        unplaced_penalty_fen_per_ref_gpu_hour: input.unplaced_penalty_fen_per_ref_gpu_hour,
        speed: input.speed,
        sites,
        pools,
        orders,
        policy: crate::model::Policy::default(),
    })
}

fn six_decimals(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// The output document for `solution` of `problem`, orders in input order.
pub fn output(problem: &Problem, solution: &Solution) -> OutputV1 {
    let mut assignments = Vec::new();
    let mut unplaced = Vec::new();
    for (index, order) in problem.orders.iter().enumerate() {
        match solution.pool_of[index] {
            Some(p) => {
                let pool = &problem.pools[p];
                let hours = problem.hours(order, pool).expect("placed orders run on their chip");
                let speed = problem.speed_of(&order.class, &pool.chip).expect("placed orders run on their chip");
                assignments.push(AssignmentV1 {
                    order: order.id.clone(),
                    pool: pool.id.clone(),
                    hours: six_decimals(hours),
                    cost_fen: problem.cost(order, pool, speed),
                });
            }
            None => {
                unplaced.push(UnplacedV1 { order: order.id.clone(), reason: unplaced_reason(problem, index, solution) })
            }
        }
    }
    OutputV1 {
        version: 1,
        assignments,
        unplaced,
        objective_fen: solution.objective_fen,
        lower_bound_fen: solution.lower_bound_fen,
        gap: six_decimals(solution.gap()),
        solve_ms: solution.solve_ms,
    }
}
