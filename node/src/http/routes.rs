//! The REST routes. Each authenticates its caller as gRPC does (`Caller`), checks the scope
//! of the gRPC method it stands for, and calls that method's implementation: the same
//! checks, the same forwarding to the leader, the same answers, in JSON.

use super::model::*;
use super::problem::{Problem, ProblemBody};
use super::Http;
use crate::api::{Admin, Jobs, Workers};
use crate::auth::{needed, Principal};
use crate::status;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, MatchedPath, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use rota_client::proto as pb;
use rota_client::proto::admin_service_server::AdminService;
use rota_client::proto::job_service_server::JobService;
use rota_client::proto::worker_service_server::WorkerService;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The peer's certificate chain on a TLS connection, leaf first, as the accept loop found
/// it; absent without TLS or without a client certificate.
#[derive(Clone, Debug, Default)]
pub struct PeerChain(pub Arc<Vec<Vec<u8>>>);

/// Each REST route that takes credentials, as (method, path template), with the gRPC
/// method it stands for: its scope is the route's, checked before the body is read.
pub const RULES: &[(&str, &str, &str)] = &[
    ("POST", "/api/jobs", "/rota.v1.JobService/Enqueue"),
    ("GET", "/api/jobs", "/rota.v1.JobService/ListJobs"),
    ("GET", "/api/jobs/{id}", "/rota.v1.JobService/GetJob"),
    (
        "POST",
        "/api/jobs/{id}/cancel",
        "/rota.v1.JobService/CancelJob",
    ),
    (
        "POST",
        "/api/jobs/{id}/replay",
        "/rota.v1.JobService/ReplayJob",
    ),
    ("POST", "/api/leases", "/rota.v1.WorkerService/Lease"),
    (
        "POST",
        "/api/jobs/{id}/heartbeat",
        "/rota.v1.WorkerService/Heartbeat",
    ),
    (
        "POST",
        "/api/jobs/{id}/complete",
        "/rota.v1.WorkerService/Complete",
    ),
    ("GET", "/api/cluster", "/rota.v1.AdminService/ClusterStatus"),
    ("POST", "/api/plans", "/rota.v1.JobService/SubmitPlan"),
    ("GET", "/api/plans/{id}", "/rota.v1.JobService/GetPlan"),
    (
        "GET",
        "/api/dead-letters",
        "/rota.v1.JobService/ListDeadLetters",
    ),
    ("POST", "/api/quotas", "/rota.v1.AdminService/SetQuota"),
    (
        "POST",
        "/api/limits/throttle",
        "/rota.v1.AdminService/Throttle",
    ),
    (
        "POST",
        "/api/sources/pause",
        "/rota.v1.AdminService/PauseSource",
    ),
    (
        "POST",
        "/api/sources/resume",
        "/rota.v1.AdminService/ResumeSource",
    ),
    (
        "POST",
        "/api/breakers/{jobType}",
        "/rota.v1.AdminService/ConfigureBreaker",
    ),
    (
        "POST",
        "/api/breakers/{jobType}/reset",
        "/rota.v1.AdminService/ResetBreaker",
    ),
    (
        "POST",
        "/api/maintenance",
        "/rota.v1.AdminService/SetMaintenance",
    ),
    (
        "GET",
        "/api/governance",
        "/rota.v1.AdminService/GetGovernance",
    ),
    ("GET", "/api/jobs/{id}/signed", "/rota.v1.JobService/GetJob"),
    (
        "POST",
        "/api/plans/{id}/cancel",
        "/rota.v1.JobService/CancelPlan",
    ),
    (
        "POST",
        "/api/schedules",
        "/rota.v1.JobService/CreateSchedule",
    ),
    ("GET", "/api/schedules", "/rota.v1.JobService/ListSchedules"),
    (
        "GET",
        "/api/schedules/{id}",
        "/rota.v1.JobService/GetSchedule",
    ),
    (
        "DELETE",
        "/api/schedules/{id}",
        "/rota.v1.JobService/DeleteSchedule",
    ),
    (
        "POST",
        "/api/schedules/{id}/pause",
        "/rota.v1.JobService/PauseSchedule",
    ),
    (
        "POST",
        "/api/schedules/{id}/resume",
        "/rota.v1.JobService/ResumeSchedule",
    ),
    (
        "POST",
        "/api/schedules/{id}/backfill",
        "/rota.v1.JobService/BackfillSchedule",
    ),
    ("GET", "/api/lineage", "/rota.v1.JobService/GetLineage"),
    (
        "GET",
        "/api/governance/history",
        "/rota.v1.AdminService/GovernanceHistory",
    ),
    (
        "POST",
        "/api/incidents/{id}/acknowledge",
        "/rota.v1.AdminService/AcknowledgeIncident",
    ),
    (
        "POST",
        "/api/incidents/{id}/resolve",
        "/rota.v1.AdminService/ResolveIncident",
    ),
    ("GET", "/api/audit", "/rota.v1.AdminService/ExportAudit"),
    // Watching takes what reading jobs takes; a caller bound to tenants sees only theirs.
    ("GET", "/api/events", "/rota.v1.JobService/ListJobs"),
    // Metrics take what the cluster's status takes (they name every tenant).
    ("GET", "/metrics", "/rota.v1.AdminService/ClusterStatus"),
];

