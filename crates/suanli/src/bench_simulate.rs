//! `suanli bench simulate`: one variant of a programme year at a chosen scale, timed: orders,
//! usage records and telemetry samples through the real service in-process.

use std::process::ExitCode;

use crate::simulate::scenario::{Demand, Scenario, Variant};

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
}

pub fn simulate(options: &SimulateOptions) -> anyhow::Result<ExitCode> {
    let scenario = Scenario {
        name: "bench".into(),
        question: "How fast does a programme year run?".into(),
        seed: 1,
        months: options.months,
        program: "shanghai-compute".into(),
        enterprises: options.enterprises,
        demand: Demand { gpus: 1, gpu_hours_min: 20, gpu_hours_max: 200, orders_per_month: 3, ..Demand::default() },
        variants: vec![Variant {
            name: "national".into(),
            subsidy: true,
            // A budget and caps large enough that every enterprise keeps ordering all year.
            enterprise_cap_fen: Some(100_000_00),
            budget_fen: Some(1_000_000_000_000_00),
            ..Variant::default()
        }],
    };
    let program = include_str!("../../../programs/shanghai-compute.toml");
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
    Ok(ExitCode::SUCCESS)
}
