//! The placement engine against the format's example, brute force on thousands of small random
//! instances, and the feasibility rules on larger seeded batches.

mod lp;
mod market;

use std::collections::HashMap;

use suanli_placement::format::{InputV1, check, output};
use suanli_placement::network::{Rng, default_problem, seeded_batch};
use suanli_placement::{
    Limits, Method, Operator, Order, Origin, Policy, Pool, PoolVerdict, Problem, Site, explain, rtt_ms, solve,
};

const EXAMPLE: &str = r#"{
  "version": 1,
  "egress_fen_per_gb": 30,
  "unplaced_penalty_fen_per_ref_gpu_hour": 100000,
  "speed": { "llm-train": { "h100": 3.0, "a800": 1.0, "h20": 0.6, "ascend-910b": 0.9 } },
  "sites": [
    { "id": "ga", "hub": "guizhou", "lat": 26.50, "lon": 106.45, "operator": "state" }
  ],
  "pools": [
    { "id": "ga/910b", "site": "ga", "chip": "ascend-910b", "domestic": true,
      "gpus_free": 512, "price_fen_per_gpu_hour": 900 }
  ],
  "orders": [
    { "id": "o1", "class": "llm-train", "gpus": 8, "work_ref_gpu_hours": 64.0,
      "chips": ["h100", "a800", "ascend-910b"],
      "origin": { "hub": "yrd", "lat": 31.23, "lon": 121.47 }, "data_gb": 500,
      "deadline_hours": 72.0, "rtt_ms_max": null,
      "sites_allowed": null }
  ]
}"#;

fn parse(json: &str) -> Result<Problem, String> {
    let input: InputV1 = serde_json::from_str(json).map_err(|e| e.to_string())?;
    check(input).map_err(|e| e.to_string())
}

#[test]
fn the_formats_example_gives_its_answer() {
    let problem = parse(EXAMPLE).unwrap();
    let solution = solve(&problem, &Limits::default());
    let mut out = serde_json::to_value(output(&problem, &solution)).unwrap();
    out["solve_ms"] = 1.into();
    let expected = serde_json::json!({
        "version": 1,
        "assignments": [ { "order": "o1", "pool": "ga/910b", "hours": 8.888889, "cost_fen": 79000 } ],
        "unplaced": [],
        "objective_fen": 79000,
        "lower_bound_fen": 79000,
        "gap": 0.0,
        "solve_ms": 1
    });
    assert_eq!(out, expected);
}

#[test]
fn bad_inputs_name_the_field() {
    let cases = [
        (EXAMPLE.replace("\"version\": 1", "\"version\": 2"), "version: must be 1"),
        (EXAMPLE.replace("\"data_gb\": 500", "\"data_gb\": 500, \"colour\": 1"), "unknown field `colour`"),
        (EXAMPLE.replace("\"gpus\": 8", "\"gpus\": 0"), "orders[0].gpus"),
        (EXAMPLE.replace("\"site\": \"ga\"", "\"site\": \"zz\""), "pools[0].site: no site \"zz\""),
        (EXAMPLE.replace("\"operator\": \"state\"", "\"operator\": \"private\""), "sites[0].operator"),
        (EXAMPLE.replace("\"lat\": 26.50", "\"lat\": 126.50"), "sites[0].lat"),
        (EXAMPLE.replace("\"sites_allowed\": null", "\"sites_allowed\": [\"nowhere\"]"), "orders[0].sites_allowed[0]"),
        (EXAMPLE.replace("\"h100\": 3.0", "\"h100\": -3.0"), "speed.llm-train.h100"),
        (EXAMPLE.replace("\"work_ref_gpu_hours\": 64.0", "\"work_ref_gpu_hours\": 0"), "orders[0].work_ref_gpu_hours"),
        (
            EXAMPLE.replace("\"price_fen_per_gpu_hour\": 900", "\"price_fen_per_gpu_hour\": 0"),
            "pools[0].price_fen_per_gpu_hour",
        ),
        (EXAMPLE.replace("\"chips\": [\"h100\", \"a800\", \"ascend-910b\"]", "\"chips\": []"), "orders[0].chips"),
        (EXAMPLE.replace("\"deadline_hours\": 72.0,", ""), "missing field `deadline_hours`"),
    ];
    for (json, expected) in cases {
        let error = parse(&json).unwrap_err();
        assert!(error.contains(expected), "{expected}: {error}");
    }
}

