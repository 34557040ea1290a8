//! The solver: a Lagrangian lower bound, a regret-ordered greedy guided by the bound's pool
//! prices, local search, and exact branch and bound for small batches.
//!
//! The problem is a generalized assignment: each order goes whole to one pool or stays unplaced
//! (at a penalty), and the GPUs placed on a pool may not exceed its free GPUs. Relaxing the
//! capacity constraints with a price `λ_p ≥ 0` per GPU of pool `p` gives, for every `λ`,
//!
//! ```text
//! L(λ) = Σ_o min(penalty_o, min_p cost_op + λ_p · gpus_o) − Σ_p λ_p · gpus_free_p  ≤  optimum
//! ```
//!
//! so every `L(λ)` is a valid lower bound; subgradient steps raise it toward the LP relaxation's
//! value (the relaxed subproblem is integral, so the best `L` equals the LP bound). The same
//! prices steer the greedy: an order sees `cost + λ · gpus`, so congested pools look as dear as
//! they are. Every stage has a deadline; when it passes, the best answer so far stands.

use std::time::{Duration, Instant};

use crate::model::{Exclusion, Problem};

/// Limits on one solve.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Wall-clock budget for the whole solve.
    pub solve_ms_max: u64,
    /// Batches with at most this many orders are solved exactly by branch and bound (within
    /// the time budget).
    pub exact_orders_max: usize,
    /// Subgradient iterations for the lower bound.
    pub bound_iterations_max: usize,
    /// Ruin-and-recreate rounds after the first answer, while its gap to the bound is above
    /// [`GAP_TARGET`]: with a cap the rounds run reach, the answer is the same on every run.
    pub search_iterations_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { solve_ms_max: 2_000, exact_orders_max: 16, bound_iterations_max: 300, search_iterations_max: 20_000 }
    }
}

/// The gap to the bound at which the engine stops searching: 1%.
pub const GAP_TARGET: f64 = 0.01;

fn gap_of(objective: i64, bound: i64) -> f64 {
    (objective - bound) as f64 / bound.max(1) as f64
}

/// How the answer was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Branch and bound finished: the answer is optimal.
    Exact,
    /// The heuristic's answer, with the Lagrangian bound.
    Heuristic,
}

#[derive(Clone, Debug)]
pub struct Solution {
    /// The pool of each order, by index, or `None` when unplaced.
    pub pool_of: Vec<Option<usize>>,
    /// Each order's share of the objective: its cost (with policy credits, if any) where placed,
    /// its penalty where not.
    pub cost_of: Vec<i64>,
    pub objective_fen: i64,
    pub lower_bound_fen: i64,
    pub method: Method,
    pub solve_ms: u64,
}

impl Solution {
    /// `(objective − bound) / max(1, bound)`.
    pub fn gap(&self) -> f64 {
        (self.objective_fen - self.lower_bound_fen) as f64 / (self.lower_bound_fen.max(1)) as f64
    }
}

/// Every order's feasible pools with their costs, cheapest first; only pools cheaper than the
/// order's penalty are kept, since leaving it unplaced would be no worse.
pub(crate) struct Candidates {
    start: Vec<usize>,
    pool: Vec<u32>,
    cost: Vec<i64>,
    pub(crate) penalty: Vec<i64>,
    pub(crate) gpus: Vec<i64>,
    pub(crate) capacity: Vec<i64>,
}

impl Candidates {
    pub(crate) fn build(problem: &Problem) -> Candidates {
        // Speeds per class and pool, looked up once per class rather than once per pair.
        let mut speed_by_class: std::collections::HashMap<&str, Vec<Option<f64>>> = std::collections::HashMap::new();
        let mut candidates = Candidates {
            start: Vec::with_capacity(problem.orders.len() + 1),
            pool: Vec::new(),
            cost: Vec::new(),
            penalty: Vec::with_capacity(problem.orders.len()),
            gpus: Vec::with_capacity(problem.orders.len()),
            capacity: problem.pools.iter().map(|p| i64::from(p.gpus_free)).collect(),
        };
        let mut row: Vec<(i64, u32)> = Vec::new();
        for order in &problem.orders {
            let speeds = speed_by_class.entry(order.class.as_str()).or_insert_with(|| {
                problem.pools.iter().map(|pool| problem.speed_of(&order.class, &pool.chip)).collect()
            });
            let penalty = problem.penalty(order);
            row.clear();
            for (index, pool) in problem.pools.iter().enumerate() {
                let Some(speed) = speeds[index] else { continue };
                if problem.exclusion(order, index).is_none() {
                    let cost = problem.weighted_cost(order, pool, speed);
                    if cost < penalty {
                        row.push((cost, index as u32));
                    }
                }
            }
            row.sort_unstable();
            candidates.start.push(candidates.pool.len());
            candidates.pool.extend(row.iter().map(|&(_, p)| p));
            candidates.cost.extend(row.iter().map(|&(c, _)| c));
            candidates.penalty.push(penalty);
            candidates.gpus.push(i64::from(order.gpus));
        }
        candidates.start.push(candidates.pool.len());
        candidates
    }

