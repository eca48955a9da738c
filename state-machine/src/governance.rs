//! Quotas, throttles, paused sources, circuit breakers and maintenance mode: the operator's
//! levers. Every change is stamped with who made it, why, and under which ticket.

use crate::ids::{IncidentId, JobType, TenantId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One token, in the bucket's fixed-point units: a bucket refills `max_per_hour` units per
/// millisecond, so an hour's refill is exactly `max_per_hour` tokens with integer maths only.
pub const TOKEN: u64 = 3_600_000;

/// Who changed a governance setting, why, and under which ticket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// Who made the change: the principal or operator name.
    pub actor: String,
    /// Why, in the actor's words; required.
    pub reason: String,
    /// The change or incident ticket that authorises it, if any.
    pub ticket: Option<String>,
}

impl Stamp {
    /// A stamp with no ticket.
    pub fn new(actor: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            reason: reason.into(),
            ticket: None,
        }
    }
}

/// What a governance setting applies to: a tenant, a job type, or the pair.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scope {
    /// The tenant covered; `None` covers every tenant.
    pub tenant: Option<TenantId>,
    /// The job type covered; `None` covers every job type.
    pub job_type: Option<JobType>,
}

impl Scope {
    /// Every tenant's jobs of one type.
    pub fn job_type(job_type: impl Into<Arc<str>>) -> Self {
        Self {
            tenant: None,
            job_type: Some(JobType(job_type.into())),
        }
    }

    /// All of one tenant's jobs.
    pub fn tenant(tenant: impl Into<Arc<str>>) -> Self {
        Self {
            tenant: Some(TenantId(tenant.into())),
            job_type: None,
        }
    }

    /// One tenant's jobs of one type.
    pub fn pair(tenant: impl Into<Arc<str>>, job_type: impl Into<Arc<str>>) -> Self {
        Self {
            tenant: Some(TenantId(tenant.into())),
            job_type: Some(JobType(job_type.into())),
        }
    }

    /// The three scopes a job of (tenant, job type) falls under.
    pub fn covering(tenant: &TenantId, job_type: &JobType) -> [Scope; 3] {
        [
            Scope {
                tenant: Some(tenant.clone()),
                job_type: None,
            },
            Scope {
                tenant: None,
                job_type: Some(job_type.clone()),
            },
            Scope {
                tenant: Some(tenant.clone()),
                job_type: Some(job_type.clone()),
            },
        ]
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenant = self.tenant.as_ref().map_or("*", |t| t.as_str());
        let job_type = self.job_type.as_ref().map_or("*", |t| t.as_str());
        write!(f, "tenant={tenant} job_type={job_type}")
    }
}

/// What holds a ready job back from a lease: the job stays in line, ready to the
/// scheduler, and shows as pending (with `eligible_ms` where a time is known) to users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Its tenant is blocked.
    Blocked,
    /// Its job type's breaker is open.
    Breaker,
    /// Its source is paused.
    Paused(Scope),
    /// A throttle's cap on leased jobs is reached: a slot frees when one ends.
    Throttle(Scope),
    /// A quota's cap on leased jobs is reached: a slot frees when one ends.
    Active(Scope),
    /// A quota's rate is out of tokens.
    Rate {
        /// The quota's scope.
        scope: Scope,
        /// Log time its next token comes.
        eligible_ms: u64,
    },
}

impl Hold {
    /// Its name on the wire: blocked, breaker, paused, throttle, quota or rate_limit.
    pub fn kind(&self) -> &'static str {
        match self {
            Hold::Blocked => "blocked",
            Hold::Breaker => "breaker",
            Hold::Paused(_) => "paused",
            Hold::Throttle(_) => "throttle",
            Hold::Active(_) => "quota",
            Hold::Rate { .. } => "rate_limit",
        }
    }

    /// When a lease may take the job, where that is known.
    pub fn eligible_ms(&self) -> Option<u64> {
        match self {
            Hold::Rate { eligible_ms, .. } => Some(*eligible_ms),
            _ => None,
        }
    }

    /// What holds it back, for people.
    pub fn describe(&self) -> String {
        match self {
            Hold::Blocked => "its tenant is blocked".to_owned(),
            Hold::Breaker => "its job type's circuit breaker is open".to_owned(),
            Hold::Paused(scope) => format!("source {scope} is paused"),
            Hold::Throttle(scope) => format!("throttle on {scope} is at its cap"),
            Hold::Active(scope) => format!("quota on {scope} is at its max_active"),
            Hold::Rate { scope, .. } => format!("quota on {scope} is out of its hourly rate"),
        }
    }
}

