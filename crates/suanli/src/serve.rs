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
    /// The address to listen on [default: 127.0.0.1:8640].
    #[arg(long, env = "SUANLI_LISTEN")]
    listen: Option<String>,
    /// A configuration file (see suanli.example.toml); by default ./suanli.toml if it exists.
    #[arg(long, env = "SUANLI_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Also consume signed usage batches from this NATS JetStream server (nats://host:port).
    #[arg(long, env = "SUANLI_NATS")]
    nats: Option<String>,
    /// The JetStream stream usage is published to [default: SUANLI_USAGE].
    #[arg(long, env = "SUANLI_NATS_STREAM")]
    nats_stream: Option<String>,
    /// Usage subjects are <prefix>.<provider> [default: suanli.usage].
    #[arg(long, env = "SUANLI_NATS_SUBJECT_PREFIX")]
    nats_subject_prefix: Option<String>,
    /// Seconds a consumed message may stay unacknowledged before it is delivered again (after a
    /// crash, the messages in flight come back this much later); set when the durable consumer is
    /// created [default: 30].
    #[arg(long, env = "SUANLI_NATS_ACK_WAIT_S")]
    nats_ack_wait_s: Option<u64>,
    /// Checkpoint the state after this many new audit-log entries [default: 20000].
    #[arg(long, env = "SUANLI_CHECKPOINT_ENTRIES")]
    checkpoint_entries: Option<u64>,
    /// Checkpoint the state after this many seconds with at least one new entry [default: 300].
    #[arg(long, env = "SUANLI_CHECKPOINT_SECONDS")]
    checkpoint_seconds: Option<i64>,
    /// How many seconds past the server's clock a usage period may end (providers' clocks run
    /// ahead); beyond, a record is refused `usage_in_future` and may be sent again [default: 300].
    #[arg(long, env = "SUANLI_CLOCK_SKEW_SECONDS")]
    clock_skew_seconds: Option<i64>,
    /// Where signed heads are published, at every checkpoint and on POST /api/v1/heads
    /// [default: beside the database, <name>-heads/].
    #[arg(long, env = "SUANLI_HEADS_DIR")]
    heads_dir: Option<std::path::PathBuf>,
    /// The platform's Ed25519 head-signing key, created on first start
    /// [default: beside the database, <name>-signing.key].
    #[arg(long, env = "SUANLI_SIGNING_KEY")]
    signing_key: Option<std::path::PathBuf>,
    /// Run the scheduled work (the expiry sweep, then the statements of every ended month with
    /// usage) at start and then every this many seconds; 0 turns it off [default: 3600].
    #[arg(long, env = "SUANLI_SCHEDULE_SECONDS")]
    schedule_seconds: Option<u64>,
    /// Run a round of the scheduling loop (every waiting order request placed together) every
    /// this many seconds; 0 turns it off [default: 60].
    #[arg(long, env = "SUANLI_SCHEDULE_WINDOW_SECONDS")]
    schedule_window_seconds: Option<u64>,
    /// Clear the market between hub nodes (a round, then the bids it left waiting matched to the
    /// open capacity offers) every this many seconds; 0 turns it off [default: 3600].
    #[arg(long, env = "SUANLI_CLEARING_INTERVAL_SECONDS")]
    clearing_interval_seconds: Option<u64>,
    /// Mark the console's cookies `Secure`: set it when browsers reach the server over TLS (a
    /// proxy in front), so a session cookie is never sent over plain HTTP.
    #[arg(long, env = "SUANLI_SECURE_COOKIES")]
    secure_cookies: bool,
}

/// The settings `serve` runs with, layered: flags, then environment, then the file, then defaults.
struct Settings {
    database: String,
    listen: String,
    queue_jobs_max: usize,
    log_format: suanli_api::log::Format,
    log_requests: bool,
    nats: Option<suanli_api::nats::NatsOptions>,
    checkpoints: suanli_service::CheckpointPolicy,
    clock_skew_s: i64,
    /// How often the scheduled work runs; none when turned off.
    schedule: Option<std::time::Duration>,
    /// How often the scheduling loop runs a round; none when turned off.
    round_window: Option<std::time::Duration>,
    clearing_interval: Option<std::time::Duration>,
    rounds: suanli_service::RoundSettings,
    placement: suanli_placement::Policy,
    heads_dir: std::path::PathBuf,
    signing_key: std::path::PathBuf,
    secure_cookies: bool,
}

/// How often `serve` runs its scheduled work by default: hourly.
const SCHEDULE_DEFAULT_S: u64 = 3_600;

/// How often `serve` runs a round of the scheduling loop by default: every minute.
const ROUND_WINDOW_DEFAULT_S: u64 = 60;

