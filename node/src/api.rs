//! The public gRPC services. Every node answers every call: writes and linearizable reads
//! that reach a follower are forwarded to the leader and its answer returned as is; stale
//! reads and cluster status are served from the local replica.

use crate::commit::Committer;
use crate::convert::{self, Limits};
use crate::status;
use rota_client::proto as pb;
use rota_client::proto::admin_service_server::AdminService;
use rota_client::proto::job_service_server::JobService;
use rota_client::proto::worker_service_server::WorkerService;
use rota_client::{admin_service, job_service, worker_service, FORWARDED_KEY};
use rota_raft::{Applied, Dial, NodeId, RaftNode, RotaNode, Write};
use rota_state_machine::{
    ClientRequest, Command, CompleteItem, JobFilter, JobId, JobType, PlanId, Reply, State,
    TenantId, WorkerId, MAX_PAGE,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// Longest a forwarded call may take at the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client id may be.
const MAX_CLIENT_ID_LEN: usize = 256;
/// A page's size when the request gives none.
const DEFAULT_PAGE: usize = 100;

/// What the services share: the Raft node, the group committer, limits, and connections to
/// whichever node leads.
pub struct Api {
    pub raft: Arc<RaftNode>,
    pub committer: Committer,
    pub limits: Limits,
    /// This node with its configured peers: the default founding membership.
    pub peers: BTreeMap<NodeId, String>,
    dial: Option<Dial>,
    leaders: Mutex<HashMap<String, Channel>>,
    /// Sessions with a lease on its way through this node, and how many.
    leases: Arc<Mutex<HashMap<String, usize>>>,
}

/// A lease counted in `Api::leases` until dropped.
struct LeaseInFlight {
    leases: Arc<Mutex<HashMap<String, usize>>>,
    client: String,
    /// Another lease of the same session was already on its way: this is a retry.
    retried: bool,
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

/// Where a request is served.
enum Route {
    Here,
    Leader(Channel),
}

impl Api {
    pub fn new(
        raft: Arc<RaftNode>,
        committer: Committer,
        limits: Limits,
        peers: BTreeMap<NodeId, String>,
        dial: Option<Dial>,
    ) -> Arc<Self> {
        Arc::new(Self {
            raft,
            committer,
            limits,
            peers,
            dial,
            leaders: Mutex::new(HashMap::new()),
            leases: Arc::default(),
        })
    }

    /// Counts a lease of `client`'s session as on its way until the guard is dropped.
    fn lease_in_flight(&self, client: &str) -> Result<LeaseInFlight, Status> {
        let mut leases = self
            .leases
            .lock()
            .map_err(|_| Status::internal("lease table poisoned"))?;
        let n = leases.entry(client.to_owned()).or_insert(0);
        *n += 1;
        Ok(LeaseInFlight {
            leases: self.leases.clone(),
            client: client.to_owned(),
            retried: *n > 1,
        })
    }

    /// Serves here when `stale` or this node leads; otherwise the leader's channel.
    fn route<T>(&self, request: &Request<T>, stale: bool) -> Result<Route, Status> {
        if stale {
            return Ok(Route::Here);
        }
        let (leader, addr) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let leader = metrics.current_leader;
            let addr = leader.and_then(|id| {
                metrics
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .map(|node| node.addr.clone())
            });
            (leader, addr)
        };
        match (leader, addr) {
            (Some(id), _) if id == self.raft.id() => Ok(Route::Here),
            (Some(_), Some(addr)) if request.metadata().get(FORWARDED_KEY).is_none() => {
                Ok(Route::Leader(self.channel(&addr)?))
            }
            (_, addr) => Err(status::not_leader(addr.as_deref())),
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel, Status> {
        let mut leaders = self
            .leaders
            .lock()
            .map_err(|_| Status::internal("leader connection cache poisoned"))?;
        if let Some(channel) = leaders.get(addr) {
            return Ok(channel.clone());
        }
        let channel = match &self.dial {
            Some(dial) => {
                dial(addr).map_err(|e| Status::internal(format!("leader address {addr:?}: {e}")))?
            }
            None => Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| Status::internal(format!("leader address {addr:?}: {e}")))?
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .connect_lazy(),
        };
        leaders.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Proposes `command` under the request's session, if it has one.
    async fn write(&self, session: Option<pb::Session>, command: Command) -> Result<Reply, Status> {
        let write = match session {
            Some(session) if !session.client_id.is_empty() => {
                if session.client_id.len() > MAX_CLIENT_ID_LEN {
                    return Err(status::invalid(
                        "session.client_id",
                        format!("is longer than {MAX_CLIENT_ID_LEN} bytes"),
                    ));
                }
                Write::Request(ClientRequest {
                    client: session.client_id,
                    seq: session.seq,
                    command,
                })
            }
            _ => Write::Command(command),
        };
        self.committer
            .submit(write)
            .await?
            .map_err(|e| status::scheduler(&e))
    }

    /// Proposes a batch command and turns each item's answer into its wire result, in order.
    async fn write_batch<T>(
        &self,
        session: Option<pb::Session>,
        command: Command,
        item: impl Fn(rota_state_machine::Response) -> Result<T, Status>,
    ) -> Result<Vec<T>, Status> {
        match self.write(session, command).await? {
            Reply::Batch { replies } => replies.into_iter().map(item).collect(),
            other => Err(status::unexpected(&other)),
        }
    }

    /// Reads the state, linearizably unless `stale`.
    async fn read<R>(&self, stale: bool, read: impl FnOnce(&State) -> R) -> Result<R, Status> {
        if stale {
            return Ok(self.raft.read_local(|applied| read(&applied.state)));
        }
        self.raft
            .read_linearizable(|applied| read(&applied.state))
            .await
            .map_err(|e| status::cluster(&e))
    }

    /// This node's view of the cluster.
    fn cluster_status(&self, with_digest: bool) -> pb::ClusterStatusResponse {
        let metrics = self.raft.metrics().borrow().clone();
        let (frozen, counts, log_time_ms) = self.raft.read_local(|applied: &Applied| {
            let frozen = with_digest.then(|| applied.state.freeze());
            let counts = applied
                .state
                .status_counts()
                .iter()
                .map(|(s, n)| pb::StatusCount {
                    status: convert::status_out(*s) as i32,
                    count: *n as u64,
                })
                .collect::<Vec<_>>();
            (frozen, counts, applied.state.now_ms())
        });
        // Encoded and hashed outside the lock, so a digest never holds up apply.
        let digest = match frozen {
            Some(frozen) => frozen
                .digest()
                .unwrap_or_else(|e| format!("unavailable: {e}")),
            None => String::new(),
        };
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| pb::Member {
                id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let leader_addr = metrics
            .current_leader
            .and_then(|id| membership.get_node(&id).map(|n| n.addr.clone()));
        pb::ClusterStatusResponse {
            node_id: metrics.id,
            role: format!("{:?}", metrics.state).to_lowercase(),
            leader_id: metrics.current_leader,
            leader_addr,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            applied_index: metrics.last_applied.map(|id| id.index),
            state_digest: digest,
            members,
            jobs: counts,
            log_time_ms,
        }
    }
}

/// Marks a request as forwarded and bounds its time at the leader.
fn forwarded<T>(request: Request<T>) -> Request<T> {
    let mut out = Request::new(request.into_inner());
    out.metadata_mut()
        .insert(FORWARDED_KEY, MetadataValue::from_static("1"));
    out.set_timeout(FORWARD_TIMEOUT);
    out
}

/// Serves the call at the leader if this node does not lead.
macro_rules! forward_unless_here {
    ($api:expr, $request:ident, $stale:expr, $stub:ident, $method:ident) => {
        if let Route::Leader(channel) = $api.route(&$request, $stale)? {
            return $stub(channel).$method(forwarded($request)).await;
        }
    };
}

fn stale(read: &Option<pb::ReadOptions>) -> bool {
    read.as_ref().is_some_and(|r| r.stale)
}

fn page_limit(limit: u32) -> usize {
    match limit {
        0 => DEFAULT_PAGE,
        n => (n as usize).min(MAX_PAGE),
    }
}

fn job_page(page: rota_state_machine::JobPage<'_>, summary: bool) -> pb::ListJobsResponse {
    pb::ListJobsResponse {
        jobs: page
            .jobs
            .iter()
            .map(|j| convert::job_out(j, summary))
            .collect(),
        next_after: page.next_after.map(|id| id.0),
    }
}

/// The producer's service.
pub struct Jobs(pub Arc<Api>);

#[tonic::async_trait]
impl JobService for Jobs {
    async fn enqueue(
        &self,
        request: Request<pb::EnqueueRequest>,
    ) -> Result<Response<pb::EnqueueResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, enqueue);
        let request = request.into_inner();
        let spec = convert::spec(request.spec, &self.0.limits)?;
        match self
            .0
            .write(request.session, Command::Enqueue { spec })
            .await?
        {
            Reply::Enqueued { job_id, created } => Ok(Response::new(pb::EnqueueResponse {
                job_id: job_id.0,
                created,
            })),
            other => Err(status::unexpected(&other)),
        }
    }

    async fn enqueue_batch(
        &self,
        request: Request<pb::EnqueueBatchRequest>,
    ) -> Result<Response<pb::EnqueueBatchResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, enqueue_batch);
        let request = request.into_inner();
        let specs = request
            .specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                convert::spec(Some(spec), &self.0.limits)
                    .map_err(|e| status::invalid(&format!("specs[{i}]"), e.message()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let command = Command::EnqueueBatch { specs };
        let results = self
            .0
            .write_batch(request.session, command, |reply| {
                use pb::enqueue_result::Result as R;
                Ok(pb::EnqueueResult {
                    result: Some(match reply {
                        Ok(Reply::Enqueued { job_id, created }) => {
                            R::Enqueued(pb::EnqueueResponse {
                                job_id: job_id.0,
                                created,
                            })
                        }
                        Ok(other) => return Err(status::unexpected(&other)),
                        Err(e) => R::Error(status::item_error(&e)),
                    }),
                })
            })
            .await?;
        Ok(Response::new(pb::EnqueueBatchResponse { results }))
    }

    async fn submit_plan(
        &self,
        request: Request<pb::SubmitPlanRequest>,
    ) -> Result<Response<pb::SubmitPlanResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, submit_plan);
        let request = request.into_inner();
        let steps = convert::plan_steps(request.steps, &self.0.limits)?;
        let command = Command::SubmitPlan {
            steps,
            backfill: request.backfill.map(convert::backfill),
        };
        match self.0.write(request.session, command).await? {
            Reply::PlanSubmitted { plan_id, jobs } => Ok(Response::new(pb::SubmitPlanResponse {
                plan_id: plan_id.0,
                jobs: jobs
                    .into_iter()
                    .map(|(key, id)| pb::PlanJob { key, job_id: id.0 })
                    .collect(),
            })),
            other => Err(status::unexpected(&other)),
        }
    }

    async fn get_plan(
        &self,
        request: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::GetPlanResponse>, Status> {
        let is_stale = stale(&request.get_ref().read);
        forward_unless_here!(self.0, request, is_stale, job_service, get_plan);
        let id = PlanId(request.get_ref().plan_id);
        let plan = self
            .0
            .read(is_stale, |state| {
                state.plan(id).map(|view| pb::GetPlanResponse {
                    plan_id: view.plan.id.0,
                    status: convert::plan_status_out(view.status) as i32,
                    created_ms: view.plan.created_ms,
                    steps: view
                        .steps
                        .iter()
                        .map(|(key, job, status)| pb::PlanStepState {
                            key: (*key).to_owned(),
                            job_id: job.0,
                            status: convert::status_out(*status) as i32,
                        })
                        .collect(),
                })
            })
            .await?;
        plan.map(Response::new).ok_or_else(|| {
            status::with_kind(
                tonic::Code::NotFound,
                "plan_not_found",
                format!("{id} not found"),
            )
        })
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::GetJobResponse>, Status> {
        let is_stale = stale(&request.get_ref().read);
        forward_unless_here!(self.0, request, is_stale, job_service, get_job);
        let id = JobId(request.get_ref().job_id);
        let job = self
            .0
            .read(is_stale, |state| {
                state.job(id).map(|j| convert::job_out(j, false))
            })
            .await?;
        match job {
            Some(job) => Ok(Response::new(pb::GetJobResponse { job: Some(job) })),
            None => Err(status::scheduler(
                &rota_state_machine::SchedulerError::JobNotFound(id),
            )),
        }
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let is_stale = stale(&request.get_ref().read);
        forward_unless_here!(self.0, request, is_stale, job_service, list_jobs);
        let request = request.into_inner();
        let filter = JobFilter {
            status: convert::status_filter(request.status)?,
            tenant: request.tenant.map(TenantId),
            job_type: request.job_type.map(JobType),
            since_ms: request.since_ms,
            until_ms: request.until_ms,
        };
        let limit = page_limit(request.limit);
        let after = request.after.map(JobId);
        let page = self
            .0
            .read(is_stale, |state| {
                job_page(state.list_jobs(&filter, after, limit), request.summary)
            })
            .await?;
        Ok(Response::new(page))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, cancel_job);
        let request = request.into_inner();
        let command = Command::Cancel {
            job_id: JobId(request.job_id),
            stamp: convert::stamp(request.stamp)?,
        };
        match self.0.write(request.session, command).await? {
            Reply::Canceled { job_id } => {
                Ok(Response::new(pb::CancelJobResponse { job_id: job_id.0 }))
            }
            other => Err(status::unexpected(&other)),
        }
    }

    async fn replay_job(
        &self,
        request: Request<pb::ReplayJobRequest>,
    ) -> Result<Response<pb::ReplayJobResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, replay_job);
        let request = request.into_inner();
        let command = Command::Replay {
            job_id: JobId(request.job_id),
            stamp: convert::stamp(request.stamp)?,
        };
        match self.0.write(request.session, command).await? {
            Reply::Replayed { job_id } => {
                Ok(Response::new(pb::ReplayJobResponse { job_id: job_id.0 }))
            }
            other => Err(status::unexpected(&other)),
        }
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let is_stale = stale(&request.get_ref().read);
        forward_unless_here!(self.0, request, is_stale, job_service, list_dead_letters);
        let request = request.into_inner();
        let limit = page_limit(request.limit);
        let after = request.after.map(JobId);
        let page = self
            .0
            .read(is_stale, |state| {
                job_page(state.dead_letters(after, limit), false)
            })
            .await?;
        Ok(Response::new(page))
    }
}