    pub(crate) fn orders(&self) -> usize {
        self.penalty.len()
    }

    fn of(&self, order: usize) -> impl Iterator<Item = (usize, i64)> + '_ {
        let range = self.start[order]..self.start[order + 1];
        self.pool[range.clone()].iter().map(|&p| p as usize).zip(self.cost[range].iter().copied())
    }

    fn cost(&self, order: usize, pool: Option<usize>) -> i64 {
        match pool {
            None => self.penalty[order],
            Some(pool) => self.of(order).find(|&(p, _)| p == pool).map(|(_, c)| c).expect("placed on a candidate"),
        }
    }
}

pub fn solve(problem: &Problem, limits: &Limits) -> Solution {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(limits.solve_ms_max);
    let candidates = Candidates::build(problem);
    let n = candidates.orders();

    // Stages share the budget: the bound gets up to half of it, local search the rest.
    let stage = |share: u64| started + Duration::from_millis(limits.solve_ms_max * share / 100);
    // A first answer at zero prices, so the bound's subgradient steps have a target.
    let zero = vec![0.0; problem.pools.len()];
    let mut best = greedy_by(&candidates, &zero, Priority::Density);
    let mut best_objective = objective(&candidates, &best);
    let other = greedy_by(&candidates, &zero, Priority::Regret);
    let other_objective = objective(&candidates, &other);
    if other_objective < best_objective {
        (best, best_objective) = (other, other_objective);
    }

    // Every order on its cheapest candidate (or unplaced, when that is cheaper) is a bound that
    // ignores capacity; a first answer that reaches it is optimal, and nothing is left to do
    // (a one-order quote always ends here).
    let relaxed: i64 = (0..n).map(|o| candidates.of(o).map(|(_, c)| c).fold(candidates.penalty[o], i64::min)).sum();
    if best_objective == relaxed {
        let cost_of = (0..n).map(|o| candidates.cost(o, best[o])).collect();
        return Solution {
            pool_of: best,
            cost_of,
            objective_fen: best_objective,
            lower_bound_fen: relaxed,
            method: Method::Exact,
            solve_ms: started.elapsed().as_millis() as u64,
        };
    }

    let bound_deadline = stage(60);
    // Start the prices where the first answer says they are: a full pool is worth what its
    // least valuable order saves per GPU.
    let start = marginal_prices(&candidates, &best);
    let (lower, prices) = lagrangian(&candidates, start, best_objective, limits.bound_iterations_max, bound_deadline);
    let mut lower_bound = lower;

    for priority in [Priority::Regret, Priority::Density] {
        if Instant::now() >= deadline {
            break;
        }
        let mut guided = greedy_by(&candidates, &prices, priority);
        improve(&candidates, &mut guided, stage(if priority == Priority::Regret { 78 } else { 95 }));
        let guided_objective = objective(&candidates, &guided);
        if guided_objective < best_objective {
            best = guided;
            best_objective = guided_objective;
        }
    }

    // While the gap is above the target and time and rounds remain: ruin part of the best answer
    // and recreate it, then improve; keep what is cheaper. Seeded, so a run that ends on its
    // round cap gives the same answer every time.
    // The search walks from a current answer that may be a little worse than the best (a
    // threshold that shrinks to nothing over the rounds), so it leaves a local optimum.
    let mut rng = crate::network::Rng::new(0x5eed_0000 ^ n as u64);
    let (mut current, mut current_objective) = (best.clone(), best_objective);
    let threshold_start = (best_objective - lower_bound).max(0) as f64 * 0.02;
    let mut rounds = 0;
    while rounds < limits.search_iterations_max
        && n > 1
        && gap_of(best_objective, lower_bound) > GAP_TARGET
        && Instant::now() < deadline
    {
        rounds += 1;
        let mut trial = current.clone();
        ruin_and_recreate(&candidates, &mut trial, &mut rng);
        improve(&candidates, &mut trial, deadline);
        let trial_objective = objective(&candidates, &trial);
        let cooling = 1.0 - rounds as f64 / limits.search_iterations_max as f64;
        if (trial_objective as f64) < current_objective as f64 + threshold_start * cooling {
            current = trial;
            current_objective = trial_objective;
            if current_objective < best_objective {
                best = current.clone();
                best_objective = current_objective;
            }
        }
    }

    let mut method = Method::Heuristic;
    if n <= limits.exact_orders_max && best_objective > lower_bound {
        if let Some((exact, exact_objective)) = branch_and_bound(&candidates, &best, best_objective, deadline) {
            best = exact;
            best_objective = exact_objective;
            lower_bound = exact_objective;
            method = Method::Exact;
        }
    } else if best_objective == lower_bound {
        method = Method::Exact;
    }
    assert!(lower_bound <= best_objective, "a lower bound above a feasible answer is a bug");
    let cost_of = (0..n).map(|o| candidates.cost(o, best[o])).collect();
    Solution {
        pool_of: best,
        cost_of,
        objective_fen: best_objective,
        lower_bound_fen: lower_bound,
        method,
        solve_ms: started.elapsed().as_millis() as u64,
    }
}

