//! One variant of a scenario, run through the real service in-process: a temporary SQLite store,
//! a manual clock, the national network's providers, sites and pools, the programme with the
//! variant's terms, synthetic enterprises applying and ordering month by month through the
//! placement engine (with the variant's policy), their usage, each pool's utilization
//! telemetry (its base load plus the orders running on it), and monthly statements.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use suanli_domain::{
    ApplicantKind, EnterpriseId, Fen, OrderId, PoolId, ProgramId, ProviderId, RegionCode, Uscc, VoucherId,
};
use suanli_placement::network::{Rng, clusters, default_problem};
use suanli_service::calendar::{YearMonth, shanghai_midnight};
use suanli_service::model::{
    ApplicationState, NetworkCluster, OperatorKind, Purpose, UsageInput, UtilizationInput, VoucherState,
};
use suanli_service::outcome::Outcome;
use suanli_service::{Actor, EnterpriseInput, ManualClock, PoolInput, PoolRequest, Service, SiteSpec, UsageGroup};
use suanli_store::FsyncMode;

use super::scenario::{MarketTerms, Scenario, Variant};
use suanli_service::OfferInput;
use suanli_service::requests::RequestState;

/// A pool as the simulation sees it.
pub(crate) struct SimPool {
    id: PoolId,
    provider: ProviderId,
    gpus: u32,
    /// GPUs busy with work from outside the platform.
    base_busy: u32,
    west: bool,
}

struct SimEnterprise {
    id: Option<EnterpriseId>,
    region: RegionCode,
    revenue_yuan: i64,
    headcount: u32,
    kind: ApplicantKind,
    /// Monthly GPU-hours at the reference price.
    base_hours: f64,
    arrives: u32,
    voucher: Option<VoucherId>,
}

/// An order placed this month: its pool, GPUs, hours and when it started.
struct Running {
    order: OrderId,
    provider: ProviderId,
    pool: PoolId,
    gpus: u32,
    hours: u32,
    started_s: i64,
}

/// One month's figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Month {
    pub month: String,
    /// The subsidy spent so far.
    pub spent_fen: i64,
    pub orders: u64,
    pub gpu_hours: f64,
    pub west_load_bp: u32,
    pub east_load_bp: u32,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct VariantResult {
    pub name: String,
    pub enterprises: u64,
    pub approved: u64,
    pub orders: u64,
    pub orders_refused: u64,
    pub usage_records: u64,
    pub gpu_hours: f64,
    /// Of the GPU-hours bought on the platform, the share at western sites (basis points).
    pub west_share_bp: u32,
    /// Mean load of the western (eastern) sites in the month before the programme and over the
    /// months after.
    pub west_load_before_bp: u32,
    pub west_load_after_bp: u32,
    pub east_load_before_bp: u32,
    pub east_load_after_bp: u32,
    pub months: Vec<Month>,
    /// The programme's outcome report (none without a programme).
    pub outcome: Option<Outcome>,
    /// The market between hub nodes, when the scenario has one.
    pub market: Option<MarketResult>,
    /// The ledger's state hash and the audit log's head: equal for equal runs.
    pub state_hash: String,
}

/// What a year of daily clearings did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MarketResult {
    /// Clearings that had bids and offers (each is an audit-log entry).
    pub clearings: u64,
    pub trades: u64,
    /// GPU-hours bought between hub nodes, and what they cost at the clearings' prices.
    pub gpu_hours: f64,
    pub paid_fen: i64,
    /// The sums over the clearings of their welfare and of the LP relaxation's optimum.
    pub welfare_fen: i64,
    pub lp_welfare_fen: i64,
    /// The largest gap of one clearing to its LP optimum, in basis points.
    pub gap_bp_max: u32,
    /// Wall time of the daily clearings (each with its round), in milliseconds.
    pub clearing_ms: u64,
    /// Each region's trade balance at the end (usage delivered less usage taken on traded
    /// orders), in fen.
    pub regions: Vec<(String, i64)>,
}

impl MarketResult {
    pub fn mean_price_fen_per_gpu_hour(&self) -> Option<i64> {
        (self.gpu_hours > 0.0).then(|| (self.paid_fen as f64 / self.gpu_hours).round() as i64)
    }
}

