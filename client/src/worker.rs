//! The worker runtime: lease jobs of the types it has handlers for, run each handler with
//! its lease kept alive by heartbeats, and report what the handler returned.
//!
//! Shutdown: the runtime stops leasing, lets running handlers finish for up to
//! `shutdown_grace`, and then gives the rest back as retryable failures so another worker
//! picks them up at once rather than after their leases expire.

use crate::client::Client;
use crate::error::ClientError;
use crate::proto::{
    complete_request, Artifact, CompleteRequest, Failed, GaveUp, HeartbeatRequest, LeaseRequest,
    LeasedJob, Succeeded,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// What a handler made of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded {
        outputs: Vec<Artifact>,
    },
    /// Retryable failures are retried with backoff until attempts run out; the others go
    /// straight to the dead-letter queue.
    Failed {
        retryable: bool,
        error: String,
    },
    /// The job should not run at all; it is canceled.
    GaveUp {
        reason: String,
    },
}

impl Outcome {
    /// Success with no outputs to report.
    pub fn success() -> Self {
        Outcome::Succeeded {
            outputs: Vec::new(),
        }
    }

    /// A failure worth retrying.
    pub fn retry(error: impl Into<String>) -> Self {
        Outcome::Failed {
            retryable: true,
            error: error.into(),
        }
    }

    /// A failure no retry will mend.
    pub fn fatal(error: impl Into<String>) -> Self {
        Outcome::Failed {
            retryable: false,
            error: error.into(),
        }
    }

    fn into_proto(self) -> complete_request::Outcome {
        match self {
            Outcome::Succeeded { outputs } => {
                complete_request::Outcome::Succeeded(Succeeded { outputs })
            }
            Outcome::Failed { retryable, error } => {
                complete_request::Outcome::Failed(Failed { retryable, error })
            }
            Outcome::GaveUp { reason } => complete_request::Outcome::GaveUp(GaveUp { reason }),
        }
    }
}

/// A leased job as a handler sees it.
#[derive(Clone, Debug)]
pub struct JobContext {
    pub job: LeasedJob,
    canceled: CancellationToken,
}

impl JobContext {
    /// Resolves when the job was canceled or its lease lost: stop, the result won't count.
    pub async fn canceled(&self) {
        self.canceled.cancelled().await
    }

    /// Whether the job was canceled or its lease lost.
    pub fn is_canceled(&self) -> bool {
        self.canceled.is_cancelled()
    }
}

/// How long a canceled handler may take to stop by itself before it is aborted.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

type BoxedHandler =
    Arc<dyn Fn(JobContext) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// How a worker leases and runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The identity recorded with each attempt.
    pub worker_id: String,
    /// Most jobs run at once.
    pub concurrency: usize,
    /// Most jobs asked for in one lease call.
    pub lease_batch: u32,
    /// Pause before leasing again after an empty answer or an unavailable cluster.
    pub idle_poll: Duration,
    /// Overrides the jobs' own lease TTL.
    pub ttl_ms: Option<u64>,
    /// How long running handlers may finish after shutdown is asked for.
    pub shutdown_grace: Duration,
}