fn objective(c: &Candidates, assignment: &[Option<usize>]) -> i64 {
    (0..c.orders()).map(|o| c.cost(o, assignment[o])).sum()
}

/// Minimizes an entropy-smoothed dual by Newton's method while the smoothing shrinks, and returns
/// the prices with the best exact `L` seen (any prices give a valid bound).
///
/// In per-GPU terms the dual is `D(λ) = Σ_o g_o · max(0, max_p (s_op − λ_p)) + Σ_p cap_p λ_p` with
/// `s_op = (penalty_o − cost_op) / g_o`, and `L(λ) = Σ_o penalty_o − D(λ)`. The smoothed form replaces
/// each max by `τ_o · log(1 + Σ_p exp((s_op − λ_p) / τ_o))`, with `τ_o` a shrinking fraction of the
/// order's penalty per GPU. There are only as many prices as pools, so the full Hessian is cheap
/// and a Newton step moves substitute pools together, where coordinate steps crawl.
fn smoothed_prices(c: &Candidates, mut prices: Vec<f64>, deadline: Instant) -> (Vec<f64>, f64) {
    let pools = c.capacity.len();
    let mut load = vec![0i64; pools];
    let mut best_prices = prices.clone();
    let mut best = dual_value(c, &prices, &mut load);
    let mut gradient = vec![0.0f64; pools];
    let mut hessian = vec![0.0f64; pools * pools];
    let price_max = (0..c.orders()).map(|o| c.penalty[o] as f64 / c.gpus[o] as f64).fold(1.0, f64::max);
    let levels = 10;
    for level in 0..levels {
        let relative = 0.05 * 0.001f64.powf(level as f64 / (levels - 1) as f64);
        for _newton in 0..4 {
            if Instant::now() >= deadline {
                return (best_prices, best);
            }
            let current = smoothed_dual(c, &prices, relative, Some((&mut gradient, &mut hessian)));
            // Pools at price zero that the step would push below zero stay fixed at zero (their
            // clipped moves would spoil the direction); solve again without them.
            let mut free: Vec<usize> = (0..pools).filter(|&p| prices[p] > 0.0 || gradient[p] < 0.0).collect();
            let mut direction = Vec::new();
            for _ in 0..8 {
                direction = newton_direction(&hessian, &gradient, &free, pools).unwrap_or_else(|| {
                    free.iter().map(|&p| -gradient[p] / hessian[p * pools + p].max(1e-12)).collect()
                });
                let blocked: Vec<usize> = free
                    .iter()
                    .zip(&direction)
                    .filter(|&(&p, &d)| prices[p] <= 0.0 && d < 0.0)
                    .map(|(&p, _)| p)
                    .collect();
                if blocked.is_empty() {
                    break;
                }
                free.retain(|p| !blocked.contains(p));
            }
            if free.is_empty() {
                break;
            }
            // No price moves by more than the largest penalty per GPU in one step.
            let longest = direction.iter().fold(0.0f64, |a, d| a.max(d.abs()));
            let mut step = if longest > price_max { price_max / longest } else { 1.0 };
            let mut moved = false;
            for _ in 0..40 {
                let mut trial = prices.clone();
                for (index, &p) in free.iter().enumerate() {
                    trial[p] = (prices[p] + step * direction[index]).max(0.0);
                }
                if smoothed_dual(c, &trial, relative, None) < current {
                    prices = trial;
                    moved = true;
                    break;
                }
                step /= 2.0;
            }
            let value = dual_value(c, &prices, &mut load);
            if value > best {
                best = value;
                best_prices.clone_from(&prices);
            }
            if !moved {
                break;
            }
        }
    }
    (best_prices, best)
}

/// The Newton direction `−H⁻¹ g` restricted to the `free` pools, or `None` if that part of the
/// Hessian is not positive definite.
fn newton_direction(hessian: &[f64], gradient: &[f64], free: &[usize], pools: usize) -> Option<Vec<f64>> {
    let k = free.len();
    let mut matrix: Vec<f64> = Vec::with_capacity(k * k);
    for &i in free {
        for &j in free {
            matrix.push(hessian[i * pools + j]);
        }
    }
    // Levenberg–Marquardt damping: a pool with few orders has a nearly flat row, and an undamped
    // step would fling its price far away.
    let trace: f64 = (0..k).map(|i| matrix[i * k + i]).sum::<f64>() / k.max(1) as f64;
    for i in 0..k {
        matrix[i * k + i] += 1e-3 * matrix[i * k + i] + 1e-6 * trace.max(1e-12);
    }
    let mut direction: Vec<f64> = free.iter().map(|&p| -gradient[p]).collect();
    cholesky_solve(&mut matrix, &mut direction, k).then_some(direction)
}

