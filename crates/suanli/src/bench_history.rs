//! `suanli bench history`: a real `suanli serve` carried from an empty database to millions of
//! usage records over HTTP, measured at each milestone as a programme year would stress it.
//!
//! While history grows, a probe reads one voucher every 10 ms and keeps its worst wait. At each
//! milestone the server is SIGKILLed and started again (time to `/readyz` and resident memory
//! after it), single reads are timed (a voucher, an audit-log page), ingestion is timed alone and
//! then again under 2,000 reads/s (the reads' p99 and worst, and the ingestion rate under load),
//! memory after that hour of ingestion is read, and `suanli audit verify` is timed beside the
//! running server. Every figure comes from the server process, seen from outside.

use std::io::BufRead;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use suanli_service::access::TOKEN_TTL_MAX_S;

use anyhow::Context;
use ed25519_dalek::{Signer, SigningKey};
use suanli_domain::{OrderId, ProviderId};
use suanli_service::access::{hex, sha256_hex, usage_signing_bytes};
use suanli_service::calendar::format_timestamp;
use suanli_service::model::UsageInput;
use suanli_service::{Actor, Role};

#[derive(clap::Args)]
pub struct HistoryOptions {
    /// Milestones, in usage records, at which everything is measured.
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    records: Vec<usize>,
    /// Running orders the records are spread over (8 GPUs each, one record per order-minute).
    #[arg(long, default_value_t = 500)]
    orders: usize,
    /// Records per signed request.
    #[arg(long, default_value_t = 4_000)]
    batch: usize,
    /// Concurrent clients sending usage.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Records sent for each of the two timed ingestion runs at a milestone (alone, under reads).
    #[arg(long, default_value_t = 400_000)]
    load_records: usize,
    /// Reads per second during the loaded ingestion run.
    #[arg(long, default_value_t = 2_000)]
    reads_per_s: u64,
    /// Where to keep the database [default: a temporary directory, removed afterwards].
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// The world the server runs: its providers' keys and tokens, and the orders.
pub(crate) struct World {
    database: String,
    now: String,
    started_at: i64,
    providers: [ProviderId; 2],
    keys: [SigningKey; 2],
    pub(crate) orders: Vec<(ProviderId, OrderId)>,
    voucher: String,
}

/// A running `suanli serve`.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
}