/// A small random instance: few orders and pools, tight capacities, every kind of exclusion.
fn small_instance(rng: &mut Rng) -> Problem {
    let chips = ["a", "b", "c"];
    let sites: Vec<Site> = (0..1 + rng.below(3) as usize)
        .map(|i| Site {
            id: format!("s{i}"),
            hub: format!("h{}", rng.below(2)),
            lat: 20.0 + rng.unit() * 20.0,
            lon: 100.0 + rng.unit() * 20.0,
            operator: [Operator::Government, Operator::State, Operator::Commercial][rng.below(3) as usize],
            utilization: rng.unit(),
        })
        .collect();
    let pools: Vec<Pool> = (0..1 + rng.below(4) as usize)
        .map(|i| Pool {
            id: format!("p{i}"),
            site: rng.below(sites.len() as u64) as usize,
            chip: chips[rng.below(3) as usize].to_owned(),
            domestic: rng.below(2) == 0,
            gpus_free: rng.below(12) as u32,
            price_fen_per_gpu_hour: 100 + rng.below(900) as i64,
        })
        .collect();
    let mut speed = HashMap::new();
    speed.insert("x".to_owned(), HashMap::from([("a".to_owned(), 1.0), ("b".to_owned(), 2.0)]));
    speed.insert("y".to_owned(), HashMap::from([("a".to_owned(), 1.0), ("c".to_owned(), 0.5)]));
    let orders: Vec<Order> = (0..1 + rng.below(6) as usize)
        .map(|i| {
            let gpus = 1 + rng.below(6) as u32;
            Order {
                id: format!("o{i}"),
                class: ["x", "y"][rng.below(2) as usize].to_owned(),
                gpus,
                work_ref_gpu_hours: f64::from(gpus) * (1.0 + rng.unit() * 20.0),
                chips: chips.iter().filter(|_| rng.below(3) != 0).map(|c| c.to_string()).collect(),
                origin: Origin {
                    hub: format!("h{}", rng.below(2)),
                    lat: 20.0 + rng.unit() * 20.0,
                    lon: 100.0 + rng.unit() * 20.0,
                },
                data_gb: rng.below(100) as f64,
                deadline_hours: 1.0 + rng.unit() * 30.0,
                rtt_ms_max: (rng.below(3) == 0).then(|| rng.unit() * 30.0),
                sites_allowed: (rng.below(3) == 0).then(|| vec![rng.below(sites.len() as u64) as usize]),
                domestic_extra_bp: [0, 1000][rng.below(2) as usize],
                policy: None,
            }
        })
        .collect();
    Problem {
        egress_fen_per_gb: rng.below(50) as i64,
        unplaced_penalty_fen_per_ref_gpu_hour: 200 + rng.below(1_500) as i64,
        speed,
        sites,
        pools,
        orders,
        // Half the instances carry policy terms, so brute force checks the solver with them too.
        policy: if rng.below(2) == 0 {
            Policy::default()
        } else {
            Policy { utilization_target: 0.5, underused_credit_fen_per_gpu_hour: 20, domestic_weight_bp: 10_000 }
        },
    }
}

/// Every assignment of orders to pools or to nothing; the cheapest feasible one.
fn brute_force(problem: &Problem) -> i64 {
    let n = problem.orders.len();
    let m = problem.pools.len();
    let options: Vec<Vec<(Option<usize>, i64)>> = problem
        .orders
        .iter()
        .map(|order| {
            let mut list = vec![(None, problem.penalty(order))];
            for p in 0..m {
                if problem.exclusion(order, p).is_none() {
                    let speed = problem.speed_of(&order.class, &problem.pools[p].chip).unwrap();
                    list.push((Some(p), problem.weighted_cost(order, &problem.pools[p], speed)));
                }
            }
            list
        })
        .collect();
    let mut best = i64::MAX;
    let mut choice = vec![0usize; n];
    loop {
        let mut used = vec![0u32; m];
        let mut total = 0;
        for (o, &k) in choice.iter().enumerate() {
            let (pool, cost) = options[o][k];
            total += cost;
            if let Some(p) = pool {
                used[p] += problem.orders[o].gpus;
            }
        }
        if (0..m).all(|p| used[p] <= problem.pools[p].gpus_free) {
            best = best.min(total);
        }
        // Next combination.
        let mut index = 0;
        loop {
            if index == n {
                return best;
            }
            choice[index] += 1;
            if choice[index] < options[index].len() {
                break;
            }
            choice[index] = 0;
            index += 1;
        }
    }
}

