//! The worker runtime: lease jobs of the types it has handlers for, run each handler with
//! its lease kept alive by heartbeats, and report what the handler returned.
//!
//! Slots: the worker runs at most `concurrency` jobs at once and never asks a lease for
//! more jobs than it has free slots at that moment, so every granted job runs at once: a
//! granted job that nobody runs would be a lease burnt, its job stuck until the lease
//! expires and then charged a timed-out attempt.
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
    /// The job did its work.
    Succeeded {
        /// Artifacts the job wrote, recorded with the attempt for lineage.
        outputs: Vec<Artifact>,
    },
    /// Retryable failures are retried with backoff until attempts run out; the others go
    /// straight to the dead-letter queue.
    Failed {
        /// Whether another attempt may succeed.
        retryable: bool,
        /// What went wrong, kept with the attempt.
        error: String,
    },
    /// The job should not run at all; it is canceled.
    GaveUp {
        /// Why the job should not run, kept as its cancel reason.
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
    /// The job as the lease granted it: ids, fencing token, payload, attempt number.
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

/// The longest a lease call may wait for a job (`LeaseRequest::wait_ms`); a node refuses
/// a longer wait.
pub const MAX_LEASE_WAIT_MS: u32 = 30_000;

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
    /// How long a lease call waits for a job before it answers empty (a long poll: the
    /// call is answered the moment a job is ready). Zero asks without waiting and polls
    /// every `idle_poll` instead.
    pub lease_wait: Duration,
    /// Pause before leasing again after a failed call, a lease held by maintenance mode,
    /// or an empty answer that came before the wait was over (without `lease_wait`, after
    /// every empty answer).
    pub idle_poll: Duration,
    /// Overrides the jobs' own lease TTL.
    pub ttl_ms: Option<u64>,
    /// How long running handlers may finish after shutdown is asked for.
    pub shutdown_grace: Duration,
}