/// A token bucket over log time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBucket {
    /// Tokens added per hour of log time.
    pub max_per_hour: u32,
    /// Most tokens the bucket holds, so most leases granted at once after a quiet spell.
    pub burst: u32,
    /// Tokens held, in units of 1/`TOKEN`.
    pub units: u64,
    /// Log time `units` was last brought up to date.
    pub updated_ms: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(max_per_hour: u32, burst: u32, now_ms: u64) -> Self {
        Self {
            max_per_hour,
            burst,
            units: u64::from(burst) * TOKEN,
            updated_ms: now_ms,
        }
    }

    /// Units held at `now_ms`, refilled since the last update.
    fn units_at(&self, now_ms: u64) -> u64 {
        let elapsed = now_ms.saturating_sub(self.updated_ms);
        let refill = elapsed.saturating_mul(u64::from(self.max_per_hour));
        self.units
            .saturating_add(refill)
            .min(u64::from(self.burst) * TOKEN)
    }

    /// Whether a whole token is available at `now_ms`.
    pub fn has_token(&self, now_ms: u64) -> bool {
        self.units_at(now_ms) >= TOKEN
    }

    /// Takes one token; the caller checked `has_token`.
    pub fn take(&mut self, now_ms: u64) {
        self.units = self.units_at(now_ms).saturating_sub(TOKEN);
        self.updated_ms = now_ms;
    }

    /// Log time at which the next whole token will be there.
    pub fn next_token_ms(&self, now_ms: u64) -> u64 {
        let held = self.units_at(now_ms);
        if held >= TOKEN || self.max_per_hour == 0 {
            return now_ms;
        }
        let per_ms = u64::from(self.max_per_hour);
        now_ms + (TOKEN - held).div_ceil(per_ms)
    }
}

/// A tenant's (or tenant and job type's) quota.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Jobs leased at once.
    pub max_active: Option<u32>,
    /// Leases granted per hour, with a burst, as a token bucket over log time.
    pub rate: Option<TokenBucket>,
}

/// When a job type's breaker trips.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerConfig {
    /// Trip when failed attempts make up at least this share of the window, in percent.
    pub failure_threshold_percent: u8,
    /// The sliding window, in log time.
    pub window_ms: u64,
    /// No trip on fewer attempts than this in the window.
    pub min_attempts: u32,
}

/// Number of buckets a breaker's window is cut into.
pub const BREAKER_BUCKETS: u64 = 10;

/// A job type's circuit breaker: its settings, recent outcomes and open incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    /// When it trips.
    pub config: BreakerConfig,
    /// Outcome counts per bucket start: (succeeded, failed).
    pub buckets: BTreeMap<u64, (u32, u32)>,
    /// Set while the breaker is open; the job type is not leased until it is reset.
    pub open_incident: Option<IncidentId>,
}

impl Breaker {
    fn bucket_ms(&self) -> u64 {
        (self.config.window_ms / BREAKER_BUCKETS).max(1)
    }

    /// Counts one attempt's outcome; returns the failure rate (percent) if it trips.
    pub fn record(&mut self, now_ms: u64, failed: bool) -> Option<u8> {
        let width = self.bucket_ms();
        let bucket = now_ms / width * width;
        let counts = self.buckets.entry(bucket).or_insert((0, 0));
        if failed {
            counts.1 += 1;
        } else {
            counts.0 += 1;
        }
        let oldest = now_ms.saturating_sub(self.config.window_ms);
        self.buckets.retain(|&start, _| start + width > oldest);
        if self.open_incident.is_some() {
            return None;
        }
        let (ok, bad) = self
            .buckets
            .values()
            .fold((0u64, 0u64), |(o, b), &(ok, bad)| {
                (o + u64::from(ok), b + u64::from(bad))
            });
        let total = ok + bad;
        if total < u64::from(self.config.min_attempts) || total == 0 {
            return None;
        }
        let percent = bad * 100 / total;
        (percent >= u64::from(self.config.failure_threshold_percent)).then_some(percent as u8)
    }
}