/// Every rule of the format holds for an answer: allowed pools only, capacity, the objective adds up.
fn check_feasible(problem: &Problem, solution: &suanli_placement::Solution) {
    let mut used = vec![0u32; problem.pools.len()];
    let mut total = 0;
    for (o, order) in problem.orders.iter().enumerate() {
        match solution.pool_of[o] {
            Some(p) => {
                assert_eq!(problem.exclusion(order, p), None, "order {o} on pool {p}");
                let pool = &problem.pools[p];
                assert!(order.chips.contains(&pool.chip));
                let hours = problem.hours(order, pool).unwrap();
                assert!(hours <= order.deadline_hours);
                if let Some(bound) = order.rtt_ms_max {
                    let site = &problem.sites[pool.site];
                    assert!(rtt_ms(order.origin.lat, order.origin.lon, site.lat, site.lon) <= bound);
                }
                if let Some(allowed) = &order.sites_allowed {
                    assert!(allowed.contains(&pool.site));
                }
                used[p] += order.gpus;
                let speed = problem.speed_of(&order.class, &pool.chip).unwrap();
                assert_eq!(solution.cost_of[o], problem.weighted_cost(order, pool, speed));
            }
            None => assert_eq!(solution.cost_of[o], problem.penalty(order)),
        }
        total += solution.cost_of[o];
    }
    for (p, pool) in problem.pools.iter().enumerate() {
        assert!(used[p] <= pool.gpus_free, "pool {p} over capacity");
    }
    assert_eq!(total, solution.objective_fen);
    assert!(solution.lower_bound_fen <= solution.objective_fen);
}

#[test]
fn on_small_instances_exact_is_optimal_the_heuristic_feasible_and_the_bound_below() {
    let mut rng = Rng::new(2026);
    let exact_limits =
        Limits { solve_ms_max: 5_000, exact_orders_max: 16, bound_iterations_max: 200, search_iterations_max: 200 };
    let heuristic_limits = Limits { exact_orders_max: 0, ..exact_limits };
    let (mut heuristic_optimal, mut bound_tight) = (0, 0);
    let instances = 3_000;
    for round in 0..instances {
        let problem = small_instance(&mut rng);
        let optimum = brute_force(&problem);
        let exact = solve(&problem, &exact_limits);
        check_feasible(&problem, &exact);
        assert_eq!(exact.objective_fen, optimum, "round {round}: exact missed the optimum\n{problem:#?}");
        assert_eq!(exact.method, Method::Exact);
        assert_eq!(exact.lower_bound_fen, optimum);
        let heuristic = solve(&problem, &heuristic_limits);
        check_feasible(&problem, &heuristic);
        assert!(heuristic.objective_fen >= optimum);
        assert!(
            heuristic.lower_bound_fen <= optimum,
            "round {round}: bound {} above optimum {optimum}",
            heuristic.lower_bound_fen
        );
        heuristic_optimal += usize::from(heuristic.objective_fen == optimum);
        bound_tight += usize::from(heuristic.lower_bound_fen == optimum);
    }
    // Not a rule, but a regression guard: the heuristic alone is usually optimal here.
    assert!(heuristic_optimal * 10 >= instances * 8, "heuristic optimal on only {heuristic_optimal} of {instances}");
    assert!(bound_tight > 0);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    /// Random seeded batches on the default network, with and without policy terms: every
    /// assignment respects chip, capacity, latency, provider rule and deadline, costs add up, the
    /// bound stays below the answer, and every order is answered once.
    #[test]
    fn seeded_batches_on_the_default_network_respect_every_rule(
        seed in 0u64..1_000_000,
        orders in 20usize..600,
        with_policy in proptest::bool::ANY,
    ) {
        let mut problem = seeded_batch(seed, orders);
        if with_policy {
            problem.policy = Policy { utilization_target: 0.5, underused_credit_fen_per_gpu_hour: 50, domestic_weight_bp: 5_000 };
            for order in &mut problem.orders {
                order.domestic_extra_bp = 1_000;
            }
        }
        let solution = solve(&problem, &Limits { solve_ms_max: 10_000, ..Limits::default() });
        check_feasible(&problem, &solution);
        proptest::prop_assert!(solution.gap() < 0.02, "gap {}", solution.gap());
        let out = output(&problem, &solution);
        proptest::prop_assert_eq!(out.assignments.len() + out.unplaced.len(), problem.orders.len());
    }
}

