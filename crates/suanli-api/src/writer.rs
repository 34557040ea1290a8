//! The single writer behind the HTTP API: one thread owns the `Service`; handlers send it jobs
//! through a bounded queue and wait for the answer.
//!
//! Usage batches waiting in the queue are **committed together** (group commit): the writer takes
//! the first job, then every usage job already queued, up to one ledger batch of records, and
//! records them in one transaction; each request still gets its own answer. A full queue is
//! refused at once (the handler answers 503 with `Retry-After`), so memory stays bounded and
//! nothing is accepted that will not be applied. When the last sender is dropped, the writer
//! finishes every queued job and stops: a graceful shutdown loses nothing it accepted.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use suanli_domain::ProviderId;
use suanli_service::model::{UsageInput, UsageOutcome};
use suanli_service::service::USAGE_BATCH_RECORDS_MAX;
use suanli_service::{Actor, Role, Service, ServiceError, UsageGroup};
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
    },
    /// Work on the service; it returns the delivery of its answer, which the writer runs only
    /// after refreshing the snapshot, so a caller that gets a new token can use it at once.
    Call(Box<dyn FnOnce(&mut Service) -> Delivery + Send>),
}

/// Sends a job's answer back to its caller.
type Delivery = Box<dyn FnOnce() + Send>;

/// What handlers read without queueing: live tokens and provider keys, refreshed by the writer
/// after any change that could touch them.
#[derive(Default)]
pub struct Snapshot {
    pub token_roles: std::collections::HashMap<String, Role>,
    pub provider_keys: std::collections::HashMap<ProviderId, String>,
}

/// Counters the writer keeps for `/metrics`.
#[derive(Default)]
pub struct WriterStats {
    pub queue_depth: AtomicUsize,
    pub commits: AtomicU64,
    pub records_applied: AtomicU64,
    /// Batch sizes (records per commit): counts per bucket of `BATCH_BUCKETS`.
    pub batch_buckets: [AtomicU64; 6],
}

pub const BATCH_BUCKETS: [u64; 6] = [1, 10, 100, 1_000, 4_000, u64::MAX];

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
    pub snapshot: Arc<RwLock<Snapshot>>,
    pub stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the writer thread over `service`.
    pub fn start(service: Service) -> (Writer, JoinHandle<()>) {
        Writer::start_with(service, QUEUE_JOBS_MAX)
    }

    /// Like [`Writer::start`] with a queue of `queue_jobs_max` jobs (tests use a short one).
    pub fn start_with(service: Service, queue_jobs_max: usize) -> (Writer, JoinHandle<()>) {
        let (sender, receiver) = sync_channel(queue_jobs_max);
        let snapshot = Arc::new(RwLock::new(snapshot_of(&service)));
        let stats = Arc::new(WriterStats::default());
        let thread = {
            let (snapshot, stats) = (snapshot.clone(), stats.clone());
            std::thread::Builder::new()
                .name("suanli-writer".into())
                .spawn(move || run(service, receiver, snapshot, stats))
                .expect("the writer thread starts")
        };
        (Writer { sender, snapshot, stats }, thread)
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
        self.send(Job::Usage { actor, provider, records, reply })?;
        answer.await.map_err(|_| Refused::Stopped)
    }

    /// Runs `work` on the writer thread (reads see every commit before it; writes are serialized).
    pub async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Service) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<Result<T, ServiceError>, Refused> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Call(Box::new(move |service| {
            let answer = work(service);
            Box::new(move || {
                let _ = reply.send(answer);
            })
        })))?;
        answer.await.map_err(|_| Refused::Stopped)
    }
}

fn snapshot_of(service: &Service) -> Snapshot {
    let state = service.state();
    Snapshot {
        token_roles: state
            .token_by_hash
            .iter()
            .filter_map(|(hash, id)| Role::parse(&state.tokens[id].role).ok().map(|role| (hash.clone(), role)))
            .collect(),
        provider_keys: state.providers.values().filter_map(|p| p.public_key_hex.clone().map(|k| (p.id, k))).collect(),
    }
}

fn run(mut service: Service, receiver: Receiver<Job>, snapshot: Arc<RwLock<Snapshot>>, stats: Arc<WriterStats>) {
    let mut pending: Option<Job> = None;
    loop {
        let job = match pending.take() {
            Some(job) => job,
            None => match receiver.recv() {
                Ok(job) => {
                    stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                    job
                }
                Err(_) => return, // every sender is gone and the queue is empty
            },
        };
        match job {
            Job::Call(work) => {
                let deliver = work(&mut service);
                *snapshot.write().expect("the snapshot lock is never poisoned") = snapshot_of(&service);
                deliver();
            }
            Job::Usage { actor, provider, records, reply } => {
                let mut groups = vec![UsageGroup { actor, provider, records }];
                let mut replies = vec![reply];
                let mut total = groups[0].records.len();
                // Gather what is already waiting, up to one ledger batch.
                while total < USAGE_BATCH_RECORDS_MAX {
                    match receiver.try_recv() {
                        Ok(next) => {
                            stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                            match next {
                                Job::Usage { actor, provider, records, reply }
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
                match service.record_usage_groups(&first_actor, &groups) {
                    Ok(answers) => {
                        stats.commits.fetch_add(1, Ordering::Relaxed);
                        stats.records_applied.fetch_add(total as u64, Ordering::Relaxed);
                        let bucket = BATCH_BUCKETS.iter().position(|&b| (total as u64) <= b).unwrap_or(5);
                        stats.batch_buckets[bucket].fetch_add(1, Ordering::Relaxed);
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
