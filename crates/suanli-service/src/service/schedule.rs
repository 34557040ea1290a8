//! The scheduling loop: orders submitted as requests are placed together, a round at a time.
//!
//! A round takes every waiting request, checks each again (a voucher may have expired since),
//! and gives the batch engine one problem: every request on the network as it is now, each with
//! its programme's provider rule and policy weights. What the engine places becomes orders,
//! recorded as any placed order is (price locked, voucher share held); what it cannot place waits
//! for the next round, or is refused with each pool's reason once it has waited as long as it may.
//! The round's decisions are one audit-log entry (`round.decided`) after the orders, in the same
//! commit; a large round commits in parts.

use suanli_placement::{Limits, explain, solve};

use super::choose::{unplaced_reason, weighed};
use super::tiered::step_reason;
use super::*;
use crate::requests::{Decision, OrderRequest, RequestState, RoundReport};
use crate::tiers::Tier;
use suanli_domain::RequestId;

/// How long a request may wait for a round to place it, unless the deployment says otherwise.
pub const REQUEST_WAIT_DEFAULT_S: i64 = 3_600;

/// The most requests one enterprise may have waiting at once.
pub const REQUESTS_WAITING_MAX: u32 = 10_000;

/// The longest wait a deployment may set: a week.
pub const REQUEST_WAIT_MAX_S: i64 = 7 * 86_400;

/// Requests decided per commit of a round: each placed order is up to three ledger events, and a
/// commit holds one ledger batch.
const ROUND_PART_REQUESTS: usize = 2_000;

/// How the loop runs: how long a request may wait, unless it says, and the engine's budget and
/// iteration cap per round (a round's answer reproduces for a given input and cap).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoundSettings {
    pub wait_s: i64,
    pub solve_ms_max: u64,
    pub search_iterations_max: usize,
}

impl Default for RoundSettings {
    fn default() -> RoundSettings {
        RoundSettings {
            wait_s: REQUEST_WAIT_DEFAULT_S,
            solve_ms_max: 1_000,
            search_iterations_max: Limits::default().search_iterations_max,
        }
    }
}

impl Service {
    /// How the loop runs from now on.
    pub fn set_round_settings(&mut self, settings: RoundSettings) {
        self.rounds = settings;
    }

    pub fn round_settings(&self) -> RoundSettings {
        self.rounds
    }

    /// Submits an order to the scheduling loop: checked as an order is (voucher, purpose, GPUs,
    /// hours, work, origin), then waiting for the next round, for at most `wait_s` seconds (the
    /// deployment's wait when not given).
    pub fn submit_request(&mut self, actor: &Actor, request: &PoolRequest, wait_s: Option<i64>) -> Result<RequestId> {
        self.submit_bid(actor, request, wait_s, None)
    }

    /// Submits an order to the scheduling loop with a limit price per GPU-hour: if its
    /// programme's highest tier cannot serve it and the programme trades, it is a bid in the next
    /// clearing of the market between hub nodes (`crate::market`).
    pub fn submit_bid(
        &mut self,
        actor: &Actor,
        request: &PoolRequest,
        wait_s: Option<i64>,
        limit: Option<Fen>,
    ) -> Result<RequestId> {
        if limit.is_some_and(|fen| !(1..=crate::market::LIMIT_FEN_PER_GPU_HOUR_MAX).contains(&fen.fen())) {
            return Err(ServiceError::field(
                "limit_fen_per_gpu_hour",
                format!("must be between 1 and {}", crate::market::LIMIT_FEN_PER_GPU_HOUR_MAX),
            ));
        }
        let wait_s = wait_s.unwrap_or(self.rounds.wait_s);
        if !(0..=REQUEST_WAIT_MAX_S).contains(&wait_s) {
            return Err(ServiceError::field("wait_s", format!("must be between 0 and {REQUEST_WAIT_MAX_S}")));
        }
        let market = self.market();
        self.engine_order(request, &market.network, String::new(), None)?;
        let waiting = self.state.requests_waiting.get(&request.enterprise).copied().unwrap_or(0);
        if waiting >= REQUESTS_WAITING_MAX {
            return Err(ServiceError::new(
                ErrorCode::RequestsWaitingMax,
                format!(
                    "enterprise: {} has {waiting} requests waiting, the most one enterprise may; withdraw some or wait for a round",
                    request.enterprise
                ),
            ));
        }
        let program = self.voucher(request.voucher)?.program;
        let now = self.now_s();
        let id = self.state.next_request();
        let needs = &request.needs;
        let submitted = OrderRequest {
            id,
            enterprise: request.enterprise,
            voucher: request.voucher,
            program,
            chip: request.chip.clone(),
            gpu_count: request.gpu_count,
            hours: request.hours,
            purpose: request.purpose,
            work: needs.work.clone(),
            origin_hub: needs.origin_hub.clone(),
            data_gb: needs.data_gb,
            rtt_ms_max: needs.rtt_ms_max,
            limit_fen_per_gpu_hour: limit,
            submitted_at_s: now,
            expires_at_s: now.saturating_add(wait_s),
            state: RequestState::Waiting,
            decision: None,
        };
        let mut change = self.begin();
        self.record(&mut change, Event::RequestSubmitted { request: Box::new(submitted) }, now);
        self.commit(actor, now, change)?;
        Ok(id)
    }