/// While its gap is above 1% the engine searches (ruin and recreate from a seeded generator):
/// on hard batches the search never raises the objective and mostly lowers it, every answer
/// keeps every rule, and with a round cap reached before the deadline two runs give one answer.
#[test]
fn the_search_uses_the_budget_and_a_round_cap_makes_it_reproducible() {
    use suanli_placement::network::tight_batch;
    let mut lowered = 0;
    for seed in 0..10u64 {
        let problem = tight_batch(seed, 60 + 10 * seed as usize, 12, 70);
        let without =
            Limits { solve_ms_max: 60_000, exact_orders_max: 0, search_iterations_max: 0, ..Limits::default() };
        let capped = Limits { search_iterations_max: 300, ..without };
        let first = solve(&problem, &without);
        let (a, b) = (solve(&problem, &capped), solve(&problem, &capped));
        assert_eq!((&a.pool_of, a.objective_fen), (&b.pool_of, b.objective_fen), "seed {seed}: the same answer twice");
        assert!(a.objective_fen <= first.objective_fen, "seed {seed}: the search made it worse");
        assert!(a.lower_bound_fen <= a.objective_fen);
        check_feasible(&problem, &a);
        lowered += usize::from(a.objective_fen < first.objective_fen);
    }
    assert!(lowered >= 6, "the search lowered the objective on only {lowered} of 10 hard batches");
}

#[test]
fn the_default_network_has_ten_clusters_and_marks_its_synthetic_parts() {
    let problem = default_problem();
    assert_eq!(problem.sites.len(), 10);
    assert!(problem.pools.len() >= 30);
    let zw = problem.pools.iter().find(|p| p.id == "zw/ascend-910b").unwrap();
    assert!(zw.domestic);
    // 2048 GPUs at 30% base load leave 1434 free.
    assert_eq!(zw.gpus_free, 1434);
    // Shanghai to Zhongwei is about 1,600 km: about 24 ms round trip by the model.
    let rtt = rtt_ms(31.15, 121.12, 37.51, 105.19);
    assert!((22.0..27.0).contains(&rtt), "{rtt}");
    for file in ["network.csv", "chips.csv", "speed.csv"] {
        let text =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data").join(file))
                .unwrap();
        assert!(text.contains("SYNTHETIC"), "{file}");
    }
}

#[test]
fn explain_names_the_first_rule_or_the_extra_cost() {
    let problem = parse(
        &EXAMPLE.replace(
            r#""pools": ["#,
            r#""pools": [
    { "id": "ga/h20", "site": "ga", "chip": "h20", "domestic": false, "gpus_free": 512, "price_fen_per_gpu_hour": 100 },
    { "id": "ga/a800", "site": "ga", "chip": "a800", "domestic": false, "gpus_free": 4, "price_fen_per_gpu_hour": 100 },
    { "id": "ga/h100", "site": "ga", "chip": "h100", "domestic": false, "gpus_free": 512, "price_fen_per_gpu_hour": 5000 },"#,
        ),
    )
    .unwrap();
    let solution = solve(&problem, &Limits::default());
    let explanation = explain(&problem, &solution, 0);
    assert_eq!(explanation.pool.as_deref(), Some("ga/910b"));
    let verdict = |id: &str| explanation.pools.iter().find(|(p, _)| p == id).unwrap().1.clone();
    assert!(matches!(verdict("ga/h20"), PoolVerdict::Excluded(suanli_placement::Exclusion::ChipNotAccepted { .. })));
    assert!(matches!(
        verdict("ga/a800"),
        PoolVerdict::Excluded(suanli_placement::Exclusion::TooBig { gpus: 8, gpus_free: 4 })
    ));
    // 64 / 3.0 × 5000 = 106,667 fen + 15,000 egress, against 79,000.
    assert_eq!(verdict("ga/h100"), PoolVerdict::Costlier { cost_fen: 121_667, extra_fen: 42_667 });
    assert!(explanation.to_string().contains("ga/h100: 42667 fen more"));
}