impl Server {
    pub(crate) fn start(world: &World) -> anyhow::Result<(Server, Duration)> {
        let started = Instant::now();
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", "--listen", "127.0.0.1:0", "--database", &world.database, "--now", &world.now])
            .env("SUANLI_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut lines = std::io::BufReader::new(child.stdout.take().context("serve's output")?).lines();
        let first = lines.next().context("serve printed nothing")??;
        let url = first.split_whitespace().last().context("serve's address")?.to_owned();
        std::thread::spawn(move || for _ in lines {});
        let agent = agent();
        loop {
            if let Ok(response) = agent.get(&format!("{url}/readyz")).call()
                && response.status().as_u16() == 200
            {
                break;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "serve did not become ready");
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok((Server { child, url }, started.elapsed()))
    }

    /// Resident memory of the server process, in MiB (Linux).
    fn rss_mib(&self) -> f64 {
        memory_mib(self.child.id(), "VmRSS:").unwrap_or(f64::NAN)
    }

    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A memory figure of a process from /proc (Linux), in MiB: `VmRSS:` now, `VmHWM:` at its peak.
fn memory_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// Where `serve` publishes the heads of `database` by default.
fn heads_dir(database: &str) -> String {
    crate::database::default_heads(database).1.display().to_string()
}

/// Builds the world in a fresh SQLite file and gives providers their keys and tokens.
pub(crate) fn world(dir: &std::path::Path, orders: usize) -> anyhow::Result<World> {
    let database = dir.join("history.db").display().to_string();
    let (mut service, _clock, orders) = crate::bench::usage_world_at(&database, orders)?;
    let operator = Actor::operator();
    let providers = [orders[0].0, orders[1].0];
    let keys = [SigningKey::from_bytes(&[7; 32]), SigningKey::from_bytes(&[8; 32])];
    for (provider, key) in providers.iter().zip(&keys) {
        service.register_provider_key(&operator, *provider, &hex(key.verifying_key().as_bytes()))?;
        let secret = sha256_hex(&format!("history-{provider}"));
        service.issue_token_for(&operator, Role::Provider(*provider), &secret, TOKEN_TTL_MAX_S)?;
    }
    service.issue_token_for(&operator, Role::Auditor, &sha256_hex("history-auditor"), TOKEN_TTL_MAX_S)?;
    service.issue_token_for(&operator, Role::PlatformAdmin, &sha256_hex("history-admin"), TOKEN_TTL_MAX_S)?;
    let authority = service.state().programs.values().next().context("a programme")?.authority;
    let secret = sha256_hex("history-authority");
    service.issue_token_for(&operator, Role::AuthorityAdmin(authority), &secret, TOKEN_TTL_MAX_S)?;
    let started_at = service.now_s();
    let voucher = service.state().vouchers.keys().next().context("a voucher")?.to_string();
    // Far enough ahead that every record's minute has passed.
    let now = format_timestamp(started_at + 120 * 86_400);
    Ok(World { database, now, started_at, providers, keys, orders, voucher })
}

/// Sends the records numbered `from..to` (record k is minute k / orders of order k % orders) from
/// `clients` threads in signed batches; answers the seconds it took.
pub(crate) fn ingest(
    world: &World,
    url: &str,
    from: usize,
    to: usize,
    batch: usize,
    clients: usize,
) -> anyhow::Result<f64> {
    let next = AtomicUsize::new(from);
    let timer = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    let agent = agent();
                    loop {
                        let first = next.fetch_add(batch, Ordering::SeqCst);
                        if first >= to {
                            return Ok(());
                        }
                        let last = (first + batch).min(to);
                        // One provider per request: split the range by the orders' providers.
                        for (p, provider) in world.providers.iter().enumerate() {
                            let records: Vec<UsageInput> = (first..last)
                                .filter(|k| world.orders[k % world.orders.len()].0 == *provider)
                                .map(|k| {
                                    let n = k % world.orders.len();
                                    let minute = (k / world.orders.len()) as i64;
                                    UsageInput {
                                        id: format!("{n}-{minute}"),
                                        order: world.orders[n].1,
                                        gpu_seconds: 8 * 60,
                                        period_start_s: world.started_at + minute * 60,
                                        period_end_s: world.started_at + (minute + 1) * 60,
                                    }
                                })
                                .collect();
                            if records.is_empty() {
                                continue;
                            }
                            send(&agent, url, world, p, &records)?;
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().map_err(|_| anyhow::anyhow!("a client panicked"))??;
        }
        Ok(())
    })?;
    Ok(timer.elapsed().as_secs_f64())
}

fn send(agent: &ureq::Agent, url: &str, world: &World, p: usize, records: &[UsageInput]) -> anyhow::Result<()> {
    let provider = world.providers[p];
    let signature = hex(&world.keys[p].sign(&usage_signing_bytes(provider, records)).to_bytes());
    let mut body = String::with_capacity(records.len() * 160 + 16);
    body.push_str("{\"records\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"id\":\"{}\",\"order\":\"{}\",\"gpu_seconds\":{},\"period_start\":\"{}\",\"period_end\":\"{}\"}}",
            r.id,
            r.order,
            r.gpu_seconds,
            format_timestamp(r.period_start_s),
            format_timestamp(r.period_end_s)
        ));
    }
    body.push_str("]}");
    loop {
        let mut response = agent
            .post(&format!("{url}/api/v1/providers/{provider}/usage"))
            .header("authorization", &format!("Bearer history-{provider}"))
            .header("content-type", "application/json")
            .header("suanli-signature", &signature)
            .send(&body)?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        match status {
            200 => {
                let ok = text.matches("\"status\":\"ok\"").count() + text.matches("\"status\":\"exists\"").count();
                anyhow::ensure!(ok == records.len(), "{} of {} records accepted: {text}", ok, records.len());
                return Ok(());
            }
            // A full queue: back off as the server asks, and send the same batch again.
            503 => std::thread::sleep(Duration::from_millis(5)),
            _ => anyhow::bail!("status {status}: {text}"),
        }
    }
}

/// Latencies in milliseconds, sorted, and their percentiles.
pub(crate) struct Latencies(Vec<f64>);

impl Latencies {
    pub(crate) fn new(mut values: Vec<f64>) -> Latencies {
        values.sort_by(f64::total_cmp);
        Latencies(values)
    }

