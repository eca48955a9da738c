//! A client of the whole cluster: it talks to one node at a time, moves on to the next when
//! that node is down or unsure who leads, and gives every write a session so that a retry
//! is answered once.
//!
//! Sessions: the cluster keeps the latest answer per client id, so one id must carry one
//! write at a time. The client keeps a pool of session "lanes", each an id with its own
//! sequence; a write takes a free lane for its whole life (retries included), so concurrent
//! writes never overtake one another within a lane.

use crate::error::{is_transient, is_unreachable, ClientError};
use crate::proto::admin_service_client::AdminServiceClient;
use crate::proto::job_service_client::JobServiceClient;
use crate::proto::worker_service_client::WorkerServiceClient;
use crate::proto::*;
use crate::settings::ClientSettings;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Response, Status};

/// The longest wait between two tries of one call.
pub const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// How long a node that could not be reached (refused or dropped the connection) is passed
/// over when a call looks for the next node, unless every node is.
const DOWN_FOR: Duration = Duration::from_secs(1);

/// Largest message the client sends or accepts.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Opens a (lazy) gRPC channel to `host:port`; the default dials TCP. Simulations pass
/// one that dials their simulated network.
pub type Dial = Arc<dyn Fn(&str) -> Result<Channel, String> + Send + Sync>;

/// How a client reaches the cluster and how long it keeps trying.
#[derive(Clone)]
pub struct ClientConfig {
    /// `host:port` of the nodes; any one is enough, more give failover.
    pub endpoints: Vec<String>,
    /// Longest wait for one answer from one node.
    pub call_timeout: Duration,
    /// How long a call keeps retrying transient failures, across nodes, before giving up.
    pub retry_for: Duration,
    /// Longest wait for a TCP connection to a node.
    pub connect_timeout: Duration,
    /// How to reach a node; `None` dials TCP.
    pub dial: Option<Dial>,
    /// TLS to the nodes: the cluster CA to trust, and a client certificate where the caller
    /// authenticates with one. `None`: plain TCP, for a cluster run with `--insecure`.
    pub tls: Option<ClientTlsConfig>,
    /// Prefix of this client's session ids; `None` derives one from the process and time.
    /// Give a fixed one only where runs must repeat exactly (simulations).
    pub session_prefix: Option<String>,
    /// A bearer token (`rota_…`), sent on every call as `authorization: Bearer`. A
    /// cluster with auth on needs it or a client certificate in `tls`.
    pub token: Option<String>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoints", &self.endpoints)
            .field("call_timeout", &self.call_timeout)
            .field("retry_for", &self.retry_for)
            .field("connect_timeout", &self.connect_timeout)
            .field("dial", &self.dial.as_ref().map(|_| "custom"))
            .field("tls", &self.tls.is_some())
            .field("session_prefix", &self.session_prefix)
            // Never the secret itself.
            .field("token", &self.token.as_ref().map(|_| "set"))
            .finish()
    }
}

impl ClientConfig {
    /// Defaults for `endpoints`: 5 s per answer, retries for 30 s.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            call_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            dial: None,
            tls: None,
            session_prefix: None,
            token: None,
        }
    }

    /// Settings as the `rota` CLI reads them, without its flags: the `ROTA_*` variables
    /// (`ROTA_ENDPOINTS`, comma-separated; `ROTA_TOKEN` or `ROTA_TOKEN_FILE`; for TLS
    /// `ROTA_TLS_CA` with, for a client certificate, `ROTA_TLS_CERT` and `ROTA_TLS_KEY`),
    /// then the client config file (`ClientSettings::default_file`) for what they leave
    /// unset, then `127.0.0.1:7070`.
    pub fn from_env() -> Result<Self, ClientError> {
        let file = ClientSettings::default_file();
        ClientSettings::from_env()
            .or(ClientSettings::from_optional_file(file.as_deref())?)
            .into_config()
    }
}

/// TLS that trusts the CA certificate at `ca` (PEM) and, when given, presents the client
/// certificate and key at `identity` (PEM): what `ROTA_TLS_*` and the CLI's `--tls-*` name.
pub fn tls_from_files(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientTlsConfig, ClientError> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|e| ClientError::Config(format!("reading {}: {e}", path.display())))
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(tls)
}

