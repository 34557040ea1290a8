//! `/metrics` in the Prometheus text format: requests by route and status class, request latency
//! as a histogram, the writer's queue depth, commits, batch sizes and records applied. A dozen
//! atomic counters, written by hand rather than through a metrics framework.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::AppState;
use crate::writer::{BATCH_BUCKETS, WriterStats};

/// Latency bucket bounds in seconds.
const LATENCY_BUCKETS_S: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, f64::INFINITY];
const CLASSES: [&str; 4] = ["2xx", "4xx", "5xx", "other"];

/// The route labels: every API path (methods share a label), the two service routes, "other".
fn route_labels() -> Vec<&'static str> {
    let mut labels: Vec<&'static str> = Vec::new();
    for (_, path, _) in crate::PUBLIC_ROUTES.iter().chain(crate::ROUTES) {
        if !labels.contains(path) {
            labels.push(path);
        }
    }
    labels.push("other");
    labels
}

pub struct Metrics {
    routes: Vec<&'static str>,
    requests: Vec<[AtomicU64; 4]>,
    latency: Vec<[AtomicU64; 10]>,
    latency_sum_us: Vec<AtomicU64>,
    /// Usage messages consumed from NATS JetStream.
    pub nats: std::sync::Arc<crate::nats::NatsStats>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let routes = route_labels();
        let n = routes.len();
        Metrics {
            routes,
            requests: (0..n).map(|_| Default::default()).collect(),
            latency: (0..n).map(|_| Default::default()).collect(),
            latency_sum_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
            nats: Default::default(),
        }
    }
}

impl Metrics {
    fn observe(&self, route: &str, status: u16, seconds: f64) {
        let r = self.routes.iter().position(|&x| x == route).unwrap_or(self.routes.len() - 1);
        let class = match status {
            200..=299 => 0,
            400..=499 => 1,
            500..=599 => 2,
            _ => 3,
        };
        self.requests[r][class].fetch_add(1, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS_S.iter().position(|&b| seconds <= b).unwrap_or(LATENCY_BUCKETS_S.len() - 1);
        self.latency[r][bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us[r].fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn render(&self, writer: &WriterStats) -> String {
        let mut out = String::new();
        out.push_str("# HELP suanli_http_requests_total Requests answered, by route and status class.\n");
        out.push_str("# TYPE suanli_http_requests_total counter\n");
        for (r, route) in self.routes.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let n = self.requests[r][c].load(Ordering::Relaxed);
                if n > 0 {
                    out.push_str(&format!("suanli_http_requests_total{{route=\"{route}\",status=\"{class}\"}} {n}\n"));
                }
            }
        }
        out.push_str(
            "# HELP suanli_http_request_seconds Request latency.\n# TYPE suanli_http_request_seconds histogram\n",
        );
        for (r, route) in self.routes.iter().enumerate() {
            let mut cumulative = 0;
            for (b, bound) in LATENCY_BUCKETS_S.iter().enumerate() {
                cumulative += self.latency[r][b].load(Ordering::Relaxed);
                let le = if bound.is_infinite() { "+Inf".to_owned() } else { bound.to_string() };
                out.push_str(&format!(
                    "suanli_http_request_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}\n"
                ));
            }
            let sum = self.latency_sum_us[r].load(Ordering::Relaxed) as f64 / 1e6;
            out.push_str(&format!("suanli_http_request_seconds_sum{{route=\"{route}\"}} {sum}\n"));
            out.push_str(&format!("suanli_http_request_seconds_count{{route=\"{route}\"}} {cumulative}\n"));
        }
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, value: u64| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
        };
        gauge(
            &mut out,
            "suanli_writer_queue_depth",
            "Jobs waiting for the writer.",
            "gauge",
            writer.queue_depth.load(Ordering::Relaxed) as u64,
        );
        gauge(
            &mut out,
            "suanli_writer_commits_total",
            "Usage group commits.",
            "counter",
            writer.commits.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "suanli_usage_records_applied_total",
            "Usage records answered through group commits.",
            "counter",
            writer.records_applied.load(Ordering::Relaxed),
        );
        out.push_str("# HELP suanli_nats_messages_total Usage messages from NATS JetStream, by outcome.\n");
        out.push_str("# TYPE suanli_nats_messages_total counter\n");
        for (outcome, counter) in
            [("applied", &self.nats.applied), ("rejected", &self.nats.rejected), ("retried", &self.nats.retried)]
        {
            let n = counter.load(Ordering::Relaxed);
            out.push_str(&format!("suanli_nats_messages_total{{outcome=\"{outcome}\"}} {n}\n"));
        }
        out.push_str("# HELP suanli_writer_batch_records Records per group commit.\n# TYPE suanli_writer_batch_records histogram\n");
        let mut cumulative = 0;
        for (b, bound) in BATCH_BUCKETS.iter().enumerate() {
            cumulative += writer.batch_buckets[b].load(Ordering::Relaxed);
            let le = if *bound == u64::MAX { "+Inf".to_owned() } else { bound.to_string() };
            out.push_str(&format!("suanli_writer_batch_records_bucket{{le=\"{le}\"}} {cumulative}\n"));
        }
        out.push_str(&format!("suanli_writer_batch_records_count {cumulative}\n"));
        out
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
/// written while answering it), and counts and times it under its route pattern.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "other".into());
    let id = request_id(&request);
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), route = %route);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    state.metrics.observe(&route, response.status().as_u16(), seconds);
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    if crate::log::requests_logged() {
        span.in_scope(|| tracing::info!(status = response.status().as_u16(), ms = seconds * 1e3, "request"));
    }
    response
}
