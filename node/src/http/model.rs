//! The REST API's JSON: field names in camelCase, instants as RFC 3339 UTC strings
//! (`leaseUntil`, `createdAt`), durations in milliseconds (`leaseTtlMs`). A payload is any
//! JSON value (`payload`, kept byte for byte as the request spelled it) or raw bytes in base64
//! (`payloadBase64`); a job's payload is shown as JSON when its bytes are JSON, else in
//! base64. Each type converts to or from the gRPC message it stands for, so REST and gRPC
//! share every check and every answer.

use super::problem::Problem;
use base64::Engine;
use rota_client::proto as pb;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

/// An instant as RFC 3339 UTC with milliseconds.
pub fn instant(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Milliseconds since the epoch of an RFC 3339 instant named `field`.
pub fn parse_instant(field: &str, text: &str) -> Result<u64, Problem> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
        .ok_or_else(|| {
            Problem::invalid(format!(
                "{field}: {text:?} is not an RFC 3339 instant after 1970, e.g. 2026-12-01T12:00:00Z"
            ))
        })
}

/// An optional RFC 3339 instant named `field`, in ms since the epoch.
pub fn instant_in(field: &str, text: Option<&str>) -> Result<Option<u64>, Problem> {
    text.map(|t| parse_instant(field, t)).transpose()
}

/// A job status by its REST name.
pub fn status_name(status: i32) -> &'static str {
    pb::job_status_name(status).unwrap_or("unspecified")
}

/// A job status from its REST name.
fn parse_status(name: &str) -> Result<pb::JobStatus, Problem> {
    Ok(match name {
        "pending" => pb::JobStatus::Pending,
        "ready" => pb::JobStatus::Ready,
        "leased" => pb::JobStatus::Leased,
        "succeeded" => pb::JobStatus::Succeeded,
        "failed" => pb::JobStatus::Failed,
        "dead_lettered" => pb::JobStatus::DeadLettered,
        "canceled" => pb::JobStatus::Canceled,
        other => {
            return Err(Problem::invalid(format!(
                "status: {other:?} is none of pending, ready, leased, succeeded, failed, dead_lettered, canceled"
            )))
        }
    })
}

/// A write's session, as gRPC's `Session`: send the same one again to retry a write whose
/// answer was lost, and it is applied at most once.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionJson {
    /// The client's own id, unique among the cluster's clients; at most 256 bytes.
    pub client_id: String,
    /// Greater for each new write of this client id; the same for a retry.
    pub seq: u64,
}

pub fn session(session: Option<SessionJson>) -> Option<pb::Session> {
    session.map(|s| pb::Session {
        client_id: s.client_id,
        seq: s.seq,
    })
}

/// A job's payload from its two spellings; an empty payload when neither is given.
fn payload_in(json: Option<Box<RawValue>>, base64: Option<String>) -> Result<Vec<u8>, Problem> {
    match (json, base64) {
        (Some(_), Some(_)) => Err(Problem::invalid(
            "payload and payloadBase64: give one of them, not both",
        )),
        (Some(value), None) => Ok(value.get().as_bytes().to_vec()),
        (None, Some(text)) => base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| Problem::invalid(format!("payloadBase64: not base64 ({e})"))),
        (None, None) => Ok(Vec::new()),
    }
}

/// A payload as JSON when its bytes are a JSON text (passed through as they are), else as
/// base64.
pub fn payload_out(bytes: &[u8]) -> (Option<Box<RawValue>>, Option<String>) {
    if bytes.is_empty() {
        return (None, None);
    }
    let json = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| RawValue::from_string(text.trim().to_owned()).ok());
    match json {
        Some(value) => (Some(value), None),
        None => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

/// A retry policy; all three fields are needed.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryJson {
    /// Attempts in all, the first included (1 to 1,000).
    pub max_attempts: u32,
    /// Backoff before the second attempt; it doubles per attempt, with jitter.
    pub base_backoff_ms: u64,
    /// Upper bound on any backoff.
    pub max_backoff_ms: u64,
}

/// A named data artifact, for lineage.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArtifactJson {
    pub name: String,
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl From<ArtifactJson> for pb::Artifact {
    fn from(a: ArtifactJson) -> Self {
        Self {
            name: a.name,
            uri: a.uri,
            digest: a.digest,
        }
    }
}

