//! The default national network (`data/network.csv`, `data/chips.csv`, `data/speed.csv`, built into
//! the crate) and seeded random batches on it, for the benchmark, the tests and demos.
//!
//! Each cluster becomes one site and one pool per chip it has; a pool's free GPUs are its
//! inventory less the cluster's synthetic base load, and its list price is the chip's base rental
//! price plus the power the GPU draws at the cluster's PUE cap and power price.

use std::collections::HashMap;

use crate::model::{Operator, Order, Origin, Pool, Problem, Site};

const NETWORK_CSV: &str = include_str!("../../../data/network.csv");
const CHIPS_CSV: &str = include_str!("../../../data/chips.csv");
const SPEED_CSV: &str = include_str!("../../../data/speed.csv");

/// Rows of a small comma-separated file of our own: `#` comments, a header, no quoting.
fn rows(text: &str) -> impl Iterator<Item = HashMap<&str, &str>> {
    let mut lines = text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty());
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines.map(move |line| header.iter().copied().zip(line.split(',')).collect())
}

fn number(row: &HashMap<&str, &str>, column: &str) -> f64 {
    row[column].parse().unwrap_or_else(|_| panic!("data column {column} is a number"))
}

/// A cluster of the default network.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub id: String,
    pub hub: String,
    pub name: String,
    pub province: String,
    pub class: String,
    pub lat: f64,
    pub lon: f64,
    pub power_price_cny_kwh: f64,
    pub pue_cap: f64,
    pub base_utilization: f64,
    pub operator: Operator,
    /// GPUs by chip.
    pub gpus: Vec<(String, u32)>,
}

pub fn clusters() -> Vec<Cluster> {
    rows(NETWORK_CSV)
        .map(|row| Cluster {
            id: row["id"].to_owned(),
            hub: row["hub"].to_owned(),
            name: row["cluster_cn"].to_owned(),
            province: row["province"].to_owned(),
            class: row["class"].to_owned(),
            lat: number(&row, "lat"),
            lon: number(&row, "lon"),
            power_price_cny_kwh: number(&row, "price_cny_kwh"),
            pue_cap: number(&row, "pue_cap"),
            base_utilization: number(&row, "base_util"),
            operator: match row["operator"] {
                "gov" => Operator::Government,
                "state" => Operator::State,
                _ => Operator::Commercial,
            },
            gpus: ["h100", "a800", "h20", "ascend-910b"]
                .iter()
                .zip(["gpus_h100", "gpus_a800", "gpus_h20", "gpus_910b"])
                .map(|(chip, column)| (chip.to_string(), number(&row, column) as u32))
                .filter(|(_, n)| *n > 0)
                .collect(),
        })
        .collect()
}

pub fn speed_table() -> HashMap<String, HashMap<String, f64>> {
    let mut table: HashMap<String, HashMap<String, f64>> = HashMap::new();
    for row in rows(SPEED_CSV) {
        table.entry(row["class"].to_owned()).or_default().insert(row["chip"].to_owned(), number(&row, "speed"));
    }
    table
}

/// The default network as a problem with no orders: egress 30 fen/GB and an unplaced penalty of
/// 100,000 fen per reference GPU-hour, as in the format's example.
pub fn default_problem() -> Problem {
    let chips: HashMap<String, (bool, f64, f64)> = rows(CHIPS_CSV)
        .map(|row| {
            (
                row["chip"].to_owned(),
                (row["domestic"] == "true", number(&row, "base_fen_per_gpu_hour"), number(&row, "kw_per_gpu")),
            )
        })
        .collect();
    let mut sites = Vec::new();
    let mut pools = Vec::new();
    for (index, cluster) in clusters().into_iter().enumerate() {
        for (chip, gpus) in &cluster.gpus {
            let (domestic, base, kw) = chips[chip];
            let power_fen = kw * cluster.pue_cap * cluster.power_price_cny_kwh * 100.0;
            pools.push(Pool {
                id: format!("{}/{chip}", cluster.id),
                site: index,
                chip: chip.clone(),
                domestic,
                gpus_free: (f64::from(*gpus) * (1.0 - cluster.base_utilization)).round() as u32,
                price_fen_per_gpu_hour: (base + power_fen).round() as i64,
            });
        }
        sites.push(Site {
            id: cluster.id,
            hub: cluster.hub,
            lat: cluster.lat,
            lon: cluster.lon,
            operator: cluster.operator,
            utilization: cluster.base_utilization,
        });
    }
    Problem {
        egress_fen_per_gb: 30,
        unplaced_penalty_fen_per_ref_gpu_hour: 100_000,
        speed: speed_table(),
        sites,
        pools,
        orders: Vec::new(),
        policy: crate::model::Policy::default(),
    }
}