impl WorkerConfig {
    /// Defaults: 8 at once, leased in batches of 8, leases that wait up to 2 s for a job,
    /// a 200 ms pause after a failure, 30 s grace.
    pub fn new(worker_id: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            concurrency: 8,
            lease_batch: 8,
            lease_wait: Duration::from_secs(2),
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
            let permits = take_free_permits(first, &slots, concurrency, self.config.lease_batch);
            let asked = permits.len();
            // Not raced against shutdown: a lease that commits must reach its handler. A
            // long poll makes shutdown wait for it, `lease_wait` at most.
            let asked_at = tokio::time::Instant::now();
            let (jobs, pause) = self.lease(&job_types, asked).await;
            if jobs.is_empty() {
                drop(permits);
                // An empty long poll that waited its time asks again at once.
                let waited = Duration::from_millis(u64::from(self.lease_wait_ms()));
                let pause = pause || waited.is_zero() || asked_at.elapsed() < waited / 2;
                if !pause {
                    continue;
                }
                tokio::select! {
                    _ = stopping.cancelled() => break,
                    _ = tokio::time::sleep(self.config.idle_poll) => continue,
                }
            }
            if jobs.len() > asked {
                tracing::error!(
                    asked,
                    granted = jobs.len(),
                    "the cluster granted more jobs than asked; giving the extra ones back"
                );
            }
            let mut permits = permits.into_iter();
            for job in jobs {
                let run = RunningJob {
                    client: self.client.clone(),
                    handler: self.handlers.get(&job.job_type).cloned(),
                    abandon: abandon.clone(),
                };
                match permits.next() {
                    Some(slot) => running.spawn(run.run(job, slot)),
                    None => running.spawn(run.give_back(job)),
                };
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

    /// The wait each lease asks for, in whole ms (at most `MAX_LEASE_WAIT_MS`).
    fn lease_wait_ms(&self) -> u32 {
        u32::try_from(self.config.lease_wait.as_millis())
            .unwrap_or(u32::MAX)
            .min(MAX_LEASE_WAIT_MS)
    }

    /// Asks for up to `max` jobs of `job_types`, waiting up to `lease_wait` for them; and
    /// whether to pause before asking again: a failed call (logged) or a lease held by
    /// maintenance mode.
    async fn lease(&self, job_types: &[String], max: usize) -> (Vec<LeasedJob>, bool) {
        let wait_ms = self.lease_wait_ms();
        let leased = self
            .client
            .lease(LeaseRequest {
                session: None,
                worker: self.config.worker_id.clone(),
                job_types: job_types.to_vec(),
                max: max as u32,
                ttl_ms: self.config.ttl_ms,
                wait_ms: (wait_ms > 0).then_some(wait_ms),
            })
            .await;
        match leased {
            Ok(answer) => {
                let held = answer.held != crate::proto::LeaseHold::None as i32;
                (answer.jobs, held)
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease failed; trying again");
                (Vec::new(), true)
            }
        }
    }
}

/// Takes `first` and as many more free slots as one lease may ask for: at most
/// `concurrency` and `lease_batch` in all. Never waits: only slots free right now count.
fn take_free_permits(
    first: OwnedSemaphorePermit,
    slots: &Arc<Semaphore>,
    concurrency: usize,
    lease_batch: u32,
) -> Vec<OwnedSemaphorePermit> {
    let want = concurrency.min(lease_batch.max(1) as usize);
    let mut permits = vec![first];
    while permits.len() < want {
        match slots.clone().try_acquire_owned() {
            Ok(permit) => permits.push(permit),
            Err(_) => break,
        }
    }
    permits
}

/// One leased job on its way through its handler.
struct RunningJob {
    client: Client,
    handler: Option<BoxedHandler>,
    /// Set when shutdown's grace ran out: give the job back.
    abandon: CancellationToken,
}

impl RunningJob {
    /// Runs the handler while `slot`, one of the worker's slots, is held.
    async fn run(self, job: LeasedJob, slot: OwnedSemaphorePermit) {
        let Some(handler) = self.handler.clone() else {
            let error = format!("this worker has no handler for job type {:?}", job.job_type);
            self.complete(&job, Outcome::fatal(error)).await;
            return;
        };
        // Three heartbeats per lease TTL: one can be lost to a leader change and the lease
        // still holds.
        let every = Duration::from_millis((job.ttl_ms / 3).max(50));
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        // Held until the job is reported: the slot is what bounds the jobs run at once.
        let _slot = slot;
        let canceled = CancellationToken::new();
        let context = JobContext {
            job: job.clone(),
            canceled: canceled.clone(),
        };
        let span = tracing::info_span!(
            "worker_execute",
            job_id = job.job_id,
            job_type = %job.job_type,
            tenant = %job.tenant,
            attempt = job.attempt,
        );
        crate::trace::join(&span, job.traceparent.as_deref());
        let mut work = tokio::spawn(tracing::Instrument::instrument(handler(context), span));
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

    /// A job granted beyond what the lease asked for (the cluster never should): no slot
    /// is free to run it, and a granted job nobody runs would sit out its lease and then be
    /// charged a timed-out attempt, so it is given back at once as a retryable failure.
    async fn give_back(self, job: LeasedJob) {
        let outcome =
            Outcome::retry("the worker had no free slot for a job granted beyond its ask");
        self.complete(&job, outcome).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientConfig;
    use crate::proto::worker_service_server::{WorkerService, WorkerServiceServer};
    use crate::proto::{
        CompleteBatchRequest, CompleteBatchResponse, CompleteResponse, HeartbeatResponse,
        LeaseResponse,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use tokio::sync::Notify;
    use tonic::transport::server::TcpIncoming;
    use tonic::transport::Server;
    use tonic::{Request, Response, Status};

    /// A worker service whose first lease grants one job more than asked, as a buggy or
    /// hostile cluster might, and which records what the worker asks and reports.
    #[derive(Default)]
    struct OverGranting {
        asked: Mutex<Vec<u32>>,
        /// Each report: the job and whether it succeeded (else a retryable failure).
        completed: Mutex<Vec<(u64, bool)>>,
        all_completed: Notify,
    }

    const GRANTED: u64 = 3;

    #[tonic::async_trait]
    impl WorkerService for OverGranting {
        async fn lease(
            &self,
            request: Request<LeaseRequest>,
        ) -> Result<Response<LeaseResponse>, Status> {
            let max = request.into_inner().max;
            let first = {
                let mut asked = self.asked.lock().unwrap();
                asked.push(max);
                asked.len() == 1
            };
            let jobs = if first {
                (1..=u64::from(max) + 1)
                    .map(|id| LeasedJob {
                        job_id: id,
                        lease_id: 100 + id,
                        lease_until_ms: 30_000,
                        attempt: 1,
                        tenant: "acme".to_owned(),
                        job_type: "email".to_owned(),
                        payload: Vec::new(),
                        correlation_id: None,
                        ttl_ms: 30_000,
                        ..LeasedJob::default()
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Ok(Response::new(LeaseResponse { jobs, held: 0 }))
        }

        async fn heartbeat(
            &self,
            _request: Request<HeartbeatRequest>,
        ) -> Result<Response<HeartbeatResponse>, Status> {
            Ok(Response::new(HeartbeatResponse {
                lease_until_ms: 30_000,
                canceled: false,
            }))
        }

        async fn complete(
            &self,
            request: Request<CompleteRequest>,
        ) -> Result<Response<CompleteResponse>, Status> {
            let request = request.into_inner();
            let succeeded = match request.outcome {
                Some(complete_request::Outcome::Succeeded(_)) => true,
                Some(complete_request::Outcome::Failed(f)) if f.retryable => false,
                other => panic!("job {}: unexpected outcome {other:?}", request.job_id),
            };
            let mut completed = self.completed.lock().unwrap();
            completed.push((request.job_id, succeeded));
            if completed.len() as u64 == GRANTED {
                self.all_completed.notify_one();
            }
            Ok(Response::new(CompleteResponse {
                job_id: request.job_id,
                status: crate::proto::JobStatus::Succeeded as i32,
            }))
        }

        async fn complete_batch(
            &self,
            _request: Request<CompleteBatchRequest>,
        ) -> Result<Response<CompleteBatchResponse>, Status> {
            Err(Status::unimplemented(
                "the worker runtime completes one by one",
            ))
        }
    }

    #[tokio::test]
    async fn jobs_granted_beyond_free_slots_are_given_back_not_dropped() {
        let service = Arc::new(OverGranting::default());
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = incoming.local_addr().unwrap();
        let server = tokio::spawn(
            Server::builder()
                .add_service(WorkerServiceServer::from_arc(service.clone()))
                .serve_with_incoming(incoming),
        );
        let client = Client::with_config(ClientConfig::new([addr.to_string()])).unwrap();
        let config = WorkerConfig {
            concurrency: 2,
            lease_batch: 2,
            idle_poll: Duration::from_millis(10),
            ..WorkerConfig::new("test-worker")
        };
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (in_handler, most) = (running.clone(), peak.clone());
        let worker = Worker::new(client, config).handle("email", move |_ctx| {
            let (running, peak) = (in_handler.clone(), most.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Outcome::success()
            }
        });
        let watched = service.clone();
        let shutdown = async move {
            // Bounded, so a job that is never run fails the test instead of hanging it.
            let _ = tokio::time::timeout(Duration::from_secs(10), watched.all_completed.notified())
                .await;
        };
        worker.run(shutdown).await.unwrap();
        server.abort();

        let mut completed = service.completed.lock().unwrap().clone();
        completed.sort_unstable();
        // Two asked, three granted: the two asked for ran; the third went straight back.
        assert_eq!(completed, vec![(1, true), (2, true), (3, false)]);
        assert!(
            peak.load(Ordering::SeqCst) <= 2,
            "more jobs ran at once than the concurrency"
        );
        let asked = service.asked.lock().unwrap().clone();
        assert_eq!(
            asked.first(),
            Some(&2),
            "the first lease asks for every free slot"
        );
        assert!(asked.iter().all(|&max| (1..=2).contains(&max)));
    }
}