/// The worker's service.
pub struct Workers(pub Arc<Api>);

#[tonic::async_trait]
impl WorkerService for Workers {
    async fn lease(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        forward_unless_here!(self.0, request, false, worker_service, lease);
        let request = request.into_inner();
        let worker = WorkerId(request.worker);
        let job_types: Vec<JobType> = request.job_types.into_iter().map(JobType).collect();
        // A new lease that would grant nothing is answered here, without a log entry: idle
        // workers polling would otherwise fill the log and queue ahead of real work. An
        // empty answer to a new request changes nothing and costs the worker one poll. A
        // retry (its session's sequence already applied, or its first try still on its
        // way through this node) goes through the log, so it gets its first answer.
        let session = request.session.clone().filter(|s| !s.client_id.is_empty());
        let in_flight = match &session {
            Some(s) => Some(self.0.lease_in_flight(&s.client_id)?),
            None => None,
        };
        let now_ms = self.0.committer.clock_ms();
        let may_grant = in_flight.as_ref().is_some_and(|f| f.retried)
            || self.0.raft.read_local(|applied| {
                let state = &applied.state;
                let retry = session.as_ref().is_some_and(|s| {
                    state
                        .session(&s.client_id)
                        .is_some_and(|known| known.seq >= s.seq)
                });
                retry
                    || state.lease_may_grant(
                        &worker,
                        &job_types,
                        request.max,
                        request.ttl_ms,
                        now_ms,
                    )
            });
        if !may_grant {
            return Ok(Response::new(pb::LeaseResponse {
                jobs: Vec::new(),
                held: pb::LeaseHold::None as i32,
            }));
        }
        let command = Command::Lease {
            worker,
            job_types,
            max: request.max,
            ttl_ms: request.ttl_ms,
        };
        match self.0.write(request.session, command).await? {
            Reply::Leased { grants, held } => Ok(Response::new(pb::LeaseResponse {
                jobs: grants.into_iter().map(convert::grant_out).collect(),
                held: convert::hold_out(held) as i32,
            })),
            other => Err(status::unexpected(&other)),
        }
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        forward_unless_here!(self.0, request, false, worker_service, heartbeat);
        let request = request.into_inner();
        let command = Command::Heartbeat {
            job_id: JobId(request.job_id),
            lease_id: rota_state_machine::LeaseId(request.lease_id),
        };
        match self.0.write(request.session, command).await? {
            Reply::HeartbeatAck {
                lease_until_ms,
                canceled,
            } => Ok(Response::new(pb::HeartbeatResponse {
                lease_until_ms,
                canceled,
            })),
            other => Err(status::unexpected(&other)),
        }
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        forward_unless_here!(self.0, request, false, worker_service, complete);
        let request = request.into_inner();
        let command = Command::Complete {
            job_id: JobId(request.job_id),
            lease_id: rota_state_machine::LeaseId(request.lease_id),
            completion: convert::completion(request.outcome)?,
        };
        match self.0.write(request.session, command).await? {
            Reply::Completed { job_id, status } => Ok(Response::new(pb::CompleteResponse {
                job_id: job_id.0,
                status: convert::status_out(status) as i32,
            })),
            other => Err(status::unexpected(&other)),
        }
    }