    pub(crate) fn at(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0[((self.0.len() as f64 - 1.0) * q).round() as usize]
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn max(&self) -> f64 {
        self.0.last().copied().unwrap_or(f64::NAN)
    }
}

fn timed_get(agent: &ureq::Agent, url: &str, token: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut response = agent.get(url).header("authorization", &format!("Bearer {token}")).call()?;
    let _ = response.body_mut().read_to_string()?;
    anyhow::ensure!(response.status().as_u16() == 200, "GET {url}: {}", response.status());
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

/// Reads a voucher at a steady `per_s` (open loop: each read has its moment, late or not) from
/// two threads until `stop`; answers every read's latency.
fn steady_reads(voucher_url: &str, per_s: u64, stop: &AtomicBool) -> anyhow::Result<Latencies> {
    let period = Duration::from_secs_f64(2.0 / per_s as f64);
    let all = std::thread::scope(|scope| -> anyhow::Result<Vec<f64>> {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<Vec<f64>> {
                    let agent = agent();
                    let mut latencies = Vec::new();
                    let start = Instant::now();
                    let mut n = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        let due = start + period * n;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        // Measured from the moment the read was due: a late start counts as waiting.
                        let sent = timed_get(&agent, voucher_url, "history-auditor")?;
                        let late = Instant::now().saturating_duration_since(due).as_secs_f64() * 1e3 - sent;
                        latencies.push(sent + late.max(0.0));
                        n += 1;
                    }
                    Ok(latencies)
                })
            })
            .collect();
        let mut all = Vec::new();
        for thread in threads {
            all.extend(thread.join().map_err(|_| anyhow::anyhow!("a reader panicked"))??);
        }
        Ok(all)
    })?;
    Ok(Latencies::new(all))
}