impl From<pb::Artifact> for ArtifactJson {
    fn from(a: pb::Artifact) -> Self {
        Self {
            name: a.name,
            uri: a.uri,
            digest: a.digest,
        }
    }
}

/// Marks a job as a backfill (needs `orch:backfill`); both fields are needed.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackfillJson {
    pub reason: String,
    pub ticket: String,
}

/// `POST /api/jobs`: a job to enqueue. Unset fields take the cluster's defaults (priority
/// 100, 3 attempts from 1 s backoff up to 5 min, 30 s lease TTL).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubmitJob {
    pub tenant: String,
    pub job_type: String,
    /// Any JSON value, kept as its compact JSON text.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Box<RawValue>>,
    /// Raw payload bytes in base64, instead of `payload`.
    #[serde(default)]
    pub payload_base64: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub priority: Option<u32>,
    /// A second submit with the same key (per tenant) returns the first job.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Jobs that must succeed first.
    #[serde(default)]
    pub depends_on: Vec<u64>,
    /// Not leased before this instant (RFC 3339).
    #[serde(default)]
    pub not_before: Option<String>,
    #[serde(default)]
    pub retry: Option<RetryJson>,
    #[serde(default)]
    pub lease_ttl_ms: Option<u64>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub inputs: Vec<ArtifactJson>,
    #[serde(default)]
    pub backfill: Option<BackfillJson>,
    /// W3C trace context (`00-…-…-01`): the job joins this trace, and the worker that leases
    /// it gets it back.
    #[serde(default)]
    pub traceparent: Option<String>,
    #[serde(default)]
    pub session: Option<SessionJson>,
}

impl SubmitJob {
    /// The gRPC request this submit stands for.
    pub fn into_request(self) -> Result<pb::EnqueueRequest, Problem> {
        let (spec, session) = self.into_spec()?;
        Ok(pb::EnqueueRequest {
            session,
            spec: Some(spec),
        })
    }

    /// The job's spec, and the session the submit carries.
    pub fn into_spec(self) -> Result<(pb::JobSpec, Option<pb::Session>), Problem> {
        let not_before_ms = instant_in("notBefore", self.not_before.as_deref())?;
        let spec = pb::JobSpec {
            payload: payload_in(self.payload, self.payload_base64)?,
            tenant: self.tenant,
            job_type: self.job_type,
            project: self.project,
            priority: self.priority,
            idempotency_key: self.idempotency_key,
            depends_on: self.depends_on,
            not_before_ms,
            retry: self.retry.map(|r| pb::RetryPolicy {
                max_attempts: r.max_attempts,
                base_backoff_ms: r.base_backoff_ms,
                max_backoff_ms: r.max_backoff_ms,
            }),
            lease_ttl_ms: self.lease_ttl_ms,
            correlation_id: self.correlation_id,
            inputs: self.inputs.into_iter().map(Into::into).collect(),
            backfill: self.backfill.map(|b| pb::Backfill {
                reason: b.reason,
                ticket: b.ticket,
            }),
            traceparent: self.traceparent,
        };
        Ok((spec, session(self.session)))
    }
}

/// What a submit made.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Submitted {
    pub job_id: u64,
    /// False when the idempotency key matched an existing job (which `jobId` names).
    pub created: bool,
}

/// One attempt at a job.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub number: u32,
    pub worker: String,
    pub lease_id: u64,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// running, succeeded, failed, timed_out or canceled.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub retryable: bool,
    pub outputs: Vec<ArtifactJson>,
}

/// One entry of a job's history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// The log position of the entry that made it.
    pub log_index: u64,
    pub at: String,
    /// e.g. enqueued, leased, attempt_ended, retry_scheduled, succeeded.
    pub kind: String,
    pub detail: String,
}

