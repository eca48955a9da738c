//! The commands the log carries and the replies `apply` gives.

use crate::error::SchedulerError;
use crate::governance::{BreakerConfig, Scope, Stamp};
use crate::ids::{IncidentId, JobId, JobType, LeaseId, PlanId, ScheduleId, TenantId, WorkerId};
use crate::job::{Artifact, Backfill, JobSpec, Status};
use crate::schedule::{Cadence, CatchUp};
use serde::{Deserialize, Serialize};

/// What `apply` answers: a reply, or the reason the command was rejected (and changed nothing).
pub type Response = Result<Reply, SchedulerError>;

/// One step of a plan: a job spec, a key unique within the plan, and the keys it waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    /// The step's name within the plan; other steps' `depends_on` refer to it.
    pub key: String,
    /// The job this step becomes.
    pub spec: JobSpec,
    /// Keys of the steps that must succeed before this one becomes ready.
    pub depends_on: Vec<String>,
}

/// How a worker ends an attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Completion {
    /// The job did its work; its dependents may now run.
    Succeeded {
        /// Artifacts the attempt wrote, kept with the attempt for lineage.
        outputs: Vec<Artifact>,
    },
    /// The attempt failed.
    Failed {
        /// Whether another attempt may succeed; false dead-letters the job at once.
        retryable: bool,
        /// What went wrong, as the worker tells it (clipped, never refused, when long).
        error: String,
    },
    /// The worker gives the job up for good; the job is canceled.
    Canceled {
        /// Why the worker gave up.
        reason: String,
    },
    /// The run outlasted the worker's own time limit: the attempt ends timed out, as when a
    /// lease lapses, and the job is retried while attempts remain. (New variants go last:
    /// the log numbers them.)
    TimedOut {
        /// What the worker tells of it (clipped when long).
        error: String,
    },
}

