//! The lower bound against the LP relaxation solved independently by a general LP solver
//! (`good_lp` with `microlp`, a test-only dependency): the bound must never exceed the LP value
//! (which is itself at most the optimum), and on these batches it should reach it.

use good_lp::{Expression, ProblemVariables, Solution, SolverModel, constraint, default_solver, variable};
use suanli_placement::network::seeded_batch;
use suanli_placement::{Limits, Problem, solve};

/// The LP relaxation's optimum: each order placed fractionally, capacities as constraints.
fn lp_value(problem: &Problem) -> f64 {
    let mut variables = ProblemVariables::new();
    let mut per_pool: Vec<Expression> = vec![Expression::from(0.0); problem.pools.len()];
    let mut objective = Expression::from(0.0);
    let mut penalties = 0.0;
    let mut rows = Vec::new();
    for order in &problem.orders {
        let penalty = problem.penalty(order) as f64;
        penalties += penalty;
        let mut row = Expression::from(0.0);
        for (p, (pool, load)) in problem.pools.iter().zip(per_pool.iter_mut()).enumerate() {
            if problem.exclusion(order, p).is_none() {
                let cost = problem.cost(order, pool, problem.speed_of(&order.class, &pool.chip).unwrap()) as f64;
                if cost < penalty {
                    let x = variables.add(variable().min(0.0).max(1.0));
                    objective += (cost - penalty) * x;
                    row += x;
                    *load += f64::from(order.gpus) * x;
                }
            }
        }
        rows.push(row);
    }
    let mut model = variables.minimise(objective.clone()).using(default_solver);
    for row in rows {
        model = model.with(constraint!(row <= 1.0));
    }
    for (p, load) in per_pool.into_iter().enumerate() {
        model = model.with(constraint!(load <= f64::from(problem.pools[p].gpus_free)));
    }
    penalties + model.solve().unwrap().eval(&objective)
}

#[test]
fn the_bound_reaches_the_lp_relaxation_and_never_passes_it() {
    for seed in [3, 5, 8] {
        // Shrink the network so the batch asks for about 1.5 times the free GPUs, the hard case.
        let mut problem = seeded_batch(seed, 400);
        for pool in &mut problem.pools {
            pool.gpus_free /= 16;
        }
        let lp = lp_value(&problem);
        let solution = solve(&problem, &Limits { solve_ms_max: 5_000, exact_orders_max: 0, ..Limits::default() });
        let bound = solution.lower_bound_fen as f64;
        assert!(bound <= lp.ceil() + 1.0, "seed {seed}: bound {bound} above the LP value {lp}");
        assert!(bound >= lp * (1.0 - 1e-4), "seed {seed}: bound {bound} is more than 0.01% below the LP value {lp}");
    }
}

/// On the hard batches the engine's search is measured on (`network::tight_batch`, 70% supply),
/// the bound is the LP relaxation itself: what gap remains is the answer's and the relaxation's,
/// not a weak bound's.
#[test]
fn on_tight_batches_the_bound_is_the_lp_relaxation() {
    use suanli_placement::network::tight_batch;
    for seed in 0..5u64 {
        let problem = tight_batch(seed, 60 + 30 * seed as usize, 10 + 2 * seed as usize, 70);
        let lp = lp_value(&problem);
        let solution = solve(&problem, &Limits { solve_ms_max: 5_000, exact_orders_max: 0, ..Limits::default() });
        let bound = solution.lower_bound_fen as f64;
        assert!(bound <= lp.ceil() + 1.0, "seed {seed}: bound {bound} above the LP value {lp}");
        assert!(bound >= lp * (1.0 - 1e-4), "seed {seed}: bound {bound} is more than 0.01% below the LP value {lp}");
    }
}