/// One session id with the sequence of its latest write.
struct Lane {
    id: String,
    seq: u64,
}

struct Inner {
    endpoints: Vec<(String, Channel)>,
    /// The endpoint calls go to until it fails.
    current: AtomicUsize,
    config: ClientConfig,
    /// Lanes not in use.
    lanes: Mutex<Vec<Lane>>,
    lane_prefix: String,
    next_lane: AtomicU64,
    /// `Bearer <token>`, ready to attach to each call.
    bearer: Option<MetadataValue<Ascii>>,
    /// Per endpoint, until when it is passed over (it could not be reached).
    down_until: Mutex<Vec<Option<tokio::time::Instant>>>,
}

/// A handle on the cluster; cheap to clone, and clones share connections and sessions.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// A process-unique prefix for session ids: the pid, the start time and a counter.
fn lane_prefix() -> String {
    static CLIENTS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = CLIENTS.fetch_add(1, Ordering::Relaxed);
    format!("c{}-{nanos:x}-{n}", std::process::id())
}

impl Client {
    /// A client of the nodes at `endpoints` with default timeouts. Connects lazily.
    pub fn connect(
        endpoints: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, ClientError> {
        Self::with_config(ClientConfig::new(endpoints))
    }

    /// A client with explicit settings. Connects lazily: a node that is down is only
    /// noticed when a call goes to it.
    pub fn with_config(config: ClientConfig) -> Result<Self, ClientError> {
        if config.endpoints.is_empty() {
            return Err(ClientError::Config("no endpoints given".to_owned()));
        }
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for addr in &config.endpoints {
            let channel = match &config.dial {
                Some(dial) => dial(addr)
                    .map_err(|e| ClientError::Config(format!("endpoint {addr:?}: {e}")))?,
                None => {
                    let scheme = if config.tls.is_some() {
                        "https"
                    } else {
                        "http"
                    };
                    if config.tls.is_some() && addr.starts_with("http://") {
                        return Err(ClientError::Config(format!(
                            "endpoint {addr:?}: TLS is set, so the scheme must be https"
                        )));
                    }
                    let uri = if addr.contains("://") {
                        addr.clone()
                    } else {
                        format!("{scheme}://{addr}")
                    };
                    let bad = |e: tonic::transport::Error| {
                        ClientError::Config(format!("endpoint {addr:?}: {e}"))
                    };
                    let mut endpoint = Endpoint::from_shared(uri).map_err(bad)?;
                    if let Some(tls) = &config.tls {
                        endpoint = endpoint.tls_config(tls.clone()).map_err(bad)?;
                    }
                    endpoint
                        .connect_timeout(config.connect_timeout)
                        .tcp_nodelay(true)
                        .connect_lazy()
                }
            };
            endpoints.push((addr.clone(), channel));
        }
        let lane_prefix = config.session_prefix.clone().unwrap_or_else(lane_prefix);
        let bearer = match &config.token {
            Some(token) => {
                let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.trim())
                    .parse()
                    .map_err(|_| {
                        ClientError::Config(
                            "the token is not printable ASCII (a rota token is rota_ and 64 hex digits)"
                                .to_owned(),
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let n = endpoints.len();
        Ok(Self {
            inner: Arc::new(Inner {
                endpoints,
                current: AtomicUsize::new(0),
                config,
                lanes: Mutex::new(Vec::new()),
                lane_prefix,
                next_lane: AtomicU64::new(0),
                bearer,
                down_until: Mutex::new(vec![None; n]),
            }),
        })
    }

    /// `message` as a request with this client's credentials attached.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(bearer) = &self.inner.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        request
    }

    /// The endpoint calls go to now.
    pub fn current_endpoint(&self) -> &str {
        let i = self.inner.current.load(Ordering::Relaxed) % self.inner.endpoints.len();
        &self.inner.endpoints[i].0
    }

    /// Runs `call` against the current node, moving to the next node and retrying with
    /// backoff on transient failures until `retry_for` has passed.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.call_within(self.inner.config.call_timeout, call).await
    }

    /// As `call`, each attempt given `call_timeout` instead of the configured one.
    async fn call_within<T, F, Fut>(
        &self,
        call_timeout: Duration,
        mut call: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        // Simulated time under turmoil, so whether a call gives up never depends on how fast
        // the machine running a simulation is.
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(10);
        let mut attempts = 0;
        // The endpoints this call tried since it last waited: another one is tried at once,
        // one tried already only after the backoff.
        let mut tried: Vec<bool> = Vec::new();
        // Where this call goes next, once it has failed somewhere.
        let mut chosen: Option<usize> = None;
        loop {
            attempts += 1;
            let n = self.inner.endpoints.len();
            let i = chosen
                .take()
                .unwrap_or_else(|| self.inner.current.load(Ordering::Relaxed))
                % n;
            let channel = self.inner.endpoints[i].1.clone();
            let answer = tokio::time::timeout(call_timeout, call(channel)).await;
            let status = match answer {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) if !is_transient(&status) => {
                    return Err(ClientError::Rejected(status))
                }
                Ok(Err(status)) => status,
                Err(_) => Status::deadline_exceeded(format!(
                    "no answer from {} within {:?}",
                    self.inner.endpoints[i].0, call_timeout
                )),
            };
            tracing::debug!(endpoint = %self.inner.endpoints[i].0, %status, "call failed; trying again");
            if is_unreachable(&status) {
                self.pass_over(i);
            }
            // Move on from this node; other calls follow unless one already moved them.
            let next = self.next_endpoint(i);
            let _ =
                self.inner
                    .current
                    .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
            chosen = Some(next);
            if tried.is_empty() {
                tried = vec![false; n];
            }
            tried[i] = true;
            let wait = if tried[next] { backoff } else { Duration::ZERO };
            if started.elapsed() + wait > self.inner.config.retry_for {
                return Err(ClientError::Unavailable {
                    endpoints: self.inner.config.endpoints.join(","),
                    attempts,
                    last: status,
                });
            }
            if wait > Duration::ZERO {
                tokio::time::sleep(wait).await;
                tried.fill(false);
                // Capped low: while a new leader is elected (a few hundred ms), a client that
                // waited longer would leave the new leader idle.
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Passes endpoint `i` over for `DOWN_FOR`: it could not be reached.
    fn pass_over(&self, i: usize) {
        if let Ok(mut down) = self.inner.down_until.lock() {
            if let Some(until) = down.get_mut(i) {
                *until = Some(tokio::time::Instant::now() + DOWN_FOR);
            }
        }
    }

    /// The endpoint after `from` that is not passed over: `from` itself when only it is
    /// not, the one right after `from` when every endpoint is.
    fn next_endpoint(&self, from: usize) -> usize {
        let n = self.inner.endpoints.len();
        let now = tokio::time::Instant::now();
        let up = |j: usize| {
            self.inner.down_until.lock().map_or(true, |down| {
                down.get(j)
                    .copied()
                    .flatten()
                    .is_none_or(|until| until <= now)
            })
        };
        (1..=n)
            .map(|k| (from + k) % n)
            .find(|&j| up(j))
            .unwrap_or((from + 1) % n)
    }

    /// Runs a write under a session lane: every retry carries the same (client id, seq), so
    /// the cluster applies it at most once and answers retries with the first answer.
    pub async fn write<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: FnMut(Session, Channel) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.write_within(self.inner.config.call_timeout, call)
            .await
    }

    /// As `write`, each attempt given `call_timeout` instead of the configured one.
    async fn write_within<T, F, Fut>(
        &self,
        call_timeout: Duration,
        mut call: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(Session, Channel) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let mut lane = self.take_lane();
        lane.seq += 1;
        let session = Session {
            client_id: lane.id.clone(),
            seq: lane.seq,
        };
        let result = self
            .call_within(call_timeout, |channel| call(session.clone(), channel))
            .await;
        self.return_lane(lane);
        result
    }

    /// Leases up to `max` jobs. With `wait_ms` the call is a long poll: it waits up to that
    /// long for a job. Each attempt's timeout is the configured one plus the wait, and the
    /// node is told it (`grpc-timeout`), so a node whose caller gave up stops waiting rather
    /// than lease a job nobody receives.
    pub async fn lease(&self, request: LeaseRequest) -> Result<LeaseResponse, ClientError> {
        let wait = Duration::from_millis(u64::from(request.wait_ms.unwrap_or(0)));
        let attempt_timeout = self.inner.config.call_timeout + wait;
        self.write_within(attempt_timeout, |session, channel| {
            let mut request = request.clone();
            request.session = Some(session);
            let mut request = self.request(request);
            request.set_timeout(attempt_timeout);
            async move { worker_service(channel).lease(request).await }
        })
        .await
    }

    fn take_lane(&self) -> Lane {
        let free = self
            .inner
            .lanes
            .lock()
            .ok()
            .and_then(|mut lanes| lanes.pop());
        free.unwrap_or_else(|| {
            let n = self.inner.next_lane.fetch_add(1, Ordering::Relaxed);
            Lane {
                id: format!("{}/{n}", self.inner.lane_prefix),
                seq: 0,
            }
        })
    }

    fn return_lane(&self, lane: Lane) {
        if let Ok(mut lanes) = self.inner.lanes.lock() {
            lanes.push(lane);
        }
    }

    /// Every job `request` matches, all pages of it, in id order.
    pub async fn list_all_jobs(
        &self,
        mut request: ListJobsRequest,
    ) -> Result<Vec<Job>, ClientError> {
        let mut jobs = Vec::new();
        loop {
            let page = self.list_jobs(request.clone()).await?;
            jobs.extend(page.jobs);
            match page.next_after {
                Some(next) => request.after = Some(next),
                None => return Ok(jobs),
            }
        }
    }
}

/// The job service's stub on `channel`, with rota's message limits.
pub fn job_service(channel: Channel) -> JobServiceClient<Channel> {
    JobServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The worker service's stub on `channel`, with rota's message limits.
pub fn worker_service(channel: Channel) -> WorkerServiceClient<Channel> {
    WorkerServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The admin service's stub on `channel`, with rota's message limits.
pub fn admin_service(channel: Channel) -> AdminServiceClient<Channel> {
    AdminServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A write method: fills in the session, retries across nodes.
macro_rules! write_rpc {
    ($(#[$doc:meta])* $name:ident, $stub:ident, $request:ty, $response:ty) => {
        $(#[$doc])*
        pub async fn $name(&self, request: $request) -> Result<$response, ClientError> {
            self.write(|session, channel| {
                let mut request = request.clone();
                request.session = Some(session);
                let request = self.request(request);
                async move { $stub(channel).$name(request).await }
            })
            .await
        }
    };
}

/// A write of jobs: as `write_rpc!`, and each spec without trace context gets the
/// caller's current span's (`trace::current_traceparent`).
macro_rules! traced_write_rpc {
    ($(#[$doc:meta])* $name:ident, $stub:ident, $request:ty, $response:ty) => {
        $(#[$doc])*
        pub async fn $name(&self, request: $request) -> Result<$response, ClientError> {
            let mut request = request;
            if let Some(traceparent) = crate::trace::current_traceparent() {
                crate::trace::Traceable::fill_traceparent(&mut request, &traceparent);
            }
            self.write(|session, channel| {
                let mut request = request.clone();
                request.session = Some(session);
                let request = self.request(request);
                async move { $stub(channel).$name(request).await }
            })
            .await
        }
    };
}

/// A read (or an idempotent admin call): retried across nodes as it is.
macro_rules! read_rpc {
    ($(#[$doc:meta])* $name:ident, $stub:ident, $request:ty, $response:ty) => {
        $(#[$doc])*
        pub async fn $name(&self, request: $request) -> Result<$response, ClientError> {
            self.call(|channel| {
                let request = self.request(request.clone());
                async move { $stub(channel).$name(request).await }
            })
            .await
        }
    };
}

impl Client {
    traced_write_rpc!(
        /// Adds a job (or returns the one its idempotency key names).
        enqueue, job_service, EnqueueRequest, EnqueueResponse
    );
    traced_write_rpc!(
        /// Adds up to 1,000 jobs in one call, each answered on its own.
        enqueue_batch, job_service, EnqueueBatchRequest, EnqueueBatchResponse
    );
    traced_write_rpc!(
        /// Adds a plan of steps with dependencies, whole or not at all.
        submit_plan, job_service, SubmitPlanRequest, SubmitPlanResponse
    );
    write_rpc!(
        /// Cancels a pending, ready or leased job.
        cancel_job, job_service, CancelJobRequest, CancelJobResponse
    );
    write_rpc!(
        /// Runs a job's spec again as a new job.
        replay_job, job_service, ReplayJobRequest, ReplayJobResponse
    );
    read_rpc!(
        /// One job with its attempts and history.
        get_job, job_service, GetJobRequest, GetJobResponse
    );
    read_rpc!(
        /// A plan's status and steps.
        get_plan, job_service, GetPlanRequest, GetPlanResponse
    );
    read_rpc!(
        /// A page of jobs.
        list_jobs, job_service, ListJobsRequest, ListJobsResponse
    );
    read_rpc!(
        /// A page of the dead-letter queue.
        list_dead_letters, job_service, ListDeadLettersRequest, ListJobsResponse
    );
    read_rpc!(
        /// An artifact's writers and readers, and the chain up and down.
        get_lineage, job_service, GetLineageRequest, GetLineageResponse
    );
    write_rpc!(
        /// Adds a recurring schedule.
        create_schedule, job_service, CreateScheduleRequest, ScheduleResponse
    );
    read_rpc!(
        /// One schedule with its next fire times.
        get_schedule, job_service, GetScheduleRequest, GetScheduleResponse
    );
    read_rpc!(
        /// Every schedule.
        list_schedules, job_service, ListSchedulesRequest, ListSchedulesResponse
    );
    write_rpc!(
        /// Stops a schedule's firings.
        pause_schedule, job_service, ScheduleRequest, ScheduleResponse
    );
    write_rpc!(
        /// Resumes a paused schedule from its next fire time.
        resume_schedule, job_service, ScheduleRequest, ScheduleResponse
    );
    write_rpc!(
        /// Removes a schedule (its jobs stay).
        delete_schedule, job_service, ScheduleRequest, ScheduleResponse
    );
    write_rpc!(
        /// Runs a schedule's template for past fire times, as one backfill plan.
        backfill_schedule, job_service, BackfillScheduleRequest, SubmitPlanResponse
    );
    write_rpc!(
        /// Cancels every live job a plan created.
        cancel_plan, job_service, CancelPlanRequest, CancelPlanResponse
    );
    write_rpc!(
        /// Reports up to 1,000 outcomes in one call, each answered on its own.
        complete_batch, worker_service, CompleteBatchRequest, CompleteBatchResponse
    );
    write_rpc!(
        /// Renews a lease.
        heartbeat, worker_service, HeartbeatRequest, HeartbeatResponse
    );
    write_rpc!(
        /// Ends an attempt.
        complete, worker_service, CompleteRequest, CompleteResponse
    );
    write_rpc!(
        /// Sets a tenant's (or tenant and job type's) quota.
        set_quota, admin_service, SetQuotaRequest, AdminResponse
    );
    write_rpc!(
        /// Caps a scope's concurrency.
        throttle, admin_service, ThrottleRequest, AdminResponse
    );
    write_rpc!(
        /// Stops leasing a scope's jobs.
        pause_source, admin_service, SourceRequest, AdminResponse
    );
    write_rpc!(
        /// Resumes a paused scope.
        resume_source, admin_service, SourceRequest, AdminResponse
    );
    write_rpc!(
        /// Sets or removes a job type's circuit breaker.
        configure_breaker, admin_service, ConfigureBreakerRequest, AdminResponse
    );
    write_rpc!(
        /// Closes a tripped circuit breaker.
        reset_breaker, admin_service, ResetBreakerRequest, AdminResponse
    );
    write_rpc!(
        /// Turns maintenance mode on or off.
        set_maintenance, admin_service, SetMaintenanceRequest, AdminResponse
    );
    write_rpc!(
        /// Sets the retention windows; unset ones keep their value.
        set_retention, admin_service, SetRetentionRequest, AdminResponse
    );
    read_rpc!(
        /// Quotas, throttles, pauses, incidents, maintenance and queue depths.
        get_governance, admin_service, GetGovernanceRequest, GetGovernanceResponse
    );
    write_rpc!(
        /// Marks an open incident as being handled.
        acknowledge_incident, admin_service, IncidentRequest, AdminResponse
    );
    write_rpc!(
        /// Resolves an open incident (resetting its breaker).
        resolve_incident, admin_service, IncidentRequest, AdminResponse
    );
    write_rpc!(
        /// Takes a stuck lease back: the job is ready again, the attempt released.
        release_lease, admin_service, ReleaseLeaseRequest, AdminResponse
    );
    write_rpc!(
        /// Blocks a tenant (its enqueues refused, its jobs held) or unblocks it.
        block_tenant, admin_service, BlockTenantRequest, AdminResponse
    );
    read_rpc!(
        /// An audit bundle, signed by the answering node's audit key.
        export_audit, admin_service, ExportAuditRequest, ExportAuditResponse
    );
    read_rpc!(
        /// A page of the governance history.
        governance_history, admin_service, GovernanceHistoryRequest, GovernanceHistoryResponse
    );
    read_rpc!(
        /// The answering node's view of the cluster.
        cluster_status, admin_service, ClusterStatusRequest, ClusterStatusResponse
    );
    read_rpc!(
        /// Founds the cluster; send to one node of a fresh cluster.
        init_cluster, admin_service, InitClusterRequest, ClusterStatusResponse
    );
    read_rpc!(
        /// Adds a node as a learner; it votes once caught up (unless asked to stay a learner).
        add_node, admin_service, AddNodeRequest, ClusterStatusResponse
    );
    read_rpc!(
        /// Removes a member (a voter or a learner).
        remove_node, admin_service, RemoveNodeRequest, ClusterStatusResponse
    );
    read_rpc!(
        /// Hands leadership to a voter (the named one, or the best placed); answers once it
        /// leads.
        transfer_leader, admin_service, TransferLeaderRequest, ClusterStatusResponse
    );

    /// A backup: the leader builds a snapshot of everything committed and streams it; the
    /// first chunk says what it covers, its size and sha256. The leader builds it before it
    /// answers, so each attempt may take up to 10 minutes (not `call_timeout`). Only the call
    /// is retried, not a stream that breaks midway (ask again).
    pub async fn save_snapshot(&self) -> Result<tonic::Streaming<SnapshotChunk>, ClientError> {
        self.call_within(Duration::from_secs(600), |channel| {
            let request = self.request(SaveSnapshotRequest {});
            async move { admin_service(channel).save_snapshot(request).await }
        })
        .await
    }
    read_rpc!(
        /// Creates a bearer token and returns its secret, once. Not retried under a session:
        /// a retry after a lost answer is refused as `token_exists`.
        create_token, admin_service, CreateTokenRequest, CreateTokenResponse
    );
    read_rpc!(
        /// The cluster's tokens, without their secrets.
        list_tokens, admin_service, ListTokensRequest, ListTokensResponse
    );
    read_rpc!(
        /// Revokes a token on every node from its commit on.
        revoke_token, admin_service, RevokeTokenRequest, AdminResponse
    );
    read_rpc!(
        /// Creates the cluster's one bootstrap token (every scope) and returns its secret.
        bootstrap_token, admin_service, BootstrapTokenRequest, CreateTokenResponse
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_node_that_could_not_be_reached_is_passed_over_while_another_is_not() {
        let client = Client::connect(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"])
            .expect("a client of three endpoints");
        assert_eq!(client.next_endpoint(0), 1, "in turn while all are up");
        assert_eq!(client.next_endpoint(2), 0, "in turn, wrapping around");
        client.pass_over(1);
        assert_eq!(client.next_endpoint(0), 2, "the unreachable one is skipped");
        assert_eq!(client.next_endpoint(2), 0);
        client.pass_over(0);
        assert_eq!(
            client.next_endpoint(2),
            2,
            "every other node is passed over: the same one is tried again"
        );
        client.pass_over(2);
        assert_eq!(
            client.next_endpoint(2),
            0,
            "every node is passed over: the next one in turn"
        );
    }

    #[test]
    fn only_a_node_that_did_not_answer_counts_as_unreachable() {
        let refused = Status::unavailable("tcp connect error");
        assert!(crate::error::is_unreachable(&refused));
        let mut not_leader = Status::unavailable("this node is not the leader");
        not_leader.metadata_mut().insert(
            crate::error::ERROR_KIND_KEY,
            MetadataValue::from_static("not_leader"),
        );
        assert!(!crate::error::is_unreachable(&not_leader));
        assert!(!crate::error::is_unreachable(&Status::deadline_exceeded(
            "slow"
        )));
    }
}