/// The smoothed dual at `prices`; with `derivatives`, also its gradient and Hessian.
fn smoothed_dual(c: &Candidates, prices: &[f64], relative: f64, derivatives: Option<(&mut [f64], &mut [f64])>) -> f64 {
    let pools = c.capacity.len();
    let mut value: f64 = prices.iter().zip(&c.capacity).map(|(price, cap)| price * *cap as f64).sum();
    let mut derivatives = derivatives;
    if let Some((gradient, hessian)) = derivatives.as_mut() {
        gradient.iter_mut().zip(&c.capacity).for_each(|(g, cap)| *g = *cap as f64);
        hessian.iter_mut().for_each(|h| *h = 0.0);
    }
    let mut shares: Vec<(usize, f64)> = Vec::new();
    for o in 0..c.orders() {
        let g = c.gpus[o] as f64;
        let scale = c.penalty[o] as f64 / g;
        if scale <= 0.0 {
            continue;
        }
        let tau = relative * scale;
        shares.clear();
        let mut top = 0.0f64;
        for (p, cost) in c.of(o) {
            let net = (c.penalty[o] - cost) as f64 / g - prices[p];
            shares.push((p, net));
            top = top.max(net);
        }
        let mut total = (-top / tau).exp();
        for (_, w) in shares.iter_mut() {
            *w = ((*w - top) / tau).exp();
            total += *w;
        }
        value += g * (top + tau * total.ln());
        if let Some((gradient, hessian)) = derivatives.as_mut() {
            let factor = g / tau;
            for &(p, w) in shares.iter() {
                let share = w / total;
                gradient[p] -= g * share;
                hessian[p * pools + p] += factor * share;
                for &(q, v) in shares.iter() {
                    hessian[p * pools + q] -= factor * share * (v / total);
                }
            }
        }
    }
    value
}

/// Solves `A x = b` in place for a symmetric positive definite `A` (n × n, row-major); returns
/// false if `A` is not positive definite.
fn cholesky_solve(a: &mut [f64], b: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        let mut diagonal = a[j * n + j];
        for k in 0..j {
            diagonal -= a[j * n + k] * a[j * n + k];
        }
        if diagonal <= 0.0 || !diagonal.is_finite() {
            return false;
        }
        let root = diagonal.sqrt();
        a[j * n + j] = root;
        for i in j + 1..n {
            let mut sum = a[i * n + j];
            for k in 0..j {
                sum -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = sum / root;
        }
    }
    for i in 0..n {
        let mut sum = b[i];
        for k in 0..i {
            sum -= a[i * n + k] * b[k];
        }
        b[i] = sum / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut sum = b[i];
        for k in i + 1..n {
            sum -= a[k * n + i] * b[k];
        }
        b[i] = sum / a[i * n + i];
    }
    true
}

/// `L(λ)` and, per pool, the GPUs its relaxed choices ask for.
fn dual_value(c: &Candidates, prices: &[f64], load: &mut [i64]) -> f64 {
    load.iter_mut().for_each(|l| *l = 0);
    let mut value = 0.0f64;
    for o in 0..c.orders() {
        let g = c.gpus[o] as f64;
        let mut chosen = None;
        let mut least = c.penalty[o] as f64;
        for (p, cost) in c.of(o) {
            let adjusted = cost as f64 + prices[p] * g;
            if adjusted < least {
                least = adjusted;
                chosen = Some(p);
            }
        }
        value += least;
        if let Some(p) = chosen {
            load[p] += c.gpus[o];
        }
    }
    value - prices.iter().zip(&c.capacity).map(|(price, cap)| price * *cap as f64).sum::<f64>()
}

