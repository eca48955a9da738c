//! `AdminService`: governance writes and views, cluster status, founding and membership.

use super::{forward_unless_here, forwarded, stale, Api, Route};
use crate::convert::{self, SourceChange};
use crate::status;
use rota_client::admin_service;
use rota_client::proto as pb;
use rota_client::proto::admin_service_server::AdminService;
use rota_raft::{Applied, NodeId, RotaNode};
use rota_state_machine::{ArchiveKind, ArchivedItem, Incident, State};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The operator's service.
pub struct Admin(pub Arc<Api>);

impl Admin {
    /// Pauses or resumes a source: one request message, two calls.
    async fn change_source(
        &self,
        request: pb::SourceRequest,
        pause: bool,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let bytes = prost::Message::encoded_len(&request);
        self.0
            .serve_sized(SourceChange { request, pause }, bytes)
            .await
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

#[tonic::async_trait]
impl AdminService for Admin {
    async fn set_quota(
        &self,
        request: Request<pb::SetQuotaRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, set_quota);
        self.0.serve_write(request.into_inner()).await
    }

    async fn throttle(
        &self,
        request: Request<pb::ThrottleRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, throttle);
        self.0.serve_write(request.into_inner()).await
    }

    async fn pause_source(
        &self,
        request: Request<pb::SourceRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, pause_source);
        self.change_source(request.into_inner(), true).await
    }

    async fn resume_source(
        &self,
        request: Request<pb::SourceRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, resume_source);
        self.change_source(request.into_inner(), false).await
    }

    async fn configure_breaker(
        &self,
        request: Request<pb::ConfigureBreakerRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, configure_breaker);
        self.0.serve_write(request.into_inner()).await
    }

    async fn reset_breaker(
        &self,
        request: Request<pb::ResetBreakerRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, reset_breaker);
        self.0.serve_write(request.into_inner()).await
    }

    async fn set_maintenance(
        &self,
        request: Request<pb::SetMaintenanceRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, set_maintenance);
        self.0.serve_write(request.into_inner()).await
    }

    async fn get_governance(
        &self,
        request: Request<pb::GetGovernanceRequest>,
    ) -> Result<Response<pb::GetGovernanceResponse>, Status> {
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

    async fn set_retention(
        &self,
        request: Request<pb::SetRetentionRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, set_retention);
        self.0.serve_write(request.into_inner()).await
    }

    async fn cluster_status(
        &self,
        request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(cluster_status(
            &self.0,
            request.get_ref().digest,
        )))
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
        forward_unless_here!(self.0, request, false, admin_service, add_node);
        let r = request.into_inner();
        if r.addr.is_empty() {
            return Err(status::invalid("addr", "must not be empty"));
        }
        self.0
            .raft
            .add_learner(r.id, RotaNode { addr: r.addr })
            .await
            .map_err(|e| status::cluster(&e))?;
        let mut voters = self.voters();
        voters.insert(r.id);
        self.0
            .raft
            .change_membership(voters)
            .await
            .map_err(|e| status::cluster(&e))?;
        Ok(Response::new(cluster_status(&self.0, false)))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        forward_unless_here!(self.0, request, false, admin_service, remove_node);
        let id = request.into_inner().id;
        let mut voters = self.voters();
        if !voters.remove(&id) {
            return Err(status::node_not_found(id));
        }
        if voters.is_empty() {
            return Err(status::invalid("id", "cannot remove the last voter"));
        }
        self.0
            .raft
            .change_membership(voters)
            .await
            .map_err(|e| status::cluster(&e))?;
        Ok(Response::new(cluster_status(&self.0, false)))
    }
}

/// This node's view of the cluster.
fn cluster_status(api: &Api, with_digest: bool) -> pb::ClusterStatusResponse {
    let metrics = api.raft.metrics().borrow().clone();
    let (frozen, counts, log_time_ms, retention, archive) =
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
            (frozen, counts, applied.state.now_ms(), retention, archive)
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
        role: match &metrics.running_state {
            Ok(()) => format!("{:?}", metrics.state).to_lowercase(),
            Err(_) => "stopped".to_owned(),
        },
        raft_error: metrics.running_state.as_ref().err().map(|e| e.to_string()),
        leader_id: metrics.current_leader,
        leader_addr,
        term: metrics.current_term,
        last_log_index: metrics.last_log_index,
        applied_index: metrics.last_applied.map(|id| id.index),
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

fn incident_view(i: &Incident, archived: bool) -> pb::IncidentView {
    pb::IncidentView {
        id: i.id.0,
        job_type: i.job_type.0.clone(),
        opened_ms: i.opened_ms,
        failure_rate_percent: u32::from(i.failure_rate_percent),
        resolved: i.resolved.is_some(),
        archived,
    }
}

/// Resolved incidents from the archive, oldest first, at most `MAX_ARCHIVED_INCIDENTS`.
fn archived_incidents(applied: &Applied) -> Result<Vec<pb::IncidentView>, Status> {
    let mut out = Vec::new();
    applied
        .scan_archived(ArchiveKind::Incident, 0, |_, archived| {
            if let Some(ArchivedItem::Incident(incident)) = archived.map(|a| a.item) {
                out.push(incident_view(&incident, true));
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
        .map(|i| incident_view(i, false))
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