#[test]
fn policy_terms_steer_placement_and_report_what_they_cost() {
    let site = |id: &str, utilization: f64| Site {
        id: id.into(),
        hub: "h".into(),
        lat: 30.0,
        lon: 110.0,
        operator: Operator::State,
        utilization,
    };
    let pool = |id: &str, site: usize, chip: &str, domestic: bool, price: i64| Pool {
        id: id.into(),
        site,
        chip: chip.into(),
        domestic,
        gpus_free: 64,
        price_fen_per_gpu_hour: price,
    };
    let mut problem = Problem {
        egress_fen_per_gb: 0,
        unplaced_penalty_fen_per_ref_gpu_hour: 100_000,
        speed: HashMap::from([("t".to_owned(), HashMap::from([("a800".to_owned(), 1.0), ("910b".to_owned(), 1.0)]))]),
        sites: vec![site("busy", 0.8), site("idle", 0.2)],
        pools: vec![
            pool("busy/a800", 0, "a800", false, 1_000),
            pool("idle/a800", 1, "a800", false, 1_010),
            pool("idle/910b", 1, "910b", true, 1_080),
        ],
        orders: vec![Order {
            id: "o".into(),
            class: "t".into(),
            gpus: 8,
            work_ref_gpu_hours: 80.0,
            chips: vec!["a800".into(), "910b".into()],
            origin: Origin { hub: "h".into(), lat: 30.0, lon: 110.0 },
            data_gb: 0.0,
            deadline_hours: 100.0,
            rtt_ms_max: None,
            sites_allowed: None,
            domestic_extra_bp: 1_000,
            policy: None,
        }],
        policy: Policy::default(),
    };
    let chosen = |problem: &Problem| {
        let solution = solve(problem, &Limits::default());
        problem.pools[solution.pool_of[0].unwrap()].id.clone()
    };
    assert_eq!(chosen(&problem), "busy/a800", "without policy the cheapest pool wins");

    // 20 fen per GPU-hour for a site under 50% load outweighs the 10 fen price difference.
    problem.policy = Policy { utilization_target: 0.5, underused_credit_fen_per_gpu_hour: 20, domestic_weight_bp: 0 };
    assert_eq!(chosen(&problem), "idle/a800");
    let cost = suanli_placement::policy_cost(&problem, &Limits::default());
    assert_eq!(cost.with_policy.underused_credit_fen, -20 * 80);
    assert_eq!(cost.underused_term_fen, 10 * 80, "the term cost 10 fen per GPU-hour over 80 GPU-hours");
    assert_eq!(cost.domestic_term_fen, 0);

    // A programme paying 10 points more on domestic chips, fully weighted: 1,080 × 80 × 10% = 8,640
    // fen of credit beats the 70 fen per GPU-hour (5,600 fen) price difference.
    problem.policy =
        Policy { utilization_target: 0.0, underused_credit_fen_per_gpu_hour: 0, domestic_weight_bp: 10_000 };
    assert_eq!(chosen(&problem), "idle/910b");
    let cost = suanli_placement::policy_cost(&problem, &Limits::default());
    assert_eq!(cost.with_policy.domestic_credit_fen, -8_640);
    assert_eq!(cost.domestic_term_fen, 80 * 80);
    assert_eq!(cost.without_policy.cost_fen, 80_000);
}
