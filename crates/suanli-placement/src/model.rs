//! A placement problem: sites, pools and orders, checked, with the feasibility rules and the cost
//! of each order on each pool as `docs/placement-format.md` defines them.

use std::collections::HashMap;

/// Who runs a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    Government,
    State,
    Commercial,
}

impl Operator {
    pub fn parse(text: &str) -> Option<Operator> {
        match text {
            "government" => Some(Operator::Government),
            "state" => Some(Operator::State),
            "commercial" => Some(Operator::Commercial),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Government => "government",
            Operator::State => "state",
            Operator::Commercial => "commercial",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Site {
    pub id: String,
    pub hub: String,
    pub lat: f64,
    pub lon: f64,
    pub operator: Operator,
    /// The share of the site's GPUs already busy, 0 to 1; read by the under-used-site policy term.
    pub utilization: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub id: String,
    /// Index into `Problem::sites`.
    pub site: usize,
    pub chip: String,
    pub domestic: bool,
    pub gpus_free: u32,
    pub price_fen_per_gpu_hour: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    pub hub: String,
    pub lat: f64,
    pub lon: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    pub id: String,
    pub class: String,
    pub gpus: u32,
    pub work_ref_gpu_hours: f64,
    pub chips: Vec<String>,
    pub origin: Origin,
    pub data_gb: f64,
    pub deadline_hours: f64,
    pub rtt_ms_max: Option<f64>,
    /// Indices into `Problem::sites`; `None` allows every site.
    pub sites_allowed: Option<Vec<usize>>,
    /// How much more the order's programme subsidizes domestic chips, in basis points of cost
    /// (domestic rate less the ordinary rate); read by the domestic-chip policy term.
    pub domestic_extra_bp: u32,
    /// The order's programme's own policy weights, where it overrides the problem's.
    pub policy: Option<Policy>,
}

/// A checked problem. Build it with [`crate::format::parse_input`] or directly in code; the solver
/// trusts its indices.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub egress_fen_per_gb: i64,
    pub unplaced_penalty_fen_per_ref_gpu_hour: i64,
    /// `speed[class][chip]`: how many reference GPUs one GPU of `chip` is worth for `class`.
    pub speed: HashMap<String, HashMap<String, f64>>,
    pub sites: Vec<Site>,
    pub pools: Vec<Pool>,
    pub orders: Vec<Order>,
    pub policy: Policy,
}

/// Policy terms: explicit, weighted parts of the objective beyond cost (not in the v1 batch
/// format, where they are zero). Each is a credit (a negative cost) on an order–pool pair, so the
/// solver and its bound treat them like cost; what each term cost in real money is reported by
/// [`crate::policy_report`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Policy {
    /// Sites busier than this share of their GPUs earn nothing from the next term.
    pub utilization_target: f64,
    /// Credit per GPU-hour placed on a site below the target: raises the load of under-used sites.
    pub underused_credit_fen_per_gpu_hour: i64,
    /// Weight, in basis points, on the extra subsidy an order's programme pays on domestic chips:
    /// the credit on a domestic pool is `cost × domestic_extra_bp / 10,000 × weight / 10,000`.
    pub domestic_weight_bp: i64,
}

/// The policy credits of one order on one pool, in fen (zero or negative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Terms {
    pub underused_fen: i64,
    pub domestic_fen: i64,
}

impl Terms {
    pub fn total(self) -> i64 {
        self.underused_fen + self.domestic_fen
    }
}

/// Why an order cannot go to a pool: the first rule that excludes it, in the order the format
/// lists them.
#[derive(Clone, Debug, PartialEq)]
pub enum Exclusion {
    ChipNotAccepted { chip: String },
    NoSpeed { class: String, chip: String },
    TooFar { rtt_ms: f64, rtt_ms_max: f64 },
    SiteNotAllowed { site: String },
    TooSlow { hours: f64, deadline_hours: f64 },
    TooBig { gpus: u32, gpus_free: u32 },
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exclusion::ChipNotAccepted { chip } => write!(f, "chip {chip} is not among the order's chips"),
            Exclusion::NoSpeed { class, chip } => write!(f, "no speed for class {class} on chip {chip}"),
            Exclusion::TooFar { rtt_ms, rtt_ms_max } => {
                write!(f, "round trip {rtt_ms:.1} ms is over the order's bound of {rtt_ms_max:.1} ms")
            }
            Exclusion::SiteNotAllowed { site } => {
                write!(f, "site {site} is not allowed by the voucher's provider rule")
            }
            Exclusion::TooSlow { hours, deadline_hours } => {
                write!(f, "it would run {hours:.2} h, past the {deadline_hours:.2} h deadline")
            }
            Exclusion::TooBig { gpus, gpus_free } => {
                write!(f, "the order needs {gpus} GPUs and the pool has {gpus_free} free")
            }
        }
    }
}