/// The gRPC method of the route `method` `template`, if it takes credentials.
pub fn rpc_of(method: &str, template: &str) -> Option<&'static str> {
    RULES
        .iter()
        .find(|(m, t, _)| *m == method && *t == template)
        .map(|&(_, _, rpc)| rpc)
}

/// Who called, authenticated as a gRPC caller is (a bearer token or a client certificate
/// with auth on, anyone with it off) and holding the scope of the route's gRPC method.
pub struct Caller {
    principal: Principal,
}

impl FromRequestParts<Arc<Http>> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, http: &Arc<Http>) -> Result<Self, Problem> {
        let template = parts
            .extensions
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let rpc = rpc_of(parts.method.as_str(), &template).ok_or_else(|| {
            status::internal(format!("{} {template} has no scope rule", parts.method))
        })?;
        let scope = needed(rpc).ok_or_else(|| status::internal(format!("{rpc} has no scope")))?;
        let leaf = parts
            .extensions
            .get::<PeerChain>()
            .and_then(|chain| chain.0.first().cloned());
        let headers = parts.headers.clone();
        let principal = http
            .gate
            .authenticate(&template, &headers, leaf.as_deref())
            .await?;
        principal.require(scope)?;
        Ok(Self { principal })
    }
}

impl Caller {
    /// Who called.
    pub(super) fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The route's gRPC request, carrying `message` and the caller.
    pub(super) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.extensions_mut().insert(self.principal.clone());
        request
    }
}

type Answer<T> = Result<Json<T>, Problem>;

/// The `stale` read option of a query.
fn read(stale: bool) -> Option<pb::ReadOptions> {
    Some(pb::ReadOptions { stale })
}

/// Submits a job.
#[utoipa::path(post, path = "/api/jobs", tag = "jobs",
    request_body = SubmitJob,
    responses(
        (status = 201, description = "Enqueued", body = Submitted),
        (status = 200, description = "The idempotency key matched an existing job", body = Submitted),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
        (status = "5XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn submit_job(
    State(http): State<Arc<Http>>,
    caller: Caller,
    body: Result<Json<SubmitJob>, JsonRejection>,
) -> Result<(StatusCode, Json<Submitted>), Problem> {
    let Json(body) = body?;
    let request = caller.request(body.into_request()?);
    let answer = Jobs(http.api.clone()).enqueue(request).await?.into_inner();
    let code = if answer.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        code,
        Json(Submitted {
            job_id: answer.job_id,
            created: answer.created,
        }),
    ))
}

/// Lists jobs, a page at a time, filtered as asked.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, body = JobPage),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn list_jobs(
    State(http): State<Arc<Http>>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Answer<JobPage> {
    let Query(query) = query?;
    let request = caller.request(query.into_request()?);
    let page = Jobs(http.api.clone()).list_jobs(request).await?;
    Ok(Json(page.into_inner().into()))
}

