//! `suanli demo`: a Shanghai voucher programme from funding to settlement, on a fresh embedded
//! database, through the same service calls the CLI makes, ending with the audit.
//!
//! The demo loads the seven shipped programme files, opens Shanghai's, registers three
//! enterprises and two providers, reviews the applications (one refused as ineligible, one over
//! its cap), places orders in the east and the west, records 10,000 metered usage records
//! (with retries and a forged replay), settles the month and expires the vouchers. Its clock is
//! simulated and starts on 2 March 2026, so the output is the same on every run.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use suanli_domain::{ApplicantKind, Fen, RegionCode, Uscc};
use suanli_service::calendar::{YearMonth, format_timestamp, shanghai_midnight};
use suanli_service::model::{OperatorKind, Purpose, UsageInput, UsageOutcome};
use suanli_service::{Actor, EnterpriseInput, ManualClock, OrderInput, PoolInput, PoolRequest, Service, SiteSpec};
use suanli_store::{SqliteStore, StoreError};

/// The shipped programme files, built into the binary so the demo runs from any directory.
const PROGRAMS: [&str; 7] = [
    include_str!("../../../programs/shanghai-compute.toml"),
    include_str!("../../../programs/shanghai-data.toml"),
    include_str!("../../../programs/beijing.toml"),
    include_str!("../../../programs/chengdu.toml"),
    include_str!("../../../programs/shandong.toml"),
    include_str!("../../../programs/shenzhen.toml"),
    include_str!("../../../programs/ningbo.toml"),
];

const USAGE_RECORDS_PER_ORDER: usize = 5_000;

fn uscc(region: &str, serial: &str) -> anyhow::Result<Uscc> {
    Ok(Uscc::with_check_characters(&format!("91{region}{serial}"))?)
}