/// A tripped breaker's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// The incident's id, assigned in the order breakers trip.
    pub id: IncidentId,
    /// The job type whose breaker tripped.
    pub job_type: JobType,
    /// Log time of the trip.
    pub opened_ms: u64,
    /// Log index of the command whose outcome tripped it.
    pub opened_index: u64,
    /// Failure rate that tripped it, in percent.
    pub failure_rate_percent: u8,
    /// Set once an operator reset or removed the breaker: the log time, and who and why.
    pub resolved: Option<(u64, Stamp)>,
}

/// A governance change, as the history records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GovernanceChange {
    /// A quota was set, or removed when it has neither limit.
    QuotaSet {
        /// The tenant, or tenant and job type, it binds.
        scope: Scope,
        /// Most jobs leased at once.
        max_active: Option<u32>,
        /// Most leases per hour.
        max_per_hour: Option<u32>,
        /// The rate's burst, as asked (`None`: `max_per_hour`).
        burst: Option<u32>,
    },
    /// A concurrency cap was set or lifted.
    Throttled {
        /// The scope capped.
        scope: Scope,
        /// The cap; `None` lifted it.
        max_concurrent: Option<u32>,
    },
    /// A scope's jobs stopped being leased.
    SourcePaused {
        /// The scope paused.
        scope: Scope,
    },
    /// A paused scope's jobs are leased again.
    SourceResumed {
        /// The scope resumed.
        scope: Scope,
    },
    /// A circuit breaker was set, changed or removed.
    BreakerConfigured {
        /// The job type it watches.
        job_type: JobType,
        /// Its new settings; `None` removed it.
        config: Option<BreakerConfig>,
    },
    /// A breaker tripped by itself: its job type is no longer leased.
    BreakerTripped {
        /// The job type paused.
        job_type: JobType,
        /// The incident opened for it.
        incident: IncidentId,
    },
    /// An operator closed a tripped breaker.
    BreakerReset {
        /// The job type leased again.
        job_type: JobType,
    },
    /// Maintenance mode was switched.
    Maintenance {
        /// On (no new leases anywhere) or off.
        enabled: bool,
    },
    /// A recurring schedule was added.
    ScheduleCreated {
        /// Its name.
        schedule: crate::ids::ScheduleId,
    },
    /// A schedule was paused or resumed.
    SchedulePaused {
        /// Its name.
        schedule: crate::ids::ScheduleId,
        /// True when paused, false when resumed.
        paused: bool,
    },
    /// A schedule was removed.
    ScheduleDeleted {
        /// Its name.
        schedule: crate::ids::ScheduleId,
    },
    /// An operator canceled a job.
    JobCanceled {
        /// The canceled job.
        job: crate::ids::JobId,
    },
    /// An operator replayed a job.
    JobReplayed {
        /// The original job.
        job: crate::ids::JobId,
        /// The new job that replays it.
        replay: crate::ids::JobId,
    },
    /// A producer submitted a backfill.
    Backfill {
        /// The jobs the backfill created.
        jobs: Vec<crate::ids::JobId>,
        /// The ticket that authorises it.
        ticket: String,
    },
    /// The retention windows changed (new variants go last: the log numbers them).
    RetentionSet {
        /// The windows now in force.
        retention: crate::retention::Retention,
    },
    /// A bearer token was created (its secret is nowhere in the state).
    TokenCreated {
        /// Its name.
        name: String,
        /// Its scopes, by name.
        scopes: Vec<String>,
        /// The tenants it is bound to; empty: every tenant.
        tenants: Vec<crate::ids::TenantId>,
        /// When it stops being accepted, in log time.
        expires_ms: Option<u64>,
    },
    /// A bearer token was revoked.
    TokenRevoked {
        /// Its name.
        name: String,
    },
    /// An operator acknowledged an open incident (new variants go last).
    IncidentAcknowledged {
        /// The incident.
        incident: IncidentId,
    },
    /// An operator resolved an incident (its breaker, if open, was reset).
    IncidentResolved {
        /// The incident.
        incident: IncidentId,
    },
    /// The cluster's membership changed (recorded by the leader once the change committed).
    Membership {
        /// What changed.
        change: MembershipChange,
    },
    /// An operator took a stuck lease back; the job was ready again.
    LeaseReleased {
        /// The job.
        job: crate::ids::JobId,
        /// The lease taken back.
        lease: crate::ids::LeaseId,
    },
    /// A tenant was blocked (its enqueues refused, its jobs not leased) or unblocked.
    TenantBlocked {
        /// The tenant.
        tenant: TenantId,
        /// True: blocked; false: unblocked.
        blocked: bool,
    },
}

