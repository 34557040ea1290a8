//! The single writer behind the HTTP API: one thread owns the `Service`; handlers send it jobs
//! through a bounded queue and wait for the answer.
//!
//! Usage batches waiting in the queue are **committed together** (group commit): the writer takes
//! the first job, then every usage job already queued, up to one ledger batch of records, and
//! records them in one transaction; each request still gets its own answer. A full queue is
//! refused at once (the handler answers 503 with `Retry-After`), so memory stays bounded and
//! nothing is accepted that will not be applied. When the last sender is dropped, the writer
//! finishes every queued job and stops: a graceful shutdown loses nothing it accepted.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use suanli_domain::ProviderId;
use suanli_service::model::{UsageInput, UsageOutcome};
use suanli_service::service::USAGE_BATCH_RECORDS_MAX;
use suanli_service::{Actor, Service, ServiceError, UsageGroup, View};
use tokio::sync::oneshot;

/// Jobs waiting for the writer at most; beyond this, requests are refused with 503.
pub const QUEUE_JOBS_MAX: usize = 512;

type Reply<T> = oneshot::Sender<Result<T, ServiceError>>;

enum Job {
    Usage {
        actor: Actor,
        provider: ProviderId,
        records: Vec<UsageInput>,
        reply: Reply<Vec<UsageOutcome>>,
        /// The span of the request that sent it, so the writer's logs name the request.
        span: tracing::Span,
    },
    /// Work on the service; it returns the delivery of its answer, which the writer runs only
    /// after refreshing the snapshot, so a caller that gets a new token can use it at once.
    Call(Box<dyn FnOnce(&mut Service) -> Delivery + Send>, tracing::Span),
}

/// Sends a job's answer back to its caller.
type Delivery = Box<dyn FnOnce() + Send>;

/// How long the idle writer waits for a job before it checks on storage that failed.
const IDLE_CHECK_MS: u64 = 1_000;

/// Counters the writer keeps for the console's health page and `/metrics`, and the metrics
/// recorder of this server (`metrics` with the Prometheus exporter): one per writer rather than
/// one for the process, so servers in one process (the tests) count apart.
pub struct WriterStats {
    pub queue_depth: AtomicUsize,
    pub commits: AtomicU64,
    pub records_applied: AtomicU64,
    pub checkpoints: AtomicU64,
    recorder: metrics_exporter_prometheus::PrometheusRecorder,
}

impl Default for WriterStats {
    fn default() -> WriterStats {
        WriterStats {
            queue_depth: AtomicUsize::new(0),
            commits: AtomicU64::new(0),
            records_applied: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            recorder: crate::metrics::recorder(),
        }
    }
}

impl WriterStats {
    /// Runs `record` with this server's recorder, so the `metrics` macros in it count here.
    pub fn record<T>(&self, record: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, record)
    }

    /// Every metric recorded so far, in the Prometheus text format.
    pub fn render(&self) -> String {
        self.recorder.handle().render()
    }
}

/// Why a job was not queued.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The queue is full: try again shortly.
    #[error("the writer's queue is full")]
    Overloaded,
    /// The writer has stopped (shutting down or failed).
    #[error("the writer has stopped")]
    Stopped,
}

#[derive(Clone)]
pub struct Writer {
    sender: SyncSender<Job>,
    /// What the last commit left, published by the writer after every job: handlers read it
    /// (authentication, provider keys, every GET) without queueing, and it never shows a change
    /// storage did not take.
    published: Arc<RwLock<Arc<View>>>,
    /// Whether storage takes writes now (`/readyz`).
    ready: Arc<AtomicBool>,
    /// Pages of the audit log, read from storage on a connection of their own.
    log: Option<Arc<std::sync::Mutex<suanli_store::LogReader>>>,
    queue_jobs_max: usize,
    pub stats: Arc<WriterStats>,
    /// The service's head signer, if it has one: the latest signed head is served from it.
    heads: Option<suanli_service::heads::HeadSigner>,
    /// Per provider, when its last signature anomaly was kept and how many batches were refused
    /// for their signature since.
    signature_flags: Arc<std::sync::Mutex<SignatureFlags>>,
    /// Where storage is, for the audit's own read-only connection.
    location: suanli_store::Location,
    /// One audit at a time: a whole-database audit is the heaviest read there is.
    audits: Arc<tokio::sync::Semaphore>,
}

type SignatureFlags = std::collections::HashMap<suanli_domain::ProviderId, (Option<std::time::Instant>, u64)>;

impl Writer {
    /// Starts the writer thread over `service`.
    pub fn start(service: Service) -> (Writer, JoinHandle<()>) {
        Writer::start_with(service, QUEUE_JOBS_MAX)
    }

