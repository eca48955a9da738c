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
        tenant: impl Into<std::sync::Arc<str>>,
        job_type: impl Into<std::sync::Arc<str>>,
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
    Ready {
        /// Log time it became eligible; earlier-eligible jobs of equal priority go first.
        eligible_ms: u64,
    },
    /// Held by a worker.
    Leased {
        /// The live lease: holder, fencing token, expiry.
        lease: Lease,
    },
    /// Finished well.
    Succeeded {
        /// Log time of the successful completion.
        at_ms: u64,
    },
    /// An attempt failed; the next becomes ready at `retry_at_ms`.
    Failed {
        /// Log time the backoff ends and the job is ready again.
        retry_at_ms: u64,
        /// The failed attempt's error.
        error: String,
    },
    /// Quarantined: attempts exhausted or a non-retryable failure.
    DeadLettered {
        /// Log time it was dead-lettered.
        at_ms: u64,
        /// The last attempt's error.
        error: String,
    },
    /// Canceled by an operator, a worker or a failed dependency.
    Canceled {
        /// Log time of the cancellation.
        at_ms: u64,
        /// Who canceled it and why, or which dependency failed.
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
    /// Waiting for dependencies or a not-before time.
    Pending,
    /// Waiting for a worker.
    Ready,
    /// Held by a worker.
    Leased,
    /// Finished well; terminal.
    Succeeded,
    /// An attempt failed; a retry follows after a backoff.
    Failed,
    /// Attempts exhausted or a non-retryable failure; terminal until replayed.
    DeadLettered,
    /// Canceled; terminal.
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
    /// The worker reported success.
    Succeeded,
    /// The worker reported a failure.
    Failed {
        /// Whether the worker thought another attempt could succeed.
        retryable: bool,
        /// The worker's error text, clipped to `MAX_TEXT_LEN` bytes.
        error: String,
    },
    /// The lease expired without a completion.
    TimedOut,
    /// The worker gave the job up, or an operator canceled it while leased.
    Canceled {
        /// The worker's or the operator's reason.
        reason: String,
    },
    /// An operator released the lease (a stuck worker): the job went back to ready, and
    /// the attempt does not count against its retry policy (new variants go last).
    Released {
        /// The operator's reason.
        reason: String,
    },
}

/// One try at running a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// The worker that held the lease.
    pub worker: WorkerId,
    /// The lease's fencing token.
    pub lease_id: LeaseId,
    /// Log time the lease was granted.
    pub started_ms: u64,
    /// Log time the attempt ended; `None` while it runs.
    pub ended_ms: Option<u64>,
    /// How it ended; `None` while it runs.
    pub outcome: Option<AttemptOutcome>,
    /// Artifacts the attempt reported writing.
    pub outputs: Vec<Artifact>,
}

/// What happened to a job, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobEventKind {
    /// The job entered the ledger.
    Enqueued,
    /// The job became eligible for leasing.
    Ready,
    /// A worker leased the job.
    Leased {
        /// The lease's fencing token.
        lease_id: LeaseId,
        /// The worker holding it.
        worker: WorkerId,
    },
    /// An attempt ended, by completion, expiry or cancellation.
    AttemptEnded {
        /// The attempt's number.
        attempt: u32,
        /// How it ended.
        outcome: AttemptOutcome,
    },
    /// A failed attempt will be retried.
    RetryScheduled {
        /// Log time the job becomes ready again.
        retry_at_ms: u64,
    },
    /// The job finished well.
    Succeeded,
    /// The job was quarantined.
    DeadLettered {
        /// The last attempt's error.
        error: String,
    },
    /// The job was canceled.
    Canceled {
        /// Who canceled it and why, or which dependency failed.
        reason: String,
    },
    /// An operator replayed the job as a new one.
    Replayed {
        /// The job that replays it.
        new_job: JobId,
    },
}

/// One entry of a job's append-only history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The Raft log index of the command that caused it.
    pub log_index: u64,
    /// Log time of that command.
    pub at_ms: u64,
    /// What happened.
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
    /// The job's id, assigned in enqueue order.
    pub id: JobId,
    /// What the producer asked for.
    pub spec: JobSpec,
    /// sha256 of the payload.
    pub payload_digest: [u8; 32],
    /// Log time of the enqueue.
    pub created_ms: u64,
    /// The plan, replay or schedule it came from, if any.
    pub origin: Origin,
    /// Where it stands now.
    pub state: JobState,
    /// Every attempt so far, oldest first.
    pub attempts: Vec<Attempt>,
    /// Everything that happened to it, in log order.
    pub history: Vec<JobEvent>,
}

impl Job {
    /// Attempts that count against the retry policy: every one but those an operator
    /// released.
    pub fn counted_attempts(&self) -> u32 {
        self.attempts
            .iter()
            .filter(|a| !matches!(a.outcome, Some(AttemptOutcome::Released { .. })))
            .count() as u32
    }

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
