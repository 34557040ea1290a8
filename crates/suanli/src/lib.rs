//! The `suanli` command line: argument parsing and one module per command.

mod audit;
mod bench;
mod crash;
mod database;
mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

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
    /// Walk through the money flows of a voucher programme on a fresh embedded database.
    Demo {
        /// The database to create; an earlier demo database at this path is replaced.
        #[arg(long, default_value = "suanli-demo.db")]
        database: String,
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
    /// chain; exit non-zero on any violation.
    Verify(DatabaseArg),
}

#[derive(Args)]
struct DatabaseArg {
    /// `PATH` or `sqlite://PATH`.
    #[arg(long, env = "SUANLI_DATABASE", default_value = "suanli.db")]
    database: String,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The ledger apply loop in memory and durable in SQLite.
    Ledger(bench::LedgerOptions),
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Apply numbered batches to a database, printing `ack N` after each commit, until killed
    /// or done. The crash test kills it with SIGKILL at random points.
    CrashWriter {
        #[arg(long)]
        database: PathBuf,
        #[arg(long, default_value_t = 1_000)]
        batches: u64,
        #[arg(long, default_value_t = 500)]
        batch_size: u64,
    },
}

/// Runs the command named on the command line.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { database } => demo::run(&database::sqlite_path(&database)?),
        Command::Audit { command: AuditCommand::Verify(arg) } => audit::verify(&database::sqlite_path(&arg.database)?),
        Command::Bench { command: BenchCommand::Ledger(options) } => bench::ledger(&options),
        Command::Debug { command: DebugCommand::CrashWriter { database, batches, batch_size } } => {
            crash::writer(&database, batches, batch_size)
        }
    }
}