/// The Lagrangian bound, raised by exact coordinate ascent on the pool prices and then by
/// subgradient steps; returns the best bound (rounded up to whole fen, less a margin for
/// floating-point error) and the prices that gave it.
///
/// Coordinate ascent sets one pool's price at a time to the value that maximizes `L` with the
/// others fixed: each order that can use the pool would leave it at price
/// `(best alternative − cost here) / gpus`, so the pool is filled by the orders with the highest
/// such thresholds and priced at the threshold of the first order that does not fit.
fn lagrangian(c: &Candidates, start: Vec<f64>, upper: i64, iterations: usize, deadline: Instant) -> (i64, Vec<f64>) {
    let pools = c.capacity.len();
    let mut load = vec![0i64; pools];
    // A smoothed version of the dual first: it moves all prices at once toward the optimum, where
    // coordinate steps on the exact, kinked function crawl.
    let smooth_deadline = Instant::now() + deadline.saturating_duration_since(Instant::now()) * 3 / 5;
    let (smoothed, smoothed_value) = smoothed_prices(c, start.clone(), smooth_deadline);
    let start_value = dual_value(c, &start, &mut load);
    let mut prices = if smoothed_value > start_value { smoothed } else { start };
    let mut best = dual_value(c, &prices, &mut load);
    let mut best_prices = prices.clone();
    // Orders that can use each pool, with their cost there.
    let mut users: Vec<Vec<(usize, i64)>> = vec![Vec::new(); pools];
    for o in 0..c.orders() {
        for (p, cost) in c.of(o) {
            users[p].push((o, cost));
        }
    }
    let mut thresholds: Vec<(f64, i64)> = Vec::new();
    // The largest price any pool could need: the highest penalty per GPU.
    let price_max = (0..c.orders()).map(|o| c.penalty[o] as f64 / c.gpus[o] as f64).fold(0.0, f64::max);
    let mut trial = prices.clone();
    for _sweep in 0..iterations.max(1) {
        if Instant::now() >= deadline {
            break;
        }
        // Pools are substitutes, so one price alone rises slowly; first move all prices together
        // by the shift that maximizes L (golden-section search: L is concave along a line).
        let mut evaluate = |shift: f64, load: &mut [i64]| {
            for p in 0..pools {
                trial[p] = (prices[p] + shift).max(0.0);
            }
            dual_value(c, &trial, load)
        };
        let (mut low, mut high) = (-price_max, price_max);
        let ratio = (5f64.sqrt() - 1.0) / 2.0;
        let (mut a, mut b) = (high - ratio * (high - low), low + ratio * (high - low));
        let (mut value_a, mut value_b) = (evaluate(a, &mut load), evaluate(b, &mut load));
        for _ in 0..48 {
            if value_a < value_b {
                low = a;
                a = b;
                value_a = value_b;
                b = low + ratio * (high - low);
                value_b = evaluate(b, &mut load);
            } else {
                high = b;
                b = a;
                value_b = value_a;
                a = high - ratio * (high - low);
                value_a = evaluate(a, &mut load);
            }
        }
        let shift = if value_a >= value_b { a } else { b };
        if value_a.max(value_b) > dual_value(c, &prices, &mut load) {
            for price in prices.iter_mut() {
                *price = (*price + shift).max(0.0);
            }
        }
        for p in 0..pools {
            thresholds.clear();
            for &(o, cost) in &users[p] {
                let g = c.gpus[o] as f64;
                let mut alternative = c.penalty[o] as f64;
                for (q, q_cost) in c.of(o) {
                    if q != p {
                        alternative = alternative.min(q_cost as f64 + prices[q] * g);
                    }
                }
                let threshold = (alternative - cost as f64) / g;
                if threshold > 0.0 {
                    thresholds.push((threshold, c.gpus[o]));
                }
            }
            let demand: i64 = thresholds.iter().map(|&(_, g)| g).sum();
            if demand <= c.capacity[p] {
                prices[p] = 0.0;
                continue;
            }
            thresholds.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
            let mut filled = 0;
            let mut price = 0.0;
            for &(threshold, g) in &thresholds {
                if filled + g > c.capacity[p] {
                    price = threshold;
                    break;
                }
                filled += g;
            }
            prices[p] = price;
        }
        let value = dual_value(c, &prices, &mut load);
        let gained = value - best;
        if value > best {
            best = value;
            best_prices.clone_from(&prices);
        }
        if gained <= 1e-7 * best.abs().max(1.0) {
            break;
        }
    }
    // Subgradient polish from the best prices: coordinate ascent can stall at a kink.
    prices.clone_from(&best_prices);
    let mut step_scale = 0.5;
    let mut since_improved = 0;
    for _ in 0..iterations {
        if Instant::now() >= deadline || step_scale < 1e-4 {
            break;
        }
        let value = dual_value(c, &prices, &mut load);
        if value > best {
            best = value;
            best_prices.clone_from(&prices);
            since_improved = 0;
        } else {
            since_improved += 1;
            if since_improved >= 5 {
                step_scale /= 2.0;
                prices.clone_from(&best_prices);
                since_improved = 0;
            }
        }
        let gradient: Vec<f64> = (0..pools)
            .map(|p| {
                let g = (load[p] - c.capacity[p]) as f64;
                if prices[p] <= 0.0 && g < 0.0 { 0.0 } else { g }
            })
            .collect();
        let norm: f64 = gradient.iter().map(|g| g * g).sum();
        if norm == 0.0 {
            break;
        }
        let step = step_scale * ((upper as f64 - value).max(1.0)) / norm;
        for p in 0..pools {
            prices[p] = (prices[p] + step * gradient[p]).max(0.0);
        }
    }
    // Floating-point sums of up to millions of terms drift by far less than this margin.
    let margin = 1e-9 * best.abs() + 1e-6;
    ((best - margin).ceil() as i64, best_prices)
}

/// Prices read off an answer: for each pool with too little room left for another order, the
/// smallest saving per GPU among the orders on it; zero elsewhere.
fn marginal_prices(c: &Candidates, assignment: &[Option<usize>]) -> Vec<f64> {
    let mut used = vec![0i64; c.capacity.len()];
    let mut least = vec![f64::INFINITY; c.capacity.len()];
    for (o, pool) in assignment.iter().enumerate() {
        if let Some(p) = *pool {
            used[p] += c.gpus[o];
            least[p] = least[p].min((c.penalty[o] - c.cost(o, Some(p))) as f64 / c.gpus[o] as f64);
        }
    }
    let smallest_order = c.gpus.iter().copied().min().unwrap_or(1);
    (0..c.capacity.len())
        .map(|p| if c.capacity[p] - used[p] < smallest_order && least[p].is_finite() { least[p] } else { 0.0 })
        .collect()
}

/// Which orders the greedy serves first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Priority {
    /// By regret at the prices: what an order loses if it misses its best option.
    Regret,
    /// By savings per GPU: penalty less cheapest cost, over GPUs. When demand exceeds capacity,
    /// this is what decides which orders are worth placing.
    Density,
}

