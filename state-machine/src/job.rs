//! A job, its states, its attempts and its history.

use crate::ids::{JobId, JobType, LeaseId, PlanId, ScheduleId, TenantId, WorkerId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Default number of attempts before a job is dead-lettered.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default first backoff after a failed attempt.
pub const DEFAULT_BASE_BACKOFF_MS: u64 = 1_000;
/// Default cap on the backoff between attempts.
pub const DEFAULT_MAX_BACKOFF_MS: u64 = 300_000;
/// Default lease time-to-live.
pub const DEFAULT_LEASE_TTL_MS: u64 = 30_000;
/// Default priority; higher runs first.
pub const DEFAULT_PRIORITY: u16 = 100;
/// The priority a replayed job gets, ahead of ordinary work.
pub const REPLAY_PRIORITY: u16 = u16::MAX;

/// How often and how patiently a job is retried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; at least 1.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles per attempt.
    pub base_backoff_ms: u64,
    /// Upper bound on any backoff.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_backoff_ms: DEFAULT_BASE_BACKOFF_MS,
            max_backoff_ms: DEFAULT_MAX_BACKOFF_MS,
        }
    }
}

/// A named data artifact a job reads or writes, for lineage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Logical name, e.g. `daily_orders`.
    pub name: String,
    /// Where it lives, e.g. `s3://bucket/orders/2026-11-22`.
    pub uri: String,
    /// Content digest as the producer reports it (free-form, e.g. `sha256:…`).
    pub digest: Option<String>,
}

/// The mark that makes an enqueue or a plan a backfill: both fields are required.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backfill {
    /// Why the backfill is run.
    pub reason: String,
    /// The change or incident ticket that authorises it.
    pub ticket: String,
}

/// Everything a producer says about a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Owner of the job, for fairness and quotas.
    pub tenant: TenantId,
    /// Free-form grouping within the tenant.
    pub project: String,
    /// What kind of work it is.
    pub job_type: JobType,
    /// Higher runs first within a tenant.
    pub priority: u16,
    /// Opaque bytes handed to the worker.
    pub payload: Vec<u8>,
    /// A producer's key: a second enqueue with the same (tenant, key) returns the first job.
    pub idempotency_key: Option<String>,
    /// Jobs that must succeed before this one becomes ready.
    pub depends_on: Vec<JobId>,
    /// The job is not leased before this log time.
    pub not_before_ms: Option<u64>,
    /// Retries and backoff.
    pub retry: RetryPolicy,
    /// How long a lease lasts without a heartbeat.
    pub lease_ttl_ms: u64,
    /// Caller's id tying this job to a wider request or trace.
    pub correlation_id: Option<String>,
    /// Artifacts the job reads.
    pub inputs: Vec<Artifact>,
    /// Set when the job is a backfill.
    pub backfill: Option<Backfill>,
}

impl JobSpec {
    /// A spec with the defaults for everything but the three names and the payload.
    pub fn new(
        tenant: impl Into<String>,
        job_type: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            tenant: TenantId(tenant.into()),
            project: "default".to_owned(),
            job_type: JobType(job_type.into()),
            priority: DEFAULT_PRIORITY,
            payload: payload.into(),
            idempotency_key: None,
            depends_on: Vec::new(),
            not_before_ms: None,
            retry: RetryPolicy::default(),
            lease_ttl_ms: DEFAULT_LEASE_TTL_MS,
            correlation_id: None,
            inputs: Vec::new(),
            backfill: None,
        }
    }
}

/// A granted lease: who holds the job, with which fencing token, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The fencing token every heartbeat and completion must present.
    pub id: LeaseId,
    /// The worker holding it.
    pub worker: WorkerId,
    /// Log time at which it expires unless renewed.
    pub until_ms: u64,
    /// The time-to-live each heartbeat renews.
    pub ttl_ms: u64,
}

