//! Why a command was rejected. A rejected command changes nothing.

use crate::ids::{JobId, LeaseId, ScheduleId};
use crate::job::Status;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A command the scheduler refused, with enough detail for a clear message to the caller.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum SchedulerError {
    #[error("invalid {field}: {message}")]
    InvalidInput { field: String, message: String },

    #[error("{0} not found")]
    JobNotFound(JobId),

    #[error("{presented} is not the live lease of {job_id} (stale or unknown fencing token)")]
    StaleLease { job_id: JobId, presented: LeaseId },

    #[error("{job_id} was canceled while leased; its result is not accepted")]
    JobCanceled { job_id: JobId },

    #[error("{job_id} is {status:?} and cannot be {action}")]
    WrongState {
        job_id: JobId,
        status: Status,
        action: String,
    },

    #[error("dependency {dependency} of the new job is {status:?} and will never succeed")]
    DependencyFailed { dependency: JobId, status: Status },

    #[error("plan has a dependency cycle through steps {steps:?}")]
    PlanCycle { steps: Vec<String> },

    #[error("plan step {step:?} depends on unknown step {missing:?}")]
    UnknownPlanStep { step: String, missing: String },

    #[error("plan step key {0:?} is used twice")]
    DuplicatePlanStep(String),

    #[error("a backfill must carry both a reason and a ticket")]
    BackfillNeedsReasonAndTicket,

    #[error("schedule {0} already exists")]
    ScheduleExists(ScheduleId),

    #[error("schedule {0} not found")]
    ScheduleNotFound(ScheduleId),

    #[error("invalid cron expression {expression:?}: {message}")]
    InvalidCron { expression: String, message: String },

    #[error("request {seq} of client {client} is older than its latest request {latest}; its answer is gone")]
    StaleRequest {
        client: String,
        seq: u64,
        latest: u64,
    },

    #[error("no circuit breaker is open for job type {0}")]
    BreakerNotOpen(String),
}

impl SchedulerError {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        SchedulerError::InvalidInput {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}
