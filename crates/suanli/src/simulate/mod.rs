//! `suanli simulate SCENARIO`: a seeded, deterministic run of a programme's year through the real
//! service in-process, once per policy variant, with the outcome report of each, a table side
//! by side, CSV, an SVG chart and the variants' databases (each passes `suanli audit verify`).

mod output;
pub mod scenario;
pub mod world;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use scenario::Scenario;
use world::VariantResult;

/// What a run produced.
#[derive(serde::Serialize)]
pub struct Run {
    pub scenario: String,
    pub question: String,
    pub seed: u64,
    pub months: u32,
    pub seconds: f64,
    pub variants: Vec<VariantResult>,
}

/// The programme a scenario names: a shipped programme's key, or a file beside the scenario.
fn program_text(scenario: &Scenario, dir: &Path) -> anyhow::Result<String> {
    if let Some(source) = crate::demo::PROGRAMS.iter().find(|s| s.contains(&format!("key = \"{}\"", scenario.program)))
    {
        return Ok((*source).to_owned());
    }
    let path = dir.join(&scenario.program);
    std::fs::read_to_string(&path).with_context(|| {
        format!("program: {:?} is neither a shipped programme's key nor a readable file", scenario.program)
    })
}

/// Runs every variant of the scenario at `path`, writing databases and outputs under `out`.
pub fn simulate_file(path: &Path, out: &Path) -> anyhow::Result<Run> {
    let text = std::fs::read_to_string(path).with_context(|| format!("scenario: cannot read {}", path.display()))?;
    let scenario = Scenario::parse(&text)?;
    let program = program_text(&scenario, path.parent().unwrap_or(Path::new(".")))?;
    simulate(&scenario, &program, out)
}

pub fn simulate(scenario: &Scenario, program: &str, out: &Path) -> anyhow::Result<Run> {
    std::fs::create_dir_all(out).with_context(|| format!("--out: cannot create {}", out.display()))?;
    let started = std::time::Instant::now();
    let variants = scenario
        .variants
        .iter()
        .map(|variant| world::run(scenario, program, variant, out).with_context(|| format!("variant {}", variant.name)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Run {
        scenario: scenario.name.clone(),
        question: scenario.question.clone(),
        seed: scenario.seed,
        months: scenario.months,
        seconds: started.elapsed().as_secs_f64(),
        variants,
    })
}

/// The command: runs, prints the comparison (or JSON), writes CSV, SVG and JSON beside the
/// databases.
pub fn command(path: &Path, out: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let out = out.unwrap_or_else(|| PathBuf::from("suanli-simulation"));
    let run = simulate_file(path, &out)?;
    let name = &run.scenario;
    std::fs::write(out.join(format!("{name}.csv")), output::csv(&run))?;
    std::fs::write(out.join(format!("{name}-months.csv")), output::months_csv(&run))?;
    std::fs::write(out.join(format!("{name}.svg")), output::svg(&run))?;
    std::fs::write(out.join(format!("{name}.json")), serde_json::to_string_pretty(&run)?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        println!("{}", output::table(&run));
        println!(
            "Written to {}: {name}.csv, {name}-months.csv, {name}.svg, {name}.json, and one database per variant \
             (suanli audit verify --database {}/<variant>.db)",
            out.display(),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
