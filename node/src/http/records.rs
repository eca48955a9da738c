//! The REST routes for schedules, backfills, lineage, the governance history, incidents,
//! audit bundles and signed jobs: each stands for one gRPC method, as the routes of `routes`
//! do.

use super::govern::{
    done, stamp, stamp_view, Done, PlanSubmitted, Reasoned, StaleQuery, StampView,
};
use super::model::{
    instant, instant_in, parse_instant, payload_out, session, status_name, ArtifactJson, RetryJson,
    SessionJson, SubmitJob,
};
use super::problem::{Problem, ProblemBody};
use super::routes::Caller;
use super::Http;
use crate::api::{Admin, Jobs};
use crate::status;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use rota_client::proto as pb;
use rota_client::proto::admin_service_server::AdminService;
use rota_client::proto::job_service_server::JobService;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

type Answer<T> = Result<Json<T>, Problem>;

/// `POST /api/schedules`: a job template enqueued on a cron expression (UTC) or every
/// `intervalMs`, on the log's time; each firing keyed `schedule:{id}:{fire_ms}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSchedule {
    /// Unique in the cluster: at most 256 bytes, no control characters.
    pub id: String,
    /// The job each firing enqueues, as `POST /api/jobs` takes it: no dependencies, no
    /// idempotency key, no session (the schedule's body has one).
    pub template: SubmitJob,
    /// Five fields (minute first), six with seconds first, or @hourly, @daily, ...: in UTC.
    #[serde(default)]
    pub cron: Option<String>,
    /// Or every this many milliseconds (at least 1,000).
    #[serde(default)]
    pub interval_ms: Option<u64>,
    /// Missed firings (the cluster was down): skip (the default, as cron), run_once (the
    /// latest of them) or run_each (the latest `catchUpMax`, oldest first).
    #[serde(default)]
    pub catch_up: Option<String>,
    /// run_each's bound, 1 to 100.
    #[serde(default)]
    pub catch_up_max: Option<u32>,
    /// No firing before this instant (RFC 3339).
    #[serde(default)]
    pub start: Option<String>,
    /// No firing after this instant.
    #[serde(default)]
    pub end: Option<String>,
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub session: Option<SessionJson>,
}

fn catch_up_in(name: Option<&str>) -> Result<pb::CatchUp, Problem> {
    Ok(match name {
        None | Some("skip") => pb::CatchUp::Skip,
        Some("run_once") => pb::CatchUp::RunOnce,
        Some("run_each") => pb::CatchUp::RunEach,
        Some(other) => {
            return Err(Problem::invalid(format!(
                "catchUp: {other:?} is none of skip, run_once, run_each"
            )))
        }
    })
}

fn catch_up_name(catch_up: i32) -> &'static str {
    match pb::CatchUp::try_from(catch_up) {
        Ok(pb::CatchUp::RunOnce) => "run_once",
        Ok(pb::CatchUp::RunEach) => "run_each",
        _ => "skip",
    }
}

impl CreateSchedule {
    fn into_request(self) -> Result<pb::CreateScheduleRequest, Problem> {
        use pb::create_schedule_request::Cadence;
        let cadence = match (self.cron, self.interval_ms) {
            (Some(cron), None) => Cadence::Cron(cron),
            (None, Some(ms)) => Cadence::IntervalMs(ms),
            _ => {
                return Err(Problem::invalid(
                    "cron and intervalMs: give one of them, not both or neither",
                ))
            }
        };
        let (template, template_session) = self.template.into_spec()?;
        if template_session.is_some() {
            return Err(Problem::invalid(
                "template: a template takes no session; give the schedule's body one",
            ));
        }
        Ok(pb::CreateScheduleRequest {
            session: session(self.session),
            id: self.id,
            template: Some(template),
            cadence: Some(cadence),
            catch_up: catch_up_in(self.catch_up.as_deref())? as i32,
            catch_up_max: self.catch_up_max.unwrap_or(0),
            start_ms: instant_in("start", self.start.as_deref())?,
            end_ms: instant_in("end", self.end.as_deref())?,
            stamp: stamp(self.reason, self.ticket, self.actor),
        })
    }
}