pub fn history(options: &HistoryOptions) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!options.records.is_empty(), "--records: at least one milestone");
    anyhow::ensure!(options.orders >= 2, "--orders: at least 2");
    let scratch = tempfile::tempdir()?;
    let dir = options.dir.clone().unwrap_or_else(|| scratch.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let mut milestones = options.records.clone();
    milestones.sort_unstable();
    let need = milestones.last().copied().unwrap_or(0) + 2 * options.load_records * milestones.len();
    anyhow::ensure!(
        need.div_ceil(options.orders) <= 60_000,
        "--orders: {} orders cannot carry {need} one-minute records (1,000 hours each); use more",
        options.orders
    );
    println!("machine: {}, {} cores", crate::bench::cpu_model(), std::thread::available_parallelism()?.get());
    let world = world(&dir, options.orders)?;
    let voucher_url = |url: &str| format!("{url}/api/v1/vouchers/{}", world.voucher);
    let (mut server, _) = Server::start(&world)?;
    let mut sent = 0;
    let mut rows = Vec::new();
    for &milestone in &milestones {
        // Grow to the milestone with a probe reading every 10 ms.
        let stop = AtomicBool::new(false);
        let (grow_s, probe) = std::thread::scope(|scope| -> anyhow::Result<(f64, Latencies)> {
            let probe = scope.spawn(|| -> anyhow::Result<Latencies> {
                let agent = agent();
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    latencies.push(timed_get(&agent, &voucher_url(&server.url), "history-auditor")?);
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(Latencies::new(latencies))
            });
            let seconds = ingest(&world, &server.url, sent, milestone.max(sent), options.batch, options.clients);
            stop.store(true, Ordering::Relaxed);
            let probe = probe.join().map_err(|_| anyhow::anyhow!("the probe panicked"))??;
            Ok((seconds?, probe))
        })?;
        let grown = milestone.saturating_sub(sent);
        sent = sent.max(milestone);
        // A crash and a start: from the latest checkpoint, replaying only the log after it.
        server.kill();
        let (restarted, restart) = Server::start(&world)?;
        server = restarted;
        let rss_restart = server.rss_mib();
        // Single reads, one after another.
        let agent = agent();
        let voucher_reads = Latencies::new(
            (0..2_000)
                .map(|_| timed_get(&agent, &voucher_url(&server.url), "history-auditor"))
                .collect::<Result<_, _>>()?,
        );
        let entries = sent as u64;
        let page_reads = Latencies::new(
            (0..500u64)
                .map(|i| {
                    let offset = (i * 7_919 * 1_000) % entries.max(1);
                    timed_get(
                        &agent,
                        &format!("{}/api/v1/audit/log?offset={offset}&limit=100", server.url),
                        "history-auditor",
                    )
                })
                .collect::<Result<_, _>>()?,
        );
        // Ingestion alone, then under steady reads.
        let alone_s = ingest(&world, &server.url, sent, sent + options.load_records, options.batch, options.clients)?;
        sent += options.load_records;
        let stop = AtomicBool::new(false);
        let (loaded_s, under_load) = std::thread::scope(|scope| -> anyhow::Result<(f64, Latencies)> {
            let readers = scope.spawn(|| steady_reads(&voucher_url(&server.url), options.reads_per_s, &stop));
            let seconds =
                ingest(&world, &server.url, sent, sent + options.load_records, options.batch, options.clients);
            stop.store(true, Ordering::Relaxed);
            let reads = readers.join().map_err(|_| anyhow::anyhow!("the readers panicked"))??;
            Ok((seconds?, reads))
        })?;
        sent += options.load_records;
        let rss_after = server.rss_mib();
        // A head of the log as it is now, besides those the server signed at its checkpoints.
        let mut published = ureq::Agent::new_with_defaults()
            .post(&format!("{}/api/v1/heads", server.url))
            .header("authorization", "Bearer history-admin")
            .send("")?;
        anyhow::ensure!(published.status().as_u16() == 200, "POST /api/v1/heads: {}", published.status());
        let _ = published.body_mut().read_to_string()?;
        // The whole audit, beside the running server.
        let audit_started = Instant::now();
        let mut audit = Command::new(std::env::current_exe()?)
            // Against the heads the server signed at its checkpoints: the cost of proving the log
            // extends every published head is in the figure.
            .args(["audit", "verify", "--database", &world.database, "--heads", &heads_dir(&world.database)])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut output = audit.stdout.take().context("the audit's output")?;
        let reader = std::thread::spawn(move || {
            let mut report = String::new();
            let _ = std::io::Read::read_to_string(&mut output, &mut report);
            report
        });
        // The audit's peak memory, read while it runs (VmHWM).
        let mut audit_peak_mib = f64::NAN;
        let status = loop {
            if let Some(peak) = memory_mib(audit.id(), "VmHWM:") {
                audit_peak_mib = peak;
            }
            if let Some(status) = audit.try_wait()? {
                break status;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let audit_s = audit_started.elapsed().as_secs_f64();
        let report = reader.join().unwrap_or_default();
        anyhow::ensure!(status.success(), "the audit failed: {report}");
        let row = Row {
            milestone,
            grow_rate: grown as f64 / grow_s,
            probe_max: probe.max(),
            probe_p99: probe.at(0.99),
            restart_s: restart.as_secs_f64(),
            rss_restart,
            rss_after,
            audit_s,
            audit_peak_mib,
            voucher: (voucher_reads.at(0.5), voucher_reads.at(0.99)),
            page: (page_reads.at(0.5), page_reads.at(0.99)),
            alone_rate: options.load_records as f64 / alone_s,
            loaded_rate: options.load_records as f64 / loaded_s,
            loaded_reads: (under_load.0.len() as f64 / loaded_s, under_load.at(0.99), under_load.max()),
        };
        row.print();
        rows.push(row);
    }
    server.kill();
    println!();
    println!(
        "| records | restart to ready | RSS after restart | RSS after an hour's ingestion | audit verify (peak memory) | voucher read p50 / p99 | log page p50 / p99 | reads during ingestion p99 / max (rate) | ingestion alone / under reads | growth rate, worst probe read |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {:.2} s | {:.0} MiB | {:.0} MiB | {:.1} s ({:.0} MiB) | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.2} / {:.1} ms ({:.0}/s) | {:.0} / {:.0} records/s | {:.0} records/s, {:.1} ms |",
            row.milestone,
            row.restart_s,
            row.rss_restart,
            row.rss_after,
            row.audit_s,
            row.audit_peak_mib,
            row.voucher.0,
            row.voucher.1,
            row.page.0,
            row.page.1,
            row.loaded_reads.1,
            row.loaded_reads.2,
            row.loaded_reads.0,
            row.alone_rate,
            row.loaded_rate,
            row.grow_rate,
            row.probe_max,
        );
    }
    drop(scratch);
    Ok(ExitCode::SUCCESS)
}

struct Row {
    milestone: usize,
    grow_rate: f64,
    probe_max: f64,
    probe_p99: f64,
    restart_s: f64,
    rss_restart: f64,
    rss_after: f64,
    audit_s: f64,
    audit_peak_mib: f64,
    voucher: (f64, f64),
    page: (f64, f64),
    alone_rate: f64,
    loaded_rate: f64,
    /// Reads per second achieved, p99 and worst latency (ms).
    loaded_reads: (f64, f64, f64),
}

impl Row {
    fn print(&self) {
        println!(
            "{} records: grew at {:.0}/s (probe read p99 {:.2} ms, worst {:.1} ms); restart to ready {:.2} s, RSS {:.0} MiB; \
             voucher read p50 {:.2} / p99 {:.2} ms; log page p50 {:.2} / p99 {:.2} ms; ingestion {:.0}/s alone, {:.0}/s under \
             {:.0} reads/s (read p99 {:.2} ms, worst {:.1} ms); RSS after {:.0} MiB; audit verify {:.1} s, peak {:.0} MiB",
            self.milestone,
            self.grow_rate,
            self.probe_p99,
            self.probe_max,
            self.restart_s,
            self.rss_restart,
            self.voucher.0,
            self.voucher.1,
            self.page.0,
            self.page.1,
            self.alone_rate,
            self.loaded_rate,
            self.loaded_reads.0,
            self.loaded_reads.1,
            self.loaded_reads.2,
            self.rss_after,
            self.audit_s,
            self.audit_peak_mib,
        );
    }
}
