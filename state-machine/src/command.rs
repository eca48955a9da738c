//! The commands the log carries and the replies `apply` gives.

use crate::governance::{BreakerConfig, Scope, Stamp};
use crate::ids::{JobId, JobType, LeaseId, PlanId, ScheduleId, TenantId, WorkerId};
use crate::job::{Artifact, Backfill, JobSpec, Status};
use crate::schedule::{Cadence, CatchUp};
use serde::{Deserialize, Serialize};

/// One step of a plan: a job spec, a key unique within the plan, and the keys it waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    pub key: String,
    pub spec: JobSpec,
    pub depends_on: Vec<String>,
}

/// How a worker ends an attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Completion {
    Succeeded {
        outputs: Vec<Artifact>,
    },
    Failed {
        retryable: bool,
        error: String,
    },
    /// The worker gives the job up for good; the job is canceled.
    Canceled {
        reason: String,
    },
}

/// A state change, as the leader proposes it. Time is not here: `apply` takes it beside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Advances log time: expires leases, promotes backoffs, fires schedules.
    Tick,
    Enqueue {
        spec: JobSpec,
    },
    SubmitPlan {
        steps: Vec<PlanStep>,
        backfill: Option<Backfill>,
    },
    Lease {
        worker: WorkerId,
        job_types: Vec<JobType>,
        max: u32,
        /// Overrides each job's own lease TTL.
        ttl_ms: Option<u64>,
    },
    Heartbeat {
        job_id: JobId,
        lease_id: LeaseId,
    },
    Complete {
        job_id: JobId,
        lease_id: LeaseId,
        completion: Completion,
    },
    /// Many enqueues in one command, each answered on its own (`Reply::Batch`, in order).
    EnqueueBatch {
        specs: Vec<JobSpec>,
    },
    /// Many completions in one command, each answered on its own (`Reply::Batch`, in order).
    CompleteBatch {
        items: Vec<CompleteItem>,
    },
    Cancel {
        job_id: JobId,
        stamp: Stamp,
    },
    Replay {
        job_id: JobId,
        stamp: Stamp,
    },
    SetQuota {
        tenant: TenantId,
        job_type: Option<JobType>,
        max_active: Option<u32>,
        max_per_hour: Option<u32>,
        /// Defaults to `max_per_hour`.
        burst: Option<u32>,
        stamp: Stamp,
    },
    /// Caps how many jobs of a scope are leased at once; `None` lifts the cap.
    Throttle {
        scope: Scope,
        max_concurrent: Option<u32>,
        stamp: Stamp,
    },
    PauseSource {
        scope: Scope,
        stamp: Stamp,
    },
    ResumeSource {
        scope: Scope,
        stamp: Stamp,
    },
    /// Sets (or with `None` removes) a job type's circuit breaker.
    ConfigureBreaker {
        job_type: JobType,
        config: Option<BreakerConfig>,
        stamp: Stamp,
    },
    ResetBreaker {
        job_type: JobType,
        stamp: Stamp,
    },
    SetMaintenance {
        enabled: bool,
        stamp: Stamp,
    },
    CreateSchedule {
        id: ScheduleId,
        template: JobSpec,
        cadence: Cadence,
        catch_up: CatchUp,
        stamp: Stamp,
    },
    PauseSchedule {
        id: ScheduleId,
        paused: bool,
        stamp: Stamp,
    },
    DeleteSchedule {
        id: ScheduleId,
        stamp: Stamp,
    },
}

/// One completion of a `CompleteBatch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteItem {
    pub job_id: JobId,
    pub lease_id: LeaseId,
    pub completion: Completion,
}

/// One job granted by a `Lease`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub job_id: JobId,
    pub lease_id: LeaseId,
    pub lease_until_ms: u64,
    /// The time-to-live each heartbeat renews.
    pub ttl_ms: u64,
    pub attempt: u32,
    pub tenant: TenantId,
    pub job_type: JobType,
    pub payload: Vec<u8>,
    pub correlation_id: Option<String>,
}

/// Why a `Lease` granted fewer jobs than asked, when the reason is cluster-wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseHold {
    Maintenance,
}

/// A successful command's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Ticked,
    Enqueued {
        job_id: JobId,
        /// False when the idempotency key matched an existing job, which is returned.
        created: bool,
    },
    PlanSubmitted {
        plan_id: PlanId,
        jobs: Vec<(String, JobId)>,
    },
    Leased {
        grants: Vec<Grant>,
        held: Option<LeaseHold>,
    },
    HeartbeatAck {
        lease_until_ms: u64,
        /// The job was canceled: the worker should stop and not complete it.
        canceled: bool,
    },
    Completed {
        job_id: JobId,
        status: Status,
    },
    Canceled {
        job_id: JobId,
    },
    Replayed {
        job_id: JobId,
    },
    /// A governance command took effect.
    Done,
    /// The answers to a batch command's items, in the order of the items; one item's
    /// refusal does not undo the others.
    Batch {
        replies: Vec<crate::ledger::Response>,
    },
}
