//! The `suanli` command line: argument parsing and one module per command.

mod agent;
mod audit;
mod bench;
mod bench_console;
mod bench_history;
mod bench_schedule;
mod bench_simulate;
mod config;
mod crash;
mod database;
mod demo;
mod demo_telemetry;
mod log_cli;
mod lottery_cli;
mod market_cli;
mod place;
mod report;
mod serve;
mod service_args;
mod service_cli;
pub mod simulate;
mod usage_import;
mod usage_publish;
mod usage_send;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use service_cli::Common;

#[derive(Parser)]
#[command(
    name = "suanli",
    version,
    about = "Computing-power voucher programmes and the compute network they are redeemed on"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole system on a fresh embedded database, driven through the HTTP API: programmes,
    /// the national network, a simulated month of applications, orders and signed usage; then a
    /// summary, and it keeps serving.
    Demo {
        /// The database to create: a file (an earlier demo database there is replaced) or an empty
        /// PostgreSQL database (`postgres://…`).
        #[arg(long, default_value = "suanli-demo.db")]
        database: String,
        /// The address to serve on.
        #[arg(long, default_value = "127.0.0.1:8640")]
        listen: String,
        /// Exit after the summary instead of serving.
        #[arg(long)]
        no_serve: bool,
    },
    /// A seeded year of a programme through the real service in-process, once per policy variant
    /// of a scenario file (scenarios/*.toml), compared side by side, with CSV, SVG and JSON.
    Simulate {
        /// The scenario file.
        scenario: std::path::PathBuf,
        /// Where the variants' databases and the outputs go.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Print the whole run as JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Lottery rounds of a programme that allocates by lottery: commit a seed, draw, verify.
    Lottery {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: lottery_cli::LotteryCommand,
    },
    /// What each programme's money achieved: budget, vouchers used and unused, GPU-hours and the
    /// subsidy per GPU-hour by chip, hub and operator, who was served and how concentrated.
    Report {
        #[command(flatten)]
        common: Common,
        /// A programme's id or key [default: every programme].
        program: Option<String>,
        /// One row per group, in fen and seconds, instead of tables.
        #[arg(long)]
        csv: bool,
        /// Days before and after the programme began serving that the load comparison covers.
        #[arg(long, default_value_t = suanli_service::evaluation::WINDOW_DAYS_DEFAULT,
              value_parser = clap::value_parser!(i64).range(1..=366))]
        window_days: i64,
    },
    /// Voucher programmes: load files, list, open, close, finish.
    Program {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: service_cli::ProgramCommand,
    },
    /// Enterprises that apply for vouchers.
    Enterprise {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: service_cli::EnterpriseCommand,
    },
    /// Applications: create, submit, approve, reject, withdraw; eligibility verdicts.
    Application {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: service_cli::ApplicationCommand,
    },
    /// Vouchers: balances, suspension, revocation and the expiry sweep.
    Voucher {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: service_cli::VoucherCommand,
    },
    /// Providers, their data-centre sites and GPU pools.
    Provider {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: service_cli::ProviderCommand,
    },
    /// Compute orders: quote, place, start, complete, cancel.
    Order {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: service_cli::OrderCommand,
    },
    /// The market between hub nodes: capacity offers and their clearings.
    Market {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: market_cli::MarketCommand,
    },
    /// Metered usage from providers.
    Usage {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: service_cli::UsageCommand,
    },
    /// Monthly settlement statements.
    Statement {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: service_cli::StatementCommand,
    },
    /// The hash-chained audit log of every change.
    Log {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: log_cli::LogCommand,
    },
    /// Anomalies kept as evidence (the newest thousand, read from the log): refused usage,
    /// forged signatures, conflicting replays, stacking attempts, throttled logins, related
    /// parties.
    Anomalies {
        #[command(flatten)]
        common: Common,
    },
    /// Serve the HTTP API (JSON under /api/v1, /healthz, /metrics).
    Serve {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        options: serve::ServeOptions,
    },
    /// API tokens: issue (the secret is shown once) and revoke.
    Token {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: serve::TokenCommand,
    },
    /// The national network's hubs and clusters as this deployment's registry: a site must then
    /// name a registered hub, and is verified only near one of its clusters.
    Network {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: serve::NetworkCommand,
    },
    /// Signed heads of the audit log: publish one now (beside a running server, POST
    /// /api/v1/heads instead), or print the platform's public key.
    Heads {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: serve::HeadsCommand,
    },
    /// People who log in to the API with a password.
    User {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: serve::UserCommand,
    },
    /// Place a batch of orders onto GPU pools (docs/placement-format.md, v1), or explain one order.
    Place(place::PlaceOptions),
    /// Copy a whole deployment from the embedded file to PostgreSQL, then audit both.
    Migrate {
        /// The source: a path or sqlite://PATH.
        #[arg(long)]
        from: String,
        /// The target: an empty postgres:// database.
        #[arg(long)]
        to: String,
        /// Print what was copied and both audits as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Check a database.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Measure throughput and print the figures.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Connectors a provider runs beside its own systems.
    Agent {
        #[command(subcommand)]
        command: agent::AgentCommand,
    },
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell
    /// (`suanli completions bash > /etc/bash_completion.d/suanli`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into a directory
    /// (`suanli man | man -l -`).
    Man {
        /// Write suanli.1 and a page per command (suanli-order-place.1, …) here instead.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Tools for the project's own tests.
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Re-derive every balance from the transfers, check every invariant and the journal's hash
    /// chain; with --heads, prove the log a consistent extension of every published head; exit
    /// non-zero on any violation.
    Verify(VerifyArgs),
}

#[derive(Args)]
struct VerifyArgs {
    /// `PATH`, `sqlite://PATH` or `postgres://…` [default: the configuration file's `database`
    /// (./suanli.toml or SUANLI_CONFIG), else suanli.db].
    #[arg(long, env = "SUANLI_DATABASE")]
    database: Option<String>,
    /// Print the figures, the state hash and any violation as one JSON document.
    #[arg(long)]
    json: bool,
    /// A directory of signed heads (as `serve` publishes them, or a witness's copy): the log must
    /// hold every entry each head signed, with the same Merkle root.
    #[arg(long)]
    heads: Option<std::path::PathBuf>,
    /// The platform's public key (64 hex digits) the heads must be signed with [default: the
    /// heads directory's public-key file].
    #[arg(long, requires = "heads")]
    public_key: Option<String>,
}

#[derive(Args)]
struct DatabaseArg {
    /// `PATH`, `sqlite://PATH` or `postgres://…`.
    #[arg(long, env = "SUANLI_DATABASE", default_value = "suanli.db")]
    database: String,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The ledger apply loop in memory and durable in SQLite.
    Ledger(bench::LedgerOptions),
    /// Usage records through the service: priced, split, posted and logged in SQLite.
    Usage(bench::UsageOptions),
    /// Placement of seeded batches on the default 10-cluster network.
    Place(bench::PlaceBenchOptions),
    /// Order requests through the scheduling loop on the national network: submitted, then one
    /// round placing them together.
    Schedule(bench_schedule::ScheduleBenchOptions),
    /// Signed usage batches over HTTP from concurrent clients into a server on loopback.
    Ingest(bench::IngestOptions),
    /// A real server carried to millions of usage records: restart, memory, reads beside
    /// ingestion, audit time, at each milestone.
    History(bench_history::HistoryOptions),
    /// The console's busiest pages over HTTP on a grown history, alone and while usage streams in.
    Console(bench_console::ConsoleOptions),
    /// A programme year through the real service in-process (`suanli simulate`), timed.
    Simulate(bench_simulate::SimulateOptions),
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Apply numbered batches to a database, printing `ack N` after each commit, until killed
    /// or done. The crash test kills it with SIGKILL at random points.
    CrashWriter {
        /// The SQLite database to write.
        #[arg(long)]
        database: PathBuf,
        /// Batches to commit (a crash test kills the process part-way).
        #[arg(long, default_value_t = 1_000)]
        batches: u64,
        /// Transfers per batch.
        #[arg(long, default_value_t = 500)]
        batch_size: u64,
    },
}

/// Runs the command named on the command line.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { database, listen, no_serve } => demo::run(&database, &listen, !no_serve),
        Command::Program { common, command } => service_cli::program(&common, command),
        Command::Lottery { common, command } => lottery_cli::lottery(&common, command),
        Command::Simulate { scenario, out, json } => simulate::command(&scenario, out, json),
        Command::Report { common, program, csv, window_days } => report::report(&common, program, csv, window_days),
        Command::Enterprise { common, command } => service_cli::enterprise(&common, command),
        Command::Application { common, command } => service_cli::application(&common, command),
        Command::Voucher { common, command } => service_cli::voucher(&common, command),
        Command::Provider { common, command } => service_cli::provider(&common, command),
        Command::Order { common, command } => service_cli::order(&common, command),
        Command::Market { common, command } => market_cli::market(&common, command),
        Command::Usage { common, command } => service_cli::usage(&common, command),
        Command::Statement { common, command } => service_cli::statement(&common, command),
        Command::Log { common, command } => log_cli::log(&common, command),
        Command::Anomalies { common } => log_cli::anomalies(&common),
        Command::Migrate { from, to, json } => serve::migrate(&from, &to, json),
        Command::Audit { command: AuditCommand::Verify(arg) } => {
            let database = match arg.database {
                Some(database) => database,
                None => config::load(None, &config::Config::default())?.database.unwrap_or_else(|| "suanli.db".into()),
            };
            let heads = arg.heads.as_deref().map(|dir| audit::Heads { dir, public_key: arg.public_key.as_deref() });
            audit::verify_against(&database, heads)?.print(arg.json)
        }
        Command::Bench { command: BenchCommand::Ledger(options) } => bench::ledger(&options),
        Command::Bench { command: BenchCommand::Usage(options) } => bench::usage(&options),
        Command::Bench { command: BenchCommand::Place(options) } => bench::place(&options),
        Command::Bench { command: BenchCommand::Schedule(options) } => bench_schedule::schedule(&options),
        Command::Bench { command: BenchCommand::Ingest(options) } => bench::ingest(&options),
        Command::Bench { command: BenchCommand::History(options) } => bench_history::history(&options),
        Command::Bench { command: BenchCommand::Console(options) } => bench_console::console(&options),
        Command::Bench { command: BenchCommand::Simulate(options) } => bench_simulate::simulate(&options),
        Command::Place(options) => place::run(&options),
        Command::Serve { common, options } => serve::serve(&common, &options),
        Command::Token { common, command } => serve::token(&common, command),
        Command::Heads { common, command } => serve::heads(&common, command),
        Command::Network { common, command } => serve::network(&common, command),
        Command::User { common, command } => serve::user(&common, command),
        Command::Agent { command } => agent::run(command),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "suanli", &mut script);
            print_bytes(&script)
        }
        Command::Man { out } => man(out.as_deref()),
        Command::Debug { command: DebugCommand::CrashWriter { database, batches, batch_size } } => {
            crash::writer(&database, batches, batch_size)
        }
    }
}