/// A job: what it was given, where it stands, its attempts and history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub job_id: u64,
    /// pending, ready, leased, succeeded, failed (a retry follows), dead_lettered, canceled.
    pub status: String,
    pub tenant: String,
    pub job_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The payload, when its bytes are JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Box<RawValue>>,
    /// The payload in base64, when its bytes are not JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// sha256 of the payload, lowercase hex.
    pub payload_digest: String,
    pub depends_on: Vec<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ttl_ms: Option<u64>,
    pub inputs: Vec<ArtifactJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill: Option<BackfillJson>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_step: Option<String>,
    /// The job this one replays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<u64>,
    /// The schedule whose firing (or backfill) made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// A job shown pending that waits for nothing but governance: breaker, paused,
    /// throttle, quota or rate_limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    /// With rate_limit: when its quota's next token comes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eligible_at: Option<String>,
    /// What holds it back, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_worker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    pub unmet_dependencies: Vec<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The final error or the cancel reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub attempt_count: u32,
    /// Left out of list pages asked with `summary=true`.
    pub attempts: Vec<AttemptView>,
    pub history: Vec<EventView>,
    /// Read from the archive: finished and past its retention window, read-only.
    pub archived: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
}

fn outcome_name(outcome: i32) -> &'static str {
    match pb::AttemptOutcome::try_from(outcome) {
        Ok(pb::AttemptOutcome::Running) => "running",
        Ok(pb::AttemptOutcome::Succeeded) => "succeeded",
        Ok(pb::AttemptOutcome::Failed) => "failed",
        Ok(pb::AttemptOutcome::TimedOut) => "timed_out",
        Ok(pb::AttemptOutcome::Canceled) => "canceled",
        Ok(pb::AttemptOutcome::Released) => "released",
        _ => "unspecified",
    }
}

impl From<pb::Job> for JobView {
    fn from(job: pb::Job) -> Self {
        let spec = job.spec.unwrap_or_default();
        let (payload, payload_base64) = payload_out(&spec.payload);
        Self {
            job_id: job.id,
            status: status_name(job.status).to_owned(),
            tenant: spec.tenant,
            job_type: spec.job_type,
            project: spec.project,
            priority: spec.priority,
            idempotency_key: spec.idempotency_key,
            correlation_id: spec.correlation_id,
            payload,
            payload_base64,
            payload_digest: job.payload_digest,
            depends_on: spec.depends_on,
            retry: spec.retry.map(|r| RetryJson {
                max_attempts: r.max_attempts,
                base_backoff_ms: r.base_backoff_ms,
                max_backoff_ms: r.max_backoff_ms,
            }),
            lease_ttl_ms: spec.lease_ttl_ms,
            inputs: spec.inputs.into_iter().map(Into::into).collect(),
            backfill: spec.backfill.map(|b| BackfillJson {
                reason: b.reason,
                ticket: b.ticket,
            }),
            created_at: instant(job.created_ms),
            plan_id: job.plan_id,
            plan_step: job.plan_step,
            replay_of: job.replay_of,
            schedule_id: job.schedule_id,
            held_by: job.held_by,
            eligible_at: job.eligible_ms.map(instant),
            held_detail: job.held_detail,
            lease_id: job.lease_id,
            lease_worker: job.lease_worker,
            lease_until: job.lease_until_ms.map(instant),
            retry_at: job.retry_at_ms.map(instant),
            not_before: job.not_before_ms.map(instant),
            unmet_dependencies: job.unmet_dependencies,
            finished_at: job.finished_ms.map(instant),
            error: job.error,
            attempt_count: job.attempt_count,
            attempts: job
                .attempts
                .into_iter()
                .map(|a| AttemptView {
                    number: a.number,
                    worker: a.worker,
                    lease_id: a.lease_id,
                    started_at: instant(a.started_ms),
                    ended_at: a.ended_ms.map(instant),
                    outcome: outcome_name(a.outcome).to_owned(),
                    error: a.error,
                    retryable: a.retryable,
                    outputs: a.outputs.into_iter().map(Into::into).collect(),
                })
                .collect(),
            history: job
                .history
                .into_iter()
                .map(|e| EventView {
                    log_index: e.log_index,
                    at: instant(e.at_ms),
                    kind: e.kind,
                    detail: e.detail,
                })
                .collect(),
            archived: job.archived,
            archived_at: job.archived_ms.map(instant),
        }
    }
}

