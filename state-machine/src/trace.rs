//! W3C trace context carried with jobs: a producer's `traceparent` travels with the job it
//! enqueues to the worker that leases it, so that one trace shows the job from submit to
//! finish. Kept beside the ledger (by job id, removed with the job) rather than in
//! `JobSpec`, whose encoding in log entries and snapshots written before it stays as it
//! was; set by `Command::Traced`, which wraps the enqueue that creates the jobs.

use crate::command::{Command, Reply, Response};
use crate::error::SchedulerError;
use crate::ids::JobId;
use crate::ledger::{At, State};
use std::sync::Arc;

/// Length of a version-00 `traceparent`: `00-` 32 hex `-` 16 hex `-` 2 hex.
pub const TRACEPARENT_LEN: usize = 55;

/// Refuses a `traceparent` that is not W3C trace context version 00 with a non-zero trace
/// and parent id (lowercase hex, as the recommendation writes it).
pub fn check_traceparent(field: &str, traceparent: &str) -> Result<(), SchedulerError> {
    let invalid = || {
        SchedulerError::invalid(
            field,
            "is not a W3C traceparent (00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>)",
        )
    };
    // The length first: nothing below runs over a long string a client made up.
    if traceparent.len() != TRACEPARENT_LEN {
        return Err(invalid());
    }
    let mut parts = traceparent.splitn(5, '-');
    let (Some(version), Some(trace_id), Some(parent_id), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(invalid());
    };
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    if version != "00"
        || !hex(trace_id, 32)
        || !hex(parent_id, 16)
        || !hex(flags, 2)
        || zero(trace_id)
        || zero(parent_id)
    {
        return Err(invalid());
    }
    Ok(())
}

/// How many jobs `command` describes (an enqueue's, a batch's or a plan's specs), or none
/// for a command that creates no job from a spec of its own.
fn specs_of(command: &Command) -> Option<usize> {
    match command {
        Command::Enqueue { .. } => Some(1),
        Command::EnqueueBatch { specs } => Some(specs.len()),
        Command::SubmitPlan { steps, .. } => Some(steps.len()),
        _ => None,
    }
}

/// A `Traced` command's own fields: an enqueue, batch or plan inside, one `traceparent`
/// (or an empty one) per spec, each valid.
pub(crate) fn check_traced(
    traceparents: &[String],
    command: &Command,
) -> Result<(), SchedulerError> {
    let specs = specs_of(command).ok_or_else(|| {
        SchedulerError::invalid(
            "command",
            "only an enqueue, a batch of enqueues or a plan carries trace context",
        )
    })?;
    if traceparents.len() != specs {
        return Err(SchedulerError::invalid(
            "traceparents",
            format!("has {} entries for {specs} jobs", traceparents.len()),
        ));
    }
    for (i, traceparent) in traceparents.iter().enumerate() {
        if !traceparent.is_empty() {
            check_traceparent(&format!("traceparents[{i}]"), traceparent)?;
        }
    }
    command.check()
}

impl State {
    /// Applies `command` and keeps each created job's `traceparent`.
    pub(crate) fn traced(
        &mut self,
        traceparents: Vec<String>,
        command: Command,
        at: At,
    ) -> Response {
        check_traced(&traceparents, &command)?;
        let reply = self.execute(command, at)?;
        let created: Vec<Option<JobId>> = match &reply {
            Reply::Enqueued { job_id, created } => vec![created.then_some(*job_id)],
            Reply::Batch { replies } => replies
                .iter()
                .map(|reply| match reply {
                    Ok(Reply::Enqueued {
                        job_id,
                        created: true,
                    }) => Some(*job_id),
                    _ => None,
                })
                .collect(),
            // A step may name an existing job (its idempotency key): only jobs this entry
            // enqueued take the context.
            Reply::PlanSubmitted { jobs, .. } => jobs
                .iter()
                .map(|(_, id)| {
                    let job = self.ledger.jobs.get(id)?;
                    let enqueued_here = job
                        .history
                        .first()
                        .is_some_and(|first| first.log_index == at.log_index);
                    enqueued_here.then_some(*id)
                })
                .collect(),
            _ => Vec::new(),
        };
        for (job, traceparent) in created.into_iter().zip(traceparents) {
            match job {
                Some(job) if !traceparent.is_empty() && self.ledger.jobs.contains_key(&job) => {
                    self.ledger.traces.insert(job, Arc::from(traceparent));
                }
                _ => {}
            }
        }
        Ok(reply)
    }

    /// The W3C `traceparent` the job was enqueued with, if any (and it is in memory).
    pub fn traceparent(&self, job: JobId) -> Option<&str> {
        self.ledger.traces.get(&job).map(|t| &**t)
    }

    /// Whether any job in memory carries trace context (a lease answer looks up none
    /// otherwise).
    pub fn has_traces(&self) -> bool {
        !self.ledger.traces.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_w3c_version_00_traceparents_pass() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(check_traceparent("t", good).is_ok());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert!(check_traceparent("t", bad).is_err(), "{bad:?} passed");
        }
    }
}
