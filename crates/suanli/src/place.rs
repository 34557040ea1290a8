//! `suanli place --input batch.json`: one placement batch in the v1 format, answered on stdout;
//! `--explain ORDER` prints why that order went where it did instead.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use suanli_placement::format::{InputV1, check, output};
use suanli_placement::{Limits, explain, solve};

/// The largest batch file read.
const INPUT_BYTES_MAX: u64 = 256 * 1024 * 1024;

#[derive(clap::Args)]
pub struct PlaceOptions {
    /// The batch, as `docs/placement-format.md` v1 JSON; `-` for standard input.
    #[arg(long)]
    input: String,
    /// Print, for this order id, the chosen pool and for every other pool why not.
    #[arg(long)]
    explain: Option<String>,
    /// Wall-clock budget for the solve.
    #[arg(long, default_value_t = 2_000)]
    solve_ms_max: u64,
    /// Batches up to this many orders are solved exactly (within the budget).
    #[arg(long, default_value_t = 16)]
    exact_orders_max: usize,
}

pub fn run(options: &PlaceOptions) -> anyhow::Result<ExitCode> {
    let text = if options.input == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        let path = Path::new(&options.input);
        let size = std::fs::metadata(path).with_context(|| format!("--input: cannot read {}", path.display()))?.len();
        anyhow::ensure!(size <= INPUT_BYTES_MAX, "--input: {} is larger than {INPUT_BYTES_MAX} bytes", path.display());
        std::fs::read_to_string(path).with_context(|| format!("--input: cannot read {}", path.display()))?
    };
    let input: InputV1 = serde_json::from_str(&text).context("--input: not a v1 placement batch")?;
    let problem = check(input).context("--input")?;
    let limits =
        Limits { solve_ms_max: options.solve_ms_max, exact_orders_max: options.exact_orders_max, ..Limits::default() };
    let solution = solve(&problem, &limits);
    match &options.explain {
        Some(id) => {
            let index = problem
                .orders
                .iter()
                .position(|o| &o.id == id)
                .with_context(|| format!("--explain: the batch has no order {id:?}"))?;
            print!("{}", explain(&problem, &solution, index));
        }
        None => println!("{}", serde_json::to_string_pretty(&output(&problem, &solution))?),
    }
    Ok(ExitCode::SUCCESS)
}
