//! Between the wire (`rota.v1`) and the scheduler's types. Wire input is checked here for
//! what only the node knows (its payload limit, field ranges, required messages); the state
//! machine checks the rest, so a request is judged the same on every node. This file reads
//! the wire's values; `requests` turns whole write requests into commands, `out` turns the
//! scheduler's answers into the wire's.

mod out;
mod requests;

pub use out::{
    archived_job_out, artifact_out, event_out, live_job_out, plan_status_out, retention_out,
    schedule_out, scope_out, stamp_out, status_out,
};
pub use requests::{IncidentChange, ScheduleAction, ScheduleChange, SourceChange, WireWrite};

use crate::status::invalid;
use rota_client::proto as pb;
use rota_state_machine::{
    Artifact, Backfill, Command, Completion, JobId, JobSpec, JobType, PlanStep, RetryPolicy, Scope,
    Stamp, Status, TenantId, DEFAULT_PRIORITY,
};
use tonic::Status as GrpcStatus;

/// What a node accepts and answers, beyond what the scheduler checks.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest job payload, in bytes.
    pub max_payload_bytes: usize,
    /// Largest page of jobs a list answers, in encoded bytes: a page closes before it
    /// would pass this (one job always fits) and says where the next starts.
    pub max_page_bytes: usize,
}

/// Default largest payload: 1 MiB. The scheduler's own ceiling is 4 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Default largest page: 16 MiB, a quarter of the gRPC message limit.
pub const DEFAULT_MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_page_bytes: DEFAULT_MAX_PAGE_BYTES,
        }
    }
}

/// A job spec from the wire, checked against the node's limits.
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

/// `command` with the trace contexts of its specs (in order), if any spec has one: a
/// `Command::Traced` around it. Each is checked here, naming the spec it came with.
pub fn traced(traceparents: Vec<Option<String>>, command: Command) -> Result<Command, GrpcStatus> {
    if traceparents.iter().all(Option::is_none) {
        return Ok(command);
    }
    let many = traceparents.len() > 1;
    let traceparents = traceparents
        .into_iter()
        .enumerate()
        .map(|(i, traceparent)| {
            let traceparent = traceparent.unwrap_or_default();
            if !traceparent.is_empty() {
                let field = if many {
                    format!("specs[{i}].traceparent")
                } else {
                    "spec.traceparent".to_owned()
                };
                rota_state_machine::check_traceparent(&field, &traceparent)
                    .map_err(|e| crate::status::scheduler(&e))?;
            }
            Ok(traceparent)
        })
        .collect::<Result<Vec<_>, GrpcStatus>>()?;
    Ok(Command::Traced {
        traceparents,
        command: Box::new(command),
    })
}

/// A plan's steps from the wire, each spec checked as `spec` checks one.
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

/// A named artifact (lineage input or output).
pub fn artifact(a: pb::Artifact) -> Artifact {
    Artifact {
        name: a.name,
        uri: a.uri,
        digest: a.digest,
    }
}

/// A backfill's reason and ticket.
pub fn backfill(b: pb::Backfill) -> Backfill {
    Backfill {
        reason: b.reason,
        ticket: b.ticket,
    }
}

/// Who asks for a governance change and why; required.
pub fn stamp(stamp: Option<pb::Stamp>) -> Result<Stamp, GrpcStatus> {
    let stamp = stamp.ok_or_else(|| invalid("stamp", "is required (actor and reason)"))?;
    Ok(Stamp {
        actor: stamp.actor,
        reason: stamp.reason,
        ticket: stamp.ticket,
    })
}

/// A governance scope: a tenant, a job type, or both, never neither.
pub fn scope(scope: Option<pb::Scope>) -> Result<Scope, GrpcStatus> {
    let scope =
        scope.ok_or_else(|| invalid("scope", "is required (a tenant, a job type or both)"))?;
    if scope.tenant.is_none() && scope.job_type.is_none() {
        return Err(invalid("scope", "needs a tenant, a job type or both"));
    }
    Ok(Scope {
        tenant: scope.tenant.map(TenantId::from),
        job_type: scope.job_type.map(JobType::from),
    })
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
        Item::TimedOut(t) => Outcome::TimedOut(t),
        Item::Canceled(g) => Outcome::Canceled(g),
    })
}

/// A worker's reported outcome; one is required.
pub fn completion(
    outcome: Option<pb::complete_request::Outcome>,
) -> Result<Completion, GrpcStatus> {
    use pb::complete_request::Outcome;
    match outcome {
        None => Err(invalid(
            "outcome",
            "is required (succeeded, failed, timed_out, canceled or gave_up)",
        )),
        Some(Outcome::Succeeded(s)) => Ok(Completion::Succeeded {
            outputs: s.outputs.into_iter().map(artifact).collect(),
        }),
        Some(Outcome::Failed(f)) => Ok(Completion::Failed {
            retryable: f.retryable,
            error: f.error,
        }),
        Some(Outcome::GaveUp(g) | Outcome::Canceled(g)) => {
            Ok(Completion::Canceled { reason: g.reason })
        }
        Some(Outcome::TimedOut(t)) => Ok(Completion::TimedOut { error: t.error }),
    }
}

/// A list filter's status: `UNSPECIFIED` means any.
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
