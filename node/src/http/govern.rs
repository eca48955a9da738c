//! The REST routes for plans, dead letters and governance: each stands for one gRPC method,
//! as the routes of `routes` do.

use super::model::{instant, session, status_name, BackfillJson, JobPage, SessionJson, SubmitJob};
use super::problem::{Problem, ProblemBody};
use super::routes::Caller;
use super::Http;
use crate::api::{Admin, Jobs};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use rota_client::proto as pb;
use rota_client::proto::admin_service_server::AdminService;
use rota_client::proto::job_service_server::JobService;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

type Answer<T> = Result<Json<T>, Problem>;

/// One step of a plan: a job, with the keys of the steps that must succeed first.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanStepJson {
    /// Unique within the plan.
    pub key: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// The step's job, as `POST /api/jobs` takes it (without a session: the plan has one).
    pub job: SubmitJob,
}

/// `POST /api/plans`: a DAG of jobs, enqueued at once.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubmitPlan {
    pub steps: Vec<PlanStepJson>,
    #[serde(default)]
    pub backfill: Option<BackfillJson>,
    #[serde(default)]
    pub session: Option<SessionJson>,
}

impl SubmitPlan {
    fn into_request(self) -> Result<pb::SubmitPlanRequest, Problem> {
        let mut steps = Vec::with_capacity(self.steps.len());
        for step in self.steps {
            let (spec, step_session) = step.job.into_spec()?;
            if step_session.is_some() {
                return Err(Problem::invalid(format!(
                    "step {:?}: a step's job takes no session; give the plan one",
                    step.key
                )));
            }
            steps.push(pb::PlanStep {
                key: step.key,
                spec: Some(spec),
                depends_on: step.depends_on,
            });
        }
        Ok(pb::SubmitPlanRequest {
            session: session(self.session),
            steps,
            backfill: self.backfill.map(|b| pb::Backfill {
                reason: b.reason,
                ticket: b.ticket,
            }),
        })
    }
}

/// A step's job.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanJobView {
    pub key: String,
    pub job_id: u64,
    /// The job's status (on `GET /api/plans/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// What a plan submit made.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanSubmitted {
    pub plan_id: u64,
    pub jobs: Vec<PlanJobView>,
}

impl From<pb::SubmitPlanResponse> for PlanSubmitted {
    fn from(answer: pb::SubmitPlanResponse) -> Self {
        Self {
            plan_id: answer.plan_id,
            jobs: answer
                .jobs
                .into_iter()
                .map(|j| PlanJobView {
                    key: j.key,
                    job_id: j.job_id,
                    status: None,
                })
                .collect(),
        }
    }
}

/// A plan and where its steps stand.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    pub plan_id: u64,
    /// pending, running, failing, succeeded or failed.
    pub status: String,
    pub created_at: String,
    pub steps: Vec<PlanJobView>,
    /// Read from the archive.
    pub archived: bool,
}

fn plan_status_name(status: i32) -> &'static str {
    match pb::PlanStatus::try_from(status) {
        Ok(pb::PlanStatus::Pending) => "pending",
        Ok(pb::PlanStatus::Running) => "running",
        Ok(pb::PlanStatus::Failing) => "failing",
        Ok(pb::PlanStatus::Succeeded) => "succeeded",
        Ok(pb::PlanStatus::Failed) => "failed",
        _ => "unspecified",
    }
}

/// Submits a plan: its steps' jobs, each released when the steps it depends on succeed.
#[utoipa::path(post, path = "/api/plans", tag = "jobs",
    request_body = SubmitPlan,
    responses(
        (status = 201, body = PlanSubmitted),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn submit_plan(
    State(http): State<Arc<Http>>,
    caller: Caller,
    body: Result<Json<SubmitPlan>, JsonRejection>,
) -> Result<(StatusCode, Json<PlanSubmitted>), Problem> {
    let Json(body) = body?;
    let request = caller.request(body.into_request()?);
    let answer = Jobs(http.api.clone())
        .submit_plan(request)
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(answer.into())))
}

/// Whether a read may come from the answering node's replica.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StaleQuery {
    /// Serve from the answering node's replica without asking the leader (may lag).
    #[serde(default)]
    pub stale: bool,
}