/// A state change, as the leader proposes it. Time is not here: `apply` takes it beside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Advances log time: expires leases, promotes backoffs, fires schedules.
    Tick,
    /// Adds one job, or finds the one its (tenant, idempotency key) already names.
    Enqueue {
        /// The job as the producer describes it.
        spec: JobSpec,
    },
    /// Adds a DAG of jobs, accepted or rejected whole.
    SubmitPlan {
        /// The plan's steps, in submission order.
        steps: Vec<PlanStep>,
        /// Marks every step without its own mark as part of this backfill.
        backfill: Option<Backfill>,
    },
    /// Grants a worker up to `max` ready jobs, each under a fresh fencing token.
    Lease {
        /// Who takes the jobs; recorded with each attempt.
        worker: WorkerId,
        /// The job types the worker can run.
        job_types: Vec<JobType>,
        /// Most jobs to grant (1 to `MAX_LEASE_BATCH`).
        max: u32,
        /// Overrides each job's own lease TTL.
        ttl_ms: Option<u64>,
    },
    /// Renews a lease for its time-to-live from now, or tells the worker the job was canceled.
    Heartbeat {
        /// The leased job.
        job_id: JobId,
        /// The fencing token the lease was granted with.
        lease_id: LeaseId,
    },
    /// Ends the live attempt of a job with the worker's outcome.
    Complete {
        /// The leased job.
        job_id: JobId,
        /// The fencing token the lease was granted with; a stale one is refused.
        lease_id: LeaseId,
        /// How the attempt ended.
        completion: Completion,
    },
    /// Many enqueues in one command, each answered on its own (`Reply::Batch`, in order).
    EnqueueBatch {
        /// The jobs, 1 to `MAX_BATCH` of them.
        specs: Vec<JobSpec>,
    },
    /// Many completions in one command, each answered on its own (`Reply::Batch`, in order).
    CompleteBatch {
        /// The completions, 1 to `MAX_BATCH` of them.
        items: Vec<CompleteItem>,
    },
    /// An operator cancels an unfinished job (pending, ready, leased or waiting to retry), and
    /// with it every job waiting on it.
    Cancel {
        /// The job to cancel.
        job_id: JobId,
        /// Who cancels it and why.
        stamp: Stamp,
    },
    /// An operator runs a finished job's spec (or one waiting to retry) again, as a new job of
    /// the highest priority.
    Replay {
        /// The job to replay.
        job_id: JobId,
        /// Who replays it and why.
        stamp: Stamp,
    },
    /// Sets (or, with neither limit, removes) a tenant's quota, optionally per job type.
    SetQuota {
        /// The tenant the quota binds.
        tenant: TenantId,
        /// Narrows the quota to one job type of the tenant.
        job_type: Option<JobType>,
        /// Most jobs of the scope leased at once.
        max_active: Option<u32>,
        /// Most leases granted per hour, as a token bucket over log time.
        max_per_hour: Option<u32>,
        /// Defaults to `max_per_hour`.
        burst: Option<u32>,
        /// Who sets the quota and why.
        stamp: Stamp,
    },
    /// Caps how many jobs of a scope are leased at once; `None` lifts the cap.
    Throttle {
        /// The tenant, job type or pair the cap applies to.
        scope: Scope,
        /// The cap; `None` lifts it.
        max_concurrent: Option<u32>,
        /// Who sets the cap and why.
        stamp: Stamp,
    },
    /// Stops leasing a scope's jobs until it is resumed; its jobs wait as ready.
    PauseSource {
        /// The tenant, job type or pair to pause.
        scope: Scope,
        /// Who pauses it and why.
        stamp: Stamp,
    },
    /// Lets a paused scope's jobs be leased again.
    ResumeSource {
        /// The scope to resume, exactly as it was paused.
        scope: Scope,
        /// Who resumes it and why.
        stamp: Stamp,
    },
    /// Sets (or with `None` removes) a job type's circuit breaker.
    ConfigureBreaker {
        /// The job type the breaker watches.
        job_type: JobType,
        /// The breaker's thresholds; `None` removes it and resolves its open incident.
        config: Option<BreakerConfig>,
        /// Who changes the breaker and why.
        stamp: Stamp,
    },
    /// Closes a tripped breaker, resolving its incident, so the job type is leased again.
    ResetBreaker {
        /// The job type whose breaker is open.
        job_type: JobType,
        /// Who resets it and why.
        stamp: Stamp,
    },
    /// Turns maintenance mode on (no new leases anywhere) or off.
    SetMaintenance {
        /// On or off.
        enabled: bool,
        /// Who switches it and why.
        stamp: Stamp,
    },
    /// Adds a recurring job template, fired on log time.
    CreateSchedule {
        /// The schedule's name, unique in the cluster.
        id: ScheduleId,
        /// The job each firing enqueues (no dependencies, no idempotency key).
        template: JobSpec,
        /// When it fires.
        cadence: Cadence,
        /// What it does about firings missed while the cluster was down.
        catch_up: CatchUp,
        /// No firing before this log time (the first firing of an interval schedule falls
        /// on it); `None` starts now.
        start_ms: Option<u64>,
        /// No firing after this log time; `None` runs without end.
        end_ms: Option<u64>,
        /// Who creates it and why.
        stamp: Stamp,
    },
    /// Pauses or resumes a schedule; firings due while paused are not made up.
    PauseSchedule {
        /// The schedule.
        id: ScheduleId,
        /// True pauses, false resumes.
        paused: bool,
        /// Who pauses or resumes it and why.
        stamp: Stamp,
    },
    /// Removes a schedule; the jobs it already enqueued stay.
    DeleteSchedule {
        /// The schedule.
        id: ScheduleId,
        /// Who deletes it and why.
        stamp: Stamp,
    },
    /// Sets the retention windows: how long finished work stays in memory and in the
    /// archive. (New variants go last: the log's encoding numbers them in order.)
    SetRetention {
        /// The windows to change; those not given keep their value.
        change: crate::retention::RetentionChange,
        /// Who changes them and why.
        stamp: Stamp,
    },
    /// Adds a bearer token (its secret's hash only). New variants go last: the log numbers
    /// them.
    CreateToken {
        /// The token.
        spec: crate::access::TokenSpec,
        /// The cluster's one bootstrap token: refused if one was ever created.
        bootstrap: bool,
        /// Who creates it and why.
        stamp: Stamp,
    },
    /// Removes a token; from this entry on it is refused.
    RevokeToken {
        /// The token's name.
        name: String,
        /// Who revokes it and why.
        stamp: Stamp,
    },
    /// A lease for a principal bound to tenants: as `Lease`, granting only their jobs.
    LeaseWithin {
        /// Who takes the jobs.
        worker: WorkerId,
        /// The job types the worker can run.
        job_types: Vec<JobType>,
        /// Most jobs to grant.
        max: u32,
        /// Overrides each job's own lease TTL.
        ttl_ms: Option<u64>,
        /// The only tenants whose jobs may be granted; at least one.
        tenants: std::collections::BTreeSet<TenantId>,
    },
    /// An `Enqueue`, `EnqueueBatch` or `SubmitPlan` whose jobs carry W3C trace context:
    /// each job it creates keeps the `traceparent` at its spec's position (empty: none),
    /// and a lease hands it to the worker. New variants go last: the log numbers them.
    Traced {
        /// One per spec of `command`, in order; empty for a job without one.
        traceparents: Vec<String>,
        /// The command that creates the jobs.
        command: Box<Command>,
    },
    /// Runs a schedule's template for past fire times, as one plan (a step per fire time,
    /// keyed by it), each job marked a backfill under the stamp's reason and ticket and
    /// keyed `schedule:{id}:{fire_ms}` as a firing is, so that a fire time never runs twice
    /// (a backfill run again, or over a time the schedule fired, creates nothing new).
    Backfill {
        /// The schedule whose template runs.
        schedule: ScheduleId,
        /// The fire times, each a fire time of the schedule's cadence and not after now; at
        /// most `MAX_BACKFILL`.
        fire_times: Vec<u64>,
        /// Who backfills, why, and the ticket (required).
        stamp: Stamp,
    },
    /// Cancels every live job a plan created (a backfill as a whole); finished ones and jobs
    /// its steps reused stay.
    CancelPlan {
        /// The plan.
        plan_id: PlanId,
        /// Who cancels it and why.
        stamp: Stamp,
    },
    /// An operator has seen an open incident and is on it.
    AcknowledgeIncident {
        /// The incident.
        incident: IncidentId,
        /// Who and why.
        stamp: Stamp,
    },
    /// Closes an open incident; a breaker it keeps open is reset (its job type is leased
    /// again), as `ResetBreaker` does.
    ResolveIncident {
        /// The incident.
        incident: IncidentId,
        /// Who resolves it and why.
        stamp: Stamp,
    },
    /// Names the cluster, once: a leader proposes it (drawing `id` from its randomness)
    /// while the state has no name. A second name is a no-op: the first one stands, on a
    /// cluster and on every cluster restored from its snapshots.
    NameCluster {
        /// 32 lowercase hex digits.
        id: String,
    },
    /// Records a membership change in the governance history: the leader proposes it once
    /// openraft has committed the change itself (membership lives in Raft's own entries).
    NoteMembership {
        /// What changed.
        change: crate::governance::MembershipChange,
        /// Who changed it and why.
        stamp: Stamp,
    },
    /// Takes a stuck lease back: the job is ready again, the attempt recorded as released.
    ReleaseLease {
        /// The leased job.
        job_id: JobId,
        /// The lease to take back, if the operator named it: another is refused as stale
        /// (the lease ended and the job was leased again since it was looked up).
        lease_id: Option<LeaseId>,
        /// Who releases it and why.
        stamp: Stamp,
    },
    /// Blocks a tenant (its enqueues, plans, backfills and schedule firings refused, its
    /// jobs not leased) or unblocks it.
    BlockTenant {
        /// The tenant.
        tenant: TenantId,
        /// True to block, false to unblock.
        blocked: bool,
        /// Who and why.
        stamp: Stamp,
    },
}