/// A schedule's job template.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateView {
    pub tenant: String,
    pub job_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// The payload, when its bytes are JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Box<RawValue>>,
    /// The payload in base64, when its bytes are not JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ttl_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub inputs: Vec<ArtifactJson>,
}

impl From<pb::JobSpec> for TemplateView {
    fn from(spec: pb::JobSpec) -> Self {
        let (payload, payload_base64) = payload_out(&spec.payload);
        Self {
            tenant: spec.tenant,
            job_type: spec.job_type,
            project: spec.project,
            priority: spec.priority,
            payload,
            payload_base64,
            retry: spec.retry.map(|r| RetryJson {
                max_attempts: r.max_attempts,
                base_backoff_ms: r.base_backoff_ms,
                max_backoff_ms: r.max_backoff_ms,
            }),
            lease_ttl_ms: spec.lease_ttl_ms,
            correlation_id: spec.correlation_id,
            inputs: spec.inputs.into_iter().map(Into::into).collect(),
        }
    }
}

/// A schedule and its next firings.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    pub id: String,
    pub template: TemplateView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// skip, run_once or run_each.
    pub catch_up: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_up_max: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    pub paused: bool,
    /// None while paused, and once past its end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_fire: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fired: Option<String>,
    /// The next fire times (on `GET /api/schedules/{id}`).
    pub upcoming: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<StampView>,
}

impl From<pb::Schedule> for ScheduleView {
    fn from(s: pb::Schedule) -> Self {
        use pb::schedule::Cadence;
        let (cron, interval_ms) = match s.cadence {
            Some(Cadence::Cron(cron)) => (Some(cron), None),
            Some(Cadence::IntervalMs(ms)) => (None, Some(ms)),
            None => (None, None),
        };
        let catch_up = catch_up_name(s.catch_up);
        Self {
            id: s.id,
            template: s.template.unwrap_or_default().into(),
            cron,
            interval_ms,
            catch_up: catch_up.to_owned(),
            catch_up_max: (catch_up == "run_each").then_some(s.catch_up_max),
            start: s.start_ms.map(instant),
            end: s.end_ms.map(instant),
            paused: s.paused,
            next_fire: s.next_fire_ms.map(instant),
            last_fired: s.last_fired_ms.map(instant),
            upcoming: s.upcoming_ms.into_iter().map(instant).collect(),
            created_by: s.created_by.map(stamp_view),
        }
    }
}

/// A schedule made.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRef {
    pub id: String,
}

/// Creates a schedule.
#[utoipa::path(post, path = "/api/schedules", tag = "schedules",
    request_body = CreateSchedule,
    responses(
        (status = 201, body = ScheduleRef),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn create_schedule(
    State(http): State<Arc<Http>>,
    caller: Caller,
    body: Result<Json<CreateSchedule>, JsonRejection>,
) -> Result<(StatusCode, Json<ScheduleRef>), Problem> {
    let Json(body) = body?;
    let request = body.into_request()?;
    let id = request.id.clone();
    Jobs(http.api.clone())
        .create_schedule(caller.request(request))
        .await?;
    Ok((StatusCode::CREATED, Json(ScheduleRef { id })))
}

/// Every schedule.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
}

/// Every schedule, by id.
#[utoipa::path(get, path = "/api/schedules", tag = "schedules",
    params(StaleQuery),
    responses(
        (status = 200, body = ScheduleList),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn list_schedules(
    State(http): State<Arc<Http>>,
    caller: Caller,
    query: Result<Query<StaleQuery>, QueryRejection>,
) -> Answer<ScheduleList> {
    let Query(query) = query?;
    let request = caller.request(pb::ListSchedulesRequest {
        read: Some(pb::ReadOptions { stale: query.stale }),
    });
    let answer = Jobs(http.api.clone())
        .list_schedules(request)
        .await?
        .into_inner();
    Ok(Json(ScheduleList {
        schedules: answer.schedules.into_iter().map(Into::into).collect(),
    }))
}

/// `GET /api/schedules/{id}`: options.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ScheduleQuery {
    /// How many next fire times to list: 5 by default, at most 100.
    pub upcoming: Option<u32>,
    #[serde(default)]
    pub stale: bool,
}