/// Orders by `priority`, then each to its cheapest pool at `prices` that still has room.
fn greedy_by(c: &Candidates, prices: &[f64], priority: Priority) -> Vec<Option<usize>> {
    let n = c.orders();
    if priority == Priority::Density {
        let mut density: Vec<(f64, usize)> = (0..n)
            .map(|o| {
                let cheapest = c.of(o).next().map_or(c.penalty[o], |(_, cost)| cost);
                ((c.penalty[o] - cheapest) as f64 / c.gpus[o] as f64, o)
            })
            .collect();
        density.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        return fill(c, prices, density.into_iter().map(|(_, o)| o));
    }
    let mut regret: Vec<(f64, usize)> = (0..n)
        .map(|o| {
            let g = c.gpus[o] as f64;
            let (mut first, mut second) = (c.penalty[o] as f64, f64::INFINITY);
            for (p, cost) in c.of(o) {
                let adjusted = cost as f64 + prices[p] * g;
                if adjusted < first {
                    second = first;
                    first = adjusted;
                } else if adjusted < second {
                    second = adjusted;
                }
            }
            let second = second.min(c.penalty[o] as f64);
            // Per GPU, so one big order does not outrank many small ones that save more together.
            ((second - first) / g, o)
        })
        .collect();
    regret.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    fill(c, prices, regret.into_iter().map(|(_, o)| o))
}

/// Frees a few orders (random ones, or every order of one pool) and puts them and every unplaced
/// order back, in a random sequence, each on its cheapest pool with room.
fn ruin_and_recreate(c: &Candidates, assignment: &mut [Option<usize>], rng: &mut crate::network::Rng) {
    let n = c.orders();
    let mut freed = Vec::new();
    if rng.below(2) == 0 {
        let count = 2 + rng.below((n as u64 / 10).max(1)) as usize;
        for _ in 0..count {
            let o = rng.below(n as u64) as usize;
            if assignment[o].is_some() {
                assignment[o] = None;
                freed.push(o);
            }
        }
    } else if let Some(pool) = assignment[rng.below(n as u64) as usize] {
        for (o, placed) in assignment.iter_mut().enumerate() {
            if *placed == Some(pool) {
                *placed = None;
                freed.push(o);
            }
        }
    }
    let mut remaining = c.capacity.clone();
    for (o, pool) in assignment.iter().enumerate() {
        if let Some(p) = *pool {
            remaining[p] -= c.gpus[o];
        } else if !freed.contains(&o) {
            freed.push(o);
        }
    }
    // Regret insertion: the order that would lose most by not getting its best pool now goes
    // first, to its cheapest pool with room; a little noise varies the sequence between rounds.
    while !freed.is_empty() {
        let mut pick = (f64::NEG_INFINITY, 0, None);
        for (index, &o) in freed.iter().enumerate() {
            let g = c.gpus[o];
            let mut fitting = c.of(o).filter(|&(p, _)| remaining[p] >= g);
            let first = fitting.next();
            let second = fitting.next().map_or(c.penalty[o], |(_, cost)| cost);
            let regret = match first {
                Some((_, cost)) => (second - cost) as f64 / g as f64,
                None => f64::NEG_INFINITY,
            };
            let noisy = regret * (0.8 + 0.4 * rng.unit());
            if pick.2.is_none() || noisy > pick.0 {
                pick = (noisy, index, Some(first.map(|(p, _)| p)));
            }
        }
        let (_, index, target) = pick;
        let o = freed.swap_remove(index);
        if let Some(Some(p)) = target {
            remaining[p] -= c.gpus[o];
            assignment[o] = Some(p);
        }
    }
}

/// Each order in turn to its cheapest pool at `prices` that still has room.
fn fill(c: &Candidates, prices: &[f64], sequence: impl Iterator<Item = usize>) -> Vec<Option<usize>> {
    let mut remaining = c.capacity.clone();
    let mut assignment = vec![None; c.orders()];
    for o in sequence {
        let g = c.gpus[o];
        let mut chosen = None;
        let mut least = f64::INFINITY;
        for (p, cost) in c.of(o) {
            if remaining[p] >= g {
                let adjusted = cost as f64 + prices[p] * g as f64;
                if adjusted < least {
                    least = adjusted;
                    chosen = Some(p);
                }
            }
        }
        if let Some(p) = chosen {
            remaining[p] -= g;
            assignment[o] = Some(p);
        }
    }
    assignment
}