/// The first second of the `k`-th month after January 2026, Asia/Shanghai.
pub fn month_start(k: u32) -> i64 {
    let (year, month) = (2026 + (k / 12) as i32, (k % 12) as u8 + 1);
    shanghai_midnight(year, month, 1).expect("a valid month")
}

fn op() -> Actor {
    Actor::operator()
}

/// The programme file's text with the variant's terms in place.
pub fn program_source(base: &str, variant: &Variant) -> anyhow::Result<String> {
    let mut table: toml::Table = toml::from_str(base)?;
    if let Some(trade) = variant.trade {
        let Some(toml::Value::Table(tiers)) = table.get_mut("tiers") else {
            anyhow::bail!("variant {}: trade needs a programme that names tiers", variant.name);
        };
        tiers.insert("trade".into(), toml::Value::Boolean(trade));
    }
    let mut set = |key: &str, value: toml::Value| {
        table.insert(key.to_owned(), value);
    };
    if let Some(v) = variant.budget_fen {
        set("budget_fen", toml::Value::Integer(v));
    }
    if let Some(v) = variant.subsidy_rate_bp {
        set("subsidy_rate_bp", toml::Value::Integer(v));
    }
    if let Some(v) = variant.domestic_chip_rate_bp {
        set("domestic_chip_rate_bp", toml::Value::Integer(v));
    }
    if let Some(v) = variant.enterprise_cap_fen {
        set("enterprise_cap_fen", toml::Value::Integer(v));
        set("annual_cap_fen", toml::Value::Integer(v));
    }
    if let Some(v) = &variant.allocation {
        set("allocation", toml::Value::String(v.clone()));
    }
    if let Some(rule) = &variant.providers {
        let mut providers = toml::Table::new();
        providers.insert("rule".into(), toml::Value::String(rule.clone()));
        set("providers", toml::Value::Table(providers));
    }
    Ok(toml::to_string(&table)?)
}