    /// Like [`Writer::start`] with a queue of `queue_jobs_max` jobs (tests use a short one).
    pub fn start_with(service: Service, queue_jobs_max: usize) -> (Writer, JoinHandle<()>) {
        let (sender, receiver) = sync_channel(queue_jobs_max);
        let published = Arc::new(RwLock::new(Arc::new(service.committed_view())));
        let ready = Arc::new(AtomicBool::new(service.is_ready()));
        let heads = service.head_signer().cloned();
        let location = service.durable().storage().location();
        let log = match service.log_reader() {
            Ok(reader) => Some(Arc::new(std::sync::Mutex::new(reader))),
            Err(error) => {
                tracing::warn!(error = %error.message, "no log reader beside the writer; log pages go through the writer");
                None
            }
        };
        let stats = Arc::new(WriterStats::default());
        let thread = {
            let outlet = Outlet { published: published.clone(), ready: ready.clone() };
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("suanli-writer".into())
                .spawn(move || {
                    // A panic on the writer means a broken invariant: stop the whole process so a
                    // supervisor restarts it from storage, rather than leave a server that answers
                    // 503 forever while /healthz says ok.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run(service, receiver, outlet, stats)
                    }));
                    if outcome.is_err() {
                        tracing::error!("the writer panicked; stopping the process so it restarts from storage");
                        std::process::exit(101);
                    }
                })
                .expect("the writer thread starts")
        };
        let signature_flags = Arc::default();
        let audits = Arc::new(tokio::sync::Semaphore::new(1));
        (
            Writer { sender, published, ready, log, queue_jobs_max, stats, heads, signature_flags, location, audits },
            thread,
        )
    }

    /// What the last commit left, for a read that must not queue.
    pub fn view(&self) -> Arc<View> {
        self.published.read().expect("the published view's lock is never poisoned").clone()
    }

    /// The entries after sequence `after` (at most `limit`) and the log's length, read from
    /// storage beside the writer.
    pub async fn log_page(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Result<(Vec<suanli_store::LogEntry>, u64), ServiceError>, Refused> {
        self.read_log(move |reader| reader.page(after, limit)).await
    }

    /// Counts a batch refused for its signature; answers how many were refused since the last
    /// anomaly when one is due (at most one per provider a minute, so a flood of forged batches
    /// cannot fill the log).
    pub fn signature_flag_due(&self, provider: suanli_domain::ProviderId) -> Option<u64> {
        use std::time::{Duration, Instant};
        let mut flags = self.signature_flags.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let entry = flags.entry(provider).or_insert((None, 0));
        entry.1 += 1;
        if entry.0.is_some_and(|last| now.duration_since(last) < Duration::from_secs(60)) {
            return None;
        }
        let refused = entry.1;
        *entry = (Some(now), 0);
        Some(refused)
    }

    /// The head signer of the service, when it signs heads.
    pub fn heads(&self) -> Option<&suanli_service::heads::HeadSigner> {
        self.heads.as_ref()
    }

    /// Audits the whole database on a read-only connection of its own, beside the writer (the
    /// checks of `suanli audit verify`); one audit runs at a time, others wait for it.
    pub async fn audit(&self) -> Result<suanli_store::AuditReport, ServiceError> {
        let storage = |e: suanli_store::StoreError| {
            ServiceError::new(suanli_service::ErrorCode::StorageUnavailable, e.to_string())
        };
        let _turn = self
            .audits
            .acquire()
            .await
            .map_err(|_| ServiceError::new(suanli_service::ErrorCode::Internal, "stopping"))?;
        let location = self.location.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = location.open_reader().map_err(storage)?;
            suanli_store::audit(&mut store).map_err(storage)
        })
        .await
        .map_err(|_| ServiceError::new(suanli_service::ErrorCode::Internal, "the audit stopped"))?
    }

    /// Runs `read` on the log reader beside the writer (or, without one, on the writer).
    pub async fn read_log<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut suanli_store::LogReader) -> Result<T, suanli_store::StoreError> + Send + 'static,
    ) -> Result<Result<T, ServiceError>, Refused> {
        let storage = |e: suanli_store::StoreError| {
            ServiceError::new(suanli_service::ErrorCode::StorageUnavailable, e.to_string())
        };
        match &self.log {
            Some(reader) => {
                let reader = reader.clone();
                let result = tokio::task::spawn_blocking(move || {
                    read(&mut reader.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
                })
                .await
                .map_err(|_| Refused::Stopped)?;
                Ok(result.map_err(storage))
            }
            None => self.call(move |service| read(&mut service.log_reader()?).map_err(storage)).await,
        }
    }

    /// Whether the queue is full now, so a request can be refused before its body is read.
    pub fn is_full(&self) -> bool {
        self.stats.queue_depth.load(Ordering::Relaxed) >= self.queue_jobs_max
    }

    /// Whether storage takes writes now.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn send(&self, job: Job) -> Result<(), Refused> {
        self.stats.queue_depth.fetch_add(1, Ordering::Relaxed);
        self.sender.try_send(job).map_err(|error| {
            self.stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
            match error {
                TrySendError::Full(_) => Refused::Overloaded,
                TrySendError::Disconnected(_) => Refused::Stopped,
            }
        })
    }

    /// Queues a usage batch; the answer comes after its group's commit.
    pub async fn usage(
        &self,
        actor: Actor,
        provider: ProviderId,
        records: Vec<UsageInput>,
    ) -> Result<Result<Vec<UsageOutcome>, ServiceError>, Refused> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Usage { actor, provider, records, reply, span: tracing::Span::current() })?;
        answer.await.map_err(|_| Refused::Stopped)
    }

    /// Runs `work` on the writer thread (reads see every commit before it; writes are serialized).
    pub async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Service) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<Result<T, ServiceError>, Refused> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Call(
            Box::new(move |service| {
                let answer = work(service);
                Box::new(move || {
                    let _ = reply.send(answer);
                })
            }),
            tracing::Span::current(),
        ))?;
        answer.await.map_err(|_| Refused::Stopped)
    }
}