/// `GET /api/jobs`: filters and paging, as gRPC's `ListJobs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs in this status.
    pub status: Option<String>,
    pub tenant: Option<String>,
    pub job_type: Option<String>,
    /// Created at or after this instant (RFC 3339).
    pub since: Option<String>,
    /// Created before this instant (RFC 3339).
    pub until: Option<String>,
    /// Jobs with ids after this one: the previous page's `nextAfter`.
    pub after: Option<u64>,
    /// Page size; default 100, at most 1,000.
    pub limit: Option<u32>,
    /// Leave out attempts and history.
    #[serde(default)]
    pub summary: bool,
    /// List archived jobs instead of live ones.
    #[serde(default)]
    pub archived: bool,
    /// Serve from the answering node's replica without asking the leader (may lag).
    #[serde(default)]
    pub stale: bool,
}

impl ListQuery {
    /// The gRPC request this query stands for.
    pub fn into_request(self) -> Result<pb::ListJobsRequest, Problem> {
        let status = match self.status.as_deref() {
            Some(name) => parse_status(name)? as i32,
            None => pb::JobStatus::Unspecified as i32,
        };
        Ok(pb::ListJobsRequest {
            status,
            tenant: self.tenant,
            job_type: self.job_type,
            since_ms: instant_in("since", self.since.as_deref())?,
            until_ms: instant_in("until", self.until.as_deref())?,
            after: self.after,
            limit: self.limit.unwrap_or(0),
            read: Some(pb::ReadOptions { stale: self.stale }),
            summary: self.summary,
            archived: self.archived,
        })
    }
}

/// Whether a read may come from the answering node's replica.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// Serve from the answering node's replica without asking the leader (may lag).
    #[serde(default)]
    pub stale: bool,
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

impl From<pb::ListJobsResponse> for JobPage {
    fn from(page: pb::ListJobsResponse) -> Self {
        Self {
            jobs: page.jobs.into_iter().map(Into::into).collect(),
            next_after: page.next_after,
        }
    }
}

/// Who acts and why: a cancel's or a replay's stamp. With auth on, the actor is the
/// caller's principal whatever is given here.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StampedAction {
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    /// Who acts, on a cluster without auth [default: "rest"].
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub session: Option<SessionJson>,
}

impl StampedAction {
    /// The request's session and stamp.
    pub fn into_parts(self) -> (Option<pb::Session>, Option<pb::Stamp>) {
        let stamp = pb::Stamp {
            actor: self.actor.unwrap_or_else(|| "rest".to_owned()),
            reason: self.reason,
            ticket: self.ticket,
        };
        (session(self.session), Some(stamp))
    }
}

/// The job an action made or acted on.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRef {
    pub job_id: u64,
}

/// `POST /api/leases`: jobs for a worker to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseJobs {
    /// The worker's name, recorded with each attempt.
    pub worker: String,
    /// The job types it runs (1 to 64).
    pub job_types: Vec<String>,
    /// Most jobs to take (1 to 1,000) [default: 1].
    #[serde(default)]
    pub max: Option<u32>,
    /// The lease's time to live, instead of each job's own.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    /// A long poll: when no job is ready, wait up to this long (at most 30,000 ms) and
    /// answer as soon as one is, instead of answering empty at once.
    #[serde(default)]
    pub wait_ms: Option<u32>,
    #[serde(default)]
    pub session: Option<SessionJson>,
}

impl From<LeaseJobs> for pb::LeaseRequest {
    fn from(lease: LeaseJobs) -> Self {
        Self {
            session: session(lease.session),
            worker: lease.worker,
            job_types: lease.job_types,
            max: lease.max.unwrap_or(1),
            ttl_ms: lease.ttl_ms,
            wait_ms: lease.wait_ms,
        }
    }
}

/// One leased job: run it, heartbeat before `leaseUntil`, complete it with `leaseId`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeasedJobView {
    pub job_id: u64,
    pub lease_id: u64,
    pub lease_until: String,
    pub ttl_ms: u64,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    pub tenant: String,
    pub job_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The W3C trace context the job was enqueued with, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The producer's idempotency key, if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Attempts the job gets in all.
    pub max_attempts: u32,
    /// The backoff a retryable failure of this attempt would get; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_backoff_ms: Option<u64>,
    /// The project within the tenant.
    pub project: String,
    /// The worker id the lease was granted to.
    pub worker: String,
    /// The artifacts the job declared it reads.
    pub inputs: Vec<ArtifactJson>,
}