fn settings(common: &Common, options: &ServeOptions) -> anyhow::Result<Settings> {
    let flags = crate::config::Config {
        database: common.database.clone(),
        listen: options.listen.clone(),
        nats: options.nats.clone(),
        nats_stream: options.nats_stream.clone(),
        nats_subject_prefix: options.nats_subject_prefix.clone(),
        nats_ack_wait_s: options.nats_ack_wait_s,
        checkpoint_entries: options.checkpoint_entries,
        checkpoint_seconds: options.checkpoint_seconds,
        clock_skew_seconds: options.clock_skew_seconds,
        schedule_seconds: options.schedule_seconds,
        schedule_window_seconds: options.schedule_window_seconds,
        clearing_interval_seconds: options.clearing_interval_seconds,
        heads_dir: options.heads_dir.clone(),
        signing_key: options.signing_key.clone(),
        secure_cookies: options.secure_cookies.then_some(true),
        ..Default::default()
    };
    let config = crate::config::load(options.config.as_deref(), &flags)?;
    let (rounds, placement) = config.scheduling()?;
    let queue_jobs_max = config.queue_jobs_max.unwrap_or(suanli_api::writer::QUEUE_JOBS_MAX);
    anyhow::ensure!((1..=100_000).contains(&queue_jobs_max), "queue_jobs_max: must be between 1 and 100000");
    let log_format = match config.log_format.as_deref().unwrap_or("json") {
        "json" => suanli_api::log::Format::Json,
        "text" => suanli_api::log::Format::Text,
        other => anyhow::bail!("log_format: must be json or text, got {other:?}"),
    };
    let nats = config.nats.map(|url| {
        let mut nats = suanli_api::nats::NatsOptions::new(&url);
        if let Some(stream) = config.nats_stream {
            nats.stream = stream;
        }
        if let Some(prefix) = config.nats_subject_prefix {
            nats.subject_prefix = prefix;
        }
        if let Some(seconds) = config.nats_ack_wait_s {
            nats.ack_wait = std::time::Duration::from_secs(seconds);
        }
        nats
    });
    if let Some(nats) = &nats {
        nats.check().map_err(anyhow::Error::msg)?;
    }
    let defaults = suanli_service::CheckpointPolicy::default();
    let checkpoints = suanli_service::CheckpointPolicy {
        every_log_entries: config.checkpoint_entries.unwrap_or(defaults.every_log_entries),
        every_s: config.checkpoint_seconds.unwrap_or(defaults.every_s),
    };
    anyhow::ensure!(checkpoints.every_log_entries >= 1, "checkpoint_entries: must be at least 1");
    anyhow::ensure!(checkpoints.every_s >= 1, "checkpoint_seconds: must be at least 1");
    let clock_skew_s = config.clock_skew_seconds.unwrap_or(suanli_service::CLOCK_SKEW_DEFAULT_S);
    anyhow::ensure!((0..=86_400).contains(&clock_skew_s), "clock_skew_seconds: must be between 0 and 86400");
    let schedule_s = config.schedule_seconds.unwrap_or(SCHEDULE_DEFAULT_S);
    anyhow::ensure!(schedule_s <= 31 * 86_400, "schedule_seconds: must be between 0 (off) and 2678400 (31 days)");
    let schedule = (schedule_s > 0).then(|| std::time::Duration::from_secs(schedule_s));
    let window_s = config.schedule_window_seconds.unwrap_or(ROUND_WINDOW_DEFAULT_S);
    anyhow::ensure!(window_s <= 86_400, "schedule_window_seconds: must be between 0 (off) and 86400");
    let round_window = (window_s > 0).then(|| std::time::Duration::from_secs(window_s));
    let clearing_s = config.clearing_interval_seconds.unwrap_or(suanli_service::market::CLEARING_INTERVAL_DEFAULT_S);
    anyhow::ensure!(clearing_s <= 7 * 86_400, "clearing_interval_seconds: must be between 0 (off) and 604800");
    let clearing_interval = (clearing_s > 0).then(|| std::time::Duration::from_secs(clearing_s));

    let database = config.database.unwrap_or_else(|| "suanli.db".into());
    let (default_key, default_dir) = crate::database::default_heads(&database);
    Ok(Settings {
        heads_dir: config.heads_dir.unwrap_or(default_dir),
        signing_key: config.signing_key.unwrap_or(default_key),
        clock_skew_s,
        schedule,
        round_window,
        clearing_interval,
        rounds,
        placement,
        checkpoints,
        nats,
        database,
        listen: config.listen.unwrap_or_else(|| "127.0.0.1:8640".into()),
        queue_jobs_max,
        log_format,
        log_requests: config.log_requests.unwrap_or(false),
        secure_cookies: config.secure_cookies.unwrap_or(false),
    })
}