/// A change to the cluster's members, as the governance history records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// A node joined as a learner (a replica without a vote), to catch up.
    LearnerAdded {
        /// Its id.
        node: u64,
        /// Its peer address.
        addr: String,
    },
    /// A learner that caught up became a voter.
    Promoted {
        /// Its id.
        node: u64,
    },
    /// A member left.
    Removed {
        /// Its id.
        node: u64,
        /// It was a voter (else a learner).
        voter: bool,
        /// The removal needed `force`: it left fewer than three voters, or fewer live ones
        /// than a quorum.
        forced: bool,
    },
}

/// The longest peer address a membership record keeps.
pub const MAX_ADDR_LEN: usize = 256;

impl GovernanceChange {
    /// Every kind's name, as `kind` gives it.
    pub const KINDS: [&'static str; 24] = [
        "quota_set",
        "throttled",
        "source_paused",
        "source_resumed",
        "breaker_configured",
        "breaker_tripped",
        "breaker_reset",
        "maintenance",
        "schedule_created",
        "schedule_paused",
        "schedule_resumed",
        "schedule_deleted",
        "job_canceled",
        "job_replayed",
        "backfill",
        "retention_set",
        "token_created",
        "token_revoked",
        "incident_acknowledged",
        "incident_resolved",
        "membership",
        "lease_released",
        "tenant_blocked",
        "tenant_unblocked",
    ];

    /// The change's kind, in snake case: what logs, metrics and history filters name it.
    pub fn kind(&self) -> &'static str {
        match self {
            GovernanceChange::QuotaSet { .. } => "quota_set",
            GovernanceChange::Throttled { .. } => "throttled",
            GovernanceChange::SourcePaused { .. } => "source_paused",
            GovernanceChange::SourceResumed { .. } => "source_resumed",
            GovernanceChange::BreakerConfigured { .. } => "breaker_configured",
            GovernanceChange::BreakerTripped { .. } => "breaker_tripped",
            GovernanceChange::BreakerReset { .. } => "breaker_reset",
            GovernanceChange::Maintenance { .. } => "maintenance",
            GovernanceChange::ScheduleCreated { .. } => "schedule_created",
            GovernanceChange::SchedulePaused { paused: true, .. } => "schedule_paused",
            GovernanceChange::SchedulePaused { paused: false, .. } => "schedule_resumed",
            GovernanceChange::ScheduleDeleted { .. } => "schedule_deleted",
            GovernanceChange::JobCanceled { .. } => "job_canceled",
            GovernanceChange::JobReplayed { .. } => "job_replayed",
            GovernanceChange::Backfill { .. } => "backfill",
            GovernanceChange::RetentionSet { .. } => "retention_set",
            GovernanceChange::TokenCreated { .. } => "token_created",
            GovernanceChange::TokenRevoked { .. } => "token_revoked",
            GovernanceChange::IncidentAcknowledged { .. } => "incident_acknowledged",
            GovernanceChange::IncidentResolved { .. } => "incident_resolved",
            GovernanceChange::Membership { .. } => "membership",
            GovernanceChange::LeaseReleased { .. } => "lease_released",
            GovernanceChange::TenantBlocked { blocked: true, .. } => "tenant_blocked",
            GovernanceChange::TenantBlocked { blocked: false, .. } => "tenant_unblocked",
        }
    }
}

/// One entry in the cluster-wide governance history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovernanceEvent {
    /// Log index of the command that made the change.
    pub log_index: u64,
    /// Log time of the change.
    pub at_ms: u64,
    /// `None` for changes the cluster made itself (a breaker tripping).
    pub stamp: Option<Stamp>,
    /// What changed.
    pub change: GovernanceChange,
}