/// A plan with its steps' statuses.
#[utoipa::path(get, path = "/api/plans/{id}", tag = "jobs",
    params(("id" = u64, Path, description = "The plan's id"), StaleQuery),
    responses(
        (status = 200, body = PlanView),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_plan(
    State(http): State<Arc<Http>>,
    caller: Caller,
    id: Result<Path<u64>, PathRejection>,
    query: Result<Query<StaleQuery>, QueryRejection>,
) -> Answer<PlanView> {
    let (Path(plan_id), Query(query)) = (id?, query?);
    let request = caller.request(pb::GetPlanRequest {
        plan_id,
        read: Some(pb::ReadOptions { stale: query.stale }),
    });
    let plan = Jobs(http.api.clone()).get_plan(request).await?.into_inner();
    Ok(Json(PlanView {
        plan_id: plan.plan_id,
        status: plan_status_name(plan.status).to_owned(),
        created_at: instant(plan.created_ms),
        steps: plan
            .steps
            .into_iter()
            .map(|s| PlanJobView {
                key: s.key,
                job_id: s.job_id,
                status: Some(status_name(s.status).to_owned()),
            })
            .collect(),
        archived: plan.archived,
    }))
}

/// `GET /api/dead-letters`: paging.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Jobs with ids after this one: the previous page's `nextAfter`.
    pub after: Option<u64>,
    /// Page size; default 100, at most 1,000.
    pub limit: Option<u32>,
    /// Serve from the answering node's replica without asking the leader (may lag).
    #[serde(default)]
    pub stale: bool,
}

/// The dead-letter queue, oldest first.
#[utoipa::path(get, path = "/api/dead-letters", tag = "jobs",
    params(PageQuery),
    responses(
        (status = 200, body = JobPage),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn dead_letters(
    State(http): State<Arc<Http>>,
    caller: Caller,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Answer<JobPage> {
    let Query(query) = query?;
    let request = caller.request(pb::ListDeadLettersRequest {
        after: query.after,
        limit: query.limit.unwrap_or(0),
        read: Some(pb::ReadOptions { stale: query.stale }),
    });
    let page = Jobs(http.api.clone())
        .list_dead_letters(request)
        .await?
        .into_inner();
    Ok(Json(page.into()))
}

/// Who changes governance and why: every governance body carries these. With auth on, the
/// actor is the caller's principal whatever `actor` says.
pub(super) fn stamp(
    reason: String,
    ticket: Option<String>,
    actor: Option<String>,
) -> Option<pb::Stamp> {
    Some(pb::Stamp {
        actor: actor.unwrap_or_else(|| "rest".to_owned()),
        reason,
        ticket,
    })
}

fn scope(tenant: Option<String>, job_type: Option<String>) -> Option<pb::Scope> {
    Some(pb::Scope { tenant, job_type })
}

/// An empty answer: the change is committed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Done {
    /// Always true.
    pub ok: bool,
}

pub(super) fn done<T>(_: tonic::Response<T>) -> Json<Done> {
    Json(Done { ok: true })
}

/// `POST /api/quotas`: a tenant's (or a tenant's job type's) quota; unset limits are lifted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetQuota {
    pub tenant: String,
    #[serde(default)]
    pub job_type: Option<String>,
    /// Most jobs leased at once.
    #[serde(default)]
    pub max_active: Option<u32>,
    /// Most jobs enqueued per hour (a token bucket).
    #[serde(default)]
    pub max_per_hour: Option<u32>,
    #[serde(default)]
    pub burst: Option<u32>,
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub session: Option<SessionJson>,
}

/// Sets a quota.
#[utoipa::path(post, path = "/api/quotas", tag = "governance",
    request_body = SetQuota,
    responses(
        (status = 200, body = Done),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn set_quota(
    State(http): State<Arc<Http>>,
    caller: Caller,
    body: Result<Json<SetQuota>, JsonRejection>,
) -> Answer<Done> {
    let Json(b) = body?;
    let request = caller.request(pb::SetQuotaRequest {
        session: session(b.session),
        tenant: b.tenant,
        job_type: b.job_type,
        max_active: b.max_active,
        max_per_hour: b.max_per_hour,
        burst: b.burst,
        stamp: stamp(b.reason, b.ticket, b.actor),
    });
    Ok(done(Admin(http.api.clone()).set_quota(request).await?))
}

/// `POST /api/limits/throttle`: most jobs leased at once in a scope; no `maxConcurrent`
/// lifts the throttle.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Throttle {
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub job_type: Option<String>,
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub session: Option<SessionJson>,
}

/// Throttles a tenant, a job type, or both.
#[utoipa::path(post, path = "/api/limits/throttle", tag = "governance",
    request_body = Throttle,
    responses(
        (status = 200, body = Done),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn throttle(
    State(http): State<Arc<Http>>,
    caller: Caller,
    body: Result<Json<Throttle>, JsonRejection>,
) -> Answer<Done> {
    let Json(b) = body?;
    let request = caller.request(pb::ThrottleRequest {
        session: session(b.session),
        scope: scope(b.tenant, b.job_type),
        max_concurrent: b.max_concurrent,
        stamp: stamp(b.reason, b.ticket, b.actor),
    });
    Ok(done(Admin(http.api.clone()).throttle(request).await?))
}

/// A source to pause or resume: a tenant, a job type, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub job_type: Option<String>,
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub session: Option<SessionJson>,
}