    async fn complete_batch(
        &self,
        request: Request<pb::CompleteBatchRequest>,
    ) -> Result<Response<pb::CompleteBatchResponse>, Status> {
        forward_unless_here!(self.0, request, false, worker_service, complete_batch);
        let request = request.into_inner();
        let items = request
            .items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let completion = convert::completion(convert::item_outcome(item.outcome))
                    .map_err(|e| status::invalid(&format!("items[{i}]"), e.message()))?;
                Ok(CompleteItem {
                    job_id: JobId(item.job_id),
                    lease_id: rota_state_machine::LeaseId(item.lease_id),
                    completion,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let command = Command::CompleteBatch { items };
        let results = self
            .0
            .write_batch(request.session, command, |reply| {
                use pb::complete_result::Result as R;
                Ok(pb::CompleteResult {
                    result: Some(match reply {
                        Ok(Reply::Completed { job_id, status }) => {
                            R::Completed(pb::CompleteResponse {
                                job_id: job_id.0,
                                status: convert::status_out(status) as i32,
                            })
                        }
                        Ok(other) => return Err(status::unexpected(&other)),
                        Err(e) => R::Error(status::item_error(&e)),
                    }),
                })
            })
            .await?;
        Ok(Response::new(pb::CompleteBatchResponse { results }))
    }
}

/// The operator's service.
pub struct Admin(pub Arc<Api>);

impl Admin {
    async fn govern(
        &self,
        session: Option<pb::Session>,
        command: Command,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        match self.0.write(session, command).await? {
            Reply::Done => Ok(Response::new(pb::AdminResponse {})),
            other => Err(status::unexpected(&other)),
        }
    }

    fn voters(&self) -> BTreeSet<NodeId> {
        self.0
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }
}

fn membership_error(e: rota_raft::ClusterError) -> Status {
    status::cluster(&e)
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn set_quota(
        &self,
        request: Request<pb::SetQuotaRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, set_quota);
        let r = request.into_inner();
        let command = Command::SetQuota {
            tenant: TenantId(r.tenant),
            job_type: r.job_type.map(JobType),
            max_active: r.max_active,
            max_per_hour: r.max_per_hour,
            burst: r.burst,
            stamp: convert::stamp(r.stamp)?,
        };
        self.govern(r.session, command).await
    }

    async fn throttle(
        &self,
        request: Request<pb::ThrottleRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, throttle);
        let r = request.into_inner();
        let command = Command::Throttle {
            scope: convert::scope(r.scope)?,
            max_concurrent: r.max_concurrent,
            stamp: convert::stamp(r.stamp)?,
        };
        self.govern(r.session, command).await
    }

