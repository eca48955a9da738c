//! The public gRPC services, one file each (`jobs`, `workers`, `admin`), and what they
//! share. Every node answers every call: writes and linearizable reads that reach a
//! follower are forwarded to the leader and its answer returned as is; stale reads and
//! cluster status are served from the local replica.

mod admin;
mod backup;
mod handoff;
mod history;
mod jobs;
mod traces;
mod workers;

pub use admin::Admin;
pub use jobs::Jobs;
pub use workers::Workers;

use crate::auth::{principal_of, Principal};
use crate::clock::LogClock;
use crate::commit::Committer;
use crate::convert::{Limits, WireWrite};
use crate::status;
use rota_client::proto as pb;
use rota_client::FORWARDED_KEY;
use rota_raft::{Applied, Dial, NodeId, RaftNode, Write};
use rota_state_machine::{
    ArchiveKey, Archived, ArchivedItem, AuthScope, ClientRequest, Command, JobId, JobSpec, Reply,
    SchedulerError, Stamp, State, TenantId, TokenSpec, MAX_PAGE,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// Longest a forwarded call may take at the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a call waits for some node to lead before it is refused `not_leader`: about one
/// election, so a call that arrives mid-election goes to the new leader the moment it is
/// known instead of back to its client to try again later.
const LEADER_WAIT: Duration = Duration::from_millis(300);
/// How long a follower whose leader stopped answering a forwarded call waits for another
/// to be elected before it answers `unavailable`: an election takes a lease and a round
/// trip (docs/replication.md).
const NEW_LEADER_WAIT: Duration = Duration::from_secs(1);
/// How many times a call may be passed on: by a follower to the node it believes leads,
/// and once more by a node that has just stopped leading (a hand-off) to its successor.
const MAX_HOPS: u8 = 2;
/// Longest a client id may be.
const MAX_CLIENT_ID_LEN: usize = 256;
/// A page's size when the request gives none.
const DEFAULT_PAGE: usize = 100;

/// What the services share: the Raft node, the group committer, log time, limits, and
/// connections to whichever node leads.
pub struct Api {
    raft: Arc<RaftNode>,
    committer: Committer,
    clock: LogClock,
    limits: Limits,
    /// This node with its configured peers: the default founding membership.
    peers: BTreeMap<NodeId, String>,
    dial: Option<Dial>,
    leaders: Mutex<HashMap<String, Channel>>,
    /// Sessions with a lease on its way through this node, and how many.
    leases: workers::LeasesInFlight,
    /// The key audit bundles are signed with.
    audit_key: Option<Arc<ed25519_dalek::SigningKey>>,
    /// Learners this node (as leader) is waiting on to promote, each with its task's
    /// number: a removal or an add with `learner` takes the entry away, and the task stops.
    promoting: Mutex<BTreeMap<NodeId, u64>>,
    /// One leader hand-off at a time.
    handoff: tokio::sync::Mutex<()>,
    /// True while this node hands leadership away: calls wait before they are routed.
    handing_off: tokio::sync::watch::Sender<bool>,
    /// True once the node stops.
    stopping: tokio::sync::watch::Receiver<bool>,
}

/// What `Api::new` needs beyond the Raft node.
pub struct ApiSettings {
    /// The way into the log.
    pub committer: Committer,
    /// Log time, for the lease fast path.
    pub clock: LogClock,
    /// What this node accepts beyond the scheduler's own checks.
    pub limits: Limits,
    /// This node with its configured peers.
    pub peers: BTreeMap<NodeId, String>,
    /// How to reach the leader; `None` dials TCP.
    pub dial: Option<Dial>,
    /// The key audit bundles are signed with.
    pub audit_key: Option<Arc<ed25519_dalek::SigningKey>>,
    /// Turns true when the node stops: long-polling leases answer at once.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// Where a request is served.
enum Route {
    Here,
    /// At the leader, reached over this channel at this address.
    Leader(Channel, String),
}

impl Api {
    /// The services' shared state for `raft`.
    pub fn new(raft: Arc<RaftNode>, settings: ApiSettings) -> Arc<Self> {
        Arc::new(Self {
            raft,
            committer: settings.committer,
            clock: settings.clock,
            limits: settings.limits,
            peers: settings.peers,
            dial: settings.dial,
            leaders: Mutex::new(HashMap::new()),
            leases: Arc::default(),
            audit_key: settings.audit_key,
            promoting: Mutex::new(BTreeMap::new()),
            handoff: tokio::sync::Mutex::new(()),
            handing_off: tokio::sync::watch::Sender::new(false),
            stopping: settings.stopping,
        })
    }

    /// The key this node signs audit bundles and signed answers with; FAILED_PRECONDITION
    /// (no_audit_key) without one.
    fn audit_key(&self) -> Result<Arc<ed25519_dalek::SigningKey>, Status> {
        self.audit_key.clone().ok_or_else(|| {
            status::with_kind(
                tonic::Code::FailedPrecondition,
                "no_audit_key",
                "this node has no audit key: start it with --audit-key FILE (rota audit keygen makes one)",
            )
        })
    }

    /// Serves here when `stale` or this node leads; otherwise the leader's channel. A call
    /// that reaches a node handing leadership away waits until the hand-off ends, and one
    /// that reaches a node that knows no leader waits (bounded) until one is elected.
    async fn route<T>(&self, request: &Request<T>, stale: bool) -> Result<Route, Status> {
        if stale {
            return Ok(Route::Here);
        }
        self.settle_handoff().await;
        if hops(request) < MAX_HOPS {
            self.await_leader().await;
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
            (Some(_), Some(addr)) if hops(request) < MAX_HOPS => {
                Ok(Route::Leader(self.channel(&addr)?, addr))
            }
            (_, addr) => Err(status::not_leader(addr.as_deref())),
        }
    }

    /// After a call forwarded to the leader at `addr` failed as `status` says: if the
    /// leader could not be reached (it died, say), returns once another node is known to
    /// lead, or after `NEW_LEADER_WAIT`, so the caller's retry finds the new leader at once
    /// instead of backing off through the election.
    async fn after_failed_forward(&self, addr: &str, status: &Status) {
        if !status::leader_unreachable(status) {
            return;
        }
        let mut metrics = self.raft.metrics();
        let elsewhere = |m: &rota_raft::RaftMetrics| {
            m.current_leader.is_some_and(|id| {
                m.membership_config
                    .membership()
                    .get_node(&id)
                    .is_some_and(|node| node.addr != addr)
            })
        };
        let _ = tokio::time::timeout(NEW_LEADER_WAIT, metrics.wait_for(elsewhere)).await;
    }

    /// Returns once some node is known to lead, or after `LEADER_WAIT`.
    async fn await_leader(&self) {
        let mut metrics = self.raft.metrics();
        if metrics.borrow().current_leader.is_some() {
            return;
        }
        let _ = tokio::time::timeout(
            LEADER_WAIT,
            metrics.wait_for(|m| m.current_leader.is_some()),
        )
        .await;
    }

    fn channel(&self, addr: &str) -> Result<Channel, Status> {
        let mut leaders = self
            .leaders
            .lock()
            .map_err(|_| status::internal("leader connection cache poisoned"))?;
        if let Some(channel) = leaders.get(addr) {
            return Ok(channel.clone());
        }
        let channel = match &self.dial {
            Some(dial) => {
                dial(addr).map_err(|e| status::internal(format!("leader address {addr:?}: {e}")))?
            }
            None => Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| status::internal(format!("leader address {addr:?}: {e}")))?
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .connect_lazy(),
        };
        leaders.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Converts a write request, proposes it under its session and converts the reply: the
    /// one write path every write call takes once it is at the leader.
    async fn serve_write<W: WireWrite + prost::Message>(
        &self,
        request: Request<W>,
    ) -> Result<Response<W::Answer>, Status> {
        let principal = principal_of(&request)?;
        let request = request.into_inner();
        let bytes = request.encoded_len();
        self.serve_sized(&principal, request, bytes).await
    }

    /// As `serve_write`, for a request `bytes` large on the wire.
    async fn serve_sized<W: WireWrite>(
        &self,
        principal: &Principal,
        request: W,
        bytes: usize,
    ) -> Result<Response<W::Answer>, Status> {
        let started = std::time::SystemTime::now();
        let (session, mut command) = request.command(&self.limits)?;
        self.bind(principal, &mut command)?;
        let session = own_session(principal, session)?;
        let watched = traces::Watched::of(&command);
        let reply = self.write(session, command, bytes).await?;
        self.record_write(watched, &reply, started);
        W::answer(reply).map(Response::new)
    }

    /// What the principal may not do with `command` beyond its call's scope: a principal
    /// bound to tenants reaches only their jobs and nothing cluster-wide, governance
    /// included (its lease becomes a `LeaseWithin` them); backfills need `orch:backfill`.
    /// With auth on, the principal signs the command's stamp, whatever actor the request
    /// named.
    fn bind(&self, principal: &Principal, command: &mut Command) -> Result<(), Status> {
        if let (Some(name), Some(stamp)) = (&principal.name, command.stamp_mut()) {
            stamp.actor = name.clone();
        }
        // A bound principal names only its tenants' jobs as dependencies too: another
        // tenant's would tell it whether that job exists and how it ended.
        let spec = |spec: &JobSpec| {
            principal.reach(&spec.tenant)?;
            for dependency in &spec.depends_on {
                self.reach_job(principal, *dependency)?;
            }
            if spec.backfill.is_some() {
                principal.require(AuthScope::Backfill)?;
            }
            Ok::<_, Status>(())
        };
        match command {
            Command::Enqueue { spec: s } => spec(s),
            Command::EnqueueBatch { specs } => specs.iter().try_for_each(spec),
            Command::SubmitPlan { steps, backfill } => {
                if backfill.is_some() {
                    principal.require(AuthScope::Backfill)?;
                }
                steps.iter().try_for_each(|step| spec(&step.spec))
            }
            Command::Lease {
                worker,
                job_types,
                max,
                ttl_ms,
            } => {
                if let Some(tenants) = &principal.tenants {
                    let within = Command::LeaseWithin {
                        worker: worker.clone(),
                        job_types: job_types.clone(),
                        max: *max,
                        ttl_ms: *ttl_ms,
                        tenants: tenants.clone(),
                    };
                    *command = within;
                }
                Ok(())
            }
            Command::Heartbeat { job_id, .. }
            | Command::Complete { job_id, .. }
            | Command::Cancel { job_id, .. }
            | Command::Replay { job_id, .. } => self.reach_job(principal, *job_id),
            Command::CompleteBatch { items } => items
                .iter()
                .try_for_each(|item| self.reach_job(principal, item.job_id)),
            // Limits are the operator's: a tenant's own principal may not lift them.
            Command::SetQuota { .. }
            | Command::Throttle { .. }
            | Command::PauseSource { .. }
            | Command::ResumeSource { .. } => principal.unbound("quotas, throttles and pauses"),
            Command::Traced { command, .. } => self.bind(principal, command),
            Command::Backfill { .. } => {
                principal.require(AuthScope::Backfill)?;
                principal.unbound("a backfill")
            }
            Command::CancelPlan { .. } => principal.unbound("canceling a plan"),
            Command::AcknowledgeIncident { .. } | Command::ResolveIncident { .. } => {
                principal.unbound("incidents")
            }
            Command::Tick
            | Command::LeaseWithin { .. }
            | Command::ConfigureBreaker { .. }
            | Command::ResetBreaker { .. }
            | Command::SetMaintenance { .. }
            | Command::CreateSchedule { .. }
            | Command::PauseSchedule { .. }
            | Command::DeleteSchedule { .. }
            | Command::SetRetention { .. }
            | Command::CreateToken { .. }
            | Command::RevokeToken { .. }
            | Command::NameCluster { .. }
            | Command::NoteMembership { .. }
            | Command::ReleaseLease { .. } => principal.unbound("this call"),
            Command::BlockTenant { .. } => principal.unbound("blocking a tenant"),
        }
    }

    /// Proposes a command a handler built itself (no session), as `principal` may.
    async fn propose(&self, principal: &Principal, mut command: Command) -> Result<Reply, Status> {
        self.bind(principal, &mut command)?;
        let bytes = postcard::experimental::serialized_size(&command)
            .map_err(|e| status::internal(format!("sizing a command: {e}")))?;
        self.write(None, command, bytes).await
    }

    /// Draws a token's secret, proposes its hash and answers the secret, once.
    async fn new_token(
        &self,
        principal: &Principal,
        mut spec: TokenSpec,
        bootstrap: bool,
        stamp: Stamp,
    ) -> Result<pb::CreateTokenResponse, Status> {
        let (secret, hash) = crate::auth::new_secret()?;
        spec.hash = hash;
        let name = spec.name.clone();
        let command = Command::CreateToken {
            spec,
            bootstrap,
            stamp,
        };
        self.propose(principal, command).await?;
        let expires_ms = self.raft.read_local(|applied| {
            applied
                .state
                .tokens()
                .find(|t| t.hash == hash)
                .and_then(|t| t.expires_ms)
        });
        Ok(pb::CreateTokenResponse {
            name,
            secret,
            expires_ms,
        })
    }

    /// Refused unless the principal may reach job `id`'s tenant (in memory or archived). A
    /// bound principal is told of a job it may not see as of one that does not exist.
    fn reach_job(&self, principal: &Principal, id: JobId) -> Result<(), Status> {
        if principal.tenants.is_none() {
            return Ok(());
        }
        let tenant = self.raft.read_local(|applied| tenant_of(applied, id));
        match tenant {
            Some(tenant) if principal.reach(&tenant).is_ok() => Ok(()),
            _ => Err(status::scheduler(&SchedulerError::JobNotFound(id))),
        }
    }

    /// Proposes `command` under the request's session, if it has one.
    /// What `apply` would refuse whatever the state is refused here, before the log: an
    /// invalid request never becomes an entry, nor does one over an entry's byte budget.
    async fn write(
        &self,
        session: Option<pb::Session>,
        command: Command,
        bytes: usize,
    ) -> Result<Reply, Status> {
        let max_entry_bytes = self.committer.max_entry_bytes();
        if bytes > max_entry_bytes {
            return Err(status::over_budget(
                "max_entry_bytes",
                format!("the request is {bytes} bytes; one log entry holds at most {max_entry_bytes}: split it"),
            ));
        }
        command.check().map_err(|e| status::scheduler(&e))?;
        let write = match session {
            Some(session) if !session.client_id.is_empty() => Write::Request(ClientRequest {
                client: session.client_id,
                seq: session.seq,
                command,
            }),
            _ => Write::Command(command),
        };
        self.committer
            .submit(write, bytes)
            .await?
            .map_err(|e| status::scheduler(&e))
    }

    /// Reads the state, linearizably unless `stale`.
    async fn read<R>(&self, stale: bool, read: impl FnOnce(&State) -> R) -> Result<R, Status> {
        self.read_applied(stale, |applied| read(&applied.state))
            .await
    }

    /// As `read`, with the archive beside the state.
    async fn read_applied<R>(
        &self,
        stale: bool,
        read: impl FnOnce(&Applied) -> R,
    ) -> Result<R, Status> {
        if stale {
            return Ok(self.raft.read_local(read));
        }
        self.raft
            .read_linearizable(read)
            .await
            .map_err(|e| status::cluster(&e))
    }
}

/// Marks a request as forwarded, with the principal this node established, and bounds
/// its time at the leader.
fn forwarded<T>(request: Request<T>) -> Result<Request<T>, Status> {
    let principal = principal_of(&request)?;
    let hops = hops(&request).saturating_add(1);
    let mut out = Request::new(request.into_inner());
    out.metadata_mut()
        .insert(FORWARDED_KEY, MetadataValue::from(u32::from(hops)));
    crate::auth::carry(&principal, out.metadata_mut())?;
    out.set_timeout(FORWARD_TIMEOUT);
    Ok(out)
}

/// How many nodes have passed `request` on; a mark that is not a small number counts as
/// the most allowed (a client has no business setting it).
fn hops<T>(request: &Request<T>) -> u8 {
    match request.metadata().get(FORWARDED_KEY) {
        None => 0,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u8>().ok())
            .map_or(MAX_HOPS, |n| n.min(MAX_HOPS)),
    }
}

/// Serves the call at the leader if this node does not lead. A leader that does not answer
/// (it just died) gets the status `status::forwarded` gives, with its `unavailable` kind,
/// once another node leads (or a second has passed).
macro_rules! forward_unless_here {
    ($api:expr, $request:ident, $stale:expr, $stub:ident, $method:ident) => {
        if let Route::Leader(channel, addr) = $api.route(&$request, $stale).await? {
            return match $stub(channel).$method(forwarded($request)?).await {
                Ok(answer) => Ok(answer),
                Err(e) => {
                    $api.after_failed_forward(&addr, &e).await;
                    Err(status::forwarded(&addr, e))
                }
            };
        }
    };
}
use forward_unless_here;

/// The tenant of job `id`, in memory or archived.
pub(super) fn tenant_of(applied: &Applied, id: JobId) -> Option<TenantId> {
    if let Some(job) = applied.state.job(id) {
        return Some(job.spec.tenant.clone());
    }
    match applied.archived(ArchiveKey::job(id)) {
        Ok(Some(Archived {
            item: ArchivedItem::Job(job),
            ..
        })) => Some(job.spec.tenant),
        _ => None,
    }
}

/// With auth on, a session belongs to its principal: the id it carries is prefixed with the
/// principal's name, so one principal can neither read another's cached answers (a lease's
/// payloads) by naming its client id nor push that session's sequence ahead.
fn own_session(
    principal: &Principal,
    session: Option<pb::Session>,
) -> Result<Option<pb::Session>, Status> {
    check_session(session.as_ref())?;
    Ok(match (&principal.name, session) {
        (Some(name), Some(mut session)) if !session.client_id.is_empty() => {
            session.client_id = format!("{name}/{}", session.client_id);
            Some(session)
        }
        (_, session) => session,
    })
}

/// A session's client id over its limit is refused before anything else looks at it.
fn check_session(session: Option<&pb::Session>) -> Result<(), Status> {
    match session {
        Some(s) if s.client_id.len() > MAX_CLIENT_ID_LEN => Err(status::invalid(
            "session.client_id",
            format!("is longer than {MAX_CLIENT_ID_LEN} bytes"),
        )),
        _ => Ok(()),
    }
}

/// Whether a read asks for the local replica's view.
fn stale(read: &Option<pb::ReadOptions>) -> bool {
    read.as_ref().is_some_and(|r| r.stale)
}

/// A request's page size: the default when it gives none, never past `MAX_PAGE`.
fn page_limit(limit: u32) -> usize {
    match limit {
        0 => DEFAULT_PAGE,
        n => (n as usize).min(MAX_PAGE),
    }
}