/// One schedule with its next fire times.
#[utoipa::path(get, path = "/api/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id"), ScheduleQuery),
    responses(
        (status = 200, body = ScheduleView),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_schedule(
    State(http): State<Arc<Http>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<ScheduleQuery>, QueryRejection>,
) -> Answer<ScheduleView> {
    let (Path(id), Query(query)) = (id?, query?);
    let request = caller.request(pb::GetScheduleRequest {
        id,
        read: Some(pb::ReadOptions { stale: query.stale }),
        upcoming: query.upcoming.unwrap_or(0),
    });
    let answer = Jobs(http.api.clone())
        .get_schedule(request)
        .await?
        .into_inner();
    let schedule = answer
        .schedule
        .ok_or_else(|| status::internal("a schedule answer without its schedule"))?;
    Ok(Json(schedule.into()))
}

fn schedule_request(id: String, b: Reasoned) -> pb::ScheduleRequest {
    pb::ScheduleRequest {
        session: session(b.session),
        id,
        stamp: stamp(b.reason, b.ticket, b.actor),
    }
}

/// Stops a schedule's firings until it is resumed.
#[utoipa::path(post, path = "/api/schedules/{id}/pause", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id")),
    request_body = Reasoned,
    responses(
        (status = 200, body = Done),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn pause_schedule(
    State(http): State<Arc<Http>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<Reasoned>, JsonRejection>,
) -> Answer<Done> {
    let (Path(id), Json(b)) = (id?, body?);
    let request = caller.request(schedule_request(id, b));
    Ok(done(Jobs(http.api.clone()).pause_schedule(request).await?))
}

/// Resumes a paused schedule from its next fire time (firings due while it was paused are
/// not made up).
#[utoipa::path(post, path = "/api/schedules/{id}/resume", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id")),
    request_body = Reasoned,
    responses(
        (status = 200, body = Done),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn resume_schedule(
    State(http): State<Arc<Http>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<Reasoned>, JsonRejection>,
) -> Answer<Done> {
    let (Path(id), Json(b)) = (id?, body?);
    let request = caller.request(schedule_request(id, b));
    Ok(done(Jobs(http.api.clone()).resume_schedule(request).await?))
}

/// Removes a schedule (the jobs it enqueued stay); the body gives the reason.
#[utoipa::path(delete, path = "/api/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id")),
    request_body = Reasoned,
    responses(
        (status = 200, body = Done),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn delete_schedule(
    State(http): State<Arc<Http>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<Reasoned>, JsonRejection>,
) -> Answer<Done> {
    let (Path(id), Json(b)) = (id?, body?);
    let request = caller.request(schedule_request(id, b));
    Ok(done(Jobs(http.api.clone()).delete_schedule(request).await?))
}

/// `POST /api/schedules/{id}/backfill`: the window `[since, until)` of fire times, or the
/// fire times listed; the reason and ticket are required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backfill {
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub until: Option<String>,
    /// Instead of a window: these fire times (RFC 3339), each one of the schedule's.
    #[serde(default)]
    pub fire_times: Vec<String>,
    pub reason: String,
    pub ticket: String,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub session: Option<SessionJson>,
}

/// Runs a schedule's template for past fire times as one backfill: a plan with a step per
/// fire time, each keyed as that firing is, so a fire time never runs twice. Needs
/// `orch:backfill`. `GET /api/plans/{id}` shows its progress, `POST /api/plans/{id}/cancel`
/// cancels it.
#[utoipa::path(post, path = "/api/schedules/{id}/backfill", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id")),
    request_body = Backfill,
    responses(
        (status = 201, body = PlanSubmitted),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn backfill(
    State(http): State<Arc<Http>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<Backfill>, JsonRejection>,
) -> Result<(StatusCode, Json<PlanSubmitted>), Problem> {
    let (Path(schedule_id), Json(b)) = (id?, body?);
    let mut fire_times = Vec::with_capacity(b.fire_times.len());
    for (i, t) in b.fire_times.iter().enumerate() {
        fire_times.push(parse_instant(&format!("fireTimes[{i}]"), t)?);
    }
    let request = caller.request(pb::BackfillScheduleRequest {
        session: session(b.session),
        schedule_id,
        since_ms: instant_in("since", b.since.as_deref())?,
        until_ms: instant_in("until", b.until.as_deref())?,
        fire_times,
        stamp: stamp(b.reason, Some(b.ticket), b.actor),
    });
    let answer = Jobs(http.api.clone())
        .backfill_schedule(request)
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(answer.into())))
}

/// The jobs a plan cancel canceled.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanCanceled {
    pub canceled: Vec<u64>,
}

/// Cancels every live job the plan created (a backfill as a whole), in one command; finished
/// ones stay, and so do jobs its steps reused.
#[utoipa::path(post, path = "/api/plans/{id}/cancel", tag = "jobs",
    params(("id" = u64, Path, description = "The plan's id")),
    request_body = Reasoned,
    responses(
        (status = 200, body = PlanCanceled),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn cancel_plan(
    State(http): State<Arc<Http>>,
    caller: Caller,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<Reasoned>, JsonRejection>,
) -> Answer<PlanCanceled> {
    let (Path(plan_id), Json(b)) = (id?, body?);
    let request = caller.request(pb::CancelPlanRequest {
        session: session(b.session),
        plan_id,
        stamp: stamp(b.reason, b.ticket, b.actor),
    });
    let answer = Jobs(http.api.clone())
        .cancel_plan(request)
        .await?
        .into_inner();
    Ok(Json(PlanCanceled {
        canceled: answer.canceled,
    }))
}

/// `GET /api/lineage`: which artifact, and how far.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LineageQuery {
    /// A name, URI or digest.
    pub artifact: String,
    /// up, down, or both (the default).
    pub direction: Option<String>,
    /// Steps beyond the artifact's own writers and readers: 5 by default, at most 20.
    pub depth: Option<u32>,
    #[serde(default)]
    pub stale: bool,
}

/// One job's use of an artifact.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineageLinkView {
    pub job_id: u64,
    pub tenant: String,
    pub job_type: String,
    pub status: String,
    /// True: the job wrote the artifact; false: it read it.
    pub wrote: bool,
    pub artifact: ArtifactJson,
    /// 0 for the artifact asked about; each step up or down adds one.
    pub depth: u32,
}

