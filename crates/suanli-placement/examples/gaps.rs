//! The engine's gap to its own bound on seeded hard batches (`network::tight_batch`):
//! `cargo run --release -p suanli-placement --example gaps -- [instances] [budget_ms] [supply_pct]`.
use suanli_placement::network::{Rng, tight_batch};
use suanli_placement::{Limits, solve};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let instances: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let budget: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200);
    let supply: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(100);
    let mut gaps = Vec::new();
    let mut times = Vec::new();
    for seed in 0..instances {
        let mut rng = Rng::new(seed ^ 0x5eed);
        let orders = 50 + rng.below(151) as usize;
        let pools = 10 + rng.below(11) as usize;
        let problem = tight_batch(seed, orders, pools, supply);
        let solution = solve(&problem, &Limits { solve_ms_max: budget, ..Limits::default() });
        gaps.push(solution.gap());
        times.push(solution.solve_ms);
    }
    let mut sorted = gaps.clone();
    sorted.sort_by(f64::total_cmp);
    let within = gaps.iter().filter(|g| **g <= 0.01).count();
    println!(
        "{instances} instances, supply {supply}%, budget {budget} ms: gap ≤ 1% on {within} ({:.0}%), median {:.3}%, p95 {:.3}%, max {:.3}%, mean time {:.0} ms",
        within as f64 * 100.0 / instances as f64,
        sorted[sorted.len() / 2] * 100.0,
        sorted[sorted.len() * 95 / 100] * 100.0,
        sorted[sorted.len() - 1] * 100.0,
        times.iter().sum::<u64>() as f64 / times.len() as f64
    );
}
