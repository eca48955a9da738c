//! `AdminService`: governance writes and views, cluster status, founding and membership.

use super::{forward_unless_here, forwarded, stale, Api, Route};
use crate::auth::principal_of;
use crate::convert::{self, IncidentChange, SourceChange};
use crate::status;
use rota_client::admin_service;
use rota_client::proto as pb;
use rota_client::proto::admin_service_server::AdminService;
use rota_raft::{Applied, NodeId, RotaNode};
use rota_state_machine::{
    ArchiveKind, ArchivedItem, AuthScope, Command, Incident, MembershipChange, Stamp, State,
    TenantId, TokenSpec,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// The operator's service.
pub struct Admin(pub Arc<Api>);

/// Longest a leader transfer may take, the target's catching up included: within a
/// client's default call deadline (5 s).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a backup forwarded to the leader may stream.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);

/// The name of the cluster's one bootstrap token.
const BOOTSTRAP_TOKEN: &str = "bootstrap";

impl Admin {
    /// Pauses or resumes a source: one request message, two calls.
    async fn change_source(
        &self,
        request: Request<pb::SourceRequest>,
        pause: bool,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let principal = principal_of(&request)?;
        let request = request.into_inner();
        let bytes = prost::Message::encoded_len(&request);
        self.0
            .serve_sized(&principal, SourceChange { request, pause }, bytes)
            .await
    }

    async fn change_incident(
        &self,
        request: Request<pb::IncidentRequest>,
        resolve: bool,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let principal = principal_of(&request)?;
        let request = request.into_inner();
        let bytes = prost::Message::encoded_len(&request);
        self.0
            .serve_sized(&principal, IncidentChange { request, resolve }, bytes)
            .await
    }
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn set_quota(
        &self,
        request: Request<pb::SetQuotaRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, set_quota);
        self.0.serve_write(request).await
    }

    async fn throttle(
        &self,
        request: Request<pb::ThrottleRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, throttle);
        self.0.serve_write(request).await
    }

    async fn pause_source(
        &self,
        request: Request<pb::SourceRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, pause_source);
        self.change_source(request, true).await
    }

    async fn resume_source(
        &self,
        request: Request<pb::SourceRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, resume_source);
        self.change_source(request, false).await
    }

    async fn configure_breaker(
        &self,
        request: Request<pb::ConfigureBreakerRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, configure_breaker);
        self.0.serve_write(request).await
    }

    async fn reset_breaker(
        &self,
        request: Request<pb::ResetBreakerRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, reset_breaker);
        self.0.serve_write(request).await
    }

    async fn release_lease(
        &self,
        request: Request<pb::ReleaseLeaseRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, release_lease);
        self.0.serve_write(request).await
    }

    async fn block_tenant(
        &self,
        request: Request<pb::BlockTenantRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, block_tenant);
        self.0.serve_write(request).await
    }

    async fn set_maintenance(
        &self,
        request: Request<pb::SetMaintenanceRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, set_maintenance);
        self.0.serve_write(request).await
    }

    async fn get_governance(
        &self,
        request: Request<pb::GetGovernanceRequest>,
    ) -> Result<Response<pb::GetGovernanceResponse>, Status> {
        principal_of(&request)?.unbound("the governance view")?;
        let is_stale = stale(&request.get_ref().read);
        forward_unless_here!(self.0, request, is_stale, admin_service, get_governance);
        let archived = request.get_ref().archived_incidents;
        let view = self
            .0
            .read_applied(is_stale, |applied| {
                let mut view = governance_view(&applied.state);
                if archived {
                    view.incidents.extend(archived_incidents(applied)?);
                }
                Ok::<_, Status>(view)
            })
            .await??;
        Ok(Response::new(view))
    }

    async fn governance_history(
        &self,
        request: Request<pb::GovernanceHistoryRequest>,
    ) -> Result<Response<pb::GovernanceHistoryResponse>, Status> {
        principal_of(&request)?.unbound("the governance history")?;
        let is_stale = stale(&request.get_ref().read);
        forward_unless_here!(self.0, request, is_stale, admin_service, governance_history);
        let wanted = request.into_inner();
        let page = self
            .0
            .read_applied(is_stale, |applied| {
                super::history::history(applied, &wanted)
            })
            .await??;
        Ok(Response::new(page))
    }

    async fn acknowledge_incident(
        &self,
        request: Request<pb::IncidentRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, acknowledge_incident);
        self.change_incident(request, false).await
    }

    async fn resolve_incident(
        &self,
        request: Request<pb::IncidentRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, resolve_incident);
        self.change_incident(request, true).await
    }

    async fn export_audit(
        &self,
        request: Request<pb::ExportAuditRequest>,
    ) -> Result<Response<pb::ExportAuditResponse>, Status> {
        principal_of(&request)?.unbound("an audit export")?;
        let is_stale = stale(&request.get_ref().read);
        forward_unless_here!(self.0, request, is_stale, admin_service, export_audit);
        let key = self.0.audit_key()?;
        let wanted = request.into_inner();
        let window = crate::audit::Window {
            since_ms: wanted.since_ms.unwrap_or(0),
            until_ms: wanted.until_ms.unwrap_or(u64::MAX),
            tenant: wanted.tenant,
        };
        let (files, manifest) = self
            .0
            .read_applied(is_stale, |applied| crate::audit::bundle(applied, &window))
            .await??;
        let files = crate::audit::format::seal(files, &manifest, &key)
            .map_err(|e| status::internal(format!("sealing the bundle: {e}")))?;
        Ok(Response::new(pb::ExportAuditResponse {
            files: files
                .into_iter()
                .map(|(name, content)| pb::AuditFile { name, content })
                .collect(),
            key_id: crate::audit::format::key_id(&key.verifying_key()),
        }))
    }

    async fn set_retention(
        &self,
        request: Request<pb::SetRetentionRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, set_retention);
        self.0.serve_write(request).await
    }

    async fn cluster_status(
        &self,
        request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let principal = principal_of(&request)?;
        principal.unbound("the cluster's status")?;
        // A digest encodes the whole state under the apply lock: an operator's call.
        if request.get_ref().digest {
            principal.require(AuthScope::Admin)?;
        }
        let here = !request.get_ref().leader_view;
        forward_unless_here!(self.0, request, here, admin_service, cluster_status);
        Ok(Response::new(cluster_status(
            &self.0,
            request.get_ref().digest,
        )))
    }

    async fn init_cluster(
        &self,
        request: Request<pb::InitClusterRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        principal_of(&request)?.unbound("founding a cluster")?;
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
            return Err(status::already_initialized());
        }
        self.0
            .raft
            .initialize(members)
            .await
            .map_err(|e| status::cluster(&e))?;
        Ok(Response::new(cluster_status(&self.0, false)))
    }

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let principal = principal_of(&request)?;
        principal.unbound("membership")?;
        forward_unless_here!(self.0, request, false, admin_service, add_node);
        let r = request.into_inner();
        let stamp = convert::stamp(r.stamp)?;
        check_peer_addr(&r.addr)?;
        let membership = self.0.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        let known = membership.get_node(&r.id).map(|node| node.addr.clone());
        let voter = membership.voter_ids().any(|v| v == r.id);
        match known {
            Some(addr) if voter => {
                return Err(status::with_kind(
                    tonic::Code::AlreadyExists,
                    "node_exists",
                    format!("node {} is already a voter, at {addr}", r.id),
                ))
            }
            Some(addr) if addr != r.addr => {
                return Err(status::with_kind(
                    tonic::Code::AlreadyExists,
                    "node_exists",
                    format!(
                        "node {} is a learner at {addr}, not {}: remove it first to move it",
                        r.id, r.addr
                    ),
                ))
            }
            // A learner at this address: only its promotion is (re)started.
            Some(_) => {}
            None => {
                let node = RotaNode {
                    addr: r.addr.clone(),
                };
                within_membership_timeout(self.0.raft.add_learner(r.id, node)).await?;
                let change = MembershipChange::LearnerAdded {
                    node: r.id,
                    addr: r.addr,
                };
                note_membership(&self.0, &principal, change, stamp.clone()).await;
            }
        }
        match r.learner {
            true => cancel_promotion(&self.0, r.id),
            false => promote_when_caught_up(self.0.clone(), principal, r.id, stamp),
        }
        Ok(Response::new(cluster_status(&self.0, false)))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let principal = principal_of(&request)?;
        principal.unbound("membership")?;
        forward_unless_here!(self.0, request, false, admin_service, remove_node);
        let r = request.into_inner();
        let stamp = convert::stamp(r.stamp)?;
        let id = r.id;
        let membership = self.0.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        if membership.get_node(&id).is_none() {
            return Err(status::node_not_found(id));
        }
        let mut voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let voter = voters.remove(&id);
        let mut forced = false;
        if voter {
            if voters.is_empty() {
                return Err(status::invalid("id", "cannot remove the last voter"));
            }
            if let Some(risk) = removal_risk(&self.0, &voters) {
                if !r.force {
                    return Err(status::with_kind(
                        tonic::Code::FailedPrecondition,
                        "needs_force",
                        format!("removing node {id} {risk}; pass force (rota cluster remove --force) if that is meant"),
                    ));
                }
                forced = true;
            }
        }
        cancel_promotion(&self.0, id);
        within_membership_timeout(self.0.raft.remove_member(id, voter)).await?;
        let change = MembershipChange::Removed {
            node: id,
            voter,
            forced,
        };
        note_membership(&self.0, &principal, change, stamp).await;
        Ok(Response::new(cluster_status(&self.0, false)))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        principal_of(&request)?.unbound("a leader transfer")?;
        forward_unless_here!(self.0, request, false, admin_service, transfer_leader);
        let to = request.into_inner().to;
        self.0
            .hand_off_detached(to, TRANSFER_TIMEOUT)
            .await
            .map_err(|e| status::cluster(&e))?;
        Ok(Response::new(cluster_status(&self.0, false)))
    }

    type SaveSnapshotStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::SnapshotChunk, Status>> + Send + 'static>,
    >;

    async fn save_snapshot(
        &self,
        request: Request<pb::SaveSnapshotRequest>,
    ) -> Result<Response<Self::SaveSnapshotStream>, Status> {
        principal_of(&request)?.unbound("a backup")?;
        // Streamed, so not through `forward_unless_here!`: the leader's stream is passed on.
        if let Route::Leader(channel, addr) = self.0.route(&request, false).await? {
            let mut forwarded = forwarded(request)?;
            forwarded.set_timeout(BACKUP_TIMEOUT);
            let stream = match admin_service(channel).save_snapshot(forwarded).await {
                Ok(answer) => answer.into_inner(),
                Err(e) => {
                    self.0.after_failed_forward(&addr, &e).await;
                    return Err(status::forwarded(&addr, e));
                }
            };
            return Ok(Response::new(Box::pin(stream)));
        }
        Ok(Response::new(Box::pin(super::backup::save(&self.0).await?)))
    }

    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, create_token);
        let principal = principal_of(&request)?;
        let r = request.into_inner();
        let spec = TokenSpec {
            name: r.name,
            hash: [0; 32],
            scopes: AuthScope::parse_all(&r.scopes).map_err(|e| status::scheduler(&e))?,
            tenants: r.tenants.into_iter().map(TenantId::from).collect(),
            ttl_ms: r.ttl_ms,
        };
        let stamp = convert::stamp(r.stamp)?;
        self.0
            .new_token(&principal, spec, false, stamp)
            .await
            .map(Response::new)
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, list_tokens);
        principal_of(&request)?.unbound("the token list")?;
        // The leader's view: a token created or revoked a moment ago is listed as it is.
        let tokens = self.0.clock.read(|state, now_ms| {
            state
                .tokens()
                .map(|t| pb::TokenInfo {
                    name: t.name.clone(),
                    scopes: t.scopes.iter().map(|s| s.name().to_owned()).collect(),
                    tenants: t.tenants.iter().map(|t| t.to_string()).collect(),
                    created_ms: t.created_ms,
                    expires_ms: t.expires_ms,
                    created_by: t.created_by.clone(),
                    expired: t.expires_ms.is_some_and(|at| at <= now_ms),
                })
                .collect()
        });
        Ok(Response::new(pb::ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, revoke_token);
        let principal = principal_of(&request)?;
        let r = request.into_inner();
        let command = Command::RevokeToken {
            name: r.name,
            stamp: convert::stamp(r.stamp)?,
        };
        self.0.propose(&principal, command).await?;
        Ok(Response::new(pb::AdminResponse {}))
    }

    async fn bootstrap_token(
        &self,
        request: Request<pb::BootstrapTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, bootstrap_token);
        let principal = principal_of(&request)?;
        if principal.name.is_none() {
            // Without TLS every caller is an administrator: a token would mean nothing now
            // and grant everything once TLS were turned on.
            return Err(status::with_kind(
                tonic::Code::FailedPrecondition,
                "auth_off",
                "this cluster runs without TLS, so without auth: it makes no tokens",
            ));
        }
        let spec = TokenSpec {
            name: BOOTSTRAP_TOKEN.to_owned(),
            hash: [0; 32],
            scopes: AuthScope::ALL.into_iter().collect(),
            tenants: BTreeSet::new(),
            ttl_ms: None,
        };
        let stamp = Stamp::new(BOOTSTRAP_TOKEN, "the cluster's bootstrap token");
        self.0
            .new_token(&principal, spec, true, stamp)
            .await
            .map(Response::new)
    }
}