impl Source {
    fn into_request(self) -> pb::SourceRequest {
        pb::SourceRequest {
            session: session(self.session),
            scope: scope(self.tenant, self.job_type),
            stamp: stamp(self.reason, self.ticket, self.actor),
        }
    }
}

/// Pauses a source: its jobs are not leased until it is resumed.
#[utoipa::path(post, path = "/api/sources/pause", tag = "governance",
    request_body = Source,
    responses(
        (status = 200, body = Done),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn pause_source(
    State(http): State<Arc<Http>>,
    caller: Caller,
    body: Result<Json<Source>, JsonRejection>,
) -> Answer<Done> {
    let Json(b) = body?;
    let request = caller.request(b.into_request());
    Ok(done(Admin(http.api.clone()).pause_source(request).await?))
}

/// Resumes a paused source.
#[utoipa::path(post, path = "/api/sources/resume", tag = "governance",
    request_body = Source,
    responses(
        (status = 200, body = Done),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn resume_source(
    State(http): State<Arc<Http>>,
    caller: Caller,
    body: Result<Json<Source>, JsonRejection>,
) -> Answer<Done> {
    let Json(b) = body?;
    let request = caller.request(b.into_request());
    Ok(done(Admin(http.api.clone()).resume_source(request).await?))
}

/// A circuit breaker's settings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BreakerJson {
    /// Failed attempts, in percent of the window's attempts, that open the breaker.
    pub failure_threshold_percent: u32,
    pub window_ms: u64,
    /// Fewest attempts in the window before it may open.
    pub min_attempts: u32,
}

/// `POST /api/breakers/{jobType}`: sets a job type's breaker; no `config` removes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigureBreaker {
    #[serde(default)]
    pub config: Option<BreakerJson>,
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub session: Option<SessionJson>,
}

/// Sets or removes a job type's circuit breaker.
#[utoipa::path(post, path = "/api/breakers/{jobType}", tag = "governance",
    params(("jobType" = String, Path, description = "The job type")),
    request_body = ConfigureBreaker,
    responses(
        (status = 200, body = Done),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn configure_breaker(
    State(http): State<Arc<Http>>,
    caller: Caller,
    job_type: Result<Path<String>, PathRejection>,
    body: Result<Json<ConfigureBreaker>, JsonRejection>,
) -> Answer<Done> {
    let (Path(job_type), Json(b)) = (job_type?, body?);
    let request = caller.request(pb::ConfigureBreakerRequest {
        session: session(b.session),
        job_type,
        config: b.config.map(|c| pb::BreakerConfig {
            failure_threshold_percent: c.failure_threshold_percent,
            window_ms: c.window_ms,
            min_attempts: c.min_attempts,
        }),
        stamp: stamp(b.reason, b.ticket, b.actor),
    });
    Ok(done(
        Admin(http.api.clone()).configure_breaker(request).await?,
    ))
}

/// A governance change's reason, ticket and session, and nothing else.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reasoned {
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub session: Option<SessionJson>,
}

/// Closes an open breaker.
#[utoipa::path(post, path = "/api/breakers/{jobType}/reset", tag = "governance",
    params(("jobType" = String, Path, description = "The job type")),
    request_body = Reasoned,
    responses(
        (status = 200, body = Done),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn reset_breaker(
    State(http): State<Arc<Http>>,
    caller: Caller,
    job_type: Result<Path<String>, PathRejection>,
    body: Result<Json<Reasoned>, JsonRejection>,
) -> Answer<Done> {
    let (Path(job_type), Json(b)) = (job_type?, body?);
    let request = caller.request(pb::ResetBreakerRequest {
        session: session(b.session),
        job_type,
        stamp: stamp(b.reason, b.ticket, b.actor),
    });
    Ok(done(Admin(http.api.clone()).reset_breaker(request).await?))
}

/// `POST /api/maintenance`: maintenance mode on or off (no leases while on).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Maintenance {
    pub enabled: bool,
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub session: Option<SessionJson>,
}

/// Turns maintenance mode on or off.
#[utoipa::path(post, path = "/api/maintenance", tag = "governance",
    request_body = Maintenance,
    responses(
        (status = 200, body = Done),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn maintenance(
    State(http): State<Arc<Http>>,
    caller: Caller,
    body: Result<Json<Maintenance>, JsonRejection>,
) -> Answer<Done> {
    let Json(b) = body?;
    let request = caller.request(pb::SetMaintenanceRequest {
        session: session(b.session),
        enabled: b.enabled,
        stamp: stamp(b.reason, b.ticket, b.actor),
    });
    Ok(done(
        Admin(http.api.clone()).set_maintenance(request).await?,
    ))
}

/// `GET /api/governance`: options.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GovernanceQuery {
    /// Serve from the answering node's replica without asking the leader (may lag).
    #[serde(default)]
    pub stale: bool,
    /// List archived (resolved, past retention) incidents too.
    #[serde(default)]
    pub archived_incidents: bool,
}