/// Where a job stands. Each state carries exactly the data that state needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting for dependencies to succeed and/or for its not-before time.
    Pending {
        /// Dependencies that have not succeeded yet.
        unmet: BTreeSet<JobId>,
        /// Log time before which it may not run.
        not_before_ms: u64,
    },
    /// Eligible for leasing since `eligible_ms`.
    Ready { eligible_ms: u64 },
    /// Held by a worker.
    Leased { lease: Lease },
    /// Finished well.
    Succeeded { at_ms: u64 },
    /// An attempt failed; the next becomes ready at `retry_at_ms`.
    Failed { retry_at_ms: u64, error: String },
    /// Quarantined: attempts exhausted or a non-retryable failure.
    DeadLettered { at_ms: u64, error: String },
    /// Canceled by an operator, a worker or a failed dependency.
    Canceled {
        at_ms: u64,
        reason: String,
        /// The lease that was live when the job was canceled, so its worker learns of it.
        revoked_lease: Option<LeaseId>,
    },
}

impl JobState {
    /// The state's name without its data.
    pub fn status(&self) -> Status {
        match self {
            JobState::Pending { .. } => Status::Pending,
            JobState::Ready { .. } => Status::Ready,
            JobState::Leased { .. } => Status::Leased,
            JobState::Succeeded { .. } => Status::Succeeded,
            JobState::Failed { .. } => Status::Failed,
            JobState::DeadLettered { .. } => Status::DeadLettered,
            JobState::Canceled { .. } => Status::Canceled,
        }
    }
}

/// A job state's name, for filters, indexes and counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Status {
    Pending,
    Ready,
    Leased,
    Succeeded,
    Failed,
    DeadLettered,
    Canceled,
}

impl Status {
    /// Every status, in a fixed order.
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Ready,
        Status::Leased,
        Status::Succeeded,
        Status::Failed,
        Status::DeadLettered,
        Status::Canceled,
    ];

    /// A job in a terminal status never changes again (a replay makes a new job).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Succeeded | Status::DeadLettered | Status::Canceled
        )
    }

    /// The wire name, as in `?status=dead_lettered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Ready => "ready",
            Status::Leased => "leased",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::DeadLettered => "dead_lettered",
            Status::Canceled => "canceled",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptOutcome {
    Succeeded,
    Failed {
        retryable: bool,
        error: String,
    },
    /// The lease expired without a completion.
    TimedOut,
    /// The worker gave the job up, or an operator canceled it while leased.
    Canceled {
        reason: String,
    },
}

/// One try at running a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    pub worker: WorkerId,
    pub lease_id: LeaseId,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub outcome: Option<AttemptOutcome>,
    /// Artifacts the attempt reported writing.
    pub outputs: Vec<Artifact>,
}

/// What happened to a job, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobEventKind {
    Enqueued,
    Ready,
    Leased {
        lease_id: LeaseId,
        worker: WorkerId,
    },
    AttemptEnded {
        attempt: u32,
        outcome: AttemptOutcome,
    },
    RetryScheduled {
        retry_at_ms: u64,
    },
    Succeeded,
    DeadLettered {
        error: String,
    },
    Canceled {
        reason: String,
    },
    Replayed {
        new_job: JobId,
    },
}

/// One entry of a job's append-only history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The Raft log index of the command that caused it.
    pub log_index: u64,
    pub at_ms: u64,
    pub kind: JobEventKind,
}

/// Where a job came from, besides a plain enqueue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The plan and step key it was submitted as.
    pub plan: Option<(PlanId, String)>,
    /// The job it replays.
    pub replay_of: Option<JobId>,
    /// The schedule and fire time that enqueued it.
    pub schedule: Option<(ScheduleId, u64)>,
}

/// A job in the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    /// sha256 of the payload.
    pub payload_digest: [u8; 32],
    pub created_ms: u64,
    pub origin: Origin,
    pub state: JobState,
    pub attempts: Vec<Attempt>,
    pub history: Vec<JobEvent>,
}

impl Job {
    /// The job's status name.
    pub fn status(&self) -> Status {
        self.state.status()
    }

    /// The payload digest as lowercase hex.
    pub fn payload_digest_hex(&self) -> String {
        hex::encode(self.payload_digest)
    }

    /// The live lease, if the job is leased.
    pub fn lease(&self) -> Option<&Lease> {
        match &self.state {
            JobState::Leased { lease } => Some(lease),
            _ => None,
        }
    }
}
