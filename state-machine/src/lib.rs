//! rota's scheduler: a pure, deterministic state machine.
//!
//! `State::apply(command, now_ms, log_index)` is the only way state changes. It reads no
//! clock, draws no random number and does no IO: time comes from the log, retry jitter from
//! a hash of (job, attempt), and every decision iterates ordered maps. Replicas that apply
//! the same log reach equal states and equal `digest`s.

#![warn(missing_docs)]

mod access;
mod archive;
mod batch;
mod command;
mod error;
mod governance;
mod ids;
mod invariants;
mod job;
mod journal;
mod leasing;
mod ledger;
mod operate;
mod plan;
mod query;
mod retention;
mod schedule;
mod session;
mod snapshot;
mod submit;
mod trace;
mod validate;

pub use access::{
    valid_principal_name, AuthScope, Token, TokenSpec, MAX_TOKENS, MAX_TOKEN_NAME_LEN,
    MAX_TOKEN_TENANTS,
};
pub use archive::{
    record_hash, ArchiveKey, ArchiveKind, ArchiveOp, ArchiveStats, Archived, ArchivedItem,
    BookEntry, MAX_RETIRED_PER_COMMAND, SWEEP_EVERY_MS,
};
pub use batch::MAX_BATCH;
pub use command::{Command, CompleteItem, Completion, Grant, LeaseHold, PlanStep, Reply, Response};
pub use error::SchedulerError;
pub use governance::{
    Breaker, BreakerConfig, GovernanceChange, GovernanceEvent, Hold, Incident, MembershipChange,
    Quota, Scope, Stamp, TokenBucket, MAX_ADDR_LEN,
};
pub use ids::{
    ClientId, IncidentId, JobId, JobType, LeaseId, PlanId, ScheduleId, TenantId, WorkerId,
};
pub use job::{
    Artifact, Attempt, AttemptOutcome, Backfill, Job, JobEvent, JobEventKind, JobSpec, JobState,
    Lease, Origin, RetryPolicy, Status, DEFAULT_LEASE_TTL_MS, DEFAULT_PRIORITY, REPLAY_PRIORITY,
};
pub use journal::Note;
pub use leasing::{backoff_ms, MAX_LEASE_BATCH, MAX_LEASE_PAYLOAD_BYTES};
pub use ledger::{Session, State};
pub use plan::{Plan, PlanStatus};
pub use query::{
    JobFilter, JobPage, Lineage, LineageLink, LineageScope, PlanView, QueueDepth, MAX_PAGE,
};
pub use retention::{Retention, RetentionChange, MAX_RETENTION_MS};
pub use schedule::{Cadence, CatchUp, Schedule, MAX_CATCH_UP, ON_TIME_GRACE_MS};
pub use session::{ClientRequest, MAX_SESSIONS, SESSION_TTL_MS};
pub use snapshot::{Frozen, SnapshotError, SNAPSHOT_VERSION};
pub use submit::{MAX_ARTIFACTS, MAX_BACKFILL, MAX_NAME_LEN, MAX_PAYLOAD_BYTES};
pub use trace::{check_traceparent, TRACEPARENT_LEN};
