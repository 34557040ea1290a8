//! Trading capacity between hub nodes: a clearing of sellers' capacity offers against buyers' bids.
//!
//! The goods are not alike: an offer is a number of GPUs of one chip at one site, free until the
//! end of a window, and a bid is work that runs a number of hours on that chip (fewer on a faster
//! one), with egress when its data leaves its hub. One price for all, as a uniform-price double
//! auction of a single good sets, would clear an H20 in Inner Mongolia and an H100 in Shanghai as
//! if they were the same thing. The clearing is therefore a **welfare-maximizing matching** (the
//! assignment market of Shapley and Shubik, with GPUs as capacity), priced per offer:
//!
//! - each bid goes whole to one offer or to none (a job is not split across sites); the matching
//!   maximizes welfare, the buyers' values less the sellers' reserves and the egress;
//! - the LP relaxation of that matching is solved, and so is its dual: the relaxation's value is
//!   the most any matching could reach, and both values are reported (strong duality says they
//!   agree; a debug build asserts it, and anyone can compare the two a clearing records);
//! - the dual's price of each offer's GPUs is the **lowest** that supports the relaxation's
//!   optimum (a second LP picks it among the optimal duals). In the assignment market these lowest
//!   competitive prices are the Vickrey prices (Leonard, 1983): a buyer gains nothing by bidding
//!   below its value. With a single offer and bids for one GPU each it is the double auction's
//!   price: the highest bid left out, or the reserve when supply exceeds demand;
//! - every trade on an offer pays the same two parts: the reserve for each GPU-hour it runs, and
//!   that price for each GPU it holds (a GPU taken is taken for the window, whatever the job's
//!   hours). As a price per GPU-hour that is `reserve + gpu_price / hours`. A trade the relaxation
//!   supports pays at most its bid (its surplus covers the GPU price, or the relaxation would not
//!   have given it the GPUs); the integral matching may keep one it does not, whose price is then
//!   lowered to the bid's limit and the trade marked `capped`.
//!
//! The integral matching is rounded from the relaxation (pairs taken in order of their share in
//! it, then of surplus, while capacity lasts), then improved by a local search (a bid left out
//! takes a trade's place where its surplus is higher, the trade moving elsewhere if it can).
//! Deterministic for a given input.

use good_lp::{Expression, ProblemVariables, Solution, SolverModel, Variable, constraint, default_solver, variable};

/// A seller's capacity: GPUs of one pool, free for `hours` more in its window, at no less than
/// its reserve.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    pub id: String,
    pub gpus: u32,
    /// Hours left in the offer's window: no trade on it may run longer.
    pub hours: u32,
    pub reserve_fen_per_gpu_hour: i64,
}