/// The jobs that wrote and read an artifact, and the chain up and down.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineageView {
    /// By depth, then job id.
    pub links: Vec<LineageLinkView>,
    /// The walk stopped at 1,000 links.
    pub truncated: bool,
}

/// Which jobs wrote and read an artifact (by name, URI or digest), and the chain up (what
/// the writers read, and who wrote that) and down. Jobs in memory only.
#[utoipa::path(get, path = "/api/lineage", tag = "jobs",
    params(LineageQuery),
    responses(
        (status = 200, body = LineageView),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn lineage(
    State(http): State<Arc<Http>>,
    caller: Caller,
    query: Result<Query<LineageQuery>, QueryRejection>,
) -> Answer<LineageView> {
    let Query(q) = query?;
    let direction = match q.direction.as_deref() {
        None | Some("both") => pb::LineageDirection::Unspecified,
        Some("up") => pb::LineageDirection::Up,
        Some("down") => pb::LineageDirection::Down,
        Some(other) => {
            return Err(Problem::invalid(format!(
                "direction: {other:?} is none of up, down, both"
            )))
        }
    };
    let request = caller.request(pb::GetLineageRequest {
        artifact: q.artifact,
        direction: direction as i32,
        depth: q.depth.unwrap_or(5),
        read: Some(pb::ReadOptions { stale: q.stale }),
    });
    let answer = Jobs(http.api.clone())
        .get_lineage(request)
        .await?
        .into_inner();
    Ok(Json(LineageView {
        links: answer
            .links
            .into_iter()
            .map(|l| LineageLinkView {
                job_id: l.job_id,
                tenant: l.tenant,
                job_type: l.job_type,
                status: status_name(l.status).to_owned(),
                wrote: l.wrote,
                artifact: l.artifact.unwrap_or_default().into(),
                depth: l.depth,
            })
            .collect(),
        truncated: answer.truncated,
    }))
}

/// `GET /api/governance/history`: filters and paging.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only these kinds, comma-separated (e.g. `quota_set,maintenance`): see
    /// `rota governance history --help` for the names. Empty: every kind.
    pub kinds: Option<String>,
    /// Only events at or after this instant (RFC 3339).
    pub since: Option<String>,
    /// Only events before this instant.
    pub until: Option<String>,
    /// Only events of entries after this log index: the previous page's `nextAfter`.
    pub after: Option<u64>,
    /// Most events in a page: 100 by default, at most 1,000.
    pub limit: Option<u32>,
    /// Also the archived events (past the history window), before those in memory.
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub stale: bool,
}