/// The manual page of `suanli` on standard output, or, given a directory, a page for it and for
/// every command under it (hidden ones left out).
fn man(out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let command = Cli::command();
    let Some(dir) = out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        return print_bytes(&page);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("--out: cannot create {}", dir.display()))?;
    fn write(command: clap::Command, name: String, dir: &Path, written: &mut usize) -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command.clone().display_name(name.clone())).title(name.clone()).render(&mut page)?;
        std::fs::write(&path, page).with_context(|| format!("--out: cannot write {}", path.display()))?;
        *written += 1;
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub.clone(), format!("{name}-{}", sub.get_name()), dir, written)?;
        }
        Ok(())
    }
    let mut written = 0;
    write(command, "suanli".to_owned(), dir, &mut written)?;
    println!("{written} manual pages written to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to standard output; a reader that has gone (`| head`) is not an error.
fn print_bytes(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    match std::io::stdout().write_all(bytes).and_then(|()| std::io::stdout().flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command and every option says what it is for in `--help`.
    #[test]
    fn every_command_and_option_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_long().unwrap_or(arg.get_id().as_str())));
                }
            }
            for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                let at = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(at.clone());
                }
                walk(sub, &at, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "suanli", &mut missing);
        assert!(missing.is_empty(), "{} without help:\n{}", missing.len(), missing.join("\n"));
    }

    /// Every command that answers with data takes `--json`. Left out: `place` (its answer is
    /// the JSON of the placement format already), the demo (a narrated run, then a server),
    /// the benchmarks (Markdown tables for BENCHMARKS.md), and the completion script and man page.
    #[test]
    fn every_command_takes_json() {
        const WITHOUT: [&str; 5] = ["suanli place", "suanli demo", "suanli completions", "suanli man", "suanli bench"];
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let subs: Vec<_> =
                command.get_subcommands().filter(|s| s.get_name() != "help" && !s.is_hide_set()).collect();
            if subs.is_empty() && !command.get_arguments().any(|a| a.get_id() == "json") {
                missing.push(path.to_owned());
            }
            for sub in subs {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cli = super::Cli::command();
        cli.build();
        let mut missing = Vec::new();
        walk(&cli, "suanli", &mut missing);
        missing.retain(|path| !WITHOUT.iter().any(|w| path == w || path.starts_with(&format!("{w} "))));
        assert!(missing.is_empty(), "without --json:\n{}", missing.join("\n"));
    }
}