fn enterprise_input(
    serial: &str,
    name: &str,
    kind: ApplicantKind,
    revenue_yuan: i64,
    research: &[&str],
) -> anyhow::Result<EnterpriseInput> {
    Ok(EnterpriseInput {
        uscc: uscc("310115", serial)?,
        name: name.to_owned(),
        region: RegionCode::parse("310115")?,
        kind,
        headcount: 120,
        revenue_fen: Fen::from_yuan(revenue_yuan)?,
        research_projects: research.iter().map(|r| r.to_string()).collect(),
        related_parties: Vec::new(),
    })
}

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    replace_earlier_demo(path)?;
    let start = shanghai_midnight(2026, 3, 2).expect("a valid date") + 9 * 3600;
    let clock = ManualClock::new(start);
    let mut service = Service::open(path, Arc::new(clock.clone()))?;
    let operator = Actor::parse("operator:demo")?;
    println!("Suanli demo on {} (simulated clock from {})\n", path.display(), format_timestamp(start));

    println!("1. Load the seven shipped programmes and open Shanghai's compute vouchers");
    for source in PROGRAMS {
        service.load_program(&operator, source)?;
    }
    let program = service.find_program("shanghai-compute")?;
    let authority = Actor::parse(&format!("authority:{}", service.program(program)?.authority))?;
    service.open_program(&authority, program)?;
    let terms = &service.program(program)?.terms;
    println!(
        "   {} loaded; {program} {} funded with {} at {} of rental fees\n",
        service.state().programs.len(),
        terms.name,
        service.program(program)?.budget_remaining_fen,
        terms.subsidy_rate_bp
    );

    println!("2. Three enterprises register and apply");
    let model_lab = service.register_enterprise(
        &operator,
        enterprise_input("MA1FL001", "Pudong Model Lab", ApplicantKind::Sme, 12_000_000, &[])?,
    )?;
    let tiny = service.register_enterprise(
        &operator,
        enterprise_input("MA1FL002", "Tiny Start-up", ApplicantKind::Startup, 800_000, &[])?,
    )?;
    let institute = service.register_enterprise(
        &operator,
        enterprise_input(
            "MA1FL003",
            "Zhangjiang Vision Institute",
            ApplicantKind::ResearchInstitute,
            2_000_000,
            &["STCSM 2026 multimodal model project"],
        )?,
    )?;
    let apply = |service: &mut Service, enterprise, yuan: i64| -> anyhow::Result<_> {
        let actor = Actor::parse(&format!("enterprise:{enterprise}"))?;
        let application = service.create_application(&actor, enterprise, program, Fen::from_yuan(yuan)?, "")?;
        clock.advance(600);
        service.submit_application(&actor, application)?;
        Ok(application)
    };
    let app_lab = apply(&mut service, model_lab, 2_000_000)?;
    let app_tiny = apply(&mut service, tiny, 1_000_000)?;
    let app_institute = apply(&mut service, institute, 1_500_000)?;
    for (name, verdict) in service.eligibility(tiny, program)? {
        println!("   {tiny} {name}: {} — {}", if verdict.passed { "pass" } else { "FAIL" }, verdict.reason);
    }
    println!();

    println!("3. The authority reviews");
    match service.approve_application(&authority, app_tiny, Fen::from_yuan(1_000_000)?) {
        Ok(_) => anyhow::bail!("the demo expects the ineligible application to be refused"),
        Err(error) => println!("   approve {app_tiny}: refused, {error}"),
    }
    service.reject_application(&authority, app_tiny, "below the revenue threshold and no research project")?;
    let voucher_lab = service.approve_application(&authority, app_lab, Fen::from_yuan(2_000_000)?)?;
    let voucher_institute = service.approve_application(&authority, app_institute, Fen::from_yuan(1_500_000)?)?;
    println!("   approve {app_lab}: issued {voucher_lab} of ¥2,000,000.00");
    println!("   approve {app_institute}: issued {voucher_institute} of ¥1,500,000.00");
    let again = apply(&mut service, institute, 1_000_000)?;
    match service.approve_application(&authority, again, Fen::from_yuan(1_000_000)?) {
        Ok(_) => anyhow::bail!("the demo expects the over-cap application to be refused"),
        Err(error) => println!("   approve {again}: refused, {error}"),
    }
    service.reject_application(&authority, again, "over the per-enterprise cap")?;
    println!("   budget left {}\n", service.program(program)?.budget_remaining_fen);

    println!("4. Two providers: a government-run site in Shanghai, a state-owned one in the Ningxia hub");
    let east = service.register_provider(
        &operator,
        uscc("310000", "MA1GW001")?,
        "Shanghai Lingang Compute",
        OperatorKind::Government,
    )?;
    let west = service.register_provider(
        &operator,
        uscc("640500", "MA1GW002")?,
        "Zhongwei Cloud Valley",
        OperatorKind::StateOwned,
    )?;
    let east_site = service.add_site(
        &operator,
        SiteSpec {
            provider: east,
            name: "Lingang AI campus".into(),
            hub: "Yangtze River Delta".into(),
            region: RegionCode::parse("310000")?,
            latitude: 30.9,
            longitude: 121.9,
            operator: OperatorKind::Government,
            power_price_fen_per_kwh: Some(Fen::new(65)),
            pue: Some(1.25),
        },
    )?;
    let west_site = service.add_site(
        &operator,
        SiteSpec {
            provider: west,
            name: "Zhongwei data centre cluster".into(),
            hub: "Ningxia".into(),
            region: RegionCode::parse("640500")?,
            latitude: 37.5,
            longitude: 105.2,
            operator: OperatorKind::StateOwned,
            power_price_fen_per_kwh: Some(Fen::new(38)),
            pue: Some(1.2),
        },
    )?;
    let east_pool = service.add_pool(
        &operator,
        PoolInput {
            site: east_site,
            chip: "H100".into(),
            gpu_count: 512,
            domestic: false,
            price_fen_per_gpu_hour: Fen::new(18_00),
        },
    )?;
    let west_pool = service.add_pool(
        &operator,
        PoolInput {
            site: west_site,
            chip: "Ascend-910B".into(),
            gpu_count: 1024,
            domestic: true,
            price_fen_per_gpu_hour: Fen::new(12_00),
        },
    )?;
    println!("   {east_pool}: 512 × H100 at ¥18.00/GPU-hour; {west_pool}: 1024 × Ascend-910B (domestic) at ¥12.00\n");

    println!("5. Quotes and orders (the price is locked and the voucher's share held)");
    let lab_order = OrderInput {
        enterprise: model_lab,
        voucher: voucher_lab,
        pool: east_pool,
        chip: Some("H100".into()),
        gpu_count: 64,
        hours: 60,
        purpose: Purpose::Training,
    };
    let quote = service.quote(&lab_order)?;
    println!(
        "   quote for {model_lab}: 64 × H100 for 60 h, list {}, voucher {}, enterprise {}",
        quote.list_cost_fen, quote.voucher_share_fen, quote.enterprise_share_fen
    );
    let lab_actor = Actor::parse(&format!("enterprise:{model_lab}"))?;
    let order_lab = service.place_order(&lab_actor, lab_order)?;
    let institute_actor = Actor::parse(&format!("enterprise:{institute}"))?;
    // The institute names no pool: the placement engine chooses among those its programme allows.
    let request = PoolRequest {
        enterprise: institute,
        voucher: voucher_institute,
        chip: None,
        gpu_count: 32,
        hours: 200,
        purpose: Purpose::FineTuning,
    };
    let choice = service.choose_pool(&request)?;
    println!(
        "   engine's choice for {institute}: {} (list {}, under-used-site credit {} fen); alternatives: {}",
        choice.chosen.pool,
        choice.chosen.list_cost_fen,
        choice.underused_credit_fen,
        choice.alternatives.iter().map(|q| format!("{} at {}", q.pool, q.list_cost_fen)).collect::<Vec<_>>().join(", ")
    );
    let order_institute = service.place_order_anywhere(&institute_actor, &request)?;
    let east_actor = Actor::parse(&format!("provider:{east}"))?;
    let west_actor = Actor::parse(&format!("provider:{west}"))?;
    service.start_order(&east_actor, order_lab)?;
    service.start_order(&west_actor, order_institute)?;
    let started = service.now_s();
    for id in [order_lab, order_institute] {
        let order = service.order(id)?;
        println!("   {id} on {} running: hold {} at {}", order.pool, order.hold_fen, order.quote.rate_bp);
    }
    println!();

    println!("6. Providers report {} one-minute usage records", 2 * USAGE_RECORDS_PER_ORDER);
    let records = |order, prefix: &str, gpus: i64, seed: u64| -> Vec<UsageInput> {
        let mut state = seed;
        (0..USAGE_RECORDS_PER_ORDER)
            .map(|i| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let capacity = gpus * 60;
                UsageInput {
                    id: format!("{prefix}-{i:05}"),
                    order,
                    gpu_seconds: capacity * 7 / 10 + (state >> 33) as i64 % (capacity * 3 / 10 + 1),
                    period_start_s: started + i as i64 * 60,
                    period_end_s: started + (i as i64 + 1) * 60,
                }
            })
            .collect()
    };
    let east_records = records(order_lab, "lingang", 64, 1);
    let west_records = records(order_institute, "zhongwei", 32, 2);
    clock.set(started + USAGE_RECORDS_PER_ORDER as i64 * 60 + 1);
    let mut tally = [0usize; 3];
    let mut count = |outcomes: Vec<UsageOutcome>| {
        for outcome in outcomes {
            tally[match outcome {
                UsageOutcome::Recorded { .. } => 0,
                UsageOutcome::Duplicate { .. } => 1,
                UsageOutcome::Refused { .. } => 2,
            }] += 1;
        }
    };
    for chunk in east_records.chunks(1_000) {
        count(service.record_usage(&east_actor, east, chunk)?);
    }
    for chunk in west_records.chunks(1_000) {
        count(service.record_usage(&west_actor, west, chunk)?);
    }
    count(service.record_usage(&east_actor, east, &east_records[..100])?);
    let mut forged = east_records[42].clone();
    forged.gpu_seconds /= 2;
    let forged_outcome = service.record_usage(&east_actor, east, &[forged])?;
    count(forged_outcome.clone());
    println!("   recorded {}, duplicates of retries {}, refused {}", tally[0], tally[1], tally[2]);
    if let Some(UsageOutcome::Refused { code, message, .. }) = forged_outcome.first() {
        println!("   a replay of lingang-00042 with another body: {code}: {message}");
    }
    for id in [order_lab, order_institute] {
        let order = service.order(id)?;
        println!(
            "   {id}: {:.1} GPU-hours, cost {}, voucher paid {}, enterprise paid {}",
            order.gpu_seconds as f64 / 3600.0,
            order.cost_fen,
            order.voucher_paid_fen,
            order.enterprise_paid_fen
        );
    }
    service.complete_order(&east_actor, order_lab)?;
    let released = service.complete_order(&west_actor, order_institute)?;
    println!("   orders completed; {released} of the western hold released to {voucher_institute}\n");

    println!("7. April: March's statements are issued and approved");
    clock.set(shanghai_midnight(2026, 4, 1).expect("a valid date") + 10 * 3600);
    let march = YearMonth { year: 2026, month: 3 };
    for provider in [east, west] {
        let statement = service.issue_statement(&operator, provider, program, march)?;
        service.approve_statement(&authority, statement)?;
        let s = &service.state().statements[&statement];
        println!(
            "   {statement} {provider} {}: voucher total {} ({})",
            s.month, s.voucher_total_fen, s.voucher_total_uppercase
        );
    }
    println!();

    println!("8. September: the vouchers' 365 days have not run out; the sweep waits. Next March it expires them");
    clock.set(shanghai_midnight(2026, 9, 1).expect("a valid date"));
    let early = service.sweep(&operator)?;
    clock.set(shanghai_midnight(2027, 3, 10).expect("a valid date"));
    let report = service.sweep(&operator)?;
    println!(
        "   {} then {} voucher(s) expired; {} returned to the budget",
        early.expired.len(),
        report.expired.len(),
        report.returned_fen
    );
    let p = service.program(program)?;
    println!(
        "   {program}: issued {}, spent {}, returned {}, settled {}, budget left {}\n",
        p.issued_fen, p.spent_fen, p.returned_fen, p.settled_fen, p.budget_remaining_fen
    );
    let entries = service.durable().log_count();
    drop(service);

    println!("suanli audit verify --database {}", path.display());
    let code = crate::audit::verify(path)?;
    println!("\n{entries} audit-log entries");
    Ok(code)
}

/// Removes the database at `path` if it is an earlier demo (a suanli database), so the demo can
/// run again; refuses to touch any other file.
fn replace_earlier_demo(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    match SqliteStore::open_existing(path) {
        Ok(store) => drop(store),
        Err(error @ (StoreError::NotSuanli { .. } | StoreError::Open { .. } | StoreError::Missing { .. })) => {
            return Err(error).context("--database names a file that is not a suanli database; choose another path");
        }
        Err(error) => return Err(error.into()),
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", path.display());
        if Path::new(&file).exists() {
            std::fs::remove_file(&file).with_context(|| format!("removing the earlier demo database {file}"))?;
        }
    }
    Ok(())
}