    async fn pause_source(
        &self,
        request: Request<pb::SourceRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, pause_source);
        let r = request.into_inner();
        let command = Command::PauseSource {
            scope: convert::scope(r.scope)?,
            stamp: convert::stamp(r.stamp)?,
        };
        self.govern(r.session, command).await
    }

    async fn resume_source(
        &self,
        request: Request<pb::SourceRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, resume_source);
        let r = request.into_inner();
        let command = Command::ResumeSource {
            scope: convert::scope(r.scope)?,
            stamp: convert::stamp(r.stamp)?,
        };
        self.govern(r.session, command).await
    }

    async fn configure_breaker(
        &self,
        request: Request<pb::ConfigureBreakerRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, configure_breaker);
        let r = request.into_inner();
        let config = match r.config {
            None => None,
            Some(c) => Some(rota_state_machine::BreakerConfig {
                failure_threshold_percent: u8::try_from(c.failure_threshold_percent)
                    .map_err(|_| status::invalid("failure_threshold_percent", "must be 1..=100"))?,
                window_ms: c.window_ms,
                min_attempts: c.min_attempts,
            }),
        };
        let command = Command::ConfigureBreaker {
            job_type: JobType(r.job_type),
            config,
            stamp: convert::stamp(r.stamp)?,
        };
        self.govern(r.session, command).await
    }

    async fn reset_breaker(
        &self,
        request: Request<pb::ResetBreakerRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, reset_breaker);
        let r = request.into_inner();
        let command = Command::ResetBreaker {
            job_type: JobType(r.job_type),
            stamp: convert::stamp(r.stamp)?,
        };
        self.govern(r.session, command).await
    }

    async fn set_maintenance(
        &self,
        request: Request<pb::SetMaintenanceRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, set_maintenance);
        let r = request.into_inner();
        let command = Command::SetMaintenance {
            enabled: r.enabled,
            stamp: convert::stamp(r.stamp)?,
        };
        self.govern(r.session, command).await
    }

    async fn get_governance(
        &self,
        request: Request<pb::GetGovernanceRequest>,
    ) -> Result<Response<pb::GetGovernanceResponse>, Status> {
        let is_stale = stale(&request.get_ref().read);
        forward_unless_here!(self.0, request, is_stale, admin_service, get_governance);
        let view = self.0.read(is_stale, governance_view).await?;
        Ok(Response::new(view))
    }

    async fn cluster_status(
        &self,
        request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(
            self.0.cluster_status(request.get_ref().digest),
        ))
    }

    async fn init_cluster(
        &self,
        request: Request<pb::InitClusterRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let r = request.into_inner();
        let mut members: BTreeMap<NodeId, RotaNode> = r
            .members
            .into_iter()
            .map(|m| (m.id, RotaNode { addr: m.addr }))
            .collect();
        if members.is_empty() {
            members = self
                .0
                .peers
                .iter()
                .map(|(id, addr)| (*id, RotaNode { addr: addr.clone() }))
                .collect();
        }
        if !members.contains_key(&self.0.raft.id()) {
            return Err(status::invalid(
                "members",
                format!("must include this node ({})", self.0.raft.id()),
            ));
        }
        let initialized = self
            .0
            .raft
            .raft()
            .is_initialized()
            .await
            .map_err(|e| status::cluster(&e.into()))?;
        if initialized {
            return Err(status::with_kind(
                tonic::Code::FailedPrecondition,
                "already_initialized",
                "this node already belongs to an initialized cluster",
            ));
        }
        self.0
            .raft
            .initialize(members)
            .await
            .map_err(membership_error)?;
        Ok(Response::new(self.0.cluster_status(false)))
    }

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, add_node);
        let r = request.into_inner();
        if r.addr.is_empty() {
            return Err(status::invalid("addr", "must not be empty"));
        }
        self.0
            .raft
            .add_learner(r.id, RotaNode { addr: r.addr })
            .await
            .map_err(membership_error)?;
        let mut voters = self.voters();
        voters.insert(r.id);
        self.0
            .raft
            .change_membership(voters)
            .await
            .map_err(membership_error)?;
        Ok(Response::new(self.0.cluster_status(false)))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, remove_node);
        let id = request.into_inner().id;
        let mut voters = self.voters();
        if !voters.remove(&id) {
            return Err(status::with_kind(
                tonic::Code::NotFound,
                "node_not_found",
                format!("node {id} is not a voter of this cluster"),
            ));
        }
        if voters.is_empty() {
            return Err(status::invalid("id", "cannot remove the last voter"));
        }
        self.0
            .raft
            .change_membership(voters)
            .await
            .map_err(membership_error)?;
        Ok(Response::new(self.0.cluster_status(false)))
    }
}