/// Runs one variant in `dir` (its database is `dir/<name>.db`).
pub fn run(scenario: &Scenario, base_program: &str, variant: &Variant, dir: &Path) -> anyhow::Result<VariantResult> {
    let clock = ManualClock::new(month_start(0));
    let path = dir.join(format!("{}.db", variant.name));
    let _ = std::fs::remove_file(&path);
    let mut s = Service::open_with(&path, FsyncMode::Off, Arc::new(clock.clone()))?;
    let mut policy = s.placement_policy();
    if let Some(credit) = variant.underused_credit_fen_per_gpu_hour {
        policy.underused_credit_fen_per_gpu_hour = credit;
    }
    if let Some(weight) = variant.domestic_weight_bp {
        policy.domestic_weight_bp = weight;
    }
    if let Some(target) = variant.utilization_target {
        policy.utilization_target = target;
    }
    s.set_placement_policy(policy);
    let pools = network(&mut s)?;
    let program = match variant.subsidy {
        true => {
            let id = s.load_program(&op(), &program_source(base_program, variant)?)?;
            Some(id)
        }
        false => None,
    };
    let lottery = variant.allocation.as_deref() == Some("lottery");
    let region = program.map(|p| s.program(p).map(|p| p.terms.authority_region)).transpose()?;
    let mut rng = Rng::new(scenario.seed);
    let mut enterprises = synthesize(scenario, region, &mut rng);

    let mut result = VariantResult {
        name: variant.name.clone(),
        enterprises: enterprises.len() as u64,
        approved: 0,
        orders: 0,
        orders_refused: 0,
        usage_records: 0,
        gpu_hours: 0.0,
        west_share_bp: 0,
        west_load_before_bp: 0,
        west_load_after_bp: 0,
        east_load_before_bp: 0,
        east_load_after_bp: 0,
        months: Vec::new(),
        outcome: None,
        market: scenario.market.as_ref().map(|_| MarketResult::default()),
        state_hash: String::new(),
    };
    let (mut west_hours, mut load_sums) = (0.0f64, [[0i64; 2]; 4]); // [west before, west after, east before, east after] × [busy, gpus]
    // Orders go out on these days of each month (the first after the lottery's draw), each
    // running at most until the next.
    let per_month = scenario.demand.orders_per_month;
    let order_days: Vec<u32> = (0..per_month).map(|j| 11 + j * (18 / per_month)).collect();
    for m in 0..=scenario.months {
        let start = month_start(m);
        let days = ((month_start(m + 1) - start) / 86_400) as u32;
        clock.set(start + 60);
        if m == 1
            && let Some(p) = program
        {
            s.open_program(&op(), p)?;
        }
        // Last month's statements, now that it has ended.
        if m >= 2
            && let Some(p) = program
        {
            statements(&mut s, p, &pools, YearMonth::of(month_start(m - 1)))?;
        }
        // Orders that ended over a month ago leave memory, as a server's writer does.
        s.archive(&op())?;
        if lottery && let Some(p) = program {
            let seed = format!("{}-{m}", scenario.seed);
            let committed =
                s.commit_lottery(&op(), p, &suanli_service::lottery::seed_sha256(&seed), start + 10 * 86_400);
            if committed.is_err() {
                // The programme no longer takes applications (closed): no round.
            }
        }
        if let (Some(terms), true) = (&scenario.market, m >= 1) {
            offer(&mut s, terms, &pools, start + 60)?;
        }
        let mut running: Vec<Running> = Vec::new();
        let mut closed = 0;
        let mut month_orders = 0u64;
        let mut month_sums = [[0i64; 2]; 2];
        for day in 0..days {
            let noon = start + i64::from(day) * 86_400 + 12 * 3_600;
            clock.set(noon.max(clock_now(&clock)));
            if let Some(p) = program {
                if day < 10 {
                    arrive(&mut s, p, &mut enterprises, m, day, lottery, &mut result)?;
                }
                if day == 10 && lottery {
                    let seed = format!("{}-{m}", scenario.seed);
                    if s.draw_lottery(&op(), p, &seed).is_ok() {
                        adopt_vouchers(&s, &mut enterprises, &mut result);
                    }
                }
                if order_days.contains(&day) {
                    // The orders placed last time have ended: their usage, then their end.
                    west_hours += close(&mut s, &pools, &running[closed..], &mut result)?;
                    closed = running.len();
                    month_orders += place(&mut s, scenario, &enterprises, &mut running, &mut result, &clock)?;
                }
                if scenario.market.is_some() {
                    month_orders += clear(&mut s, &mut running, &mut result, &clock)?;
                }
            }
            telemetry(&mut s, &pools, &running, noon, m, &mut load_sums, &mut month_sums)?;
        }
        // The month's last orders end.
        clock.set(month_start(m + 1) - 60);
        west_hours += close(&mut s, &pools, &running[closed..], &mut result)?;
        let (west, east) = (load_bp(month_sums[0]), load_bp(month_sums[1]));
        let spent = program.map(|p| s.program(p).map(|p| p.spent_fen.fen())).transpose()?.unwrap_or(0);
        result.months.push(Month {
            month: YearMonth::of(start).to_string(),
            spent_fen: spent,
            orders: month_orders,
            gpu_hours: running.iter().map(|r| f64::from(r.gpus) * f64::from(r.hours)).sum::<f64>() + 0.0,
            west_load_bp: west,
            east_load_bp: east,
        });
    }
    result.west_load_before_bp = load_bp(load_sums[0]);
    result.west_load_after_bp = load_bp(load_sums[1]);
    result.east_load_before_bp = load_bp(load_sums[2]);
    result.east_load_after_bp = load_bp(load_sums[3]);
    result.west_share_bp = if result.gpu_hours > 0.0 { (west_hours * 10_000.0 / result.gpu_hours) as u32 } else { 0 };
    if let Some(market) = &mut result.market {
        // Submitted orders the loop could not place before their wait ended count as refused.
        let refused = s.state().requests.values().filter(|r| r.state == RequestState::Refused).count();
        result.orders_refused += refused as u64;
        market.regions = s.state().region_trade_fen.iter().map(|(r, &f)| (r.to_string(), f as i64)).collect();
    }
    if let Some(p) = program {
        let mut reader = s.log_reader()?;
        result.outcome = Some(s.outcome_with_load(p, 28, &mut reader)?);
    }
    // As a server does when it stops: a later `serve` on the database starts from here.
    s.checkpoint()?;
    let ledger = suanli_ledger::state_hash(s.durable().ledger());
    result.state_hash = format!("{}{}", hex(&ledger), hex(&s.durable().log_head()));
    Ok(result)
}