/// Local search until no move helps or time runs out: move an order (or place an unplaced one)
/// to a cheaper pool with room; and make room for an order by moving one order out of a full
/// pool to another pool, when the pair saves money.
fn improve(c: &Candidates, assignment: &mut [Option<usize>], deadline: Instant) {
    let n = c.orders();
    let mut remaining = c.capacity.clone();
    let mut on_pool: Vec<Vec<usize>> = vec![Vec::new(); c.capacity.len()];
    for (o, pool) in assignment.iter().enumerate() {
        if let Some(p) = *pool {
            remaining[p] -= c.gpus[o];
            on_pool[p].push(o);
        }
    }
    let mut rounds = 0;
    loop {
        rounds += 1;
        let mut improved = false;
        for o in 0..n {
            if o.is_multiple_of(1024) && Instant::now() >= deadline {
                return;
            }
            let g = c.gpus[o];
            let current = assignment[o];
            let current_cost = c.cost(o, current);
            // A simple move to a cheaper pool with room (candidates are sorted by cost).
            let mut moved = false;
            for (p, cost) in c.of(o) {
                if cost >= current_cost || Some(p) == current {
                    break;
                }
                if remaining[p] >= g {
                    relocate(assignment, &mut remaining, &mut on_pool, c, o, Some(p));
                    improved = true;
                    moved = true;
                    break;
                }
            }
            if moved || rounds > 3 {
                continue;
            }
            // An ejection: make room on a cheaper pool by moving one of its orders elsewhere.
            'pools: for (p, cost) in c.of(o) {
                if cost >= current_cost || Some(p) == current {
                    break;
                }
                let gain = current_cost - cost;
                let short = g - remaining[p];
                // Look at a few of the pool's orders only, so a full pool of thousands stays cheap.
                for index in 0..on_pool[p].len().min(EJECTION_CANDIDATES_MAX) {
                    let v = on_pool[p][index];
                    if c.gpus[v] < short {
                        continue;
                    }
                    let v_cost = c.cost(v, Some(p));
                    // Where v can go instead: another pool with room (or unplaced).
                    let mut target = None;
                    let mut loss = c.penalty[v] - v_cost;
                    for (q, q_cost) in c.of(v) {
                        if q_cost - v_cost >= loss {
                            break;
                        }
                        let room = if Some(q) == current { remaining[q] + g } else { remaining[q] };
                        if q != p && room >= c.gpus[v] {
                            target = Some(q);
                            loss = q_cost - v_cost;
                            break;
                        }
                    }
                    if loss < gain {
                        relocate(assignment, &mut remaining, &mut on_pool, c, o, None);
                        relocate(assignment, &mut remaining, &mut on_pool, c, v, target);
                        relocate(assignment, &mut remaining, &mut on_pool, c, o, Some(p));
                        improved = true;
                        break 'pools;
                    }
                }
            }
        }
        if !improved || Instant::now() >= deadline {
            return;
        }
    }
}

/// How many orders of a full pool an ejection move considers moving out.
const EJECTION_CANDIDATES_MAX: usize = 16;

fn relocate(
    assignment: &mut [Option<usize>],
    remaining: &mut [i64],
    on_pool: &mut [Vec<usize>],
    c: &Candidates,
    order: usize,
    to: Option<usize>,
) {
    if let Some(from) = assignment[order] {
        remaining[from] += c.gpus[order];
        let list = &mut on_pool[from];
        let index = list.iter().position(|&x| x == order).expect("the order is listed on its pool");
        list.swap_remove(index);
    }
    if let Some(to) = to {
        remaining[to] -= c.gpus[order];
        assert!(remaining[to] >= 0, "moves keep every pool within its free GPUs");
        on_pool[to].push(order);
    }
    assignment[order] = to;
}

/// Exact search over every assignment, pruned by a bound that lets each remaining order take its
/// cheapest pool with room. Returns `None` if the deadline passes before the search ends.
fn branch_and_bound(
    c: &Candidates,
    incumbent: &[Option<usize>],
    incumbent_objective: i64,
    deadline: Instant,
) -> Option<(Vec<Option<usize>>, i64)> {
    struct Search<'a> {
        c: &'a Candidates,
        sequence: Vec<usize>,
        remaining: Vec<i64>,
        current: Vec<Option<usize>>,
        best: Vec<Option<usize>>,
        best_objective: i64,
        deadline: Instant,
        nodes: u64,
        timed_out: bool,
    }
    impl Search<'_> {
        fn bound(&self, depth: usize) -> i64 {
            self.sequence[depth..]
                .iter()
                .map(|&o| {
                    self.c
                        .of(o)
                        .find(|&(p, _)| self.remaining[p] >= self.c.gpus[o])
                        .map_or(self.c.penalty[o], |(_, cost)| cost)
                })
                .sum()
        }
        fn go(&mut self, depth: usize, so_far: i64) {
            self.nodes += 1;
            if self.nodes.is_multiple_of(4096) && Instant::now() >= self.deadline {
                self.timed_out = true;
            }
            if self.timed_out {
                return;
            }
            if depth == self.sequence.len() {
                if so_far < self.best_objective {
                    self.best_objective = so_far;
                    self.best.clone_from(&self.current);
                }
                return;
            }
            if so_far + self.bound(depth) >= self.best_objective {
                return;
            }
            let o = self.sequence[depth];
            let g = self.c.gpus[o];
            let options: Vec<(usize, i64)> = self.c.of(o).filter(|&(p, _)| self.remaining[p] >= g).collect();
            for (p, cost) in options {
                self.remaining[p] -= g;
                self.current[o] = Some(p);
                self.go(depth + 1, so_far + cost);
                self.remaining[p] += g;
                self.current[o] = None;
            }
            self.go(depth + 1, so_far + self.c.penalty[o]);
        }
    }
    // Hardest orders first: those with the most to lose.
    let mut sequence: Vec<usize> = (0..c.orders()).collect();
    sequence.sort_by_key(|&o| std::cmp::Reverse(c.penalty[o] - c.of(o).next().map_or(c.penalty[o], |(_, cost)| cost)));
    let mut search = Search {
        c,
        sequence,
        remaining: c.capacity.clone(),
        current: vec![None; c.orders()],
        best: incumbent.to_vec(),
        best_objective: incumbent_objective,
        deadline,
        nodes: 0,
        timed_out: false,
    };
    search.go(0, 0);
    if search.timed_out { None } else { Some((search.best, search.best_objective)) }
}

