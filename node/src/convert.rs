//! Between the wire (`rota.v1`) and the scheduler's types. Wire input is checked here for
//! what only the node knows (its payload limit, field ranges, required messages); the state
//! machine checks the rest, so a request is judged the same on every node.

use crate::status::invalid;
use rota_client::proto as pb;
use rota_state_machine::{
    Artifact, Attempt, AttemptOutcome, Backfill, Completion, Grant, Job, JobEventKind, JobId,
    JobSpec, JobState, JobType, LeaseHold, PlanStatus, PlanStep, RetryPolicy, Scope, Stamp, Status,
    TenantId, DEFAULT_PRIORITY,
};
use tonic::Status as GrpcStatus;

/// What a node accepts, beyond what the scheduler checks.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest job payload, in bytes.
    pub max_payload_bytes: usize,
}

pub fn spec(spec: Option<pb::JobSpec>, limits: &Limits) -> Result<JobSpec, GrpcStatus> {
    let spec = spec.ok_or_else(|| invalid("spec", "is required"))?;
    if spec.payload.len() > limits.max_payload_bytes {
        return Err(invalid(
            "payload",
            format!(
                "is {} bytes; this cluster accepts at most {} (max_payload_bytes)",
                spec.payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    let priority = match spec.priority {
        None => DEFAULT_PRIORITY,
        Some(p) => u16::try_from(p).map_err(|_| invalid("priority", "must be at most 65535"))?,
    };
    let mut out = JobSpec::new(spec.tenant, spec.job_type, spec.payload);
    if let Some(project) = spec.project {
        out.project = project;
    }
    out.priority = priority;
    out.idempotency_key = spec.idempotency_key;
    out.depends_on = spec.depends_on.into_iter().map(JobId).collect();
    out.not_before_ms = spec.not_before_ms;
    if let Some(retry) = spec.retry {
        out.retry = RetryPolicy {
            max_attempts: retry.max_attempts,
            base_backoff_ms: retry.base_backoff_ms,
            max_backoff_ms: retry.max_backoff_ms,
        };
    }
    if let Some(ttl) = spec.lease_ttl_ms {
        out.lease_ttl_ms = ttl;
    }
    out.correlation_id = spec.correlation_id;
    out.inputs = spec.inputs.into_iter().map(artifact).collect();
    out.backfill = spec.backfill.map(backfill);
    Ok(out)
}

pub fn plan_steps(steps: Vec<pb::PlanStep>, limits: &Limits) -> Result<Vec<PlanStep>, GrpcStatus> {
    steps
        .into_iter()
        .map(|step| {
            Ok(PlanStep {
                key: step.key,
                spec: spec(step.spec, limits)?,
                depends_on: step.depends_on,
            })
        })
        .collect()
}

pub fn artifact(a: pb::Artifact) -> Artifact {
    Artifact {
        name: a.name,
        uri: a.uri,
        digest: a.digest,
    }
}

fn artifact_out(a: &Artifact) -> pb::Artifact {
    pb::Artifact {
        name: a.name.clone(),
        uri: a.uri.clone(),
        digest: a.digest.clone(),
    }
}

pub fn backfill(b: pb::Backfill) -> Backfill {
    Backfill {
        reason: b.reason,
        ticket: b.ticket,
    }
}

pub fn stamp(stamp: Option<pb::Stamp>) -> Result<Stamp, GrpcStatus> {
    let stamp = stamp.ok_or_else(|| invalid("stamp", "is required (actor and reason)"))?;
    Ok(Stamp {
        actor: stamp.actor,
        reason: stamp.reason,
        ticket: stamp.ticket,
    })
}

pub fn stamp_out(stamp: &Stamp) -> pb::Stamp {
    pb::Stamp {
        actor: stamp.actor.clone(),
        reason: stamp.reason.clone(),
        ticket: stamp.ticket.clone(),
    }
}

pub fn scope(scope: Option<pb::Scope>) -> Result<Scope, GrpcStatus> {
    let scope =
        scope.ok_or_else(|| invalid("scope", "is required (a tenant, a job type or both)"))?;
    if scope.tenant.is_none() && scope.job_type.is_none() {
        return Err(invalid("scope", "needs a tenant, a job type or both"));
    }
    Ok(Scope {
        tenant: scope.tenant.map(TenantId),
        job_type: scope.job_type.map(JobType),
    })
}

pub fn scope_out(scope: &Scope) -> pb::Scope {
    pb::Scope {
        tenant: scope.tenant.as_ref().map(|t| t.0.clone()),
        job_type: scope.job_type.as_ref().map(|t| t.0.clone()),
    }
}

/// A batch item's outcome, as the single call's.
pub fn item_outcome(
    outcome: Option<pb::complete_item::Outcome>,
) -> Option<pb::complete_request::Outcome> {
    use pb::complete_item::Outcome as Item;
    use pb::complete_request::Outcome;
    outcome.map(|o| match o {
        Item::Succeeded(s) => Outcome::Succeeded(s),
        Item::Failed(f) => Outcome::Failed(f),
        Item::GaveUp(g) => Outcome::GaveUp(g),
    })
}

pub fn completion(
    outcome: Option<pb::complete_request::Outcome>,
) -> Result<Completion, GrpcStatus> {
    use pb::complete_request::Outcome;
    match outcome {
        None => Err(invalid(
            "outcome",
            "is required (succeeded, failed or gave_up)",
        )),
        Some(Outcome::Succeeded(s)) => Ok(Completion::Succeeded {
            outputs: s.outputs.into_iter().map(artifact).collect(),
        }),
        Some(Outcome::Failed(f)) => Ok(Completion::Failed {
            retryable: f.retryable,
            error: f.error,
        }),
        Some(Outcome::GaveUp(g)) => Ok(Completion::Canceled { reason: g.reason }),
    }
}

pub fn status_filter(status: i32) -> Result<Option<Status>, GrpcStatus> {
    match pb::JobStatus::try_from(status) {
        Ok(pb::JobStatus::Unspecified) => Ok(None),
        Ok(s) => Ok(Some(status_in(s))),
        Err(_) => Err(invalid("status", format!("{status} is not a job status"))),
    }
}

fn status_in(status: pb::JobStatus) -> Status {
    match status {
        pb::JobStatus::Unspecified | pb::JobStatus::Pending => Status::Pending,
        pb::JobStatus::Ready => Status::Ready,
        pb::JobStatus::Leased => Status::Leased,
        pb::JobStatus::Succeeded => Status::Succeeded,
        pb::JobStatus::Failed => Status::Failed,
        pb::JobStatus::DeadLettered => Status::DeadLettered,
        pb::JobStatus::Canceled => Status::Canceled,
    }
}

pub fn status_out(status: Status) -> pb::JobStatus {
    match status {
        Status::Pending => pb::JobStatus::Pending,
        Status::Ready => pb::JobStatus::Ready,
        Status::Leased => pb::JobStatus::Leased,
        Status::Succeeded => pb::JobStatus::Succeeded,
        Status::Failed => pb::JobStatus::Failed,
        Status::DeadLettered => pb::JobStatus::DeadLettered,
        Status::Canceled => pb::JobStatus::Canceled,
    }
}

pub fn plan_status_out(status: PlanStatus) -> pb::PlanStatus {
    match status {
        PlanStatus::Pending => pb::PlanStatus::Pending,
        PlanStatus::Running => pb::PlanStatus::Running,
        PlanStatus::Failing => pb::PlanStatus::Failing,
        PlanStatus::Succeeded => pb::PlanStatus::Succeeded,
        PlanStatus::Failed => pb::PlanStatus::Failed,
    }
}

pub fn grant_out(grant: Grant) -> pb::LeasedJob {
    pb::LeasedJob {
        job_id: grant.job_id.0,
        lease_id: grant.lease_id.0,
        lease_until_ms: grant.lease_until_ms,
        attempt: grant.attempt,
        tenant: grant.tenant.0,
        job_type: grant.job_type.0,
        payload: grant.payload,
        correlation_id: grant.correlation_id,
        ttl_ms: grant.ttl_ms,
    }
}

pub fn hold_out(held: Option<LeaseHold>) -> pb::LeaseHold {
    match held {
        None => pb::LeaseHold::None,
        Some(LeaseHold::Maintenance) => pb::LeaseHold::Maintenance,
    }
}

fn spec_out(spec: &JobSpec) -> pb::JobSpec {
    pb::JobSpec {
        tenant: spec.tenant.0.clone(),
        job_type: spec.job_type.0.clone(),
        payload: spec.payload.clone(),
        project: Some(spec.project.clone()),
        priority: Some(u32::from(spec.priority)),
        idempotency_key: spec.idempotency_key.clone(),
        depends_on: spec.depends_on.iter().map(|id| id.0).collect(),
        not_before_ms: spec.not_before_ms,
        retry: Some(pb::RetryPolicy {
            max_attempts: spec.retry.max_attempts,
            base_backoff_ms: spec.retry.base_backoff_ms,
            max_backoff_ms: spec.retry.max_backoff_ms,
        }),
        lease_ttl_ms: Some(spec.lease_ttl_ms),
        correlation_id: spec.correlation_id.clone(),
        inputs: spec.inputs.iter().map(artifact_out).collect(),
        backfill: spec.backfill.as_ref().map(|b| pb::Backfill {
            reason: b.reason.clone(),
            ticket: b.ticket.clone(),
        }),
    }
}

fn attempt_out(attempt: &Attempt) -> pb::Attempt {
    let (outcome, error, retryable) = match &attempt.outcome {
        None => (pb::AttemptOutcome::Running, None, false),
        Some(AttemptOutcome::Succeeded) => (pb::AttemptOutcome::Succeeded, None, false),
        Some(AttemptOutcome::Failed { retryable, error }) => {
            (pb::AttemptOutcome::Failed, Some(error.clone()), *retryable)
        }
        Some(AttemptOutcome::TimedOut) => (pb::AttemptOutcome::TimedOut, None, true),
        Some(AttemptOutcome::Canceled { reason }) => {
            (pb::AttemptOutcome::Canceled, Some(reason.clone()), false)
        }
    };
    pb::Attempt {
        number: attempt.number,
        worker: attempt.worker.0.clone(),
        lease_id: attempt.lease_id.0,
        started_ms: attempt.started_ms,
        ended_ms: attempt.ended_ms,
        outcome: outcome as i32,
        error,
        retryable,
        outputs: attempt.outputs.iter().map(artifact_out).collect(),
    }
}

fn event_out(kind: &JobEventKind) -> (&'static str, String) {
    match kind {
        JobEventKind::Enqueued => ("enqueued", String::new()),
        JobEventKind::Ready => ("ready", String::new()),
        JobEventKind::Leased { lease_id, worker } => ("leased", format!("{lease_id} by {worker}")),
        JobEventKind::AttemptEnded { attempt, outcome } => {
            ("attempt_ended", format!("attempt {attempt}: {outcome:?}"))
        }
        JobEventKind::RetryScheduled { retry_at_ms } => {
            ("retry_scheduled", format!("at {retry_at_ms}"))
        }
        JobEventKind::Succeeded => ("succeeded", String::new()),
        JobEventKind::DeadLettered { error } => ("dead_lettered", error.clone()),
        JobEventKind::Canceled { reason } => ("canceled", reason.clone()),
        JobEventKind::Replayed { new_job } => ("replayed", format!("as {new_job}")),
    }
}

/// A job as the wire shows it; `summary` leaves out attempts and history.
pub fn job_out(job: &Job, summary: bool) -> pb::Job {
    let mut out = pb::Job {
        id: job.id.0,
        spec: Some(spec_out(&job.spec)),
        status: status_out(job.status()) as i32,
        payload_digest: job.payload_digest_hex(),
        created_ms: job.created_ms,
        plan_id: job.origin.plan.as_ref().map(|(id, _)| id.0),
        plan_step: job.origin.plan.as_ref().map(|(_, key)| key.clone()),
        replay_of: job.origin.replay_of.map(|id| id.0),
        schedule_id: job.origin.schedule.as_ref().map(|(id, _)| id.0.clone()),
        ..pb::Job::default()
    };
    match &job.state {
        JobState::Pending {
            unmet,
            not_before_ms,
        } => {
            out.unmet_dependencies = unmet.iter().map(|id| id.0).collect();
            out.not_before_ms = Some(*not_before_ms);
        }
        JobState::Ready { .. } => {}
        JobState::Leased { lease } => {
            out.lease_id = Some(lease.id.0);
            out.lease_worker = Some(lease.worker.0.clone());
            out.lease_until_ms = Some(lease.until_ms);
        }
        JobState::Succeeded { at_ms } => out.finished_ms = Some(*at_ms),
        JobState::Failed { retry_at_ms, error } => {
            out.retry_at_ms = Some(*retry_at_ms);
            out.error = Some(error.clone());
        }
        JobState::DeadLettered { at_ms, error } => {
            out.finished_ms = Some(*at_ms);
            out.error = Some(error.clone());
        }
        JobState::Canceled { at_ms, reason, .. } => {
            out.finished_ms = Some(*at_ms);
            out.error = Some(reason.clone());
        }
    }
    if !summary {
        out.attempts = job.attempts.iter().map(attempt_out).collect();
        out.history = job
            .history
            .iter()
            .map(|event| {
                let (kind, detail) = event_out(&event.kind);
                pb::JobEvent {
                    log_index: event.log_index,
                    at_ms: event.at_ms,
                    kind: kind.to_owned(),
                    detail,
                }
            })
            .collect();
    }
    out
}