/// A buyer's bid: `gpus` for as long as its work takes on the offer it lands on, worth at most
/// `value_fen` in all, egress included.
#[derive(Clone, Debug, PartialEq)]
pub struct Bid {
    pub id: String,
    pub gpus: u32,
    pub value_fen: i64,
    /// The offers it may go to, with what it needs on each.
    pub fits: Vec<Fit>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fit {
    /// Index into the offers.
    pub offer: usize,
    /// Hours the bid's work runs on the offer's chip.
    pub hours: u32,
    /// Egress for moving the bid's data to the offer's site (paid to the network).
    pub egress_fen: i64,
}

/// One bid matched to one offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trade {
    pub bid: usize,
    pub offer: usize,
    pub gpus: u32,
    pub hours: u32,
    /// What the buyer pays the seller per GPU-hour: the offer's price, or less where `capped`.
    pub price_fen_per_gpu_hour: i64,
    /// `price × gpus × hours`.
    pub paid_fen: i64,
    pub egress_fen: i64,
    /// The bid's value less the offer's reserve for the hours and the egress.
    pub surplus_fen: i64,
    pub capped: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Clearing {
    pub trades: Vec<Trade>,
    /// Per offer: the price of one of its GPUs for the window, in whole fen (0 where nothing made
    /// its GPUs scarce: every trade then pays the reserve alone).
    pub gpu_price_fen: Vec<i64>,
    /// Per offer: the relaxation's lowest supporting price of one of its GPUs for the window.
    pub shadow_fen_per_gpu: Vec<f64>,
    /// The matching's welfare: the sum of its trades' surplus.
    pub welfare_fen: i64,
    /// The LP relaxation's optimum, the most any matching could reach, from its primal and dual.
    pub lp_welfare_fen: f64,
    pub lp_dual_fen: f64,
    /// `(lp − welfare) / lp` in basis points, 0 when the LP is 0.
    pub gap_bp: u32,
}

/// The cost of `bid` on `fit` to the seller at its reserve, plus egress; `None` on overflow.
fn reserve_cost(offer: &Offer, bid: &Bid, fit: &Fit) -> Option<i64> {
    offer
        .reserve_fen_per_gpu_hour
        .checked_mul(i64::from(bid.gpus))?
        .checked_mul(i64::from(fit.hours))?
        .checked_add(fit.egress_fen)
}

/// What `bid` on `fit` would gain over the offer's reserve cost, when the pair is worth trading:
/// the bid fits in the offer's GPUs and window, and its value exceeds the reserve cost.
pub fn surplus(offers: &[Offer], bid: &Bid, fit: &Fit) -> Option<i64> {
    let offer = offers.get(fit.offer)?;
    if bid.gpus == 0 || bid.gpus > offer.gpus || fit.hours == 0 || fit.hours > offer.hours {
        return None;
    }
    reserve_cost(offer, bid, fit).and_then(|cost| bid.value_fen.checked_sub(cost)).filter(|&s| s > 0)
}

/// The pairs worth trading, each (bid, fit, surplus).
fn candidates(offers: &[Offer], bids: &[Bid]) -> Vec<(usize, Fit, i64)> {
    let mut pairs = Vec::new();
    for (b, bid) in bids.iter().enumerate() {
        for fit in &bid.fits {
            if let Some(surplus) = surplus(offers, bid, fit) {
                pairs.push((b, *fit, surplus));
            }
        }
    }
    pairs
}

/// Clears `bids` against `offers`.
pub fn clear(offers: &[Offer], bids: &[Bid]) -> Clearing {
    let pairs = candidates(offers, bids);
    let (lp_welfare, shares) = primal(offers, bids, &pairs);
    let (lp_dual, shadow) = lowest_prices(offers, bids, &pairs, &shares);
    // Rounded down from a hair above, so a whole price is not lost to the solver's error (a
    // thousandth of a fen); a trade it would take past its bid is capped below.
    let whole = |x: f64| (x + 1e-3 + x.abs() * 1e-9).floor().max(0.0);
    let gpu_price: Vec<f64> = shadow.iter().map(|&per_gpu| whole(per_gpu)).collect();

    let chosen = improve(offers, bids, &pairs, round(offers, bids, &pairs, &shares));
    let mut trades = Vec::new();
    for (b, pair) in chosen.iter().enumerate() {
        let Some(k) = *pair else { continue };
        let (_, fit, surplus) = pairs[k];
        let bid = &bids[b];
        let gpu_hours = i64::from(bid.gpus) * i64::from(fit.hours);
        let per_hour = whole(gpu_price[fit.offer] / f64::from(fit.hours)) as i64;
        let mut price = offers[fit.offer].reserve_fen_per_gpu_hour.saturating_add(per_hour);
        let mut capped = false;
        let most = (bid.value_fen - fit.egress_fen) / gpu_hours;
        if price > most {
            price = most;
            capped = true;
        }
        trades.push(Trade {
            bid: b,
            offer: fit.offer,
            gpus: bid.gpus,
            hours: fit.hours,
            price_fen_per_gpu_hour: price,
            paid_fen: price * gpu_hours,
            egress_fen: fit.egress_fen,
            surplus_fen: surplus,
            capped,
        });
    }
    trades.sort_by_key(|trade| (trade.offer, trade.bid));
    let welfare: i64 = trades.iter().map(|trade| trade.surplus_fen).fold(0i64, i64::saturating_add);
    let gap_bp = if lp_welfare <= 0.5 {
        0
    } else {
        (((lp_welfare - welfare as f64) / lp_welfare * 1e4).round().clamp(0.0, 1e4)) as u32
    };
    Clearing {
        trades,
        gpu_price_fen: gpu_price.iter().map(|&p| p as i64).collect(),
        shadow_fen_per_gpu: shadow,
        welfare_fen: welfare,
        lp_welfare_fen: lp_welfare,
        lp_dual_fen: lp_dual,
        gap_bp,
    }
}

/// Each bid's pair (an index into `pairs`), rounded from the relaxation: pairs by their share in
/// it, then surplus, then the order given, while the offer has room.
fn round(offers: &[Offer], bids: &[Bid], pairs: &[(usize, Fit, i64)], shares: &[f64]) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by(|&x, &y| {
        shares[y]
            .partial_cmp(&shares[x])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(pairs[y].2.cmp(&pairs[x].2))
            .then(x.cmp(&y))
    });
    let mut left: Vec<u32> = offers.iter().map(|offer| offer.gpus).collect();
    let mut chosen = vec![None; bids.len()];
    for k in order {
        let (b, fit, _) = pairs[k];
        if chosen[b].is_none() && left[fit.offer] >= bids[b].gpus {
            left[fit.offer] -= bids[b].gpus;
            chosen[b] = Some(k);
        }
    }
    chosen
}

