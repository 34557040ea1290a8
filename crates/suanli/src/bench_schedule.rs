//! `suanli bench schedule`: order requests through the scheduling loop at scale. The national
//! network of `data/network.csv` (ten clusters, their pools at their list prices and sizes), one
//! open programme, enterprises each holding a voucher, and seeded requests: GPUs, hours or work of
//! a class, the data's hub and size, a latency bound on some. All are submitted, then one round
//! places them together; the round's solver time, gap, placements and refusals are printed.

use std::process::ExitCode;
use std::time::Instant;

use suanli_domain::{ApplicantKind, Fen, RegionCode, Uscc};
use suanli_placement::network::{Rng, clusters};
use suanli_service::model::Purpose;
use suanli_service::{Actor, EnterpriseInput, ManualClock, Needs, PoolRequest, RoundSettings, Service, Work};

#[derive(clap::Args)]
pub struct ScheduleBenchOptions {
    /// Order requests submitted before the round.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Enterprises, each with a voucher (the requests are spread over them).
    #[arg(long, default_value_t = 1_000)]
    enterprises: usize,
    /// The engine's budget for the round.
    #[arg(long, default_value_t = 1_000)]
    solve_ms_max: u64,
    /// The seed of the requests (the same seed, the same requests).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Place by list cost and egress alone, without the policy terms (the under-used-site and
    /// domestic-chip credits).
    #[arg(long)]
    no_policy: bool,
}

const PROGRAM: &str = r#"
key = "bench-national"
name = "A national programme for the scheduling benchmark"
authority = { region = "310000", name = "Benchmark authority" }
budget_fen = 100_000_000_000_00
subsidy_rate_bp = 5000
domestic_chip_rate_bp = 7000
enterprise_cap_fen = 10_000_000_00
voucher_validity_days = 365
applications_open = 2026-01-01
applications_close = 2026-12-31
applicant_kinds = ["sme", "startup"]
purposes = ["training", "inference", "fine_tuning"]
providers = { rule = "any" }
stacking = { allowed = true }
"#;

pub fn schedule(options: &ScheduleBenchOptions) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(options.enterprises > 0, "--enterprises: must be at least 1");
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::new(suanli_service::calendar::shanghai_midnight(2026, 3, 2).expect("a valid date"));
    let mut service = Service::open_with(
        &dir.path().join("bench.db"),
        suanli_store::FsyncMode::Normal,
        std::sync::Arc::new(clock.clone()),
    )?;
    service.set_round_settings(RoundSettings {
        solve_ms_max: options.solve_ms_max,
        search_iterations_max: usize::MAX,
        ..RoundSettings::default()
    });
    if options.no_policy {
        service.set_placement_policy(suanli_placement::Policy::default());
    }
    let op = Actor::operator();
    let program = service.load_program(&op, PROGRAM)?;
    service.open_program(&op, program)?;
    crate::simulate::world::network(&mut service)?;
    let gpus: u64 = service.state().pools.values().map(|p| u64::from(p.gpu_count)).sum();
    let mut vouchers = Vec::new();
    let region = RegionCode::parse("310115")?;
    let usccs = (0..options.enterprises)
        .map(|n| Uscc::with_check_characters(&format!("91310115{:08}", n + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    for chunk in (0..options.enterprises).collect::<Vec<_>>().chunks(500) {
        service.in_one_commit(&op, |s| {
            for &n in chunk {
                let enterprise = s.register_enterprise(
                    &op,
                    EnterpriseInput {
                        uscc: usccs[n],
                        name: format!("enterprise {n}"),
                        region,
                        kind: ApplicantKind::Sme,
                        headcount: 100,
                        revenue_fen: Fen::from_yuan(10_000_000)?,
                        research_projects: Vec::new(),
                        related_parties: Vec::new(),
                    },
                )?;
                let amount = Fen::from_yuan(10_000_000)?;
                let application = s.create_application(&op, enterprise, program, amount, "")?;
                s.submit_application(&op, application)?;
                vouchers.push((enterprise, s.approve_application(&op, application, amount)?));
            }
            Ok(())
        })?;
    }
    // Seeded requests: a third buy work of a class, the rest hours; data in a hub of the network
    // for most, with a latency bound on a quarter.
    let hubs: Vec<String> = clusters().iter().map(|c| c.hub.clone()).collect();
    let classes = suanli_service::work_classes();
    let mut rng = Rng::new(options.seed);
    let requests: Vec<PoolRequest> = (0..options.requests)
        .map(|n| {
            let (enterprise, voucher) = vouchers[n % vouchers.len()];
            let gpu_count = 1 + rng.below(8) as u32;
            let hours = 4 + rng.below(68) as u32;
            let work = (rng.below(3) == 0).then(|| Work {
                class: classes[rng.below(classes.len() as u64) as usize].clone(),
                reference_gpu_hours: gpu_count * hours / 2,
            });
            let origin_hub = (rng.below(5) > 0).then(|| hubs[rng.below(hubs.len() as u64) as usize].clone());
            let rtt_ms_max = origin_hub.as_ref().filter(|_| rng.below(4) == 0).map(|_| 15.0 + rng.below(30) as f64);
            PoolRequest {
                enterprise,
                voucher,
                chip: None,
                gpu_count,
                hours,
                purpose: [Purpose::Training, Purpose::Inference, Purpose::FineTuning][n % 3],
                needs: Needs {
                    work,
                    data_gb: origin_hub.as_ref().map_or(0.0, |_| rng.below(500) as f64),
                    origin_hub,
                    rtt_ms_max,
                },
            }
        })
        .collect();
    let asked: u64 = requests.iter().map(|r| u64::from(r.gpu_count)).sum();
    let timer = Instant::now();
    for chunk in requests.chunks(2_000) {
        service.in_one_commit(&op, |s| {
            for request in chunk {
                s.submit_request(&op, request, None)?;
            }
            Ok(())
        })?;
    }
    let submitted_s = timer.elapsed().as_secs_f64();
    let timer = Instant::now();
    let report = service.run_round(&op)?;
    let round_s = timer.elapsed().as_secs_f64();
    println!(
        "machine: {} logical cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        crate::bench::cpu_model()
    );
    println!(
        "schedule: {} requests ({asked} GPUs asked of {gpus} on {} pools) submitted in {:.2} s ({:.0}/s); one round: \
         solver {} ms, gap {:.2}%, {} placed, {} refused, {} still waiting; the round in all (orders placed, \
         holds booked, decisions stored) {:.2} s; list cost {}, under-used credit {} fen, domestic credit {} fen, \
         egress {} fen",
        options.requests,
        service.state().pools.len(),
        submitted_s,
        options.requests as f64 / submitted_s,
        report.solve_ms,
        f64::from(report.gap_bp) / 100.0,
        report.placed.len(),
        report.refused.len(),
        report.still_waiting,
        round_s,
        report.list_cost_fen,
        report.underused_credit_fen,
        report.domestic_credit_fen,
        report.egress_fen
    );
    Ok(ExitCode::SUCCESS)
}