/// What a lease call granted: possibly nothing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Leased {
    pub jobs: Vec<LeasedJobView>,
    /// `maintenance` when leasing is halted for maintenance, else `none`.
    pub held: String,
}

impl From<pb::LeaseResponse> for Leased {
    fn from(lease: pb::LeaseResponse) -> Self {
        let held = match pb::LeaseHold::try_from(lease.held) {
            Ok(pb::LeaseHold::Maintenance) => "maintenance",
            _ => "none",
        };
        Self {
            jobs: lease
                .jobs
                .into_iter()
                .map(|j| {
                    let (payload, payload_base64) = payload_out(&j.payload);
                    LeasedJobView {
                        job_id: j.job_id,
                        lease_id: j.lease_id,
                        lease_until: instant(j.lease_until_ms),
                        ttl_ms: j.ttl_ms,
                        attempt: j.attempt,
                        tenant: j.tenant,
                        job_type: j.job_type,
                        payload,
                        payload_base64,
                        correlation_id: j.correlation_id,
                        traceparent: j.traceparent,
                        idempotency_key: j.idempotency_key,
                        max_attempts: j.max_attempts,
                        retry_backoff_ms: j.retry_backoff_ms,
                        project: j.project,
                        worker: j.worker,
                        inputs: j.inputs.into_iter().map(Into::into).collect(),
                    }
                })
                .collect(),
            held: held.to_owned(),
        }
    }
}

/// `POST /api/jobs/{id}/heartbeat`: keeps a lease alive.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Heartbeat {
    pub lease_id: u64,
    #[serde(default)]
    pub session: Option<SessionJson>,
}

/// A heartbeat's answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatAnswer {
    pub lease_until: String,
    /// The job was canceled: stop working on it.
    pub canceled: bool,
}

/// How an attempt ended. Values are snake_case like every other enum value here
/// (statuses, attempt outcomes); `gaveUp` is taken too.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeJson {
    Succeeded,
    /// `error` says why; `retryable` (default true) whether to try again.
    Failed,
    /// The worker gives the job up for good: `reason` says why; the job is canceled.
    /// `canceled` is the same, under the status's own name.
    #[serde(alias = "gaveUp", alias = "canceled")]
    GaveUp,
    /// The run outlasted the worker's own time limit: `error` says what happened; the
    /// attempt ends timed out and the job is retried while attempts remain.
    #[serde(alias = "timedOut")]
    TimedOut,
}

/// `POST /api/jobs/{id}/complete`: reports an attempt's outcome.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Complete {
    pub lease_id: u64,
    pub outcome: OutcomeJson,
    /// What a successful attempt produced, for lineage.
    #[serde(default)]
    pub outputs: Vec<ArtifactJson>,
    /// Why a failed attempt failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Whether a failed attempt may be retried [default: true].
    #[serde(default)]
    pub retryable: Option<bool>,
    /// Why the worker gave up.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub session: Option<SessionJson>,
}

impl Complete {
    /// The gRPC request completing job `job_id` as this says.
    pub fn into_request(self, job_id: u64) -> Result<pb::CompleteRequest, Problem> {
        use pb::complete_request::Outcome;
        let only = |present: bool, field: &str| {
            if present {
                Err(Problem::invalid(format!(
                    "{field} does not go with outcome {:?}",
                    self.outcome
                )))
            } else {
                Ok(())
            }
        };
        let outcome = match self.outcome {
            OutcomeJson::Succeeded => {
                only(self.error.is_some(), "error")?;
                only(self.reason.is_some(), "reason")?;
                only(self.retryable.is_some(), "retryable")?;
                Outcome::Succeeded(pb::Succeeded {
                    outputs: self.outputs.into_iter().map(Into::into).collect(),
                })
            }
            OutcomeJson::Failed => {
                only(!self.outputs.is_empty(), "outputs")?;
                only(self.reason.is_some(), "reason")?;
                Outcome::Failed(pb::Failed {
                    retryable: self.retryable.unwrap_or(true),
                    error: self.error.unwrap_or_default(),
                })
            }
            OutcomeJson::GaveUp => {
                only(!self.outputs.is_empty(), "outputs")?;
                only(self.error.is_some(), "error")?;
                only(self.retryable.is_some(), "retryable")?;
                Outcome::GaveUp(pb::GaveUp {
                    reason: self.reason.unwrap_or_default(),
                })
            }
            OutcomeJson::TimedOut => {
                only(!self.outputs.is_empty(), "outputs")?;
                only(self.reason.is_some(), "reason")?;
                only(self.retryable.is_some(), "retryable")?;
                Outcome::TimedOut(pb::TimedOut {
                    error: self.error.unwrap_or_default(),
                })
            }
        };
        Ok(pb::CompleteRequest {
            session: session(self.session),
            job_id,
            lease_id: self.lease_id,
            outcome: Some(outcome),
        })
    }
}