/// Why an order ended unplaced, in words.
pub fn unplaced_reason(problem: &Problem, order_index: usize, solution: &Solution) -> String {
    let order = &problem.orders[order_index];
    let exclusions: Vec<Option<Exclusion>> = (0..problem.pools.len()).map(|p| problem.exclusion(order, p)).collect();
    let feasible: Vec<usize> = exclusions.iter().enumerate().filter(|(_, e)| e.is_none()).map(|(p, _)| p).collect();
    if feasible.is_empty() {
        let accepted_chip = exclusions
            .iter()
            .any(|e| !matches!(e, Some(Exclusion::ChipNotAccepted { .. }) | Some(Exclusion::NoSpeed { .. })));
        if !accepted_chip {
            return "no pool has an accepted chip that can run its class".to_owned();
        }
        if exclusions.iter().all(|e| {
            matches!(e, Some(Exclusion::ChipNotAccepted { .. } | Exclusion::NoSpeed { .. } | Exclusion::TooBig { .. }))
        }) {
            return format!("no pool with {} free GPUs of an accepted chip", order.gpus);
        }
        let first = exclusions
            .iter()
            .flatten()
            .find(|e| !matches!(e, Exclusion::ChipNotAccepted { .. } | Exclusion::NoSpeed { .. }))
            .map(ToString::to_string)
            .unwrap_or_default();
        return format!("no pool can run it; for example: {first}");
    }
    let penalty = problem.penalty(order);
    let cheapest = feasible
        .iter()
        .filter_map(|&p| {
            problem.speed_of(&order.class, &problem.pools[p].chip).map(|s| problem.cost(order, &problem.pools[p], s))
        })
        .min()
        .unwrap_or(i64::MAX);
    if cheapest >= penalty {
        return format!(
            "every pool that can run it costs at least {cheapest} fen, not less than its unplaced penalty of {penalty} fen"
        );
    }
    let _ = solution;
    "the pools that can run it are full: their GPUs went to orders that save more".to_owned()
}

/// What an answer is made of: real cost, penalties and each policy credit, so an authority sees
/// them apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Breakdown {
    pub cost_fen: i64,
    pub penalties_fen: i64,
    pub underused_credit_fen: i64,
    pub domestic_credit_fen: i64,
}

pub fn breakdown(problem: &Problem, solution: &Solution) -> Breakdown {
    let mut total = Breakdown::default();
    for (o, order) in problem.orders.iter().enumerate() {
        match solution.pool_of[o] {
            Some(p) => {
                let pool = &problem.pools[p];
                let speed = problem.speed_of(&order.class, &pool.chip).expect("placed orders run on their chip");
                let cost = problem.cost(order, pool, speed);
                let terms = problem.terms(order, pool, speed, cost);
                total.cost_fen += cost;
                total.underused_credit_fen += terms.underused_fen;
                total.domestic_credit_fen += terms.domestic_fen;
            }
            None => total.penalties_fen += problem.penalty(order),
        }
    }
    total
}

/// What each policy term cost in real money: the batch solved with every term, and again with
/// each term switched off; the difference in real cost plus penalties is that term's price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyCost {
    pub with_policy: Breakdown,
    pub without_policy: Breakdown,
    /// Real cost and penalties added by the under-used-site term.
    pub underused_term_fen: i64,
    /// Real cost and penalties added by the domestic-chip term.
    pub domestic_term_fen: i64,
}

pub fn policy_cost(problem: &Problem, limits: &Limits) -> PolicyCost {
    let real = |b: Breakdown| b.cost_fen + b.penalties_fen;
    // A term switched off is off for every order, those whose programme sets its own weights too.
    let answer = |off: fn(crate::model::Policy) -> crate::model::Policy| {
        let mut variant = Problem { policy: off(problem.policy), ..problem.clone() };
        for order in &mut variant.orders {
            order.policy = order.policy.map(off);
        }
        let solution = solve(&variant, limits);
        breakdown(&variant, &solution)
    };
    let with_policy = answer(|policy| policy);
    let without_policy = answer(|_| crate::model::Policy::default());
    let without_underused = answer(|policy| crate::model::Policy { underused_credit_fen_per_gpu_hour: 0, ..policy });
    let without_domestic = answer(|policy| crate::model::Policy { domestic_weight_bp: 0, ..policy });
    PolicyCost {
        with_policy,
        without_policy,
        underused_term_fen: real(with_policy) - real(without_underused),
        domestic_term_fen: real(with_policy) - real(without_domestic),
    }
}
