//! `suanli bench ledger`: the apply loop in memory and durable in SQLite.
//!
//! The workload is a voucher programme's spending: 1,000 voucher accounts that may not go below
//! zero pay 1,000 provider accounts. A record is one transfer; one in four is a hold that the next
//! record posts, as orders do. Events are built before the clock starts, so only applying (and,
//! for SQLite, committing) is timed.

use std::process::ExitCode;

use anyhow::Context;
use std::time::Instant;

use suanli_ledger::{AccountFlags, BATCH_EVENTS_MAX, Event, Ledger, NewAccount, Outcome, Transfer, TransferFlags};
use suanli_store::{Durable, FsyncMode, SqliteStore};

#[derive(clap::Args)]
pub struct LedgerOptions {
    /// Records applied in memory.
    #[arg(long, default_value_t = 4_000_000)]
    records_in_memory: u64,
    /// Records committed to SQLite for each batch size.
    #[arg(long, default_value_t = 400_000)]
    records_sqlite: u64,
    /// Batch sizes to measure, comma-separated (at most 8,190).
    #[arg(long, value_delimiter = ',', default_value = "1000,4000,8000")]
    batch_sizes: Vec<usize>,
}

const LEDGER: u32 = 156;
const VOUCHERS: u128 = 1_000;
const PROVIDERS: u128 = 1_000;
const SOURCE: u128 = 1;

fn setup_events() -> Vec<Vec<Event>> {
    let account = |id, flags| Event::CreateAccount(NewAccount { id, ledger: LEDGER, code: 1, flags, user_data: 0 });
    let mut events = vec![account(SOURCE, AccountFlags::empty())];
    for v in 0..VOUCHERS {
        events.push(account(voucher(v), AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS));
        events.push(account(provider(v), AccountFlags::empty()));
    }
    let funding = (0..VOUCHERS).map(|v| {
        Event::CreateTransfer(Transfer {
            id: 1 + v,
            debit_account_id: SOURCE,
            credit_account_id: voucher(v),
            amount: i64::MAX / 4 / VOUCHERS as i64,
            ledger: LEDGER,
            code: 1,
            ..Transfer::default()
        })
    });
    events.extend(funding);
    events.chunks(BATCH_EVENTS_MAX).map(<[Event]>::to_vec).collect()
}

fn voucher(index: u128) -> u128 {
    1_000 + index
}

fn provider(index: u128) -> u128 {
    1_000 + VOUCHERS + index % PROVIDERS
}

/// `count` records from id `first` on, in batches of `batch_size`.
fn workload(first: u128, count: u64, batch_size: usize) -> Vec<Vec<Event>> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64; // a fixed seed: the same workload every run
    let events: Vec<Event> = (0..u128::from(count))
        .map(|index| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let id = first + index;
            let v = u128::from(state) % VOUCHERS;
            let base = Transfer {
                id,
                debit_account_id: voucher(v),
                credit_account_id: provider(v),
                amount: (state % 100_000) as i64 + 1,
                ledger: LEDGER,
                code: 2,
                ..Transfer::default()
            };
            Event::CreateTransfer(match index % 4 {
                2 => Transfer { flags: TransferFlags::PENDING, timeout_s: 3_600, ..base },
                3 => Transfer { id, pending_id: id - 1, flags: TransferFlags::POST_PENDING, ..Transfer::default() },
                _ => base,
            })
        })
        .collect();
    events.chunks(batch_size).map(<[Event]>::to_vec).collect()
}

fn check_all_ok(outcomes: &[Outcome]) {
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Ok(_))), "the benchmark workload must apply cleanly");
}