/// A job with its attempts and history, from memory or the archive.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs",
    params(("id" = u64, Path, description = "The job's id"), ReadQuery),
    responses(
        (status = 200, body = JobView),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_job(
    State(http): State<Arc<Http>>,
    caller: Caller,
    id: Result<Path<u64>, PathRejection>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Answer<JobView> {
    let (Path(job_id), Query(query)) = (id?, query?);
    let message = pb::GetJobRequest {
        job_id,
        read: read(query.stale),
        signed: false,
    };
    let request = caller.request(message);
    let answer = Jobs(http.api.clone()).get_job(request).await?.into_inner();
    let job = answer
        .job
        .ok_or_else(|| status::internal("a job answer without its job"))?;
    Ok(Json(job.into()))
}

/// Cancels a job that has not finished.
#[utoipa::path(post, path = "/api/jobs/{id}/cancel", tag = "jobs",
    params(("id" = u64, Path, description = "The job's id")),
    request_body = StampedAction,
    responses(
        (status = 200, body = JobRef),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn cancel_job(
    State(http): State<Arc<Http>>,
    caller: Caller,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<StampedAction>, JsonRejection>,
) -> Answer<JobRef> {
    let (Path(job_id), Json(body)) = (id?, body?);
    let (session, stamp) = body.into_parts();
    let message = pb::CancelJobRequest {
        session,
        job_id,
        stamp,
    };
    let request = caller.request(message);
    let answer = Jobs(http.api.clone())
        .cancel_job(request)
        .await?
        .into_inner();
    Ok(Json(JobRef {
        job_id: answer.job_id,
    }))
}

/// Runs a finished job's spec again as a new job (`replayOf` names the old one).
#[utoipa::path(post, path = "/api/jobs/{id}/replay", tag = "jobs",
    params(("id" = u64, Path, description = "The job to replay")),
    request_body = StampedAction,
    responses(
        (status = 201, description = "The new job", body = JobRef),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn replay_job(
    State(http): State<Arc<Http>>,
    caller: Caller,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<StampedAction>, JsonRejection>,
) -> Result<(StatusCode, Json<JobRef>), Problem> {
    let (Path(job_id), Json(body)) = (id?, body?);
    let (session, stamp) = body.into_parts();
    let message = pb::ReplayJobRequest {
        session,
        job_id,
        stamp,
    };
    let request = caller.request(message);
    let answer = Jobs(http.api.clone())
        .replay_job(request)
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(JobRef {
            job_id: answer.job_id,
        }),
    ))
}

/// Leases up to `max` ready jobs of the given types; an empty list when there are none.
#[utoipa::path(post, path = "/api/leases", tag = "workers",
    request_body = LeaseJobs,
    responses(
        (status = 200, body = Leased),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn lease(
    State(http): State<Arc<Http>>,
    caller: Caller,
    body: Result<Json<LeaseJobs>, JsonRejection>,
) -> Answer<Leased> {
    let Json(body) = body?;
    let request = caller.request(body.into());
    let answer = Workers(http.api.clone()).lease(request).await?;
    Ok(Json(answer.into_inner().into()))
}

/// Extends a live lease by its time to live; says when the job was canceled.
#[utoipa::path(post, path = "/api/jobs/{id}/heartbeat", tag = "workers",
    params(("id" = u64, Path, description = "The leased job's id")),
    request_body = Heartbeat,
    responses(
        (status = 200, body = HeartbeatAnswer),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn heartbeat(
    State(http): State<Arc<Http>>,
    caller: Caller,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<Heartbeat>, JsonRejection>,
) -> Answer<HeartbeatAnswer> {
    let (Path(job_id), Json(body)) = (id?, body?);
    let message = pb::HeartbeatRequest {
        session: session(body.session),
        job_id,
        lease_id: body.lease_id,
    };
    let request = caller.request(message);
    let answer = Workers(http.api.clone())
        .heartbeat(request)
        .await?
        .into_inner();
    Ok(Json(HeartbeatAnswer {
        lease_until: instant(answer.lease_until_ms),
        canceled: answer.canceled,
    }))
}

/// Reports how an attempt ended: succeeded, failed (retried while attempts remain, unless
/// `retryable` is false: then dead-lettered at once) or gave up (the job is canceled).
#[utoipa::path(post, path = "/api/jobs/{id}/complete", tag = "workers",
    params(("id" = u64, Path, description = "The leased job's id")),
    request_body = Complete,
    responses(
        (status = 200, body = Completed),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn complete(
    State(http): State<Arc<Http>>,
    caller: Caller,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<Complete>, JsonRejection>,
) -> Answer<Completed> {
    let (Path(job_id), Json(body)) = (id?, body?);
    let request = caller.request(body.into_request(job_id)?);
    let answer = Workers(http.api.clone())
        .complete(request)
        .await?
        .into_inner();
    Ok(Json(Completed {
        job_id: answer.job_id,
        status: status_name(answer.status).to_owned(),
    }))
}

/// One member of the cluster.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub id: u64,
    /// Its peer address.
    pub addr: String,
    pub voter: bool,
    /// The last log index the answering node knows it holds: only in the leader's view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_index: Option<u64>,
}

/// `GET /api/cluster`: whose view.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ClusterQuery {
    /// Answer as the leader sees the cluster (forwarded to it), with each member's
    /// `matchedIndex`; by default the answering node's own view.
    #[serde(default)]
    pub leader: bool,
}

/// How the answering node sees the cluster.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// The cluster's id (32 hex digits), once its first leader has named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    pub node_id: u64,
    /// leader, follower, candidate, learner or shutdown.
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<u64>,
    pub term: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_log_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_index: Option<u64>,
    /// Log time as this node has applied it.
    pub log_time: String,
    pub members: Vec<MemberView>,
    /// Jobs in memory by status.
    pub jobs: std::collections::BTreeMap<String, u64>,
    /// Why this node's Raft core stopped, if it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft_error: Option<String>,
}

/// The answering node's view of the cluster (or the leader's, with `leader=true`): role,
/// leader, log, members, jobs by status.
#[utoipa::path(get, path = "/api/cluster", tag = "cluster",
    params(ClusterQuery),
    responses(
        (status = 200, body = ClusterView),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn cluster(
    State(http): State<Arc<Http>>,
    caller: Caller,
    query: Result<Query<ClusterQuery>, QueryRejection>,
) -> Answer<ClusterView> {
    let Query(query) = query?;
    let message = pb::ClusterStatusRequest {
        digest: false,
        leader_view: query.leader,
    };
    let request = caller.request(message);
    let s = Admin(http.api.clone())
        .cluster_status(request)
        .await?
        .into_inner();
    Ok(Json(ClusterView {
        cluster_id: s.cluster_id,
        node_id: s.node_id,
        role: s.role,
        leader_id: s.leader_id,
        term: s.term,
        last_log_index: s.last_log_index,
        applied_index: s.applied_index,
        log_time: instant(s.log_time_ms),
        members: s
            .members
            .into_iter()
            .map(|m| MemberView {
                id: m.id,
                addr: m.addr,
                voter: m.voter,
                matched_index: m.matched_index,
            })
            .collect(),
        jobs: s
            .jobs
            .iter()
            .map(|c| (status_name(c.status).to_owned(), c.count))
            .collect(),
        raft_error: s.raft_error,
    }))
}

/// This node's metrics in Prometheus' text format: jobs, leases, breakers, quotas, Raft,
/// the group commit, calls and memory (docs/observability.md lists them). With auth on, a
/// scraper needs a token (or client certificate) that may read the cluster's status, not
/// bound to tenants.
#[utoipa::path(get, path = "/metrics", tag = "cluster",
    responses(
        (status = 200, description = "The exposition", body = String, content_type = "text/plain; version=0.0.4"),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn metrics(
    State(http): State<Arc<Http>>,
    caller: Caller,
) -> Result<impl axum::response::IntoResponse, Problem> {
    caller.principal().unbound("the metrics")?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::observe::METRICS_CONTENT_TYPE,
        )],
        http.metrics.render(),
    ))
}