/// One completion of a `CompleteBatch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteItem {
    /// The leased job.
    pub job_id: JobId,
    /// The fencing token the lease was granted with.
    pub lease_id: LeaseId,
    /// How the attempt ended.
    pub completion: Completion,
}

/// One job granted by a `Lease`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The job to run.
    pub job_id: JobId,
    /// The fencing token heartbeats and the completion must present.
    pub lease_id: LeaseId,
    /// Log time at which the lease lapses unless a heartbeat renews it.
    pub lease_until_ms: u64,
    /// The time-to-live each heartbeat renews.
    pub ttl_ms: u64,
    /// Which attempt this is; 1 for the first.
    pub attempt: u32,
    /// The job's tenant.
    pub tenant: TenantId,
    /// The job's type, which picks the worker's handler.
    pub job_type: JobType,
    /// The producer's opaque bytes.
    pub payload: Vec<u8>,
    /// The producer's id tying the job to a wider request or trace.
    pub correlation_id: Option<String>,
}

/// Why a `Lease` granted fewer jobs than asked, when the reason is cluster-wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseHold {
    /// Maintenance mode is on: no job is leased anywhere in the cluster.
    Maintenance,
}

/// A successful command's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Log time advanced; whatever fell due has run.
    Ticked,
    /// The answer to an enqueue.
    Enqueued {
        /// The new job, or the existing one its idempotency key names.
        job_id: JobId,
        /// False when the idempotency key matched an existing job, which is returned.
        created: bool,
    },
    /// The plan was accepted whole.
    PlanSubmitted {
        /// The new plan.
        plan_id: PlanId,
        /// Each step's key and the job it became, in submission order.
        jobs: Vec<(String, JobId)>,
    },
    /// The jobs a lease granted; possibly none.
    Leased {
        /// One per granted job, at most the `max` asked for.
        grants: Vec<Grant>,
        /// Set when the whole cluster holds leases back.
        held: Option<LeaseHold>,
    },
    /// A heartbeat's answer.
    HeartbeatAck {
        /// The lease's new expiry in log time (the heartbeat's log time when `canceled`).
        lease_until_ms: u64,
        /// The job was canceled: the worker should stop and not complete it.
        canceled: bool,
    },
    /// The attempt ended.
    Completed {
        /// The job completed.
        job_id: JobId,
        /// Its status after the completion: succeeded, failed (a retry follows),
        /// dead-lettered or canceled.
        status: Status,
    },
    /// The job, and every job waiting on it, is canceled.
    Canceled {
        /// The canceled job.
        job_id: JobId,
    },
    /// The replay was enqueued.
    Replayed {
        /// The new job, with `replay_of` naming the original.
        job_id: JobId,
    },
    /// A governance command took effect.
    Done,
    /// The answers to a batch command's items, in the order of the items; one item's
    /// refusal does not undo the others.
    Batch {
        /// One answer per item, as its single command would have been answered.
        replies: Vec<Response>,
    },
    /// A plan's live jobs were canceled (new variants go last: sessions encode them).
    PlanCanceled {
        /// The plan.
        plan_id: PlanId,
        /// The jobs canceled, by id.
        canceled: Vec<JobId>,
    },
}