    /// Withdraws a waiting request.
    pub fn withdraw_request(&mut self, actor: &Actor, id: RequestId) -> Result<()> {
        let request = self.request(id)?;
        if request.state != RequestState::Waiting {
            return Err(ServiceError::new(
                ErrorCode::RequestState,
                format!("request: {id} is {}; only a waiting request can be withdrawn", request.state.as_str()),
            ));
        }
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::RequestWithdrawn { request: id }, now);
        self.commit(actor, now, change)
    }

    /// Runs one round of the scheduling loop over every waiting request: the tiers of the
    /// programmes that name them first, city to national (each tier's requests placed together on
    /// what the tiers below left), then the requests of programmes without tiers on the whole
    /// network.
    pub fn run_round(&mut self, actor: &Actor) -> Result<RoundReport> {
        // Every entry of a round carries one time, and its parts are groups of commands, which
        // need a clock that does not move: the round runs on the time it began.
        let clock = self.view.clock.clone();
        self.view.clock = Arc::new(crate::clock::ManualClock::new(clock.now_s()));
        let report = self.run_round_at(actor);
        self.view.clock = clock;
        report
    }

    fn run_round_at(&mut self, actor: &Actor) -> Result<RoundReport> {
        self.recover()?;
        let settings = self.rounds;
        let now = self.now_s();
        let waiting: Vec<OrderRequest> =
            self.state.requests.values().filter(|r| r.state == RequestState::Waiting).cloned().collect();
        let mut report = RoundReport { waiting_before: waiting.len() as u32, ..RoundReport::default() };
        if waiting.is_empty() {
            return Ok(report);
        }
        let round = self.state.rounds + 1;
        let decision = |state, reason: Option<String>| Decision {
            round,
            decided_at_s: now,
            state,
            order: None,
            pool: None,
            hours: None,
            reason,
            list_cost_fen: Fen::ZERO,
            underused_credit_fen: 0,
            domestic_credit_fen: 0,
            egress_fen: 0,
            tier: None,
            escalated: Vec::new(),
        };
        let mut market = self.market();
        let mut decisions: Vec<(RequestId, Decision)> = Vec::new();
        // Each request checked again (one that no longer passes is refused with the reason), with
        // the steps of its programme's hierarchy.
        let mut pending: Vec<Pending> = Vec::new();
        for request in &waiting {
            let checked = self
                .engine_order(&request.pool_request(), &market.network, request.id.to_string(), None)
                .and_then(|_| self.program(request.program));
            match checked {
                Ok(program) => pending.push(Pending {
                    request,
                    steps: super::tiered::steps(self, program, &market.network),
                    escalated: Vec::new(),
                    placed: None,
                    unplaced: None,
                }),
                Err(error) => decisions.push((request.id, decision(RequestState::Refused, Some(error.message)))),
            }
        }
        let limits = Limits {
            solve_ms_max: settings.solve_ms_max,
            search_iterations_max: settings.search_iterations_max,
            ..Limits::default()
        };
        for tier in Tier::ALL {
            // The requests with a step at this tier (no tiers: the national step), not placed yet.
            let mut batch = Vec::new();
            let mut orders = Vec::new();
            for (index, p) in pending.iter_mut().enumerate() {
                if p.placed.is_some() {
                    continue;
                }
                let Some(step) = p.steps.iter().find(|s| s.tier == tier) else {
                    continue;
                };
                if let Some(why) = &step.empty {
                    p.escalated.push(why.clone());
                    continue;
                }
                let order = self.engine_order(
                    &p.request.pool_request(),
                    &market.network,
                    p.request.id.to_string(),
                    step.area.as_ref(),
                )?;
                orders.push(order);
                batch.push((index, step.label()));
            }
            if batch.is_empty() {
                continue;
            }
            let problem = market.problem(orders, self.placement_policy);
            let solution = solve(&problem, &limits);
            report.solve_ms += solution.solve_ms;
            report.gap_bp = report.gap_bp.max(gap_bp(solution.gap()));
            for (k, (index, label)) in batch.into_iter().enumerate() {
                let p = &mut pending[index];
                match solution.pool_of[k] {
                    Some(pool) => {
                        let (terms, egress) = weighed(&problem, &problem.orders[k], &problem.pools[pool]);
                        market.take(pool, p.request.gpu_count);
                        p.placed = Some((market.network.pool_ids[pool], terms, egress, label));
                    }
                    None => match label {
                        Some(label) => p.escalated.push(step_reason(&label, &problem, &solution, k)),
                        // Only a request past its wait needs the words.
                        None if now >= p.request.expires_at_s => {
                            p.unplaced = Some(unplaced_reason(&explain(&problem, &solution, k), p.request.gpu_count));
                        }
                        None => {}
                    },
                }
            }
        }
        // What the engine placed becomes orders, in the requests' order; the rest wait or, past
        // their wait, are refused with each tier's or pool's reason.
        let mut placements = Vec::new();
        for p in pending {
            match p.placed {
                Some((pool, terms, egress, tier)) => {
                    placements.push((p.request, pool, terms, egress, tier, p.escalated))
                }
                None if now >= p.request.expires_at_s => {
                    let reason = match p.unplaced {
                        Some(reason) => reason,
                        None => format!(
                            "pool: no tier the programme allows can take {} GPUs for this order: {}",
                            p.request.gpu_count,
                            p.escalated.join(" | ")
                        ),
                    };
                    let mut refused = decision(RequestState::Refused, Some(reason));
                    refused.escalated = p.escalated;
                    decisions.push((p.request.id, refused));
                }
                None => {}
            }
        }
        let mut placements = placements.into_iter().peekable();
        let mut decisions = decisions.into_iter().peekable();
        let round_gap_bp = report.gap_bp;
        while placements.peek().is_some() || decisions.peek().is_some() {
            let part: Vec<_> = placements.by_ref().take(ROUND_PART_REQUESTS).collect();
            let refused: Vec<_> = decisions.by_ref().take(ROUND_PART_REQUESTS.saturating_sub(part.len())).collect();
            let decided = self.in_one_commit(actor, |service| {
                let mut decided = refused;
                for (request, pool, terms, egress_fen, tier, escalated) in part {
                    let expires_at_s = request.expires_at_s;
                    let placed = service.pinned(&request.pool_request(), pool).and_then(|input| {
                        service.place_order_for(actor, input, Some(request.id), request.work.clone())
                    });
                    let decision = match placed {
                        Ok(order) => {
                            let placed = &service.state.orders[&order];
                            Decision {
                                state: RequestState::Placed,
                                order: Some(order),
                                pool: Some(placed.pool),
                                hours: Some(placed.quote.hours),
                                list_cost_fen: placed.quote.list_cost_fen,
                                underused_credit_fen: terms.underused_fen,
                                domestic_credit_fen: terms.domestic_fen,
                                egress_fen,
                                tier,
                                escalated,
                                ..decision(RequestState::Placed, None)
                            }
                        }
                        // Refused at placing (another request drew the same voucher down first): it
                        // waits for the next round while its wait lasts.
                        Err(_) if now < expires_at_s => continue,
                        Err(error) => decision(RequestState::Refused, Some(error.message)),
                    };
                    decided.push((request.id, decision));
                }
                let mut change = service.begin();
                for (request, decision) in &decided {
                    let event = Event::RequestDecided {
                        request: *request,
                        round,
                        gap_bp: round_gap_bp,
                        decision: Box::new(decision.clone()),
                    };
                    service.record(&mut change, event, now);
                }
                service.commit(actor, now, change)?;
                Ok(decided)
            })?;
            for (request, decision) in decided {
                match decision.order {
                    Some(order) => {
                        report.placed.push((request, order));
                        report.list_cost_fen = report.list_cost_fen.checked_add(decision.list_cost_fen)?;
                        report.underused_credit_fen += decision.underused_credit_fen;
                        report.domestic_credit_fen += decision.domestic_credit_fen;
                        report.egress_fen += decision.egress_fen;
                    }
                    None => report.refused.push((request, decision.reason.unwrap_or_default())),
                }
            }
        }
        report.round = if report.placed.is_empty() && report.refused.is_empty() { 0 } else { round };
        report.still_waiting = report.waiting_before - (report.placed.len() + report.refused.len()) as u32;
        Ok(report)
    }
}

/// A request through a round: its steps, why each tier tried could not serve it, and where it was
/// placed (the pool, what the policy weighed, the egress, the tier).
struct Pending<'a> {
    request: &'a OrderRequest,
    steps: Vec<super::tiered::Step>,
    escalated: Vec<String>,
    placed: Option<(PoolId, suanli_placement::model::Terms, i64, Option<String>)>,
    /// Why the engine left it unplaced on the whole network (a programme without tiers).
    unplaced: Option<String>,
}

fn gap_bp(gap: f64) -> u32 {
    if gap.is_finite() { (gap * 1e4).round().clamp(0.0, 1e4) as u32 } else { 10_000 }
}

impl View {
    pub fn request(&self, id: RequestId) -> Result<&OrderRequest> {
        self.state.requests.get(&id).ok_or_else(|| ServiceError::not_found(id))
    }
}
