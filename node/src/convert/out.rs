//! From the scheduler's types to the wire's: what every answer and read shows.

use rota_client::proto as pb;
use rota_state_machine::{
    Artifact, Attempt, AttemptOutcome, Cadence, CatchUp, Grant, Job, JobEventKind, JobSpec,
    JobState, LeaseHold, PlanStatus, Retention, Schedule, Scope, Stamp, State, Status,
};

pub fn artifact_out(a: &Artifact) -> pb::Artifact {
    pb::Artifact {
        name: a.name.clone(),
        uri: a.uri.clone(),
        digest: a.digest.clone(),
    }
}

/// A governance stamp as the wire shows it.
pub fn stamp_out(stamp: &Stamp) -> pb::Stamp {
    pb::Stamp {
        actor: stamp.actor.clone(),
        reason: stamp.reason.clone(),
        ticket: stamp.ticket.clone(),
    }
}

/// A governance scope as the wire shows it.
pub fn scope_out(scope: &Scope) -> pb::Scope {
    pb::Scope {
        tenant: scope.tenant.as_ref().map(|t| t.to_string()),
        job_type: scope.job_type.as_ref().map(|t| t.to_string()),
    }
}

/// A job status as the wire names it.
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

/// A plan's run status as the wire names it.
pub fn plan_status_out(status: PlanStatus) -> pb::PlanStatus {
    match status {
        PlanStatus::Pending => pb::PlanStatus::Pending,
        PlanStatus::Running => pb::PlanStatus::Running,
        PlanStatus::Failing => pb::PlanStatus::Failing,
        PlanStatus::Succeeded => pb::PlanStatus::Succeeded,
        PlanStatus::Failed => pb::PlanStatus::Failed,
    }
}

/// A granted lease as the worker receives it.
pub fn grant_out(grant: Grant) -> pb::LeasedJob {
    pb::LeasedJob {
        job_id: grant.job_id.0,
        lease_id: grant.lease_id.0,
        lease_until_ms: grant.lease_until_ms,
        attempt: grant.attempt,
        tenant: grant.tenant.to_string(),
        job_type: grant.job_type.to_string(),
        payload: grant.payload,
        correlation_id: grant.correlation_id,
        ttl_ms: grant.ttl_ms,
        // Filled from the state by the lease call (`Api::trace_leases`, `describe_leases`).
        traceparent: None,
        idempotency_key: None,
        max_attempts: 0,
        retry_backoff_ms: None,
        project: String::new(),
        worker: String::new(),
        inputs: Vec::new(),
    }
}

/// Why a lease granted nothing, if the cluster holds leases back.
pub fn hold_out(held: Option<LeaseHold>) -> pb::LeaseHold {
    match held {
        None => pb::LeaseHold::None,
        Some(LeaseHold::Maintenance) => pb::LeaseHold::Maintenance,
    }
}

fn spec_out(spec: &JobSpec) -> pb::JobSpec {
    pb::JobSpec {
        tenant: spec.tenant.to_string(),
        job_type: spec.job_type.to_string(),
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
        // Kept beside the spec (`State::traceparent`), not in it.
        traceparent: None,
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
        Some(AttemptOutcome::Released { reason }) => {
            (pb::AttemptOutcome::Released, Some(reason.clone()), true)
        }
    };
    pb::Attempt {
        number: attempt.number,
        worker: attempt.worker.to_string(),
        lease_id: attempt.lease_id.0,
        started_ms: attempt.started_ms,
        ended_ms: attempt.ended_ms,
        outcome: outcome as i32,
        error,
        retryable,
        outputs: attempt.outputs.iter().map(artifact_out).collect(),
    }
}

/// A job event's kind and details for people.
pub fn event_out(kind: &JobEventKind) -> (&'static str, String) {
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

/// Retention windows as the wire shows them: every field set, or none while no window was
/// ever set (nothing leaves memory then).
pub fn retention_out(r: Option<&Retention>) -> pb::Retention {
    let Some(r) = r else {
        return pb::Retention::default();
    };
    pb::Retention {
        succeeded_ms: Some(r.succeeded_ms),
        canceled_ms: Some(r.canceled_ms),
        dead_lettered_ms: Some(r.dead_lettered_ms),
        history_ms: Some(r.history_ms),
        archive_ms: Some(r.archive_ms),
    }
}

/// An archived job as the wire shows it: as `job_out`, marked archived.
pub fn archived_job_out(job: &Job, archived_ms: u64, summary: bool) -> pb::Job {
    pb::Job {
        archived: true,
        archived_ms: Some(archived_ms),
        ..job_out(job, summary)
    }
}

/// A job of the in-memory ledger as the wire shows it: as `job_out`, and shown pending
/// with what holds it back where governance does (`State::job_hold`).
pub fn live_job_out(state: &State, job: &Job, summary: bool) -> pb::Job {
    let mut out = job_out(job, summary);
    if let Some(hold) = state.job_hold(job) {
        out.status = pb::JobStatus::Pending as i32;
        out.held_by = Some(hold.kind().to_owned());
        out.eligible_ms = hold.eligible_ms();
        out.held_detail = Some(hold.describe());
    }
    out
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
        schedule_id: job.origin.schedule.as_ref().map(|(id, _)| id.to_string()),
        attempt_count: job.attempts.len() as u32,
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
            out.lease_worker = Some(lease.worker.to_string());
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

/// A schedule as the wire shows it, with up to `upcoming` next fire times.
pub fn schedule_out(schedule: &Schedule, upcoming: usize) -> pb::Schedule {
    let (catch_up, catch_up_max) = match schedule.catch_up {
        CatchUp::Skip => (pb::CatchUp::Skip, 0),
        CatchUp::RunOnce => (pb::CatchUp::RunOnce, 0),
        CatchUp::RunEach { max } => (pb::CatchUp::RunEach, max),
    };
    pb::Schedule {
        id: schedule.id.as_str().to_owned(),
        template: Some(spec_out(&schedule.template)),
        cadence: Some(match &schedule.cadence {
            Cadence::Cron { expression } => pb::schedule::Cadence::Cron(expression.clone()),
            Cadence::Every { interval_ms } => pb::schedule::Cadence::IntervalMs(*interval_ms),
        }),
        catch_up: catch_up.into(),
        catch_up_max,
        start_ms: schedule.start_ms,
        end_ms: schedule.end_ms,
        paused: schedule.paused,
        next_fire_ms: schedule.next_fire_ms.filter(|_| !schedule.paused),
        last_fired_ms: schedule.last_fired_ms,
        upcoming_ms: schedule.upcoming(upcoming),
        created_by: Some(stamp_out(&schedule.created_by)),
    }
}
