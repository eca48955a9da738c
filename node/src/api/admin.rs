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
    ArchiveKind, ArchivedItem, AuthScope, Command, Incident, Stamp, State, TenantId, TokenSpec,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The operator's service.
pub struct Admin(pub Arc<Api>);

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
        principal_of(&request)?.unbound("membership")?;
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
        principal_of(&request)?.unbound("membership")?;
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
            tenants: r.tenants.into_iter().map(TenantId).collect(),
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
                    tenants: t.tenants.iter().map(|t| t.0.clone()).collect(),
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

/// This node's view of the cluster.
fn cluster_status(api: &Api, with_digest: bool) -> pb::ClusterStatusResponse {
    let metrics = api.raft.metrics().borrow().clone();
    let (frozen, counts, log_time_ms, retention, archive, cluster_id) =
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
            )
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

fn incident_view(
    i: &Incident,
    acknowledged: Option<&(u64, Stamp)>,
    archived: bool,
) -> pb::IncidentView {
    pb::IncidentView {
        id: i.id.0,
        job_type: i.job_type.0.clone(),
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
