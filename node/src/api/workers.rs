//! `WorkerService`: lease, heartbeat, complete. A lease that would grant nothing is
//! answered without a log entry (the fast path below); everything else is a write.

use super::{forward_unless_here, forwarded, own_session, Api, Route};
use crate::auth::principal_of;
use crate::convert::WireWrite;
use crate::status;
use rota_client::proto as pb;
use rota_client::proto::worker_service_server::WorkerService;
use rota_client::{worker_service, MAX_LEASE_WAIT_MS};
use rota_state_machine::{backoff_ms, Command, JobId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Sessions with a lease on its way through this node, and how many.
pub(super) type LeasesInFlight = Arc<Mutex<HashMap<String, usize>>>;

/// The worker's service.
pub struct Workers(pub Arc<Api>);

/// A lease counted in `Api::leases` until dropped.
struct LeaseInFlight {
    leases: LeasesInFlight,
    client: String,
    /// Another lease of the same session was already on its way: this is a retry.
    retried: bool,
}

impl LeaseInFlight {
    /// Counts a lease of `client`'s session as on its way until the guard is dropped.
    fn start(leases: &LeasesInFlight, client: &str) -> Result<Self, Status> {
        let mut table = leases
            .lock()
            .map_err(|_| status::internal("lease table poisoned"))?;
        let n = table.entry(client.to_owned()).or_insert(0);
        *n += 1;
        Ok(Self {
            leases: leases.clone(),
            client: client.to_owned(),
            retried: *n > 1,
        })
    }
}

impl Drop for LeaseInFlight {
    fn drop(&mut self) {
        if let Ok(mut leases) = self.leases.lock() {
            if let Some(n) = leases.get_mut(&self.client) {
                *n -= 1;
                if *n == 0 {
                    leases.remove(&self.client);
                }
            }
        }
    }
}

impl Api {
    /// Whether a lease must go through the log. A new lease that would grant nothing is
    /// answered here, without a log entry: idle workers polling would otherwise fill the
    /// log and queue ahead of real work. An empty answer to a new request changes nothing
    /// and costs the worker one poll. A retry (its session's sequence already applied, or
    /// its first try still on its way through this node) goes through the log, so it gets
    /// its first answer.
    fn lease_may_grant(
        &self,
        session: Option<&pb::Session>,
        in_flight: Option<&LeaseInFlight>,
        command: &Command,
    ) -> bool {
        // Only a lease has a way around the log.
        let (worker, job_types, max, ttl_ms, tenants) = match command {
            Command::Lease {
                worker,
                job_types,
                max,
                ttl_ms,
            } => (worker, job_types, max, ttl_ms, None),
            Command::LeaseWithin {
                worker,
                job_types,
                max,
                ttl_ms,
                tenants,
            } => (worker, job_types, max, ttl_ms, Some(tenants)),
            _ => return true,
        };
        if in_flight.is_some_and(|f| f.retried) {
            return true;
        }
        self.clock.read(|state, now_ms| {
            session.is_some_and(|s| state.has_answered(&s.client_id, s.seq))
                || state.lease_may_grant(worker, job_types, *max, *ttl_ms, tenants, now_ms)
        })
    }
}

/// How often a waiting lease looks again though nothing was applied: a job whose retry
/// backoff or schedule comes due becomes ready by time alone (the lease's own entry makes
/// it so), with no entry to wake on.
const LEASE_RECHECK: Duration = Duration::from_millis(50);

/// The wait a lease asked for; INVALID_ARGUMENT past `MAX_LEASE_WAIT_MS`.
fn lease_wait(wait_ms: Option<u32>) -> Result<Duration, Status> {
    match wait_ms.unwrap_or(0) {
        ms if ms > MAX_LEASE_WAIT_MS => Err(status::invalid(
            "wait_ms",
            format!("{ms} ms is longer than a lease may wait ({MAX_LEASE_WAIT_MS} ms at most)"),
        )),
        ms => Ok(Duration::from_millis(u64::from(ms))),
    }
}

impl Api {
    /// A long poll's wait: returns once this node's applied state says `request` may grant
    /// a job (or will be answered from its session), once `wait` has passed, or once the
    /// node stops; whichever comes first. Wakes on every entry this node applies, and every
    /// `LEASE_RECHECK` for jobs that become ready by time. A request the lease would refuse
    /// "may grant" (the refusal is its answer), so it is refused at once, not after the wait.
    async fn until_grantable(
        &self,
        request: &Request<pb::LeaseRequest>,
        wait: Duration,
    ) -> Result<(), Status> {
        let principal = principal_of(request)?;
        let (session, mut command) = request.get_ref().clone().command(&self.limits)?;
        self.bind(&principal, &mut command)?;
        let session = own_session(&principal, session)?.filter(|s| !s.client_id.is_empty());
        // Held while waiting, so that a retry of this call that reaches this node and stops
        // waiting first goes through the log under the same session instead of being
        // answered empty without it (then this call, going on later, is answered the same
        // from the session, never granted a job its caller no longer hears of). A retry
        // waits like any call: were it to go through the log at once, it would spend the
        // session's sequence on an empty answer just before a job came.
        let _in_flight = match &session {
            Some(s) => Some(LeaseInFlight::start(&self.leases, &s.client_id)?),
            None => None,
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut applied = self.raft.events().applied();
        let mut stopping = self.stopping.clone();
        loop {
            // Marked seen before the look, so an entry applied after it still wakes us.
            applied.borrow_and_update();
            if *stopping.borrow_and_update()
                || self.lease_may_grant(session.as_ref(), None, &command)
            {
                return Ok(());
            }
            tokio::select! {
                changed = applied.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                changed = stopping.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                () = tokio::time::sleep(LEASE_RECHECK) => {}
                () = tokio::time::sleep_until(deadline) => return Ok(()),
            }
        }
    }
}

#[tonic::async_trait]
impl WorkerService for Workers {
    async fn lease(
        &self,
        mut request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        let wait = lease_wait(request.get_ref().wait_ms)?;
        if !wait.is_zero() {
            self.0.until_grantable(&request, wait).await?;
            // Waited here, on the node the call reached: the leader grants at once.
            request.get_mut().wait_ms = None;
        }
        forward_unless_here!(self.0, request, false, worker_service, lease);
        let principal = principal_of(&request)?;
        let request = request.into_inner();
        let started = std::time::SystemTime::now();
        let worker = request.worker.clone();
        let bytes = prost::Message::encoded_len(&request);
        let (session, mut command) = request.command(&self.0.limits)?;
        self.0.bind(&principal, &mut command)?;
        let session = own_session(&principal, session)?.filter(|s| !s.client_id.is_empty());
        let in_flight = match &session {
            Some(s) => Some(LeaseInFlight::start(&self.0.leases, &s.client_id)?),
            None => None,
        };
        if !self
            .0
            .lease_may_grant(session.as_ref(), in_flight.as_ref(), &command)
        {
            return Ok(Response::new(pb::LeaseResponse {
                jobs: Vec::new(),
                held: pb::LeaseHold::None as i32,
            }));
        }
        let reply = self.0.write(session, command, bytes).await?;
        let mut answer = pb::LeaseRequest::answer(reply)?;
        describe_leases(&self.0, &mut answer.jobs, &worker);
        self.0.trace_leases(&mut answer.jobs, &worker, started);
        Ok(Response::new(answer))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        forward_unless_here!(self.0, request, false, worker_service, heartbeat);
        self.0.serve_write(request).await
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        forward_unless_here!(self.0, request, false, worker_service, complete);
        self.0.serve_write(request).await
    }

    async fn complete_batch(
        &self,
        request: Request<pb::CompleteBatchRequest>,
    ) -> Result<Response<pb::CompleteBatchResponse>, Status> {
        forward_unless_here!(self.0, request, false, worker_service, complete_batch);
        self.0.serve_write(request).await
    }
}

/// Fills in what a lease answer carries beside the grant: the idempotency key, the retry
/// hints, provenance and the inputs, read from this node's replica, which has applied the
/// lease (this is the leader that proposed it). A job no longer in memory (a retried lease
/// answered from its session, the job finished and archived since) keeps only what the
/// grant says and the worker's id.
fn describe_leases(api: &Api, jobs: &mut [pb::LeasedJob], worker: &str) {
    if jobs.is_empty() {
        return;
    }
    api.raft.read_local(|applied| {
        for leased in jobs.iter_mut() {
            leased.worker = worker.to_owned();
            let id = JobId(leased.job_id);
            let Some(job) = applied.state.job(id) else {
                continue;
            };
            let spec = &job.spec;
            leased.idempotency_key = spec.idempotency_key.clone();
            leased.max_attempts = spec.retry.max_attempts;
            // Released attempts are numbered but not counted: the retry decision counts.
            let counted = job.counted_attempts();
            leased.retry_backoff_ms =
                (counted < spec.retry.max_attempts).then(|| backoff_ms(id, counted, &spec.retry));
            leased.project = spec.project.clone();
            leased.inputs = spec
                .inputs
                .iter()
                .map(crate::convert::artifact_out)
                .collect();
        }
    });
}