/// One governance change.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GovernanceEventJson {
    pub log_index: u64,
    pub at: String,
    pub kind: String,
    /// Who, why and the ticket; none for what the cluster did itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stamp: Option<StampView>,
    pub detail: String,
    pub archived: bool,
}

/// A page of the governance history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    pub events: Vec<GovernanceEventJson>,
    /// Set when more events may follow: pass it as `after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// Every quota, throttle, pause, breaker, maintenance, schedule, cancel, replay, backfill,
/// incident, retention and token change, with actor, reason, ticket, time and log index.
#[utoipa::path(get, path = "/api/governance/history", tag = "governance",
    params(HistoryQuery),
    responses(
        (status = 200, body = HistoryPage),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn governance_history(
    State(http): State<Arc<Http>>,
    caller: Caller,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Answer<HistoryPage> {
    let Query(q) = query?;
    let kinds = q
        .kinds
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    let request = caller.request(pb::GovernanceHistoryRequest {
        read: Some(pb::ReadOptions { stale: q.stale }),
        kinds,
        since_ms: instant_in("since", q.since.as_deref())?,
        until_ms: instant_in("until", q.until.as_deref())?,
        after_index: q.after,
        limit: q.limit.unwrap_or(0),
        archived: q.archived,
    });
    let answer = Admin(http.api.clone())
        .governance_history(request)
        .await?
        .into_inner();
    Ok(Json(HistoryPage {
        events: answer
            .events
            .into_iter()
            .map(|e| GovernanceEventJson {
                log_index: e.log_index,
                at: instant(e.at_ms),
                kind: e.kind,
                stamp: e.stamp.map(stamp_view),
                detail: e.detail,
                archived: e.archived,
            })
            .collect(),
        next_after: answer.next_after,
    }))
}

fn incident_request(incident_id: u64, b: Reasoned) -> pb::IncidentRequest {
    pb::IncidentRequest {
        session: session(b.session),
        incident_id,
        stamp: stamp(b.reason, b.ticket, b.actor),
    }
}

/// Acknowledges an open incident: someone is on it (who and when are kept with it).
#[utoipa::path(post, path = "/api/incidents/{id}/acknowledge", tag = "governance",
    params(("id" = u64, Path, description = "The incident's id")),
    request_body = Reasoned,
    responses(
        (status = 200, body = Done),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn acknowledge_incident(
    State(http): State<Arc<Http>>,
    caller: Caller,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<Reasoned>, JsonRejection>,
) -> Answer<Done> {
    let (Path(id), Json(b)) = (id?, body?);
    let request = caller.request(incident_request(id, b));
    Ok(done(
        Admin(http.api.clone())
            .acknowledge_incident(request)
            .await?,
    ))
}

/// Resolves an open incident with a reason, closing the breaker it keeps open.
#[utoipa::path(post, path = "/api/incidents/{id}/resolve", tag = "governance",
    params(("id" = u64, Path, description = "The incident's id")),
    request_body = Reasoned,
    responses(
        (status = 200, body = Done),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn resolve_incident(
    State(http): State<Arc<Http>>,
    caller: Caller,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<Reasoned>, JsonRejection>,
) -> Answer<Done> {
    let (Path(id), Json(b)) = (id?, body?);
    let request = caller.request(incident_request(id, b));
    Ok(done(
        Admin(http.api.clone()).resolve_incident(request).await?,
    ))
}

/// `GET /api/audit`: the window of an audit bundle.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Jobs created at or after this instant (RFC 3339); default the beginning.
    pub since: Option<String>,
    /// And before this one; default now and on.
    pub until: Option<String>,
    /// Only this tenant's jobs.
    pub tenant: Option<String>,
    #[serde(default)]
    pub stale: bool,
}

/// An audit bundle of a window, as one tar archive (docs/audit.md): `rota audit verify
/// FILE.tar --key audit.pub` checks it offline. Needs `orch:admin`.
#[utoipa::path(get, path = "/api/audit", tag = "governance",
    params(AuditQuery),
    responses(
        (status = 200, description = "The bundle; the signing key's id in `x-rota-audit-key-id`", content_type = "application/x-tar"),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn audit(
    State(http): State<Arc<Http>>,
    caller: Caller,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<impl IntoResponse, Problem> {
    let Query(q) = query?;
    let request = caller.request(pb::ExportAuditRequest {
        since_ms: instant_in("since", q.since.as_deref())?,
        until_ms: instant_in("until", q.until.as_deref())?,
        tenant: q.tenant,
        read: Some(pb::ReadOptions { stale: q.stale }),
    });
    let answer = Admin(http.api.clone())
        .export_audit(request)
        .await?
        .into_inner();
    let files = answer
        .files
        .into_iter()
        .map(|f| (f.name, f.content))
        .collect();
    let mut tar = Vec::new();
    crate::audit::format::write_tar(&mut tar, &files)
        .map_err(|e| status::internal(format!("writing the bundle's archive: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"rota-audit.tar\"".to_owned(),
            ),
            (
                header::HeaderName::from_static("x-rota-audit-key-id"),
                answer.key_id,
            ),
        ],
        tar,
    ))
}

/// A job's audit record in a DSSE envelope signed by the node's audit key (JSON:
/// `payloadType`, `payload` and signatures in base64), to keep and check offline with
/// `rota audit verify-job`.
#[utoipa::path(get, path = "/api/jobs/{id}/signed", tag = "jobs",
    params(("id" = u64, Path, description = "The job's id"), StaleQuery),
    responses(
        (status = 200, description = "The DSSE envelope", content_type = "application/json"),
        (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn signed_job(
    State(http): State<Arc<Http>>,
    caller: Caller,
    id: Result<Path<u64>, PathRejection>,
    query: Result<Query<StaleQuery>, QueryRejection>,
) -> Result<impl IntoResponse, Problem> {
    let (Path(job_id), Query(q)) = (id?, query?);
    let request = caller.request(pb::GetJobRequest {
        job_id,
        read: Some(pb::ReadOptions { stale: q.stale }),
        signed: true,
    });
    let answer = Jobs(http.api.clone()).get_job(request).await?.into_inner();
    let envelope = answer
        .signed
        .ok_or_else(|| status::internal("a signed job answer without its envelope"))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], envelope))
}