/// A governance stamp.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StampView {
    pub actor: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

pub(super) fn stamp_view(stamp: pb::Stamp) -> StampView {
    StampView {
        actor: stamp.actor,
        reason: stamp.reason,
        ticket: stamp.ticket,
    }
}

/// What applies to a tenant, a job type, or both (absent: any).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_type: Option<String>,
}

fn scope_view(scope: Option<pb::Scope>) -> ScopeView {
    let scope = scope.unwrap_or_default();
    ScopeView {
        tenant: scope.tenant,
        job_type: scope.job_type,
    }
}

/// A quota and how much of it is in use.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaJson {
    pub scope: ScopeView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_active: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_hour: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    pub active: u32,
}

/// A throttle and how much of it is in use.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleJson {
    pub scope: ScopeView,
    pub max_concurrent: u32,
    pub active: u32,
}

/// A paused source.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PausedJson {
    pub scope: ScopeView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stamp: Option<StampView>,
}

/// An incident: a breaker that opened.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncidentJson {
    pub id: u64,
    pub job_type: String,
    pub opened_at: String,
    pub failure_rate_percent: u32,
    pub resolved: bool,
    pub archived: bool,
    /// Who acknowledged it, why, and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<StampView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<String>,
    /// Who resolved it, why, and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<StampView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
}

/// Jobs of one tenant and type by where they stand.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueJson {
    pub tenant: String,
    pub job_type: String,
    pub pending: u32,
    pub ready: u32,
    pub leased: u32,
    pub retrying: u32,
}

/// Quotas, throttles, paused sources, incidents, maintenance and queue depths.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GovernanceView {
    pub quotas: Vec<QuotaJson>,
    pub throttles: Vec<ThrottleJson>,
    pub paused: Vec<PausedJson>,
    pub incidents: Vec<IncidentJson>,
    /// Who turned maintenance on and why, while it is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<StampView>,
    pub queues: Vec<QueueJson>,
}

/// The cluster's governance: what holds jobs back, and the queues.
#[utoipa::path(get, path = "/api/governance", tag = "governance",
    params(GovernanceQuery),
    responses(
        (status = 200, body = GovernanceView),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn governance(
    State(http): State<Arc<Http>>,
    caller: Caller,
    query: Result<Query<GovernanceQuery>, QueryRejection>,
) -> Answer<GovernanceView> {
    let Query(query) = query?;
    let request = caller.request(pb::GetGovernanceRequest {
        read: Some(pb::ReadOptions { stale: query.stale }),
        archived_incidents: query.archived_incidents,
    });
    let g = Admin(http.api.clone())
        .get_governance(request)
        .await?
        .into_inner();
    Ok(Json(GovernanceView {
        quotas: g
            .quotas
            .into_iter()
            .map(|q| QuotaJson {
                scope: scope_view(q.scope),
                max_active: q.max_active,
                max_per_hour: q.max_per_hour,
                burst: q.burst,
                active: q.active,
            })
            .collect(),
        throttles: g
            .throttles
            .into_iter()
            .map(|t| ThrottleJson {
                scope: scope_view(t.scope),
                max_concurrent: t.max_concurrent,
                active: t.active,
            })
            .collect(),
        paused: g
            .paused
            .into_iter()
            .map(|p| PausedJson {
                scope: scope_view(p.scope),
                stamp: p.stamp.map(stamp_view),
            })
            .collect(),
        incidents: g
            .incidents
            .into_iter()
            .map(|i| IncidentJson {
                id: i.id,
                job_type: i.job_type,
                opened_at: instant(i.opened_ms),
                failure_rate_percent: i.failure_rate_percent,
                resolved: i.resolved,
                archived: i.archived,
                acknowledged_by: i.acknowledged_by.map(stamp_view),
                acknowledged_at: i.acknowledged_ms.map(instant),
                resolved_by: i.resolved_by.map(stamp_view),
                resolved_at: i.resolved_ms.map(instant),
            })
            .collect(),
        maintenance: g.maintenance.map(stamp_view),
        queues: g
            .queues
            .into_iter()
            .map(|q| QueueJson {
                tenant: q.tenant,
                job_type: q.job_type,
                pending: q.pending,
                ready: q.ready,
                leased: q.leased,
                retrying: q.retrying,
            })
            .collect(),
    }))
}