fn hex(bytes: &[u8]) -> String {
    suanli_service::access::hex(bytes)
}

fn clock_now(clock: &ManualClock) -> i64 {
    use suanli_service::Clock;
    clock.now_s()
}

/// The usage of orders that have ended (one record each, as a provider's accounting sends it at
/// the end of a job), then their ends. Answers the GPU-hours that ran in the west.
fn close(s: &mut Service, pools: &[SimPool], orders: &[Running], result: &mut VariantResult) -> anyhow::Result<f64> {
    let mut west_hours = 0.0;
    let west: std::collections::BTreeSet<PoolId> = pools.iter().filter(|p| p.west).map(|p| p.id).collect();
    let mut groups: BTreeMap<ProviderId, Vec<UsageInput>> = BTreeMap::new();
    for r in orders {
        let share = 85 + (r.order.get() * 7 % 16) as i64;
        groups.entry(r.provider).or_default().push(UsageInput {
            id: format!("{}-all", r.order),
            order: r.order,
            gpu_seconds: i64::from(r.gpus) * i64::from(r.hours) * 3_600 * share / 100,
            period_start_s: r.started_s,
            period_end_s: r.started_s + i64::from(r.hours) * 3_600,
        });
        let hours = f64::from(r.gpus) * f64::from(r.hours) * share as f64 / 100.0;
        result.gpu_hours += hours;
        if west.contains(&r.pool) {
            west_hours += hours;
        }
    }
    let mut batch: Vec<UsageGroup> = Vec::new();
    let mut in_batch = 0;
    for (provider, records) in groups {
        for chunk in records.chunks(4_000) {
            if in_batch + chunk.len() > 4_000 {
                s.record_usage_groups(&op(), &batch)?;
                batch.clear();
                in_batch = 0;
            }
            in_batch += chunk.len();
            result.usage_records += chunk.len() as u64;
            batch.push(UsageGroup { actor: op(), provider, records: chunk.to_vec() });
        }
    }
    if !batch.is_empty() {
        s.record_usage_groups(&op(), &batch)?;
    }
    // Many commands to a commit, as bulk work goes (`Service::in_one_commit`).
    for chunk in orders.chunks(GROUP_ORDERS) {
        s.in_one_commit(&op(), |s| {
            for r in chunk {
                s.complete_order(&op(), r.order)?;
            }
            Ok(())
        })?;
    }
    Ok(west_hours)
}

/// How long a simulated order waits for a clearing to place it.
const BID_WAIT_S: i64 = 5 * 86_400;

/// Orders placed (or ended) in one commit.
const GROUP_ORDERS: usize = 500;

/// Busy GPUs over GPUs, in basis points.
fn load_bp([busy, gpus]: [i64; 2]) -> u32 {
    if gpus > 0 { (i128::from(busy) * 10_000 / i128::from(gpus)) as u32 } else { 0 }
}

/// The national network: a provider, a verified site and the pools of each cluster.
pub(crate) fn network(s: &mut Service) -> anyhow::Result<Vec<SimPool>> {
    s.import_network(&op(), NetworkCluster::national())?;
    let problem = default_problem();
    let mut pools = Vec::new();
    for (index, cluster) in clusters().iter().enumerate() {
        let region = crate::demo::cluster_region(&cluster.id);
        let uscc = Uscc::with_check_characters(&format!("91{region}MA3TR{:03}", index + 1))?;
        let operator = match cluster.operator {
            suanli_placement::Operator::Government => OperatorKind::Government,
            suanli_placement::Operator::State => OperatorKind::StateOwned,
            suanli_placement::Operator::Commercial => OperatorKind::Commercial,
        };
        let provider = s.register_provider(&op(), uscc, &format!("{} operator", cluster.name), operator)?;
        let site = s.add_site(
            &op(),
            SiteSpec {
                provider,
                name: cluster.name.clone(),
                hub: cluster.hub.clone(),
                region: RegionCode::parse(region)?,
                latitude: cluster.lat,
                longitude: cluster.lon,
                operator,
                power_price_fen_per_kwh: Some(Fen::new((cluster.power_price_cny_kwh * 100.0).round() as i64)),
                pue: Some(cluster.pue_cap),
            },
        )?;
        s.verify_site(&op(), site)?;
        for (pool, (_, total)) in problem.pools.iter().filter(|p| p.site == index).zip(&cluster.gpus) {
            let id = s.add_pool(
                &op(),
                PoolInput {
                    site,
                    chip: pool.chip.clone(),
                    gpu_count: *total,
                    domestic: pool.domestic,
                    price_fen_per_gpu_hour: Fen::new(pool.price_fen_per_gpu_hour),
                },
            )?;
            pools.push(SimPool {
                id,
                provider,
                gpus: *total,
                base_busy: (f64::from(*total) * cluster.base_utilization).round() as u32,
                west: cluster.class == "west",
            });
        }
    }
    Ok(pools)
}