fn governance_view(state: &State) -> pb::GetGovernanceResponse {
    let quotas = state
        .quotas()
        .map(|(scope, quota)| pb::QuotaView {
            scope: Some(convert::scope_out(scope)),
            max_active: quota.max_active,
            max_per_hour: quota.rate.as_ref().map(|r| r.max_per_hour),
            burst: quota.rate.as_ref().map(|r| r.burst),
            active: state.active(scope),
        })
        .collect();
    let throttles = state
        .throttles()
        .map(|(scope, cap)| pb::ThrottleView {
            scope: Some(convert::scope_out(scope)),
            max_concurrent: cap,
            active: state.active(scope),
        })
        .collect();
    let paused = state
        .paused_sources()
        .map(|(scope, stamp)| pb::PausedSource {
            scope: Some(convert::scope_out(scope)),
            stamp: Some(convert::stamp_out(stamp)),
        })
        .collect();
    let incidents = state
        .incidents(false)
        .into_iter()
        .map(|i| pb::IncidentView {
            id: i.id.0,
            job_type: i.job_type.0.clone(),
            opened_ms: i.opened_ms,
            failure_rate_percent: u32::from(i.failure_rate_percent),
            resolved: i.resolved.is_some(),
        })
        .collect();
    let queues = state
        .queue_depth()
        .into_iter()
        .map(|q| pb::QueueDepthView {
            tenant: q.tenant.0,
            job_type: q.job_type.0,
            pending: q.pending,
            ready: q.ready,
            leased: q.leased,
            retrying: q.retrying,
        })
        .collect();
    pb::GetGovernanceResponse {
        quotas,
        throttles,
        paused,
        incidents,
        maintenance: state.maintenance().map(convert::stamp_out),
        queues,
    }
}