impl WorkerConfig {
    /// Defaults: 8 at once, leased in batches of 8, 200 ms idle poll, 30 s grace.
    pub fn new(worker_id: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            concurrency: 8,
            lease_batch: 8,
            idle_poll: Duration::from_millis(200),
            ttl_ms: None,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// A worker: handlers per job type, run under leases until shutdown.
pub struct Worker {
    client: Client,
    config: WorkerConfig,
    handlers: BTreeMap<String, BoxedHandler>,
}

impl Worker {
    /// A worker with no handlers yet.
    pub fn new(client: Client, config: WorkerConfig) -> Self {
        Self {
            client,
            config,
            handlers: BTreeMap::new(),
        }
    }

    /// Runs `handler` for jobs of `job_type`.
    pub fn handle<F, Fut>(mut self, job_type: impl Into<String>, handler: F) -> Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let handler: BoxedHandler = Arc::new(move |ctx| Box::pin(handler(ctx)));
        self.handlers.insert(job_type.into(), handler);
        self
    }

    /// Leases and runs jobs until `shutdown` resolves, then drains as the module says.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ClientError> {
        if self.handlers.is_empty() {
            return Err(ClientError::Config(
                "a worker needs at least one handler".to_owned(),
            ));
        }
        let concurrency = self.config.concurrency.max(1);
        let stopping = CancellationToken::new();
        let abandon = CancellationToken::new();
        let stop_signal = stopping.clone();
        let signal = tokio::spawn(async move {
            shutdown.await;
            stop_signal.cancel();
        });
        let slots = Arc::new(Semaphore::new(concurrency));
        let job_types: Vec<String> = self.handlers.keys().cloned().collect();
        let mut running = JoinSet::new();
        loop {
            while running.try_join_next().is_some() {}
            let first = tokio::select! {
                _ = stopping.cancelled() => break,
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let mut permits = vec![first];
            while permits.len() < concurrency.min(self.config.lease_batch.max(1) as usize) {
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            // Not raced against shutdown: a lease that commits must reach its handler.
            let leased = self
                .client
                .lease(LeaseRequest {
                    session: None,
                    worker: self.config.worker_id.clone(),
                    job_types: job_types.clone(),
                    max: permits.len() as u32,
                    ttl_ms: self.config.ttl_ms,
                })
                .await;
            let jobs = match leased {
                Ok(answer) => answer.jobs,
                Err(e) => {
                    tracing::warn!(error = %e, "lease failed; trying again");
                    Vec::new()
                }
            };
            if jobs.is_empty() {
                drop(permits);
                tokio::select! {
                    _ = stopping.cancelled() => break,
                    _ = tokio::time::sleep(self.config.idle_poll) => continue,
                }
            }
            for job in jobs {
                let Some(permit) = permits.pop() else {
                    break;
                };
                let run = RunningJob {
                    client: self.client.clone(),
                    handler: self.handlers.get(&job.job_type).cloned(),
                    abandon: abandon.clone(),
                    _slot: permit,
                };
                running.spawn(run.run(job));
            }
        }
        signal.abort();
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            abandon.cancel();
            while running.join_next().await.is_some() {}
        }
        Ok(())
    }
}

/// One leased job on its way through its handler.
struct RunningJob {
    client: Client,
    handler: Option<BoxedHandler>,
    /// Set when shutdown's grace ran out: give the job back.
    abandon: CancellationToken,
    _slot: OwnedSemaphorePermit,
}

impl RunningJob {
    async fn run(self, job: LeasedJob) {
        let Some(handler) = self.handler.clone() else {
            let error = format!("this worker has no handler for job type {:?}", job.job_type);
            self.complete(&job, Outcome::fatal(error)).await;
            return;
        };
        let canceled = CancellationToken::new();
        let context = JobContext {
            job: job.clone(),
            canceled: canceled.clone(),
        };
        let mut work = tokio::spawn(handler(context));
        // Three heartbeats per lease TTL: one can be lost to a leader change and the lease
        // still holds.
        let every = Duration::from_millis((job.ttl_ms / 3).max(50));
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let outcome = loop {
            tokio::select! {
                finished = &mut work => break Some(match finished {
                    Ok(outcome) => outcome,
                    Err(e) => Outcome::retry(format!("handler panicked: {e}")),
                }),
                _ = beat.tick() => {
                    if !self.heartbeat(&job).await {
                        // Tell the handler, give it a moment to stop on its own, then stop it.
                        // Its result would not be accepted, so none is reported.
                        canceled.cancel();
                        let _ = tokio::time::timeout(CANCEL_GRACE, &mut work).await;
                        work.abort();
                        break None;
                    }
                }
                _ = self.abandon.cancelled() => {
                    work.abort();
                    break Some(Outcome::retry("the worker shut down before the job finished"));
                }
            }
        };
        if let Some(outcome) = outcome {
            self.complete(&job, outcome).await;
        }
    }

    /// Renews the lease; false when the job was canceled or the lease is gone.
    async fn heartbeat(&self, job: &LeasedJob) -> bool {
        let answer = self
            .client
            .heartbeat(HeartbeatRequest {
                session: None,
                job_id: job.job_id,
                lease_id: job.lease_id,
            })
            .await;
        match answer {
            Ok(ack) => !ack.canceled,
            Err(e) if e.code() == Code::FailedPrecondition || e.code() == Code::NotFound => {
                tracing::warn!(job_id = job.job_id, lease_id = job.lease_id, error = %e, "lease lost; dropping the job");
                false
            }
            Err(e) => {
                tracing::warn!(job_id = job.job_id, error = %e, "heartbeat failed; will try again");
                true
            }
        }
    }

    async fn complete(&self, job: &LeasedJob, outcome: Outcome) {
        let answer = self
            .client
            .complete(CompleteRequest {
                session: None,
                job_id: job.job_id,
                lease_id: job.lease_id,
                outcome: Some(outcome.into_proto()),
            })
            .await;
        if let Err(e) = answer {
            tracing::warn!(job_id = job.job_id, lease_id = job.lease_id, error = %e, "completion not accepted");
        }
    }
}