/// Serves until Ctrl-C or SIGTERM; then answers the requests in flight, commits what the writer
/// accepted, and exits.
pub fn serve(common: &Common, options: &ServeOptions) -> anyhow::Result<ExitCode> {
    let settings = settings(common, options)?;
    suanli_api::log::configure(settings.log_format, settings.log_requests);
    let resolved = Common { database: Some(settings.database.clone()), ..common.clone() };
    let mut service = open(&resolved)?;
    service.set_checkpoint_policy(settings.checkpoints);
    service.set_clock_skew_tolerance(settings.clock_skew_s);
    service.set_round_settings(settings.rounds);
    service.set_placement_policy(settings.placement);
    let signer = suanli_service::heads::HeadSigner::open(&settings.signing_key, &settings.heads_dir)
        .map_err(anyhow::Error::msg)
        .context("signed heads")?;
    let heads_line = format!(
        "suanli signs heads with key {} and publishes them to {}",
        signer.public_key_hex(),
        settings.heads_dir.display()
    );
    service.set_head_signer(signer);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (writer, thread) = Writer::start_with(service, settings.queue_jobs_max);
    let state = AppState { secure_cookies: settings.secure_cookies, ..AppState::new(writer.clone()) };
    let nats_stats = state.metrics.nats.clone();
    runtime.block_on(async {
        // Connect to NATS first: an unreachable server stops the start, before anything listens.
        let nats = match &settings.nats {
            Some(options) => {
                let context = suanli_api::nats::connect(&options.url).await?;
                suanli_api::nats::ensure_stream(&context, options).await?;
                Some((context, options.clone()))
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("listen: cannot listen on {}", settings.listen))?;
        let address = listener.local_addr()?;
        let _ = writeln!(std::io::stdout(), "suanli serving {} on http://{address}", settings.database);
        let _ = writeln!(std::io::stdout(), "{heads_line}");
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let stop = std::sync::Arc::new(stop);
        let stopped = move || {
            let mut stopping = stopping.clone();
            async move {
                let _ = stopping.wait_for(|&stop| stop).await;
            }
        };
        let consumer = nats.map(|(context, options)| {
            let _ = writeln!(
                std::io::stdout(),
                "suanli consuming usage from {} (stream {}, subjects {}.*)",
                options.url,
                options.stream,
                options.subject_prefix
            );
            let consumed = suanli_api::nats::consume(writer.clone(), context, options, nats_stats, stopped());
            let stop = stop.clone();
            tokio::spawn(async move {
                // A consumer that cannot be set up stops the whole server, with its reason.
                let result = consumed.await;
                if let Err(error) = &result {
                    tracing::error!(%error, "nats consumer failed");
                    let _ = stop.send(true);
                }
                result
            })
        });
        let schedule = settings.schedule.map(|every| {
            let _ = writeln!(
                std::io::stdout(),
                "suanli runs the expiry sweep and the due statements now and every {} s",
                every.as_secs()
            );
            tokio::spawn(suanli_api::schedule::run(writer.clone(), every, stopped()))
        });
        let rounds = settings.round_window.map(|window| {
            let _ = writeln!(
                std::io::stdout(),
                "suanli runs a round of the scheduling loop every {} s (waiting order requests placed together)",
                window.as_secs()
            );
            tokio::spawn(suanli_api::schedule::run_rounds(writer.clone(), window, stopped()))
        });
        let clearings = settings.clearing_interval.map(|interval| {
            let _ = writeln!(
                std::io::stdout(),
                "suanli clears the market between hub nodes every {} s (waiting bids matched to capacity offers)",
                interval.as_secs()
            );
            tokio::spawn(suanli_api::schedule::run_clearings(writer.clone(), interval, stopped()))
        });
        drop(writer);
        let _ = std::io::stdout().flush();
        tracing::info!(
            database = %settings.database,
            address = %address,
            queue_jobs_max = settings.queue_jobs_max,
            "serving"
        );
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        suanli_api::serve(listener, state, stopped()).await?;
        if let Some(consumer) = consumer {
            consumer.await??;
        }
        if let Some(schedule) = schedule {
            schedule.await?;
        }
        if let Some(rounds) = rounds {
            rounds.await?;
        }
        if let Some(clearings) = clearings {
            clearings.await?;
        }
        anyhow::Ok(())
    })?;
    drop(runtime);
    thread.join().map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    tracing::info!(committed = "every accepted batch", "stopped");
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
        /// The login name.
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
    Revoke {
        /// The token's number: 7 for token-7, as `token issue` printed it.
        token: u64,
    },
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

#[derive(clap::Subcommand)]
pub enum NetworkCommand {
    /// Import the national network of data/network.csv (8 hubs, 10 clusters) as the registry.
    Import,
    /// The imported hubs and clusters.
    List,
}

pub fn network(common: &Common, command: NetworkCommand) -> anyhow::Result<ExitCode> {
    run(common, |service, actor| match command {
        NetworkCommand::Import => {
            let count = service.import_network(actor, suanli_service::model::NetworkCluster::national())?;
            Ok(Reply::new(
                serde_json::to_value(service.state().network.iter().collect::<Vec<_>>())?,
                format!("imported {count} clusters of the national network"),
            ))
        }
        NetworkCommand::List => {
            let clusters: Vec<_> = service.state().network.iter().cloned().collect();
            let text = clusters
                .iter()
                .map(|c| format!("{:<6} {:<32} {:.2}, {:.2}", c.id, c.hub, c.latitude, c.longitude))
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Reply::new(serde_json::to_value(&clusters)?, text))
        }
    })
}

#[derive(clap::Subcommand)]
pub enum HeadsCommand {
    /// Sign the log's size and Merkle root now and publish the head.
    Publish(HeadsOptions),
    /// Print the platform's public key (creating the key the first time).
    Key(HeadsOptions),
}

#[derive(clap::Args)]
pub struct HeadsOptions {
    /// Where heads are published [default: beside the database, <name>-heads/].
    #[arg(long, env = "SUANLI_HEADS_DIR")]
    heads_dir: Option<std::path::PathBuf>,
    /// The head-signing key [default: beside the database, <name>-signing.key].
    #[arg(long, env = "SUANLI_SIGNING_KEY")]
    signing_key: Option<std::path::PathBuf>,
}

pub fn heads(common: &Common, command: HeadsCommand) -> anyhow::Result<ExitCode> {
    let (HeadsCommand::Publish(options) | HeadsCommand::Key(options)) = &command;
    let (key, dir) = crate::database::default_heads(&common.database()?);
    let signer = suanli_service::heads::HeadSigner::open(
        options.signing_key.as_deref().unwrap_or(&key),
        options.heads_dir.as_deref().unwrap_or(&dir),
    )
    .map_err(anyhow::Error::msg)?;
    run(common, move |service, _| match command {
        HeadsCommand::Key(_) => Ok(Reply::new(
            serde_json::json!({ "public_key": signer.public_key_hex(), "heads_dir": signer.dir() }),
            format!("{}  (heads in {})", signer.public_key_hex(), signer.dir().display()),
        )),
        HeadsCommand::Publish(_) => {
            let dir = signer.dir().to_owned();
            service.set_head_signer(signer);
            let head = service.publish_head()?;
            Ok(Reply::new(
                serde_json::to_value(&head)?,
                format!("head of {} entries, root {}, published to {}", head.log_size, head.log_root, dir.display()),
            ))
        }
    })
}

/// `suanli migrate --from sqlite://A --to postgres://B`: copies a whole deployment, keeping every
/// batch, record, hash and log entry; then audits both, which print the same state hash.
pub fn migrate(from: &str, to: &str, json: bool) -> anyhow::Result<ExitCode> {
    use suanli_store::{PostgresStore, SqliteStore, Storage};
    let source = crate::database::sqlite_path(from).context("--from")?;
    anyhow::ensure!(crate::database::is_postgres(to), "--to: must be a postgres:// URL");
    let mut store = SqliteStore::open_existing(&source).with_context(|| format!("--from: {}", source.display()))?;
    let snapshot = store.load()?;
    drop(store);
    let mut target = PostgresStore::open(to).context("--to")?;
    target.import(&snapshot).context("--to")?;
    drop(target);
    // Opening the target as a writer once keeps its usage ids apart, from its log.
    drop(suanli_service::Service::open_database(to, std::sync::Arc::new(suanli_service::SystemClock)).context("--to")?);
    let copied = serde_json::json!({
        "batches": snapshot.batches.len(),
        "accounts": snapshot.accounts.len(),
        "transfers": snapshot.transfers.len(),
        "log_entries": snapshot.log.len(),
        "from": source.display().to_string(),
        "to": suanli_store::redact(to),
    });
    let audits = [crate::audit::verify_database(&source.display().to_string())?, crate::audit::verify_database(to)?];
    let passed = audits.iter().all(|a| a.passed);
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "copied": copied, "audits": audits }))?);
    } else {
        println!(
            "copied {} batches, {} accounts, {} transfers, {} audit-log entries from {} to {}",
            snapshot.batches.len(),
            snapshot.accounts.len(),
            snapshot.transfers.len(),
            snapshot.log.len(),
            source.display(),
            suanli_store::redact(to)
        );
        for audit in &audits {
            print!("{}", audit.text());
        }
    }
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