/// A trade displaced by a local-search move, and the pair it moves to (none: it is dropped).
type Displaced = (usize, Option<usize>);

/// Local search on a matching: a bid left out takes the place of one trade on an offer it fits
/// when its surplus beats that trade's, the trade moving to another offer with room if it can.
/// Each change raises welfare, so it ends; at most a few passes over the bids left out.
fn improve(
    offers: &[Offer],
    bids: &[Bid],
    pairs: &[(usize, Fit, i64)],
    mut chosen: Vec<Option<usize>>,
) -> Vec<Option<usize>> {
    let mut left: Vec<u32> = offers.iter().map(|offer| offer.gpus).collect();
    let mut on: Vec<Vec<usize>> = vec![Vec::new(); offers.len()];
    for (b, pair) in chosen.iter().enumerate() {
        if let Some(k) = *pair {
            left[pairs[k].1.offer] -= bids[b].gpus;
            on[pairs[k].1.offer].push(b);
        }
    }
    let mut of_bid: Vec<Vec<usize>> = vec![Vec::new(); bids.len()];
    for (k, &(b, _, _)) in pairs.iter().enumerate() {
        of_bid[b].push(k);
    }
    // The best pair of bid `b` on an offer with room for it, other than `except`.
    let best_room = |b: usize, except: usize, left: &[u32]| {
        of_bid[b]
            .iter()
            .copied()
            .filter(|&k| pairs[k].1.offer != except && left[pairs[k].1.offer] >= bids[b].gpus)
            .max_by_key(|&k| (pairs[k].2, std::cmp::Reverse(k)))
    };
    for _pass in 0..3 {
        let mut changed = false;
        for b in 0..bids.len() {
            if chosen[b].is_some() {
                continue;
            }
            // The best change for `b`: its gain, its pair, the trade it displaces and where that goes.
            let mut best: Option<(i64, usize, Option<Displaced>)> = None;
            for &k in &of_bid[b] {
                let (_, fit, surplus) = pairs[k];
                let o = fit.offer;
                if left[o] >= bids[b].gpus {
                    if best.is_none_or(|(gain, ..)| surplus > gain) {
                        best = Some((surplus, k, None));
                    }
                    continue;
                }
                for &t in &on[o] {
                    let tk = chosen[t].expect("a bid on an offer has a pair");
                    if left[o] + bids[t].gpus < bids[b].gpus {
                        continue;
                    }
                    let moved = best_room(t, o, &left);
                    let gain = surplus - pairs[tk].2 + moved.map_or(0, |m| pairs[m].2);
                    if gain > 0 && best.is_none_or(|(g, ..)| gain > g) {
                        best = Some((gain, k, Some((t, moved))));
                    }
                }
            }
            // Or several trades displaced, the least surplus per GPU first, until `b` fits.
            let mut several: Option<(i64, usize, Vec<usize>)> = None;
            for &k in &of_bid[b] {
                let (_, fit, surplus) = pairs[k];
                let o = fit.offer;
                if left[o] >= bids[b].gpus {
                    continue;
                }
                let mut ts = on[o].clone();
                ts.sort_by(|&x, &y| {
                    let per = |t: usize| pairs[chosen[t].expect("on an offer")].2 as f64 / f64::from(bids[t].gpus);
                    per(x).partial_cmp(&per(y)).unwrap_or(std::cmp::Ordering::Equal).then(x.cmp(&y))
                });
                let (mut room, mut lost, mut out) = (left[o], 0i64, Vec::new());
                for t in ts {
                    if room >= bids[b].gpus {
                        break;
                    }
                    room += bids[t].gpus;
                    lost += pairs[chosen[t].expect("on an offer")].2;
                    out.push(t);
                }
                let gain = surplus - lost;
                if room >= bids[b].gpus && out.len() > 1 && gain > 0 && several.as_ref().is_none_or(|(g, ..)| gain > *g)
                {
                    several = Some((gain, k, out));
                }
            }
            let several_wins = match (&several, &best) {
                (Some((g, ..)), Some((h, ..))) => g > h,
                (Some(_), None) => true,
                _ => false,
            };
            if several_wins {
                let (_, k, out) = several.expect("it won");
                let o = pairs[k].1.offer;
                for t in out {
                    on[o].retain(|&x| x != t);
                    left[o] += bids[t].gpus;
                    chosen[t] = None;
                }
                left[o] -= bids[b].gpus;
                on[o].push(b);
                chosen[b] = Some(k);
                changed = true;
                continue;
            }
            let Some((_, k, displaced)) = best else { continue };
            let o = pairs[k].1.offer;
            if let Some((t, moved)) = displaced {
                on[o].retain(|&x| x != t);
                left[o] += bids[t].gpus;
                chosen[t] = moved;
                if let Some(m) = moved {
                    let to = pairs[m].1.offer;
                    left[to] -= bids[t].gpus;
                    on[to].push(t);
                }
            }
            left[o] -= bids[b].gpus;
            on[o].push(b);
            chosen[b] = Some(k);
            changed = true;
        }
        if !changed {
            break;
        }
    }
    chosen
}