pub fn ledger(options: &LedgerOptions) -> anyhow::Result<ExitCode> {
    if let Some(size) = options.batch_sizes.iter().find(|&&s| s == 0 || s > BATCH_EVENTS_MAX) {
        anyhow::bail!("--batch-sizes: {size} is not between 1 and {BATCH_EVENTS_MAX}");
    }
    println!("machine: {} logical cores, {}", std::thread::available_parallelism().map_or(0, |n| n.get()), cpu_model());

    let transfers_max = options.records_in_memory as usize + VOUCHERS as usize;
    let mut ledger = Ledger::with_capacity(1 + 2 * VOUCHERS as usize, transfers_max);
    for batch in setup_events() {
        check_all_ok(&ledger.apply(1, &batch)?.outcomes);
    }
    let batches = workload(1_000_000, options.records_in_memory, BATCH_EVENTS_MAX);
    let started = Instant::now();
    for (index, batch) in batches.iter().enumerate() {
        check_all_ok(&ledger.apply(2 + index as u64, batch)?.outcomes);
    }
    let seconds = started.elapsed().as_secs_f64();
    ledger.check_invariants()?;
    println!(
        "ledger_apply_in_memory: {:.0} records/s ({} records, batch {BATCH_EVENTS_MAX}, maps sized up front)",
        options.records_in_memory as f64 / seconds,
        options.records_in_memory
    );

    for &batch_size in &options.batch_sizes {
        let dir = tempfile::tempdir()?;
        let mut durable = Durable::open(SqliteStore::open(&dir.path().join("bench.db"), FsyncMode::Full)?)?;
        for batch in setup_events() {
            check_all_ok(&durable.apply(1, &batch)?.outcomes);
        }
        let batches = workload(1_000_000, options.records_sqlite, batch_size);
        let started = Instant::now();
        for (index, batch) in batches.iter().enumerate() {
            check_all_ok(&durable.apply(2 + index as u64, batch)?.outcomes);
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "ledger_apply_sqlite: {:.0} records/s ({} records, batch {batch_size}, {}, WAL)",
            options.records_sqlite as f64 / seconds,
            options.records_sqlite,
            FsyncMode::Full.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

#[derive(clap::Args)]
pub struct UsageOptions {
    /// Usage records recorded for each batch size.
    #[arg(long, default_value_t = 200_000)]
    records: usize,
    /// Records per `record_usage` call (one commit each), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "500,1000,4000")]
    batch_sizes: Vec<usize>,
}

/// `suanli bench usage`: usage records through the service, each priced, split into voucher and
/// enterprise parts, posted to the ledger and logged, committed in SQLite with
/// `synchronous=FULL`. 100 orders on two providers share the records; building them is not timed.
/// After the run the database is reopened and the time to replay its audit log is printed too.
pub fn usage(options: &UsageOptions) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;

    use suanli_service::model::{UsageInput, UsageOutcome};
    use suanli_service::{Actor, Service};

    let limit = suanli_service::service::USAGE_BATCH_RECORDS_MAX;
    if let Some(size) = options.batch_sizes.iter().find(|&&s| s == 0 || s > limit) {
        anyhow::bail!("--batch-sizes: {size} is not between 1 and {limit}");
    }
    println!("machine: {} logical cores, {}", std::thread::available_parallelism().map_or(0, |n| n.get()), cpu_model());
    for &batch_size in &options.batch_sizes {
        let dir = tempfile::tempdir()?;
        let (mut service, clock, orders) = usage_world(dir.path())?;
        let path = dir.path().join("bench.db");
        let operator = Actor::operator();
        let started_at = service.now_s();
        let per_order = options.records.div_ceil(BENCH_ORDERS);
        // Group records by provider so each call carries one provider's records, as a provider
        // would send them.
        let mut by_provider: Vec<(suanli_domain::ProviderId, Vec<UsageInput>)> =
            orders.iter().take(2).map(|&(provider, _)| (provider, Vec::new())).collect();
        for minute in 0..per_order {
            for (n, &(_, order)) in orders.iter().enumerate() {
                by_provider[n % 2].1.push(UsageInput {
                    id: format!("{n}-{minute}"),
                    order,
                    gpu_seconds: 8 * 60 - (minute % 60) as i64,
                    period_start_s: started_at + minute as i64 * 60,
                    period_end_s: started_at + (minute as i64 + 1) * 60,
                });
            }
        }
        clock.set(started_at + per_order as i64 * 60 + 1);
        let total: usize = by_provider.iter().map(|(_, r)| r.len()).sum();
        let timer = Instant::now();
        for (provider, records) in &by_provider {
            for chunk in records.chunks(batch_size) {
                let outcomes = service.record_usage(&operator, *provider, chunk)?;
                anyhow::ensure!(
                    outcomes.iter().all(|o| matches!(o, UsageOutcome::Recorded { .. })),
                    "the benchmark workload must record cleanly"
                );
            }
        }
        let seconds = timer.elapsed().as_secs_f64();
        println!(
            "service_usage_sqlite: {:.0} records/s ({total} records, batch {batch_size}, {}, WAL; priced, split, posted, logged)",
            total as f64 / seconds,
            FsyncMode::Full.as_str()
        );
        anyhow::ensure!(service.check_books().is_empty(), "the books must agree after the benchmark");
        let entries = service.durable().log_count();
        drop(service);
        let timer = Instant::now();
        let reopened = Service::open(&path, Arc::new(clock.clone()))?;
        let seconds = timer.elapsed().as_secs_f64();
        println!(
            "service_replay: {:.0} log entries/s ({entries} entries, open + replay + ledger restore)",
            entries as f64 / seconds
        );
        drop(reopened);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct PlaceBenchOptions {
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
    orders: Vec<usize>,
    /// The random batches' seed: the same seed, the same batches.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Wall-clock budget per solve.
    #[arg(long, default_value_t = 1_000)]
    solve_ms_max: u64,
}

/// `suanli bench place`: seeded batches on the default 10-cluster network, solved within the
/// budget; prints orders/s, solve time, gap to the lower bound and how many orders were placed.
pub fn place(options: &PlaceBenchOptions) -> anyhow::Result<ExitCode> {
    use suanli_placement::network::seeded_batch;
    use suanli_placement::{Limits, solve};

    println!("machine: {} logical cores, {}", std::thread::available_parallelism().map_or(0, |n| n.get()), cpu_model());
    for &count in &options.orders {
        let problem = seeded_batch(options.seed, count);
        let free: u64 = problem.pools.iter().map(|p| u64::from(p.gpus_free)).sum();
        let asked: u64 = problem.orders.iter().map(|o| u64::from(o.gpus)).sum();
        let timer = Instant::now();
        let solution = solve(&problem, &Limits { solve_ms_max: options.solve_ms_max, ..Limits::default() });
        let seconds = timer.elapsed().as_secs_f64();
        let placed = solution.pool_of.iter().filter(|p| p.is_some()).count();
        println!(
            "place: {count} orders in {:.0} ms ({:.0} orders/s), gap {:.4}% (objective {} fen, bound {} fen), \
             {placed} placed, {asked} GPUs asked of {free} free, seed {}",
            seconds * 1e3,
            count as f64 / seconds,
            solution.gap() * 100.0,
            solution.objective_fen,
            solution.lower_bound_fen,
            options.seed
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Orders in the usage benchmarks' world.
const BENCH_ORDERS: usize = 100;

/// The usage benchmarks' world in a fresh database at `dir`: the shipped Shanghai programme, two
/// providers (each with a pool), and 100 enterprises each with a ¥1,000,000 voucher and one
/// running order of 8 GPUs, alternating between the providers.
/// The service, its clock, and each order with its provider.
type UsageWorld =
    (suanli_service::Service, suanli_service::ManualClock, Vec<(suanli_domain::ProviderId, suanli_domain::OrderId)>);

fn usage_world(dir: &std::path::Path) -> anyhow::Result<UsageWorld> {
    usage_world_at(&dir.join("bench.db").display().to_string(), BENCH_ORDERS)
}

/// The same world in the (empty) database a URL names: a path or `postgres://…`.
pub(crate) fn usage_world_at(database: &str, orders_count: usize) -> anyhow::Result<UsageWorld> {
    use std::sync::Arc;

    use suanli_domain::{ApplicantKind, Fen, RegionCode, Uscc};
    use suanli_service::calendar::shanghai_midnight;
    use suanli_service::model::{OperatorKind, Purpose};
    use suanli_service::{Actor, EnterpriseInput, ManualClock, OrderInput, PoolInput, Service, SiteSpec};

    let start = shanghai_midnight(2026, 3, 2).expect("a valid date");
    let clock = ManualClock::new(start);
    let mut service = Service::open_database(database, Arc::new(clock.clone()))?;
    anyhow::ensure!(service.durable().log_count() == 0, "the benchmark needs an empty database");
    let operator = Actor::operator();
    let program = service.load_program(&operator, include_str!("../../../programs/shanghai-compute.toml"))?;
    service.open_program(&operator, program)?;
    let mut pools = Vec::new();
    for n in 0..2u32 {
        let region = if n == 0 { "310000" } else { "640500" };
        let provider = service.register_provider(
            &operator,
            Uscc::with_check_characters(&format!("91{region}{:08}", 900 + n))?,
            &format!("provider {n}"),
            OperatorKind::Government,
        )?;
        let site = service.add_site(
            &operator,
            SiteSpec {
                provider,
                name: format!("site {n}"),
                hub: "bench".into(),
                region: RegionCode::parse(region)?,
                latitude: 31.0,
                longitude: 121.0,
                operator: OperatorKind::Government,
                power_price_fen_per_kwh: None,
                pue: None,
            },
        )?;
        let pool = service.add_pool(
            &operator,
            PoolInput {
                site,
                // One domestic pool, so the domestic rate is exercised too.
                chip: if n == 1 { "Ascend-910B" } else { "H100" }.into(),
                gpu_count: 100_000,
                domestic: n == 1,
                price_fen_per_gpu_hour: Fen::new(18_00),
            },
        )?;
        pools.push((provider, pool));
    }
    let mut orders = Vec::new();
    for n in 0..orders_count {
        let enterprise = service.register_enterprise(
            &operator,
            EnterpriseInput {
                uscc: Uscc::with_check_characters(&format!("91310115{:08}", n + 1))?,
                name: format!("enterprise {n}"),
                region: RegionCode::parse("310115")?,
                kind: ApplicantKind::Sme,
                headcount: 100,
                revenue_fen: Fen::from_yuan(10_000_000)?,
                research_projects: Vec::new(),
                related_parties: Vec::new(),
            },
        )?;
        let application = service.create_application(&operator, enterprise, program, Fen::from_yuan(1_000_000)?, "")?;
        service.submit_application(&operator, application)?;
        let voucher = service.approve_application(&operator, application, Fen::from_yuan(1_000_000)?)?;
        let (provider, pool) = pools[n % 2];
        let order = service.place_order(
            &operator,
            OrderInput {
                enterprise,
                voucher,
                pool,
                chip: None,
                gpu_count: 8,
                hours: 1_000,
                purpose: Purpose::Training,
            },
        )?;
        service.start_order(&operator, order)?;
        orders.push((provider, order));
    }
    Ok((service, clock, orders))
}

#[derive(clap::Args)]
pub struct IngestOptions {
    /// Usage records sent in all.
    #[arg(long, default_value_t = 200_000)]
    records: usize,
    /// Records per request.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// An empty database to run on (`postgres://…`); by default a fresh SQLite file.
    #[arg(long)]
    database: Option<String>,
    /// How usage reaches the server: `http` (signed batches POSTed) or `nats` (signed batches
    /// published to a JetStream stream the server consumes).
    #[arg(long, default_value = "http", value_parser = ["http", "nats"])]
    via: String,
    /// The NATS server for `--via nats`; the benchmark makes its own stream and deletes it.
    #[arg(long, env = "SUANLI_NATS", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Run the four paths (HTTP and NATS, on SQLite and on PostgreSQL) one after another and
    /// print them side by side; the PostgreSQL runs make scratch databases on the server this URL
    /// reaches (for example postgres://postgres@127.0.0.1:5432/postgres) and drop them.
    #[arg(long, conflicts_with_all = ["database", "via"])]
    compare: Option<String>,
}

/// The timed part's result: seconds, per-message latencies, records answered ok.
struct Driven {
    seconds: f64,
    latencies: Vec<f64>,
    ok: usize,
    latency_meaning: &'static str,
}

/// `suanli bench ingest`: a server on loopback over a fresh database (`synchronous=FULL`), driven
/// by concurrent clients sending Ed25519-signed usage batches over HTTP. Bodies and signatures
/// are built before the clock starts; what is timed is HTTP, authentication, signature checks,
/// the queue, group commit, and every answer coming back.
pub fn ingest(options: &IngestOptions) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(options.clients > 0, "--clients: must be at least 1");
    anyhow::ensure!(
        (1..=suanli_service::service::USAGE_BATCH_RECORDS_MAX).contains(&options.batch),
        "--batch: must be between 1 and {}",
        suanli_service::service::USAGE_BATCH_RECORDS_MAX
    );
    println!("machine: {} logical cores, {}", std::thread::available_parallelism().map_or(0, |n| n.get()), cpu_model());
    let Some(server) = &options.compare else {
        ingest_once(options, options.database.as_deref(), &options.via)?;
        return Ok(ExitCode::SUCCESS);
    };
    // The four paths one after another, each PostgreSQL run on a scratch database of its own.
    let mut rates = Vec::new();
    for (postgres, via) in [(false, "http"), (false, "nats"), (true, "http"), (true, "nats")] {
        let scratch = postgres.then(|| suanli_store::scratch::ScratchDatabase::create(server)).transpose()?;
        rates.push(ingest_once(options, scratch.as_ref().map(|s| s.url.as_str()), via)?);
    }
    println!("\n| backend | HTTP records/s | NATS records/s | NATS / HTTP |\n|---|---|---|---|");
    for (backend, pair) in ["SQLite (synchronous=FULL)", "PostgreSQL"].iter().zip(rates.chunks(2)) {
        println!("| {backend} | {:.0} | {:.0} | {:.0}% |", pair[0], pair[1], pair[1] / pair[0] * 100.0);
    }
    Ok(ExitCode::SUCCESS)
}

/// One ingestion run over `database` (a fresh SQLite file when `None`) via `via`; prints its
/// figures and answers records per second.
fn ingest_once(options: &IngestOptions, database: Option<&str>, via: &str) -> anyhow::Result<f64> {
    use ed25519_dalek::{Signer, SigningKey};
    use suanli_api::{UsageRecord, Writer};
    use suanli_service::access::{hex, sha256_hex, usage_signing_bytes};
    use suanli_service::calendar::format_timestamp;
    use suanli_service::{Actor, Role};

    let dir = tempfile::tempdir()?;
    let (mut service, clock, orders) = match database {
        Some(database) => usage_world_at(database, BENCH_ORDERS)?,
        None => usage_world(dir.path())?,
    };
    let backend = match database {
        Some(database) if crate::database::is_postgres(database) => "PostgreSQL".to_owned(),
        _ => format!("SQLite {}, WAL", suanli_store::FsyncMode::Full.as_str()),
    };
    let operator = Actor::operator();
    let providers = [orders[0].0, orders[1].0];
    let keys: Vec<SigningKey> = (0..2u8).map(|i| SigningKey::from_bytes(&[7 + i; 32])).collect();
    for (provider, key) in providers.iter().zip(&keys) {
        service.register_provider_key(&operator, *provider, &hex(key.verifying_key().as_bytes()))?;
        service.issue_token(&operator, Role::Provider(*provider), &sha256_hex(&format!("bench-{provider}")))?;
    }
    let started_at = service.now_s();
    let per_order = options.records.div_ceil(BENCH_ORDERS);
    clock.set(started_at + per_order as i64 * 60 + 1);

    // Each client sends the records of its orders, one provider per request, signed.
    let mut work: Vec<Vec<(usize, String, String)>> = vec![Vec::new(); options.clients];
    for (client, requests) in work.iter_mut().enumerate() {
        for (p, provider) in providers.iter().enumerate() {
            let mine: Vec<(usize, suanli_domain::OrderId)> = orders
                .iter()
                .enumerate()
                .filter(|(n, (owner, _))| n % options.clients == client && owner == provider)
                .map(|(n, (_, order))| (n, *order))
                .collect();
            let records: Vec<UsageRecord> = (0..per_order)
                .flat_map(|minute| {
                    mine.iter().map(move |&(n, order)| UsageRecord {
                        id: format!("{n}-{minute}"),
                        order: order.to_string(),
                        gpu_seconds: 8 * 60 - (minute % 60) as i64,
                        period_start: format_timestamp(started_at + minute as i64 * 60),
                        period_end: format_timestamp(started_at + (minute as i64 + 1) * 60),
                    })
                })
                .collect();
            for chunk in records.chunks(options.batch) {
                let inputs: Vec<_> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, r)| r.to_input(i))
                    .collect::<Result<_, _>>()
                    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
                let signature = hex(&keys[p].sign(&usage_signing_bytes(*provider, &inputs)).to_bytes());
                requests.push((p, serde_json::json!({ "records": chunk }).to_string(), signature));
            }
        }
    }
    let total: usize = orders.len() * per_order;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (writer, writer_thread) = Writer::start(service);
    let driven = if via == "nats" {
        let orders: Vec<_> = orders.iter().map(|(_, order)| *order).collect();
        drive_nats(&runtime, &writer, &options.nats, &providers, work, total, orders)?
    } else {
        drive_http(&runtime, &writer, &providers, work)?
    };
    let Driven { seconds, mut latencies, ok, latency_meaning } = driven;
    anyhow::ensure!(ok == total, "{ok} of {total} records answered ok");
    latencies.sort_by(f64::total_cmp);
    let percentile = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize] * 1e3;
    let commits = writer.stats.commits.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "usage_records_per_s: {:.0} ({total} records, {} clients, batch {} per message, {} messages via {}; \
         {latency_meaning} p50 {:.1} ms, p99 {:.1} ms; {commits} group commits, {:.0} records per commit; {backend})",
        total as f64 / seconds,
        options.clients,
        options.batch,
        latencies.len(),
        via.to_uppercase(),
        percentile(0.5),
        percentile(0.99),
        total as f64 / commits.max(1) as f64,
    );
    let problems = runtime.block_on(writer.call(|service| Ok(service.check_books())))??;
    anyhow::ensure!(problems.is_empty(), "the books disagree after the benchmark: {problems:?}");
    drop(writer);
    drop(runtime);
    writer_thread.join().map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    Ok(total as f64 / seconds)
}

/// Signed requests per client: (provider index, JSON body, signature).
type Work = Vec<Vec<(usize, String, String)>>;

/// HTTP: a server on loopback, each client a thread POSTing its batches one after another.
fn drive_http(
    runtime: &tokio::runtime::Runtime,
    writer: &suanli_api::Writer,
    providers: &[suanli_domain::ProviderId; 2],
    work: Work,
) -> anyhow::Result<Driven> {
    let providers = *providers;
    let state = suanli_api::AppState::new(writer.clone());
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(suanli_api::serve(listener, state, async {
        let _ = stopped.await;
    }));

    let timer = Instant::now();
    let threads: Vec<_> = work
        .into_iter()
        .map(|requests| {
            let base = base.clone();
            std::thread::spawn(move || -> anyhow::Result<(Vec<f64>, usize)> {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let mut latencies = Vec::with_capacity(requests.len());
                let mut ok = 0;
                for (p, body, signature) in requests {
                    let sent = Instant::now();
                    let mut response = agent
                        .post(&format!("{base}/api/v1/providers/{}/usage", providers[p]))
                        .header("authorization", &format!("Bearer bench-{}", providers[p]))
                        .header("content-type", "application/json")
                        .header("suanli-signature", &signature)
                        .send(body)?;
                    let text = response.body_mut().read_to_string()?;
                    latencies.push(sent.elapsed().as_secs_f64());
                    anyhow::ensure!(response.status().as_u16() == 200, "status {}: {text}", response.status());
                    ok += text.matches("\"status\":\"ok\"").count();
                }
                Ok((latencies, ok))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut ok = 0;
    for thread in threads {
        let (mine, recorded) = thread.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        latencies.extend(mine);
        ok += recorded;
    }
    let seconds = timer.elapsed().as_secs_f64();
    let _ = stop.send(());
    runtime.block_on(server)??;
    Ok(Driven { seconds, latencies, ok, latency_meaning: "per request" })
}

/// NATS: the server's consumer on a stream of the benchmark's own (deleted afterwards); each client
/// a task publishing its batches with up to 64 awaiting JetStream's confirmation. Timed from the
/// first publish until the writer has committed every record.
fn drive_nats(
    runtime: &tokio::runtime::Runtime,
    writer: &suanli_api::Writer,
    url: &str,
    providers: &[suanli_domain::ProviderId; 2],
    work: Work,
    total: usize,
    orders: Vec<suanli_domain::OrderId>,
) -> anyhow::Result<Driven> {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use suanli_api::nats::{NatsOptions, NatsStats};

    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let unique = format!("{}_{nanos}", std::process::id());
    let mut options = NatsOptions::new(url);
    options.stream = format!("SUANLI_BENCH_{unique}");
    options.subject_prefix = format!("suanli.bench.{unique}");
    options.check().map_err(anyhow::Error::msg).context("--nats")?;
    let stats = Arc::new(NatsStats::default());
    let context = runtime.block_on(async {
        let context = suanli_api::nats::connect(url).await?;
        suanli_api::nats::ensure_stream(&context, &options).await?;
        anyhow::Ok(context)
    })?;
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let consumer = runtime.spawn(suanli_api::nats::consume(
        writer.clone(),
        context.clone(),
        options.clone(),
        stats.clone(),
        async {
            let _ = stopping.await;
        },
    ));
    let applied_before = writer.stats.records_applied.load(Ordering::SeqCst);
    let timer = Instant::now();
    let publishers: Vec<_> = work
        .into_iter()
        .map(|requests| {
            let context = context.clone();
            let subjects = [options.subject(providers[0]), options.subject(providers[1])];
            runtime.spawn(async move {
                let mut latencies = Vec::with_capacity(requests.len());
                let mut unconfirmed = std::collections::VecDeque::new();
                for (p, body, signature) in requests {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Suanli-Signature", signature.as_str());
                    let sent = Instant::now();
                    let confirmation = context.publish_with_headers(subjects[p].clone(), headers, body.into()).await?;
                    unconfirmed.push_back((sent, confirmation));
                    if unconfirmed.len() >= 64 {
                        let (sent, confirmation) = unconfirmed.pop_front().expect("the queue is not empty");
                        confirmation.await?;
                        latencies.push(sent.elapsed().as_secs_f64());
                    }
                }
                for (sent, confirmation) in unconfirmed {
                    confirmation.await?;
                    latencies.push(sent.elapsed().as_secs_f64());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for publisher in publishers {
        latencies.extend(runtime.block_on(publisher)??);
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(600);
    while writer.stats.records_applied.load(Ordering::SeqCst) - applied_before < total as u64 {
        anyhow::ensure!(stats.rejected.load(Ordering::SeqCst) == 0, "the server rejected a benchmark message");
        anyhow::ensure!(Instant::now() < deadline, "the server did not commit every record in 600 s");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let seconds = timer.elapsed().as_secs_f64();
    let _ = stop.send(());
    runtime.block_on(consumer)??;
    runtime.block_on(context.delete_stream(&options.stream)).map_err(|e| anyhow::anyhow!("nats: {e}"))?;
    let ok = runtime.block_on(writer.call(move |service| {
        orders.iter().map(|order| Ok(service.order(*order)?.usage_records as usize)).sum::<Result<usize, _>>()
    }))??;
    Ok(Driven { seconds, latencies, ok, latency_meaning: "per message until stored" })
}
