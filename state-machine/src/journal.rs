//! What applying a command changed, for watchers: the node's event stream (`/api/events`).
//! Off unless the store asks for it (`State::keep_journal`); notes are collected while a
//! command applies and drained by the store after each log entry (`State::take_journal`).
//! Not part of the state, its snapshots or its digest, and never read by a decision.

use crate::{
    GovernanceChange, JobEventKind, JobId, JobType, LeaseId, Stamp, Status, TenantId, WorkerId,
};

/// One change an applied command made.
#[derive(Clone, Debug, PartialEq)]
pub enum Note {
    /// An event was added to a job's history.
    Job {
        /// The job.
        job: JobId,
        /// Its tenant.
        tenant: TenantId,
        /// Its type.
        job_type: JobType,
        /// Its status after the event.
        status: Status,
        /// What happened.
        event: JobEventKind,
        /// Attempts it has had.
        attempts: u32,
        /// The worker and lease of its latest attempt, if it has had one.
        holder: Option<(WorkerId, LeaseId)>,
        /// Log time it was enqueued.
        created_ms: u64,
        /// Log time its latest attempt started, if it has had one.
        started_ms: Option<u64>,
        /// Log time of the event.
        at_ms: u64,
    },
    /// A heartbeat extended a lease. Not in the job's history (heartbeats would swamp it):
    /// for the job log and metrics only.
    LeaseExtended {
        /// The job.
        job: JobId,
        /// Its tenant.
        tenant: TenantId,
        /// Its type.
        job_type: JobType,
        /// The worker holding the lease.
        worker: WorkerId,
        /// The lease.
        lease_id: LeaseId,
        /// The attempt it belongs to.
        attempt: u32,
        /// Log time the lease now lasts until.
        until_ms: u64,
        /// Log time of the heartbeat.
        at_ms: u64,
    },
    /// A governance change.
    Governance {
        /// What changed.
        change: GovernanceChange,
        /// Who changed it and why; none for the scheduler's own (a breaker tripping).
        stamp: Option<Stamp>,
        /// Log time of the change.
        at_ms: u64,
    },
}