/// The LP relaxation: each pair fractionally, a bid at most once, an offer's GPUs as capacity.
/// Its optimum and each pair's share in it. (A share's bound of 1 follows from its bid's row;
/// stated on every variable as well, it made the solver 60 times slower.)
fn primal(offers: &[Offer], bids: &[Bid], pairs: &[(usize, Fit, i64)]) -> (f64, Vec<f64>) {
    if pairs.is_empty() {
        return (0.0, Vec::new());
    }
    let mut variables = ProblemVariables::new();
    let x: Vec<Variable> = pairs.iter().map(|_| variables.add(variable().min(0.0))).collect();
    let mut objective = Expression::from(0.0);
    let mut per_bid: Vec<Expression> = vec![Expression::from(0.0); bids.len()];
    let mut per_offer: Vec<Expression> = vec![Expression::from(0.0); offers.len()];
    for (&(b, fit, surplus), &var) in pairs.iter().zip(&x) {
        objective += surplus as f64 * var;
        per_bid[b] += var;
        per_offer[fit.offer] += f64::from(bids[b].gpus) * var;
    }
    let mut model = variables.maximise(objective.clone()).using(default_solver);
    for row in per_bid {
        model = model.with(constraint!(row <= 1.0));
    }
    for (row, offer) in per_offer.into_iter().zip(offers) {
        model = model.with(constraint!(row <= f64::from(offer.gpus)));
    }
    // The relaxation is bounded and feasible (all zero), so the solver answers.
    match model.solve() {
        Ok(solution) => (solution.eval(&objective), x.iter().map(|&var| solution.value(var)).collect()),
        Err(_) => (0.0, vec![0.0; pairs.len()]),
    }
}

