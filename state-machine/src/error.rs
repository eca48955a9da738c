//! Why a command was rejected. A rejected command changes nothing.

use crate::ids::{IncidentId, JobId, LeaseId, PlanId, ScheduleId, TenantId};
use crate::job::Status;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A command the scheduler refused, with enough detail for a clear message to the caller.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum SchedulerError {
    /// A field of the command is out of its bounds or malformed.
    #[error("invalid {field}: {message}")]
    InvalidInput {
        /// The offending field, as the wire names it (`payload`, `retry.max_attempts`).
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// No job has this id (a dependency's id included).
    #[error("{0} not found")]
    JobNotFound(JobId),

    /// The fencing token presented is not the job's live lease: it expired, or the job
    /// finished or was leased again. The worker's result does not count.
    #[error("{presented} is not the live lease of {job_id} (stale or unknown fencing token)")]
    StaleLease {
        /// The job the worker reported on.
        job_id: JobId,
        /// The fencing token it presented.
        presented: LeaseId,
    },

    /// The job was canceled while this lease was live; the worker should stop.
    #[error("{job_id} was canceled while leased; its result is not accepted")]
    JobCanceled {
        /// The canceled job.
        job_id: JobId,
    },

    /// The job's status does not allow the action (canceling a finished job, say).
    #[error("{job_id} is {status:?} and cannot be {action}")]
    WrongState {
        /// The job acted on.
        job_id: JobId,
        /// Its status, which forbids the action.
        status: Status,
        /// The refused action, as a past participle (`canceled`, `replayed`).
        action: String,
    },

    /// A new job would depend on a job that can never succeed.
    #[error("dependency {dependency} of the new job is {status:?} and will never succeed")]
    DependencyFailed {
        /// The dead-lettered or canceled dependency.
        dependency: JobId,
        /// Its status.
        status: Status,
    },

    /// A plan's steps depend on each other in a circle, so none of them could ever start.
    #[error("plan has a dependency cycle through steps {steps:?}")]
    PlanCycle {
        /// The keys of the steps on or behind the cycle.
        steps: Vec<String>,
    },

    /// A plan step depends on a key no step of the plan has.
    #[error("plan step {step:?} depends on unknown step {missing:?}")]
    UnknownPlanStep {
        /// The step with the dangling dependency.
        step: String,
        /// The key it names.
        missing: String,
    },

    /// Two steps of a plan share a key.
    #[error("plan step key {0:?} is used twice")]
    DuplicatePlanStep(String),

    /// A backfill mark lacks its reason or its ticket, which audits need both of.
    #[error("a backfill must carry both a reason and a ticket")]
    BackfillNeedsReasonAndTicket,

    /// A schedule of this name already exists.
    #[error("schedule {0} already exists")]
    ScheduleExists(ScheduleId),

    /// No schedule has this name.
    #[error("schedule {0} not found")]
    ScheduleNotFound(ScheduleId),

    /// A schedule's cron expression does not parse or never fires.
    #[error("invalid cron expression {expression:?}: {message}")]
    InvalidCron {
        /// The expression as given.
        expression: String,
        /// Why it was refused.
        message: String,
    },

    /// A request older than its client's latest: only the latest answer is kept, so this
    /// one can be neither answered again nor applied.
    #[error("request {seq} of client {client} is older than its latest request {latest}; its answer is gone")]
    StaleRequest {
        /// The client id of the session.
        client: String,
        /// The sequence the request carried.
        seq: u64,
        /// The client's latest applied sequence.
        latest: u64,
    },

    /// A reset named a job type whose circuit breaker is not open.
    #[error("no circuit breaker is open for job type {0}")]
    BreakerNotOpen(String),

    /// The job finished and passed its retention window: it is in the archive, where it
    /// can be read but no longer changed (new variants go last: sessions keep answers).
    #[error(
        "{0} is archived (finished and past its retention window): it can be read, not changed"
    )]
    Archived(JobId),

    /// The cluster's bootstrap token was created before: there is only ever one.
    #[error("the cluster's bootstrap token was already created; ask an admin for a token")]
    AlreadyBootstrapped,

    /// A token of this name exists.
    #[error("a token named {0:?} already exists")]
    TokenExists(String),

    /// No token has this name.
    #[error("no token is named {0:?}")]
    TokenNotFound(String),

    /// The cluster holds as many tokens as it may.
    #[error("the cluster holds {0} tokens, its most; revoke some first")]
    TooManyTokens(usize),

    /// No plan in memory has this id (new variants go last: sessions encode them).
    #[error("{0} not found")]
    PlanNotFound(PlanId),

    /// No open incident in memory has this id.
    #[error("{0} is not an open incident")]
    IncidentNotOpen(IncidentId),

    /// The tenant is blocked: nothing of it is enqueued until an operator unblocks it.
    #[error("tenant {tenant} is blocked ({reason}): its enqueues are refused until an operator unblocks it")]
    TenantBlocked {
        /// The tenant.
        tenant: TenantId,
        /// Why, as the operator said.
        reason: String,
    },
}

impl SchedulerError {
    /// The same refusal, its field named as part of a batch's item (`specs[3].payload`).
    pub(crate) fn in_item(self, item: &str) -> Self {
        match self {
            SchedulerError::InvalidInput { field, message } => SchedulerError::InvalidInput {
                field: format!("{item}.{field}"),
                message,
            },
            other => other,
        }
    }

    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        SchedulerError::InvalidInput {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}