/// Where the writer publishes what readers see.
struct Outlet {
    published: Arc<RwLock<Arc<View>>>,
    ready: Arc<AtomicBool>,
}

impl Outlet {
    /// Publishes the state of the last commit (constant time: the maps are shared).
    fn publish(&self, service: &Service) {
        let view = Arc::new(service.committed_view());
        *self.published.write().expect("the published view's lock is never poisoned") = view;
        self.ready.store(service.is_ready(), Ordering::Relaxed);
    }
}

fn run(mut service: Service, receiver: Receiver<Job>, outlet: Outlet, stats: Arc<WriterStats>) {
    let mut pending: Option<Job> = None;
    loop {
        // A checkpoint between jobs, when the policy says it is due: the state as of the last
        // commit, bound to both chains, so a start replays only what came after it.
        match service.maybe_checkpoint() {
            Ok(Some(sequence)) => {
                stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                tracing::info!(log_sequence = sequence, "checkpoint");
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(error = %error.message, "checkpoint failed");
            }
        }
        let job = match pending.take() {
            Some(job) => job,
            None => match receiver.recv_timeout(std::time::Duration::from_millis(IDLE_CHECK_MS)) {
                Ok(job) => {
                    stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                    job
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    // Idle with storage in doubt: try to reach it, so readiness comes back
                    // without waiting for a write.
                    if !service.is_ready() {
                        if let Err(error) = service.recover() {
                            tracing::warn!(error = %error.message, "storage still cannot be written");
                        }
                        outlet.publish(&service);
                    }
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    // Every sender is gone and the queue is empty: a last checkpoint makes the
                    // next start replay nothing.
                    if let Err(error) = service.checkpoint() {
                        tracing::warn!(error = %error.message, "no checkpoint at stop");
                    }
                    return;
                }
            },
        };
        match job {
            Job::Call(work, span) => {
                let _request = span.entered();
                let _commit = tracing::debug_span!("commit").entered();
                let started = std::time::Instant::now();
                let deliver = work(&mut service);
                outlet.publish(&service);
                let seconds = started.elapsed().as_secs_f64();
                stats.record(|| metrics::histogram!("suanli_writer_job_seconds", "job" => "call").record(seconds));
                tracing::debug!(ms = seconds * 1e3, "committed");
                deliver();
            }
            Job::Usage { actor, provider, records, reply, span } => {
                let _request = span.entered();
                let started = std::time::Instant::now();
                let mut groups = vec![UsageGroup { actor, provider, records }];
                let mut replies = vec![reply];
                let mut total = groups[0].records.len();
                // Gather what is already waiting, up to one ledger batch.
                while total < USAGE_BATCH_RECORDS_MAX {
                    match receiver.try_recv() {
                        Ok(next) => {
                            stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                            match next {
                                Job::Usage { actor, provider, records, reply, .. }
                                    if total + records.len() <= USAGE_BATCH_RECORDS_MAX =>
                                {
                                    total += records.len();
                                    groups.push(UsageGroup { actor, provider, records });
                                    replies.push(reply);
                                }
                                other => {
                                    pending = Some(other);
                                    break;
                                }
                            }
                        }
                        Err(_) => break,
                    }
                }
                let first_actor = groups[0].actor.clone();
                let _commit = tracing::debug_span!("commit", requests = groups.len(), records = total).entered();
                let result = service.record_usage_groups(&first_actor, &groups);
                // Published before anyone is answered: a client that got `ok` reads its record.
                outlet.publish(&service);
                let seconds = started.elapsed().as_secs_f64();
                tracing::debug!(ms = seconds * 1e3, ok = result.is_ok(), "group commit");
                match result {
                    Ok(answers) => {
                        stats.commits.fetch_add(1, Ordering::Relaxed);
                        stats.records_applied.fetch_add(total as u64, Ordering::Relaxed);
                        stats.record(|| {
                            metrics::histogram!("suanli_writer_job_seconds", "job" => "usage").record(seconds);
                            metrics::histogram!("suanli_writer_batch_records").record(total as f64);
                            for outcome in answers.iter().flatten() {
                                if let UsageOutcome::Refused { code, .. } = outcome {
                                    metrics::counter!("suanli_usage_refused_total", "code" => code.clone())
                                        .increment(1);
                                }
                            }
                        });
                        for (reply, answer) in replies.into_iter().zip(answers) {
                            let _ = reply.send(Ok(answer));
                        }
                    }
                    Err(error) => {
                        for reply in replies {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                }
            }
        }
    }
}