/// The synthetic enterprises: in the programme's region, arriving evenly over the first half
/// of the months, each with a monthly demand.
fn synthesize(scenario: &Scenario, region: Option<RegionCode>, rng: &mut Rng) -> Vec<SimEnterprise> {
    let region = region.unwrap_or_else(|| RegionCode::parse("310000").expect("Shanghai"));
    let d = &scenario.demand;
    let spread = (scenario.months / 2).max(1);
    (0..scenario.enterprises)
        .map(|n| SimEnterprise {
            id: None,
            region,
            revenue_yuan: 2_000_000 + rng.below(48_000_000) as i64,
            headcount: 10 + rng.below(290) as u32,
            kind: if rng.below(3) == 0 { ApplicantKind::Startup } else { ApplicantKind::Sme },
            base_hours: f64::from(d.gpu_hours_min) + rng.unit() * f64::from(d.gpu_hours_max - d.gpu_hours_min),
            arrives: 1 + (u64::from(n) * u64::from(spread) / u64::from(scenario.enterprises)) as u32,
            voucher: None,
        })
        .collect()
}

/// The enterprises arriving on this day of month `m` register and apply; under first come, first
/// served the authority decides at once.
fn arrive(
    s: &mut Service,
    program: ProgramId,
    enterprises: &mut [SimEnterprise],
    m: u32,
    day: u32,
    lottery: bool,
    result: &mut VariantResult,
) -> anyhow::Result<()> {
    let cap = s.program(program)?.terms.enterprise_cap_fen;
    let arriving: Vec<usize> = enterprises
        .iter()
        .enumerate()
        .filter(|(i, e)| e.arrives == m && (*i as u32) % 10 == day)
        .map(|(i, _)| i)
        .collect();
    for chunk in arriving.chunks(GROUP_ORDERS) {
        s.in_one_commit(&op(), |s| {
            for &i in chunk {
                let e = &mut enterprises[i];
                let uscc = Uscc::with_check_characters(&format!("91{}{:08}", e.region, i + 1))
                    .map_err(|error| suanli_service::ServiceError::field("uscc", error))?;
                let id = s.register_enterprise(
                    &op(),
                    EnterpriseInput {
                        uscc,
                        name: format!("Simulated enterprise {}", i + 1),
                        region: e.region,
                        kind: e.kind,
                        headcount: e.headcount,
                        revenue_fen: Fen::from_yuan(e.revenue_yuan)?,
                        research_projects: vec![],
                        related_parties: vec![],
                    },
                )?;
                e.id = Some(id);
                // Asks for a year of its demand's voucher share, within the cap.
                let asked = Fen::new(((e.base_hours * 12.0 * 1_000.0) as i64).clamp(100, cap.fen()));
                let Ok(application) = s.apply(&op(), id, program, asked, "") else { continue };
                if !lottery {
                    // The authority decides at once: approved, or rejected with the reason.
                    match s.approve_application(&op(), application, asked) {
                        Ok(voucher) => {
                            e.voucher = Some(voucher);
                            result.approved += 1;
                        }
                        Err(refused) => {
                            let reason: String = refused.message.chars().take(900).collect();
                            s.reject_application(&op(), application, &reason)?;
                        }
                    }
                }
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// After a draw, the enterprises whose applications were approved hold their vouchers.
fn adopt_vouchers(s: &Service, enterprises: &mut [SimEnterprise], result: &mut VariantResult) {
    for e in enterprises.iter_mut().filter(|e| e.voucher.is_none()) {
        let Some(id) = e.id else { continue };
        if let Some(voucher) = s
            .state()
            .applications
            .values()
            .find(|a| a.enterprise == id && a.state == ApplicationState::Approved)
            .and_then(|a| a.voucher)
        {
            e.voucher = Some(voucher);
            result.approved += 1;
        }
    }
}

/// Every enterprise holding a voucher with money orders its month's compute through the
/// placement engine; demand responds to the price it pays itself.
fn place(
    s: &mut Service,
    scenario: &Scenario,
    enterprises: &[SimEnterprise],
    running: &mut Vec<Running>,
    result: &mut VariantResult,
    clock: &ManualClock,
) -> anyhow::Result<u64> {
    let holders: Vec<&SimEnterprise> = enterprises.iter().filter(|e| e.id.is_some() && e.voucher.is_some()).collect();
    let mut placed = 0;
    for chunk in holders.chunks(GROUP_ORDERS) {
        placed += s.in_one_commit(&op(), |s| place_some(s, scenario, chunk, running, result, clock))?;
    }
    Ok(placed)
}

/// Places and starts the orders of some enterprises (in one commit).
fn place_some(
    s: &mut Service,
    scenario: &Scenario,
    enterprises: &[&SimEnterprise],
    running: &mut Vec<Running>,
    result: &mut VariantResult,
    clock: &ManualClock,
) -> Result<u64, suanli_service::ServiceError> {
    let d = &scenario.demand;
    let mut placed = 0;
    for e in enterprises {
        let (Some(enterprise), Some(voucher)) = (e.id, e.voucher) else { continue };
        let v = s.voucher(voucher)?;
        if v.state != VoucherState::Active || v.available_fen <= Fen::ZERO {
            continue;
        }
        let rate = f64::from(s.program(v.program)?.terms.subsidy_rate_bp.basis_points()) / 10_000.0;
        let own = (1.0 - rate).max(0.01);
        let hours_wanted = (e.base_hours * own.powf(-d.elasticity)).min(e.base_hours * d.boost_max);
        // Each order of the month asks its share, and ends before the next goes out.
        let per = f64::from(d.orders_per_month);
        let hours = ((hours_wanted / per / f64::from(d.gpus)).ceil() as u32).clamp(1, (18 / d.orders_per_month) * 24);
        let request = PoolRequest {
            enterprise,
            voucher,
            chip: None,
            gpu_count: d.gpus,
            hours,
            purpose: Purpose::Training,
            needs: Default::default(),
        };
        if let Some(terms) = &scenario.market {
            // Submitted to the scheduling loop with a limit: a day's clearing places it in its
            // tiers or buys it between hub nodes (each clearing takes the oldest 500 bids), or
            // it is refused once it has waited five days.
            s.submit_bid(&op(), &request, Some(BID_WAIT_S), Some(Fen::new(terms.limit_fen_per_gpu_hour)))?;
            continue;
        }
        match s.place_order_anywhere(&op(), &request) {
            Ok(order) => {
                running.push(start(s, order, clock)?);
                result.orders += 1;
                placed += 1;
            }
            Err(_) => result.orders_refused += 1,
        }
    }
    Ok(placed)
}

/// Starts a placed order and tracks it as running from now.
fn start(s: &mut Service, order: OrderId, clock: &ManualClock) -> Result<Running, suanli_service::ServiceError> {
    s.start_order(&op(), order)?;
    let o = s.order(order)?;
    Ok(Running {
        order,
        provider: o.provider,
        pool: o.pool,
        gpus: o.quote.gpu_count,
        hours: o.quote.hours,
        started_s: clock_now(clock),
    })
}

/// At the start of a month every provider offers part of each pool's idle GPUs for 31 days, at
/// its reserve.
fn offer(s: &mut Service, terms: &MarketTerms, pools: &[SimPool], now: i64) -> anyhow::Result<()> {
    s.in_one_commit(&op(), |s| {
        for pool in pools {
            let gpus = (f64::from(pool.gpus - pool.base_busy) * terms.offer_share).floor() as u32;
            let list = s.state().pools[&pool.id].price_fen_per_gpu_hour.fen();
            let reserve = (list * i64::from(terms.reserve_bp) / 10_000).max(1);
            if gpus == 0 {
                continue;
            }
            let input = OfferInput {
                pool: pool.id,
                gpus,
                opens_at_s: now,
                closes_at_s: now + suanli_service::market::OFFER_WINDOW_MAX_S - 60,
                reserve_fen_per_gpu_hour: Fen::new(reserve),
            };
            s.post_offer(&op(), pool.provider, &input)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// The day's clearing: a round of the scheduling loop, then the market. The orders either placed
/// start at once. Answers how many.
fn clear(
    s: &mut Service,
    running: &mut Vec<Running>,
    result: &mut VariantResult,
    clock: &ManualClock,
) -> anyhow::Result<u64> {
    let started = std::time::Instant::now();
    let (round, clearing) = s.run_clearing(&op())?;
    if let Some(market) = &mut result.market {
        market.clearing_ms += started.elapsed().as_millis() as u64;
    }
    let mut orders: Vec<OrderId> = round.placed.iter().map(|(_, order)| *order).collect();
    orders.extend(clearing.trades.iter().map(|t| t.order));
    if let Some(market) = &mut result.market
        && clearing.clearing > 0
    {
        market.clearings += 1;
        market.trades += clearing.trades.len() as u64;
        market.gpu_hours += clearing.trades.iter().map(|t| f64::from(t.gpus) * f64::from(t.hours)).sum::<f64>();
        market.paid_fen += clearing.trades.iter().map(|t| t.paid_fen.fen()).sum::<i64>();
        market.welfare_fen += clearing.welfare_fen;
        market.lp_welfare_fen += clearing.lp_welfare_fen;
        market.gap_bp_max = market.gap_bp_max.max(clearing.gap_bp);
    }
    for chunk in orders.chunks(GROUP_ORDERS) {
        s.in_one_commit(&op(), |s| {
            for &order in chunk {
                running.push(start(s, order, clock)?);
            }
            Ok(())
        })?;
    }
    result.orders += orders.len() as u64;
    Ok(orders.len() as u64)
}

/// Each pool's busy GPUs at noon: its base load plus the orders running on it, sent signed-free
/// through the service (the simulation is the provider).
fn telemetry(
    s: &mut Service,
    pools: &[SimPool],
    running: &[Running],
    noon: i64,
    m: u32,
    sums: &mut [[i64; 2]; 4],
    month: &mut [[i64; 2]; 2],
) -> anyhow::Result<()> {
    let mut by_provider: BTreeMap<ProviderId, Vec<UtilizationInput>> = BTreeMap::new();
    let mut ordered: BTreeMap<PoolId, u32> = BTreeMap::new();
    for r in running.iter().filter(|r| noon >= r.started_s && noon < r.started_s + i64::from(r.hours) * 3_600) {
        *ordered.entry(r.pool).or_default() += r.gpus;
    }
    for pool in pools {
        let busy = (pool.base_busy + ordered.get(&pool.id).copied().unwrap_or(0)).min(pool.gpus);
        by_provider.entry(pool.provider).or_default().push(UtilizationInput {
            pool: pool.id,
            at_s: noon,
            busy_gpus: busy,
        });
        let slot = match (pool.west, m == 0) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        sums[slot][0] += i64::from(busy);
        sums[slot][1] += i64::from(pool.gpus);
        let this = &mut month[usize::from(!pool.west)];
        this[0] += i64::from(busy);
        this[1] += i64::from(pool.gpus);
    }
    for (provider, samples) in by_provider {
        s.record_utilization(&op(), provider, &samples)?;
    }
    Ok(())
}

/// Statements of `month` for every provider that has usage in it, issued and approved.
fn statements(s: &mut Service, program: ProgramId, pools: &[SimPool], month: YearMonth) -> anyhow::Result<()> {
    let mut providers: Vec<ProviderId> = pools.iter().map(|p| p.provider).collect();
    providers.dedup();
    for provider in providers {
        if let Ok(statement) = s.issue_statement(&op(), provider, program, month) {
            s.approve_statement(&op(), statement)?;
        }
    }
    Ok(())
}