/// SplitMix64: a small, well-known generator, so a seed names the same batch everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A seeded batch of `count` orders on the default network. Orders come mostly from the eastern
/// hubs (where the data is), ask for 1-16 GPUs for 2-48 reference hours per GPU, accept two to four
/// chips, and some carry a latency bound or a provider rule that allows only government-run or
/// state-owned sites.
pub fn seeded_batch(seed: u64, count: usize) -> Problem {
    let mut problem = default_problem();
    let mut rng = Rng::new(seed);
    let classes: Vec<String> = {
        let mut names: Vec<String> = problem.speed.keys().cloned().collect();
        names.sort();
        names
    };
    let chips = ["h100", "a800", "h20", "ascend-910b"];
    let east: Vec<usize> = clusters().iter().enumerate().filter(|(_, c)| c.class == "east").map(|(i, _)| i).collect();
    let public_sites: Vec<usize> =
        problem.sites.iter().enumerate().filter(|(_, s)| s.operator != Operator::Commercial).map(|(i, _)| i).collect();
    for n in 0..count {
        let origin_site = &problem.sites[east[rng.below(east.len() as u64) as usize]];
        let gpus = [1u32, 1, 2, 2, 4, 4, 8, 16][rng.below(8) as usize];
        let hours_per_gpu = 2.0 + rng.unit() * 46.0;
        let mut accepted: Vec<String> = chips.iter().filter(|_| rng.below(4) != 0).map(|c| c.to_string()).collect();
        if accepted.len() < 2 {
            accepted = vec!["a800".into(), chips[rng.below(4) as usize].to_string()];
            accepted.dedup();
        }
        let rtt_ms_max = (rng.below(10) < 2).then(|| 15.0 + rng.unit() * 20.0);
        let sites_allowed = (rng.below(10) < 2).then(|| public_sites.clone());
        problem.orders.push(Order {
            id: format!("o{n}"),
            class: classes[rng.below(classes.len() as u64) as usize].clone(),
            gpus,
            work_ref_gpu_hours: (f64::from(gpus) * hours_per_gpu * 100.0).round() / 100.0,
            chips: accepted,
            origin: Origin { hub: origin_site.hub.clone(), lat: origin_site.lat, lon: origin_site.lon },
            data_gb: (rng.below(2_000)) as f64,
            deadline_hours: 24.0 + rng.unit() * 96.0,
            rtt_ms_max,
            sites_allowed,
            domestic_extra_bp: 0,
            policy: None,
        });
    }
    problem
}

/// A seeded hard batch, the kind the engine's budget is for: `orders` orders on `pools` pools at
/// random sites across China, with tight latency bounds (half the orders), deadlines that rule
/// out slow chips, egress worth choosing for, and `supply_pct` GPUs free for every 100 asked for
/// (spread unevenly over the pools).
pub fn tight_batch(seed: u64, orders: usize, pools: usize, supply_pct: u64) -> Problem {
    let mut rng = Rng::new(seed);
    let speed = speed_table();
    let chips = ["h100", "a800", "h20", "ascend-910b"];
    let site_count = (pools / 2).max(2);
    let operators = [Operator::Government, Operator::State, Operator::Commercial];
    let sites: Vec<Site> = (0..site_count)
        .map(|i| Site {
            id: format!("s{i}"),
            hub: format!("hub{}", rng.below(4)),
            lat: 22.0 + rng.unit() * 20.0,
            lon: 100.0 + rng.unit() * 22.0,
            operator: operators[rng.below(3) as usize],
            utilization: rng.unit() * 0.6,
        })
        .collect();
    let mut classes: Vec<String> = speed.keys().cloned().collect();
    classes.sort();
    let batch: Vec<Order> = (0..orders)
        .map(|n| {
            let gpus = [1u32, 2, 2, 4, 4, 8, 8, 16][rng.below(8) as usize];
            let hours_per_gpu = 4.0 + rng.unit() * 40.0;
            let work = (f64::from(gpus) * hours_per_gpu * 100.0).round() / 100.0;
            let mut accepted: Vec<String> = chips.iter().filter(|_| rng.below(3) != 0).map(|c| c.to_string()).collect();
            if accepted.is_empty() {
                accepted.push(chips[rng.below(4) as usize].to_string());
            }
            Order {
                id: format!("o{n}"),
                class: classes[rng.below(classes.len() as u64) as usize].clone(),
                gpus,
                work_ref_gpu_hours: work,
                chips: accepted,
                origin: Origin {
                    hub: format!("hub{}", rng.below(4)),
                    lat: 22.0 + rng.unit() * 20.0,
                    lon: 100.0 + rng.unit() * 22.0,
                },
                data_gb: rng.below(3_000) as f64,
                // Between barely enough on a reference GPU and three times that.
                deadline_hours: hours_per_gpu * (0.8 + rng.unit() * 2.2),
                rtt_ms_max: (rng.below(2) == 0).then(|| 8.0 + rng.unit() * 22.0),
                sites_allowed: None,
                domestic_extra_bp: 0,
                policy: None,
            }
        })
        .collect();
    let demand: u64 = batch.iter().map(|o| u64::from(o.gpus)).sum();
    let per_pool = (demand * supply_pct / 100 / pools as u64).max(1);
    let pools: Vec<Pool> = (0..pools)
        .map(|i| {
            let chip = chips[rng.below(4) as usize];
            Pool {
                id: format!("p{i}"),
                site: rng.below(site_count as u64) as usize,
                chip: chip.to_owned(),
                domestic: chip == "ascend-910b",
                gpus_free: (per_pool as f64 * (0.5 + rng.unit())).round() as u32,
                price_fen_per_gpu_hour: 600 + rng.below(2_400) as i64,
            }
        })
        .collect();
    Problem {
        egress_fen_per_gb: 20 + rng.below(40) as i64,
        unplaced_penalty_fen_per_ref_gpu_hour: 5_000,
        speed,
        sites,
        pools,
        orders: batch,
        policy: crate::model::Policy::default(),
    }
}