const EARTH_RADIUS_KM: f64 = 6371.0;

/// Round-trip time between two points: `2 × 1.5 × great-circle km / 200` ms (light in fibre at
/// 200 km/ms along a path 1.5 times the great circle).
pub fn rtt_ms(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let d_phi = (lat2 - lat1).to_radians();
    let d_lambda = (lon2 - lon1).to_radians();
    let a = (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
    let km = 2.0 * EARTH_RADIUS_KM * a.sqrt().asin();
    2.0 * 1.5 * km / 200.0
}

impl Problem {
    pub fn speed_of(&self, class: &str, chip: &str) -> Option<f64> {
        self.speed.get(class).and_then(|chips| chips.get(chip)).copied()
    }

    /// Run hours of `order` on `pool`, if the class runs on its chip.
    pub fn hours(&self, order: &Order, pool: &Pool) -> Option<f64> {
        self.speed_of(&order.class, &pool.chip).map(|speed| order.work_ref_gpu_hours / (f64::from(order.gpus) * speed))
    }

    /// Whether `order` may go to `pool` at all (capacity aside), or the first rule that excludes it.
    pub fn exclusion(&self, order: &Order, pool_index: usize) -> Option<Exclusion> {
        let pool = &self.pools[pool_index];
        let site = &self.sites[pool.site];
        if !order.chips.contains(&pool.chip) {
            return Some(Exclusion::ChipNotAccepted { chip: pool.chip.clone() });
        }
        let Some(hours) = self.hours(order, pool) else {
            return Some(Exclusion::NoSpeed { class: order.class.clone(), chip: pool.chip.clone() });
        };
        if let Some(rtt_ms_max) = order.rtt_ms_max {
            let rtt = rtt_ms(order.origin.lat, order.origin.lon, site.lat, site.lon);
            if rtt > rtt_ms_max {
                return Some(Exclusion::TooFar { rtt_ms: rtt, rtt_ms_max });
            }
        }
        if let Some(allowed) = &order.sites_allowed
            && !allowed.contains(&pool.site)
        {
            return Some(Exclusion::SiteNotAllowed { site: site.id.clone() });
        }
        if hours > order.deadline_hours {
            return Some(Exclusion::TooSlow { hours, deadline_hours: order.deadline_hours });
        }
        if order.gpus > pool.gpus_free {
            return Some(Exclusion::TooBig { gpus: order.gpus, gpus_free: pool.gpus_free });
        }
        None
    }

    /// The cost in fen of `order` on `pool`: compute at the pool's price plus egress when the data
    /// leaves its hub, rounded half away from zero.
    pub fn cost(&self, order: &Order, pool: &Pool, speed: f64) -> i64 {
        let compute = (pool.price_fen_per_gpu_hour as f64 * order.work_ref_gpu_hours / speed).round() as i64;
        let site = &self.sites[pool.site];
        let egress = if site.hub != order.origin.hub {
            (order.data_gb * self.egress_fen_per_gb as f64).round() as i64
        } else {
            0
        };
        compute.saturating_add(egress)
    }

    /// What the solver minimizes for `order` on `pool`: the cost plus the policy credits.
    pub fn weighted_cost(&self, order: &Order, pool: &Pool, speed: f64) -> i64 {
        let cost = self.cost(order, pool, speed);
        cost + self.terms(order, pool, speed, cost).total()
    }

    /// The policy credits of `order` on `pool` (zero when the policy is off).
    pub fn terms(&self, order: &Order, pool: &Pool, speed: f64, cost: i64) -> Terms {
        let policy = order.policy.as_ref().unwrap_or(&self.policy);
        let site = &self.sites[pool.site];
        let hours = order.work_ref_gpu_hours / (f64::from(order.gpus) * speed);
        let underused_fen =
            if policy.underused_credit_fen_per_gpu_hour > 0 && site.utilization < policy.utilization_target {
                -((policy.underused_credit_fen_per_gpu_hour as f64 * f64::from(order.gpus) * hours).round() as i64)
            } else {
                0
            };
        let domestic_fen = if pool.domestic && order.domestic_extra_bp > 0 && policy.domestic_weight_bp > 0 {
            -((cost as f64 * f64::from(order.domestic_extra_bp) / 10_000.0 * policy.domestic_weight_bp as f64
                / 10_000.0)
                .round() as i64)
        } else {
            0
        };
        Terms { underused_fen, domestic_fen }
    }

    /// What leaving `order` unplaced costs.
    pub fn penalty(&self, order: &Order) -> i64 {
        (self.unplaced_penalty_fen_per_ref_gpu_hour as f64 * order.work_ref_gpu_hours).round() as i64
    }
}