/// How long a membership change may take to commit before the call gives up on it.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a learner may take to catch up before its promotion is given up (add it again
/// to resume).
const PROMOTION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How far behind the leader's log a learner may be and count as caught up: a few
/// AppendEntries (64 entries each at most) from the head.
const CAUGHT_UP_LAG: u64 = 256;

/// A voter that has not answered the leader for this long counts as gone.
const LIVE_WITHIN: Duration = Duration::from_secs(3);

/// A peer address as `AddNode` takes it: HOST:PORT.
fn check_peer_addr(addr: &str) -> Result<(), Status> {
    let port = addr
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()));
    match port {
        Some((host, Ok(port)))
            if !host.is_empty()
                && port != 0
                && addr.len() <= rota_state_machine::MAX_ADDR_LEN
                && !addr.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            Ok(())
        }
        _ => Err(status::invalid(
            "addr",
            format!("{addr:?} is not HOST:PORT (the node's peer address)"),
        )),
    }
}

/// `change`, failed as UNAVAILABLE when it does not commit within `MEMBERSHIP_TIMEOUT`.
async fn within_membership_timeout(
    change: impl std::future::Future<Output = Result<(), rota_raft::ClusterError>>,
) -> Result<(), Status> {
    match tokio::time::timeout(MEMBERSHIP_TIMEOUT, change).await {
        Ok(done) => done.map_err(|e| status::cluster(&e)),
        // Not UNAVAILABLE: the client would retry a change that may yet commit.
        Err(_) => Err(status::with_kind(
            tonic::Code::FailedPrecondition,
            "membership_timeout",
            format!(
                "the membership change did not commit within {} s: see rota cluster status",
                MEMBERSHIP_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// Why leaving `voters` as the voters would weaken the cluster, if it would: fewer than
/// three, or fewer that answer the leader than a quorum of them.
fn removal_risk(api: &Api, voters: &BTreeSet<NodeId>) -> Option<String> {
    if voters.len() < 3 {
        return Some(format!(
            "leaves {} voter{}: the cluster would no longer survive the loss of a node",
            voters.len(),
            if voters.len() == 1 { "" } else { "s" }
        ));
    }
    live_shortfall(api, voters).map(|(live, quorum)| {
        format!(
            "leaves {} voters of which {live} answer the leader, fewer than a quorum ({quorum}): the cluster would stop",
            voters.len()
        )
    })
}

/// Whether `id` answered this node within `LIVE_WITHIN` (this node always has).
fn is_live(api: &Api, id: NodeId) -> bool {
    id == api.raft.id() || api.raft.heard_from(id).is_some_and(|d| d < LIVE_WITHIN)
}

/// (live, quorum) when fewer of `voters` answer this node than a quorum of them.
fn live_shortfall(api: &Api, voters: &BTreeSet<NodeId>) -> Option<(usize, usize)> {
    let live = voters.iter().filter(|&&v| is_live(api, v)).count();
    let quorum = voters.len() / 2 + 1;
    (live < quorum).then_some((live, quorum))
}

/// Records a committed membership change in the governance history. The change itself is
/// done: a record that fails is logged, not answered as the call's failure.
async fn note_membership(
    api: &Api,
    principal: &crate::auth::Principal,
    change: MembershipChange,
    stamp: Stamp,
) {
    let command = Command::NoteMembership { change, stamp };
    if let Err(e) = api.propose(principal, command).await {
        tracing::warn!(error = %e, "a membership change is not in the governance history");
    }
}

/// Numbers promotion tasks, so that a task knows whether its entry is still its own.
static PROMOTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Stops a promotion of `id` in progress, if any.
fn cancel_promotion(api: &Api, id: NodeId) {
    if let Ok(mut promoting) = api.promoting.lock() {
        promoting.remove(&id);
    }
}

/// Makes learner `id` a voter once it has caught up with the leader's log, in the
/// background; one task per learner. Gives up when this node stops leading, the learner
/// leaves, or `PROMOTION_TIMEOUT` passes (add the node again to resume).
fn promote_when_caught_up(
    api: Arc<Api>,
    principal: crate::auth::Principal,
    id: NodeId,
    stamp: Stamp,
) {
    let generation = {
        let Ok(mut promoting) = api.promoting.lock() else {
            return;
        };
        if promoting.contains_key(&id) {
            return;
        }
        let generation = PROMOTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        promoting.insert(id, generation);
        generation
    };
    // Still this task's to do: not canceled by a removal or an add with `learner`.
    let mine = {
        let api = api.clone();
        move || {
            api.promoting
                .lock()
                .is_ok_and(|p| p.get(&id) == Some(&generation))
        }
    };
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + PROMOTION_TIMEOUT;
        let outcome = loop {
            if !mine() {
                break "canceled";
            }
            if !api.raft.is_leader() {
                break "this node no longer leads";
            }
            let (learner, last) = {
                let metrics = api.raft.metrics();
                let metrics = metrics.borrow();
                let membership = metrics.membership_config.membership();
                let learner =
                    membership.get_node(&id).is_some() && !membership.voter_ids().any(|v| v == id);
                (learner, metrics.last_log_index.unwrap_or(0))
            };
            if !learner {
                break "it is no longer a learner";
            }
            // Caught up and answering now: a learner that caught up and then died still looks
            // caught up while little is written, and as a voter it could stall the cluster.
            let caught_up = api
                .raft
                .matched(id)
                .is_some_and(|matched| matched + CAUGHT_UP_LAG >= last);
            let mut voters: BTreeSet<NodeId> = api
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .collect();
            voters.insert(id);
            let safe = is_live(&api, id) && live_shortfall(&api, &voters).is_none();
            if caught_up && safe {
                match within_membership_timeout(api.raft.promote(id)).await {
                    Ok(()) => {
                        let change = MembershipChange::Promoted { node: id };
                        note_membership(&api, &principal, change, stamp).await;
                        break "promoted";
                    }
                    Err(e) => {
                        tracing::warn!(node = id, error = %e, "promotion failed; trying again")
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                break "it did not catch up in time";
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        tracing::info!(node = id, outcome, "learner promotion ended");
        if let Ok(mut promoting) = api.promoting.lock() {
            if promoting.get(&id) == Some(&generation) {
                promoting.remove(&id);
            }
        }
    });
}

/// This node's view of the cluster.
fn cluster_status(api: &Api, with_digest: bool) -> pb::ClusterStatusResponse {
    let metrics = api.raft.metrics().borrow().clone();
    // The applied index is read with the state, not from openraft's metrics (which catch
    // up a moment after each apply): a digest always names the index it is of.
    // So is the membership: the last one committed and applied, not openraft's effective
    // one, which may be a change that is proposed but not committed (and may yet be lost
    // with its leader).
    let (frozen, counts, log_time_ms, retention, archive, cluster_id, applied_index, membership) =
        api.raft.read_local(|applied: &Applied| {
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
            let stats = applied.state.archive_stats();
            let archive = pb::ArchiveSize {
                records: stats.records,
                bytes: stats.bytes,
            };
            let retention = convert::retention_out(applied.state.retention());
            let cluster_id = applied.state.cluster_id().map(str::to_owned);
            (
                frozen,
                counts,
                applied.state.now_ms(),
                retention,
                archive,
                cluster_id,
                applied.last_applied.map(|id| id.index),
                applied.membership.membership().clone(),
            )
        });
    // Encoded and hashed outside the lock, so a digest never holds up apply.
    let digest = match frozen {
        Some(frozen) => frozen
            .digest()
            .unwrap_or_else(|e| format!("unavailable: {e}")),
        None => String::new(),
    };
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    // Only a leader knows how far each member has replicated.
    let matched = metrics.replication.as_ref();
    let members = membership
        .nodes()
        .map(|(id, node)| pb::Member {
            id: *id,
            addr: node.addr.clone(),
            voter: voters.contains(id),
            matched_index: matched
                .and_then(|m| m.get(id))
                .and_then(|log| log.map(|l| l.index)),
        })
        .collect();
    let leader_addr = metrics
        .current_leader
        .and_then(|id| membership.get_node(&id).map(|n| n.addr.clone()));
    pb::ClusterStatusResponse {
        node_id: metrics.id,
        role: match &metrics.running_state {
            Ok(()) => format!("{:?}", metrics.state).to_lowercase(),
            Err(_) => "stopped".to_owned(),
        },
        raft_error: metrics.running_state.as_ref().err().map(|e| e.to_string()),
        cluster_id,
        leader_id: metrics.current_leader,
        leader_addr,
        term: metrics.current_term,
        last_log_index: metrics.last_log_index,
        applied_index,
        state_digest: digest,
        members,
        jobs: counts,
        log_time_ms,
        retention: Some(retention),
        archive: Some(archive),
    }
}

/// The most archived incidents one `GetGovernance` lists.
const MAX_ARCHIVED_INCIDENTS: usize = 1_000;

fn incident_view(
    i: &Incident,
    acknowledged: Option<&(u64, Stamp)>,
    archived: bool,
) -> pb::IncidentView {
    pb::IncidentView {
        id: i.id.0,
        job_type: i.job_type.to_string(),
        opened_ms: i.opened_ms,
        failure_rate_percent: u32::from(i.failure_rate_percent),
        resolved: i.resolved.is_some(),
        archived,
        acknowledged_by: acknowledged.map(|(_, by)| convert::stamp_out(by)),
        acknowledged_ms: acknowledged.map(|(at, _)| *at),
        resolved_by: i.resolved.as_ref().map(|(_, by)| convert::stamp_out(by)),
        resolved_ms: i.resolved.as_ref().map(|(at, _)| *at),
    }
}

/// Resolved incidents from the archive, oldest first, at most `MAX_ARCHIVED_INCIDENTS`.
fn archived_incidents(applied: &Applied) -> Result<Vec<pb::IncidentView>, Status> {
    let mut out = Vec::new();
    applied
        .scan_archived(ArchiveKind::Incident, 0, |_, archived| {
            if let Some(ArchivedItem::Incident(incident)) = archived.map(|a| a.item) {
                out.push(incident_view(&incident, None, true));
            }
            out.len() < MAX_ARCHIVED_INCIDENTS
        })
        .map_err(|e| status::archive(&e))?;
    Ok(out)
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
        .map(|i| incident_view(i, state.incident_ack(i.id), false))
        .collect();
    let queues = state
        .queue_depth()
        .into_iter()
        .map(|q| pb::QueueDepthView {
            tenant: q.tenant.to_string(),
            job_type: q.job_type.to_string(),
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
        blocked: state
            .blocked_tenants()
            .map(|(tenant, stamp)| pb::BlockedTenant {
                tenant: tenant.to_string(),
                stamp: Some(convert::stamp_out(stamp)),
            })
            .collect(),
    }
}
