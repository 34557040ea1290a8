//! Times one clearing of the market between hub nodes on a seeded market of `BIDS` bids (default
//! 500) on 28 offers, as a day of the simulator has: `cargo run --release -p suanli-placement
//! --example clearing -- 1000`.

use suanli_placement::market::{Bid, Fit, Offer, clear};
use suanli_placement::network::Rng;

fn main() {
    let bids: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let mut rng = Rng::new(2026);
    let offers: Vec<Offer> = (0..28)
        .map(|i| Offer {
            id: format!("o{i}"),
            gpus: 100 + rng.below(900) as u32,
            hours: 24 * 30,
            reserve_fen_per_gpu_hour: 300 + rng.below(1_500) as i64,
        })
        .collect();
    let bids: Vec<Bid> = (0..bids)
        .map(|i| {
            let gpus = 8;
            let hours = 50 + rng.below(380) as u32;
            let fits =
                (0..offers.len()).map(|offer| Fit { offer, hours, egress_fen: rng.below(3) as i64 * 15_000 }).collect();
            Bid { id: format!("b{i}"), gpus, value_fen: i64::from(gpus) * i64::from(hours) * 2_500, fits }
        })
        .collect();
    let started = std::time::Instant::now();
    let clearing = clear(&offers, &bids);
    println!(
        "{} bids on {} offers: {} trades, welfare {} of the LP's {:.0} (gap {} bp) in {:.0} ms",
        bids.len(),
        offers.len(),
        clearing.trades.len(),
        clearing.welfare_fen,
        clearing.lp_welfare_fen,
        clearing.gap_bp,
        started.elapsed().as_secs_f64() * 1e3
    );
}
