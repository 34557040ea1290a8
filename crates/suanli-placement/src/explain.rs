//! Why an order went where it went: the chosen pool, and for every other pool either the first
//! rule that excluded it, that it was full after the batch, or how much more (or less) it costs.

use crate::model::{Exclusion, Problem};
use crate::solve::Solution;

#[derive(Clone, Debug, PartialEq)]
pub enum PoolVerdict {
    Chosen {
        cost_fen: i64,
    },
    Excluded(Exclusion),
    /// Allowed, but the GPUs left after the batch are too few.
    Full {
        gpus_left: i64,
        gpus: u32,
    },
    /// Allowed and with room: what it would cost instead, and the difference to the answer.
    Costlier {
        cost_fen: i64,
        extra_fen: i64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    pub order: String,
    pub pool: Option<String>,
    pub cost_fen: i64,
    pub pools: Vec<(String, PoolVerdict)>,
}

pub fn explain(problem: &Problem, solution: &Solution, order_index: usize) -> Explanation {
    let order = &problem.orders[order_index];
    let mut used = vec![0i64; problem.pools.len()];
    for (o, pool) in solution.pool_of.iter().enumerate() {
        if let Some(p) = *pool
            && o != order_index
        {
            used[p] += i64::from(problem.orders[o].gpus);
        }
    }
    let chosen = solution.pool_of[order_index];
    let current = solution.cost_of[order_index];
    let pools = problem
        .pools
        .iter()
        .enumerate()
        .map(|(p, pool)| {
            let verdict = if Some(p) == chosen {
                PoolVerdict::Chosen { cost_fen: current }
            } else if let Some(exclusion) = problem.exclusion(order, p) {
                PoolVerdict::Excluded(exclusion)
            } else {
                let left = i64::from(pool.gpus_free) - used[p];
                let speed =
                    problem.speed_of(&order.class, &pool.chip).expect("not excluded, so the chip runs the class");
                let cost = problem.weighted_cost(order, pool, speed);
                if left < i64::from(order.gpus) {
                    PoolVerdict::Full { gpus_left: left, gpus: order.gpus }
                } else {
                    PoolVerdict::Costlier { cost_fen: cost, extra_fen: cost - current }
                }
            };
            (pool.id.clone(), verdict)
        })
        .collect();
    Explanation { order: order.id.clone(), pool: chosen.map(|p| problem.pools[p].id.clone()), cost_fen: current, pools }
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.pool {
            Some(pool) => writeln!(f, "order {} → {pool} at {} fen", self.order, self.cost_fen)?,
            None => writeln!(f, "order {} unplaced, at its penalty of {} fen", self.order, self.cost_fen)?,
        }
        for (pool, verdict) in &self.pools {
            match verdict {
                PoolVerdict::Chosen { .. } => writeln!(f, "  {pool}: chosen")?,
                PoolVerdict::Excluded(why) => writeln!(f, "  {pool}: excluded, {why}")?,
                PoolVerdict::Full { gpus_left, gpus } => {
                    writeln!(f, "  {pool}: full, {gpus_left} GPUs left after the batch, the order needs {gpus}")?
                }
                PoolVerdict::Costlier { cost_fen, extra_fen } if *extra_fen >= 0 => {
                    writeln!(f, "  {pool}: {extra_fen} fen more ({cost_fen} fen)")?
                }
                PoolVerdict::Costlier { cost_fen, extra_fen } => {
                    writeln!(f, "  {pool}: {} fen less ({cost_fen} fen), left for a heuristic answer", -extra_fen)?
                }
            }
        }
        Ok(())
    }
}