/// Whether the process answers: always 200 while it runs. No credentials needed.
#[utoipa::path(get, path = "/livez", tag = "health",
    responses((status = 200, description = "The process is up", body = String)))]
pub async fn livez() -> &'static str {
    "ok\n"
}

/// `/livez` by the name DESIGN.md gives it.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is up", body = String)))]
pub async fn healthz() -> &'static str {
    livez().await
}

/// Whether this node can serve: its Raft core runs and it knows a leader. 503 otherwise
/// (an election is on, or the core stopped: see `/api/cluster`). No credentials needed.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = String),
        (status = 503, description = "Not ready, and why", body = String),
    ))]
pub async fn readyz(State(http): State<Arc<Http>>) -> (StatusCode, String) {
    let metrics = http.raft.metrics();
    let metrics = metrics.borrow();
    if metrics.running_state.is_err() {
        // Why is for authenticated eyes (`/api/cluster`): it may name paths on disk.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "raft stopped: see /api/cluster or `rota cluster status`\n".to_owned(),
        );
    }
    match metrics.current_leader {
        Some(leader) => (StatusCode::OK, format!("ok: leader {leader}\n")),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no leader known: an election is on, or the cluster is not initialized\n".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_with_credentials_stands_for_a_grpc_method_with_a_scope() {
        for (method, template, rpc) in RULES {
            assert!(
                needed(rpc).is_some(),
                "{method} {template}: {rpc} has no scope"
            );
            assert_eq!(rpc_of(method, template), Some(*rpc));
        }
        let caller = Caller {
            principal: Principal::open(),
        };
        assert!(caller.request(()).extensions().get::<Principal>().is_some());
    }
}