/// The relaxation's dual, `min Σ gpus_o·λ_o + Σ u_b` with `u_b + gpus_b·λ_o ≥ surplus` per pair,
/// then among its optima the lowest prices (`min Σ λ_o`). Its value and each offer's `λ_o`.
///
/// A pair is a row of the dual, and there are bids × offers of them, of which few bind: each LP
/// is solved on the rows of the pairs the primal used (`shares`) and each bid's best pair, and
/// the rows its answer violates are added until it violates none (row generation; a solution of
/// fewer rows that satisfies every row is optimal for all of them).
fn lowest_prices(offers: &[Offer], bids: &[Bid], pairs: &[(usize, Fit, i64)], shares: &[f64]) -> (f64, Vec<f64>) {
    if pairs.is_empty() {
        return (0.0, vec![0.0; offers.len()]);
    }
    let mut rows: Vec<bool> = shares.iter().map(|&share| share > 1e-9).collect();
    let mut best: Vec<Option<usize>> = vec![None; bids.len()];
    for (k, &(b, _, surplus)) in pairs.iter().enumerate() {
        if best[b].is_none_or(|j| pairs[j].2 < surplus) {
            best[b] = Some(k);
        }
    }
    for k in best.into_iter().flatten() {
        rows[k] = true;
    }
    // The dual, or with `cap` its lowest prices among the solutions worth at most `cap`, on the
    // rows chosen so far; then again with the rows it violates, until none.
    let solve = |cap: Option<f64>, rows: &mut Vec<bool>| -> Option<(f64, Vec<f64>)> {
        loop {
            let mut variables = ProblemVariables::new();
            let lambda: Vec<Variable> = offers.iter().map(|_| variables.add(variable().min(0.0))).collect();
            let u: Vec<Variable> = bids.iter().map(|_| variables.add(variable().min(0.0))).collect();
            let mut value = Expression::from(0.0);
            for (offer, &var) in offers.iter().zip(&lambda) {
                value += f64::from(offer.gpus) * var;
            }
            for &var in &u {
                value += var;
            }
            let mut prices = Expression::from(0.0);
            for &var in &lambda {
                prices += var;
            }
            let objective = if cap.is_some() { prices } else { value.clone() };
            let mut model = variables.minimise(objective).using(default_solver);
            for (k, &(b, fit, surplus)) in pairs.iter().enumerate() {
                if rows[k] {
                    model =
                        model.with(constraint!(u[b] + f64::from(bids[b].gpus) * lambda[fit.offer] >= surplus as f64));
                }
            }
            if let Some(cap) = cap {
                model = model.with(constraint!(value.clone() <= cap + 1e-9 * cap.abs() + 1e-6));
            }
            let solution = model.solve().ok()?;
            let (l, v): (Vec<f64>, Vec<f64>) =
                (lambda.iter().map(|&x| solution.value(x)).collect(), u.iter().map(|&x| solution.value(x)).collect());
            // Each bid's most violated row, if any.
            let mut worst: Vec<Option<(f64, usize)>> = vec![None; bids.len()];
            for (k, &(b, fit, surplus)) in pairs.iter().enumerate() {
                let slack = v[b] + f64::from(bids[b].gpus) * l[fit.offer] - surplus as f64;
                if !rows[k] && slack < -1e-6 * (surplus as f64).max(1.0) && worst[b].is_none_or(|(w, _)| slack < w) {
                    worst[b] = Some((slack, k));
                }
            }
            let mut added = false;
            for (_, k) in worst.into_iter().flatten() {
                rows[k] = true;
                added = true;
            }
            if !added {
                return Some((solution.eval(&value), l));
            }
        }
    };
    let Some((dual, first)) = solve(None, &mut rows) else { return (0.0, vec![0.0; offers.len()]) };
    match solve(Some(dual), &mut rows) {
        Some((_, lowest)) => (dual, lowest.into_iter().map(|x| x.max(0.0)).collect()),
        None => (dual, first),
    }
}