/// A completion's answer: the job's status after it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Completed {
    pub job_id: u64,
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_go_both_ways() {
        let ms = 1_764_590_400_123;
        let text = instant(ms);
        assert_eq!(text, "2025-12-01T12:00:00.123Z");
        assert_eq!(parse_instant("t", &text).ok(), Some(ms));
        assert!(parse_instant("t", "yesterday").is_err());
        assert!(parse_instant("t", "1969-12-31T23:59:59Z").is_err());
    }

    #[test]
    fn payloads_show_as_json_when_they_are_and_as_base64_when_not() {
        // Key order and big numbers survive: the bytes are the request's own.
        let text = r#"{"z": 1, "a": 123456789012345678901234567890}"#;
        let raw = RawValue::from_string(text.to_owned()).unwrap();
        let json = payload_in(Some(raw), None).unwrap();
        assert_eq!(json, text.as_bytes());
        assert_eq!(
            payload_out(&json).0.map(|v| v.get().to_owned()),
            Some(text.to_owned())
        );
        let bytes = payload_in(None, Some("AAEC/w==".to_owned())).unwrap();
        assert_eq!(bytes, vec![0, 1, 2, 255]);
        let (json, base64) = payload_out(&bytes);
        assert!(json.is_none());
        assert_eq!(base64.as_deref(), Some("AAEC/w=="));
        let both = RawValue::from_string("1".to_owned()).unwrap();
        assert!(payload_in(Some(both), Some(String::new())).is_err());
        assert!(payload_in(None, Some("not base64!".to_owned())).is_err());
    }

    #[test]
    fn a_completion_takes_only_the_fields_of_its_outcome() {
        let parse = |text: &str| serde_json::from_str::<Complete>(text).unwrap();
        let failed = parse(r#"{"leaseId": 3, "outcome": "failed", "error": "boom"}"#)
            .into_request(9)
            .unwrap();
        assert_eq!((failed.job_id, failed.lease_id), (9, 3));
        assert!(matches!(
            failed.outcome,
            Some(pb::complete_request::Outcome::Failed(pb::Failed {
                retryable: true,
                ..
            }))
        ));
        let mixed = parse(r#"{"leaseId": 3, "outcome": "succeeded", "error": "boom"}"#);
        assert!(mixed.into_request(9).is_err());
        assert!(serde_json::from_str::<Complete>(r#"{"leaseId": 3, "outcome": "done"}"#).is_err());
        assert!(serde_json::from_str::<Complete>(
            r#"{"leaseId": 3, "outcome": "gave_up", "x": 1}"#
        )
        .is_err());
        let late = parse(r#"{"leaseId": 3, "outcome": "timed_out", "error": "ran 2h"}"#)
            .into_request(9)
            .unwrap();
        assert_eq!(
            late.outcome,
            Some(pb::complete_request::Outcome::TimedOut(pb::TimedOut {
                error: "ran 2h".to_owned()
            }))
        );
        let canceled = parse(r#"{"leaseId": 3, "outcome": "canceled", "reason": "moot"}"#)
            .into_request(9)
            .unwrap();
        assert!(matches!(
            canceled.outcome,
            Some(pb::complete_request::Outcome::GaveUp(_))
        ));
        let mixed = parse(r#"{"leaseId": 3, "outcome": "timed_out", "retryable": false}"#);
        assert!(mixed.into_request(9).is_err());
    }
}
