//! `suanli serve`: the HTTP API over the embedded database, and the token and key commands that
//! give machines access to it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use suanli_api::{AppState, Writer};
use suanli_service::Role;
use suanli_service::access::sha256_hex;

use crate::service_cli::{Common, Reply, open, run};

#[derive(clap::Args)]
pub struct ServeOptions {
    /// The address to listen on.
    #[arg(long, env = "SUANLI_LISTEN", default_value = "127.0.0.1:8640")]
    listen: String,
}

/// Serves until Ctrl-C or SIGTERM; then answers the requests in flight, commits what the writer
/// accepted, and exits.
pub fn serve(common: &Common, options: &ServeOptions) -> anyhow::Result<ExitCode> {
    let service = open(common)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (writer, thread) = Writer::start(service);
    let state = AppState { writer, metrics: Default::default() };
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&options.listen)
            .await
            .with_context(|| format!("--listen: cannot listen on {}", options.listen))?;
        let _ = writeln!(std::io::stdout(), "suanli serving {} on http://{}", common.database, listener.local_addr()?);
        let _ = std::io::stdout().flush();
        suanli_api::serve(listener, state, shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    drop(runtime);
    thread.join().map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    // The terminal may be gone by now (a closed pipe must not turn a clean stop into a panic).
    let _ = writeln!(std::io::stdout(), "suanli stopped; every accepted batch is committed");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM can be watched");
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// A new random token secret.
pub fn new_secret() -> anyhow::Result<String> {
    suanli_api::login::new_secret().map_err(|e| anyhow::anyhow!(e))
}

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Add a person who logs in with a password (read from SUANLI_PASSWORD or the first line of
    /// standard input; stored only as an argon2 hash).
    Add {
        #[arg(long)]
        name: String,
        /// admin, auditor, authority-admin:ath-N, authority-reviewer:ath-N, enterprise:ent-N or provider:prv-N.
        #[arg(long)]
        role: String,
    },
}

pub fn user(common: &Common, command: UserCommand) -> anyhow::Result<ExitCode> {
    let UserCommand::Add { name, role } = command;
    let password = match std::env::var("SUANLI_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    anyhow::ensure!(password.chars().count() >= 10, "password: must be at least 10 characters");
    let phc = suanli_api::login::hash_password(&password).map_err(|e| anyhow::anyhow!(e))?;
    run(common, |service, actor| {
        let role = Role::parse(&role)?;
        service.add_user(actor, &name, role, &phc)?;
        Ok(Reply::new(
            serde_json::json!({ "name": name, "role": role.to_string() }),
            format!("user {name} added as {role}"),
        ))
    })
}

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Issue an API token for a role; the secret is printed once and stored only hashed.
    Issue {
        /// admin, auditor, authority-admin:ath-N, authority-reviewer:ath-N, enterprise:ent-N or provider:prv-N.
        #[arg(long)]
        role: String,
    },
    /// Revoke a token by its number.
    Revoke { token: u64 },
}

pub fn token(common: &Common, command: TokenCommand) -> anyhow::Result<ExitCode> {
    run(common, |service, actor| match command {
        TokenCommand::Issue { role } => {
            let role = Role::parse(&role)?;
            let secret = new_secret()?;
            let id = service.issue_token(actor, role, &sha256_hex(&secret))?;
            Ok(Reply::new(
                serde_json::json!({ "id": id, "role": role.to_string(), "secret": secret }),
                format!("token-{id} for {role}: {secret}\n(shown once; only its hash is stored)"),
            ))
        }
        TokenCommand::Revoke { token } => {
            service.revoke_token(actor, token)?;
            Ok(Reply::new(serde_json::json!({ "id": token, "revoked": true }), format!("token-{token} revoked")))
        }
    })
}
