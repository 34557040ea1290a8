//! `/metrics` in the Prometheus text format, through the `metrics` crate and its Prometheus
//! exporter, with one recorder per server (`WriterStats::record`):
//!
//! - requests by route and status class, and their latency (`suanli_http_*`);
//! - the writer: queue depth, group commits, records applied, checkpoints, each job's time on the
//!   writer by kind (`suanli_writer_job_seconds`, the commit latency) and records per group commit;
//! - usage refused, by code; NATS messages by outcome;
//! - the business: each programme's budget left and vouchers by state, read from the last commit
//!   when the page is asked for;
//! - the process (Linux): resident memory, CPU seconds, open files, start time.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use tracing::Instrument;

use crate::AppState;

/// Latency bucket bounds in seconds.
const SECONDS_BUCKETS: [f64; 11] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
/// Records per group commit.
const BATCH_BUCKETS: [f64; 5] = [1.0, 10.0, 100.0, 1_000.0, 4_000.0];

/// A recorder whose histograms have buckets (Prometheus histograms, not summaries).
pub(crate) fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full("suanli_writer_batch_records".into()), &BATCH_BUCKETS))
        .expect("the buckets are not empty")
        .build_recorder()
}

/// Usage messages consumed from NATS JetStream, and the metrics page.
#[derive(Default)]
pub struct Metrics {
    pub nats: std::sync::Arc<crate::nats::NatsStats>,
}

impl Metrics {
    /// The page: what was counted as it happened, and the gauges read now.
    pub fn render(&self, state: &AppState) -> String {
        let stats = &state.writer.stats;
        let view = state.writer.view();
        stats.record(|| {
            gauge!("suanli_writer_queue_depth").set(stats.queue_depth.load(Ordering::Relaxed) as f64);
            counter!("suanli_writer_commits_total").absolute(stats.commits.load(Ordering::Relaxed));
            counter!("suanli_usage_records_applied_total").absolute(stats.records_applied.load(Ordering::Relaxed));
            counter!("suanli_writer_checkpoints_total").absolute(stats.checkpoints.load(Ordering::Relaxed));
            for (outcome, counted) in
                [("applied", &self.nats.applied), ("rejected", &self.nats.rejected), ("retried", &self.nats.retried)]
            {
                counter!("suanli_nats_messages_total", "outcome" => outcome).absolute(counted.load(Ordering::Relaxed));
            }
            gauge!("suanli_ready").set(if state.writer.is_ready() { 1.0 } else { 0.0 });
            let s = view.state();
            for program in s.programs.values() {
                gauge!("suanli_program_budget_left_fen", "program" => program.id.to_string(), "key" => program.terms.key.clone())
                    .set(program.budget_remaining_fen.fen() as f64);
            }
            let mut vouchers: std::collections::BTreeMap<&str, u64> =
                ["active", "exhausted", "suspended", "revoked", "expired"].into_iter().map(|k| (k, 0)).collect();
            for voucher in s.vouchers.values() {
                *vouchers.entry(voucher.state_name()).or_default() += 1;
            }
            for (voucher_state, count) in vouchers {
                gauge!("suanli_vouchers", "state" => voucher_state).set(count as f64);
            }
            process();
        });
        stats.render()
    }
}

/// The process's own figures, as Prometheus' client libraries name them (Linux `/proc`).
fn process() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    // utime (14) and stime (15) in clock ticks (100 a second on Linux), starttime (22) in ticks
    // after boot, rss (24) in pages (4 KiB).
    const TICKS_PER_S: f64 = 100.0;
    if let (Some(user), Some(system)) = (field(14), field(15)) {
        counter!("process_cpu_seconds_total").absolute(((user + system) / TICKS_PER_S) as u64);
    }
    if let Some(pages) = field(24) {
        gauge!("process_resident_memory_bytes").set(pages * 4096.0);
    }
    if let Some(vsize) = field(23) {
        gauge!("process_virtual_memory_bytes").set(vsize);
    }
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|text| {
        text.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<f64>().ok())
    });
    if let (Some(boot), Some(start)) = (boot, field(22)) {
        gauge!("process_start_time_seconds").set(boot + start / TICKS_PER_S);
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        gauge!("process_open_fds").set(entries.count() as f64);
    }
}

/// The header that carries a request's id, in the request (kept when it is 1 to 64 visible
/// ASCII characters) and in every answer.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The caller's request id if it is a sane one, else a new random one.
fn request_id(request: &Request) -> String {
    let given = request.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok());
    match given {
        Some(id) if (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()) => id.to_owned(),
        _ => format!("{:016x}", getrandom::u64().unwrap_or_default()),
    }
}

/// Middleware: gives every request an id (answered in `x-request-id`, and on every log line
/// written while answering it), and counts and times it under its route pattern ("other" for a
/// path no route matched, so the labels stay few).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "other".into());
    let id = request_id(&request);
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), route = %route);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    let class = match status {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    };
    state.writer.stats.record(|| {
        counter!("suanli_http_requests_total", "route" => route.clone(), "status" => class).increment(1);
        histogram!("suanli_http_request_seconds", "route" => route).record(seconds);
    });
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    if crate::log::requests_logged() {
        span.in_scope(|| tracing::info!(status, ms = seconds * 1e3, "request"));
    }
    response
}
