//! `suanli bench simulate`: one variant of a programme year at a chosen scale, timed: orders,
//! usage records and telemetry samples through the real service in-process; with `--market`,
//! Chengdu's programme trading between hub nodes, with a clearing every day.

use std::process::ExitCode;

use crate::simulate::scenario::{Demand, MarketTerms, Scenario, Variant};

#[derive(clap::Args)]
pub struct SimulateOptions {
    /// Synthetic enterprises (each orders three times a month once it holds a voucher).
    #[arg(long, default_value_t = 10_000)]
    enterprises: u32,
    /// Months the programme runs (after a month without it).
    #[arg(long, default_value_t = 12)]
    months: u32,
    /// Where the database goes (a temporary directory by default).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Run the Chengdu market scenario's programme instead (scenarios/market.toml's): orders
    /// submitted to the scheduling loop with a limit, offers posted monthly, a clearing every day.
    #[arg(long)]
    market: bool,
}

pub fn simulate(options: &SimulateOptions) -> anyhow::Result<ExitCode> {
    let scenario = Scenario {
        name: "bench".into(),
        question: "How fast does a programme year run?".into(),
        seed: 1,
        months: options.months,
        program: "shanghai-compute".into(),
        enterprises: options.enterprises,
        demand: match options.market {
            // Chengdu's region holds about 3,000 free GPUs: eight-GPU orders overflow it.
            true => Demand { gpus: 8, gpu_hours_min: 200, gpu_hours_max: 2_000, ..Demand::default() },
            false => {
                Demand { gpus: 1, gpu_hours_min: 20, gpu_hours_max: 200, orders_per_month: 3, ..Demand::default() }
            }
        },
        market: options.market.then_some(MarketTerms {
            offer_share: 0.5,
            reserve_bp: 7_000,
            limit_fen_per_gpu_hour: 2_500,
        }),
        variants: vec![Variant {
            name: "national".into(),
            subsidy: true,
            // A budget and caps large enough that every enterprise keeps ordering all year.
            enterprise_cap_fen: Some(100_000_00),
            budget_fen: Some(1_000_000_000_000_00),
            trade: options.market.then_some(true),
            ..Variant::default()
        }],
    };
    let program = match options.market {
        true => include_str!("../../../scenarios/chengdu-market-program.toml"),
        false => include_str!("../../../programs/shanghai-compute.toml"),
    };
    let dir = tempfile::tempdir()?;
    let out = options.out.clone().unwrap_or_else(|| dir.path().to_owned());
    let run = crate::simulate::simulate(&scenario, program, &out)?;
    let v = &run.variants[0];
    let size = std::fs::metadata(out.join("national.db")).map(|m| m.len()).unwrap_or(0);
    println!(
        "{} enterprises, {} months: {} orders ({} refused), {} usage records, {:.0} GPU-hours in {:.1} s \
         ({:.0} orders/s); database {:.0} MiB",
        v.enterprises,
        options.months,
        v.orders,
        v.orders_refused,
        v.usage_records,
        v.gpu_hours,
        run.seconds,
        v.orders as f64 / run.seconds,
        size as f64 / 1_048_576.0
    );
    if let Some(m) = &v.market {
        println!(
            "market: {} daily clearings with bids, {} trades, {:.0} GPU-hours between hub nodes at a mean {} fen per \
             GPU-hour; welfare {} fen of the LP optimum's {} fen (largest gap {:.2}%); the clearings (rounds included) took \
             {:.1} s",
            m.clearings,
            m.trades,
            m.gpu_hours,
            m.mean_price_fen_per_gpu_hour().unwrap_or(0),
            m.welfare_fen,
            m.lp_welfare_fen,
            f64::from(m.gap_bp_max) / 100.0,
            m.clearing_ms as f64 / 1e3
        );
    }
    Ok(ExitCode::SUCCESS)
}
