//! Leases and their ends: the scheduling pick, heartbeats, completions, expiry, retries.

use crate::command::{Completion, Grant, LeaseHold, Reply, Response};
use crate::error::SchedulerError;
use crate::governance::{GovernanceChange, Hold, Incident, Scope, Stamp};
use crate::ids::{IncidentId, JobId, JobType, LeaseId, TenantId, WorkerId};
use crate::job::{Artifact, Attempt, AttemptOutcome, JobEventKind, JobState, Lease, RetryPolicy};
use crate::journal::Note;
use crate::ledger::{record, At, ReadyKey, State};
use crate::submit::{
    check_artifact, check_name, check_text, check_ttl, MAX_ARTIFACTS, MAX_TEXT_LEN,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

/// Most jobs one `Lease` may grant.
pub const MAX_LEASE_BATCH: u32 = 1_000;
/// Most job types one `Lease` may name.
pub const MAX_LEASE_JOB_TYPES: usize = 64;

/// Most payload bytes one lease grants: it stops before the next job would pass this (one
/// job is always granted), so the reply stays well inside gRPC's 64 MiB message limit
/// however large payloads are. A grant the worker never receives is a lease burnt. A
/// constant, not a node setting: every replica must pick the same jobs.
pub const MAX_LEASE_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;

/// Fencing tokens of one log entry share its index in their high bits, so tokens from a
/// later entry are always larger, and one entry may grant up to 2^20 before spilling over
/// (they still increase then).
const LEASES_PER_ENTRY_BITS: u32 = 20;

impl State {
    pub(crate) fn lease(
        &mut self,
        worker: WorkerId,
        job_types: Vec<JobType>,
        max: u32,
        ttl_ms: Option<u64>,
        at: At,
    ) -> Response {
        self.lease_from(worker, job_types, max, ttl_ms, None, at)
    }

    /// As `lease`, granting only jobs of `tenants` (a principal bound to them).
    pub(crate) fn lease_within(
        &mut self,
        worker: WorkerId,
        job_types: Vec<JobType>,
        max: u32,
        ttl_ms: Option<u64>,
        tenants: BTreeSet<TenantId>,
        at: At,
    ) -> Response {
        crate::access::check_tenants(&tenants)?;
        self.lease_from(worker, job_types, max, ttl_ms, Some(&tenants), at)
    }

    fn lease_from(
        &mut self,
        worker: WorkerId,
        job_types: Vec<JobType>,
        max: u32,
        ttl_ms: Option<u64>,
        tenants: Option<&BTreeSet<TenantId>>,
        at: At,
    ) -> Response {
        check_lease(&worker, &job_types, max, ttl_ms)?;
        if self.ledger.maintenance.is_some() {
            return Ok(Reply::Leased {
                grants: Vec::new(),
                held: Some(LeaseHold::Maintenance),
            });
        }
        let types: BTreeSet<JobType> = job_types.into_iter().collect();
        let grants = self.pick(&worker, &types, tenants, max as usize, ttl_ms, at);
        Ok(Reply::Leased { grants, held: None })
    }

    /// Round-robin over tenants with ready work, starting after the tenant served last:
    /// one job per tenant per round, the tenant's best job (priority, then eligible time,
    /// then id) among the types the worker takes and its quotas allow. A full round with
    /// no grant ends the pick. With `tenants`, other tenants' jobs are passed over.
    fn pick(
        &mut self,
        worker: &WorkerId,
        types: &BTreeSet<JobType>,
        tenants: Option<&BTreeSet<TenantId>>,
        max: usize,
        ttl_ms: Option<u64>,
        at: At,
    ) -> Vec<Grant> {
        let mut grants: Vec<Grant> = Vec::new();
        let mut payload_bytes = 0usize;
        let mut idle = 0usize;
        let mut cursor = self.ledger.fair_cursor.clone();
        while grants.len() < max && idle < self.idx.ready.len() {
            let Some(tenant) = self.next_tenant(cursor.as_ref()) else {
                break;
            };
            let allowed = tenants.is_none_or(|only| only.contains(&tenant));
            match allowed
                .then(|| self.best_candidate(&tenant, types, at.now_ms))
                .flatten()
            {
                Some((job_type, key)) => {
                    let bytes = self
                        .ledger
                        .jobs
                        .get(&key.2)
                        .map_or(0, |j| j.spec.payload.len());
                    if !grants.is_empty() && payload_bytes + bytes > MAX_LEASE_PAYLOAD_BYTES {
                        break;
                    }
                    payload_bytes += bytes;
                    grants.push(self.grant(&tenant, &job_type, key.2, worker, ttl_ms, at));
                    self.ledger.fair_cursor = Some(tenant.clone());
                    idle = 0;
                }
                None => idle += 1,
            }
            cursor = Some(tenant);
        }
        grants
    }

    /// The tenant with ready work after `cursor`, wrapping around.
    fn next_tenant(&self, cursor: Option<&TenantId>) -> Option<TenantId> {
        let after = match cursor {
            Some(t) => self
                .idx
                .ready
                .range((Bound::Excluded(t), Bound::Unbounded))
                .next(),
            None => None,
        };
        after
            .or_else(|| self.idx.ready.iter().next())
            .map(|(t, _)| t.clone())
    }

    fn best_candidate(
        &self,
        tenant: &TenantId,
        types: &BTreeSet<JobType>,
        now_ms: u64,
    ) -> Option<(JobType, ReadyKey)> {
        let by_type = self.idx.ready.get(tenant)?;
        let mut best: Option<(&JobType, ReadyKey)> = None;
        for (job_type, set) in by_type.iter().filter(|(jt, _)| types.contains(*jt)) {
            let Some(&key) = set.first() else { continue };
            if best.is_some_and(|(_, b)| b <= key) || !self.may_lease(tenant, job_type, now_ms) {
                continue;
            }
            best = Some((job_type, key));
        }
        best.map(|(jt, key)| (jt.clone(), key))
    }

    /// Whether governance lets one more job of (tenant, job type) be leased now.
    pub(crate) fn may_lease(&self, tenant: &TenantId, job_type: &JobType, now_ms: u64) -> bool {
        self.hold(tenant, job_type, now_ms).is_none()
    }

    /// What holds jobs of (tenant, job type) back from a lease at `now_ms`, if anything: the
    /// first of `holds`.
    fn hold(&self, tenant: &TenantId, job_type: &JobType, now_ms: u64) -> Option<Hold> {
        self.holds(tenant, job_type, now_ms).next()
    }

    /// What holds jobs of (tenant, job type) back as users are told it: a hold with no end
    /// in sight (a breaker, a pause, a cap) before any rate, and of several rates the one
    /// whose token comes last, so that `eligible_ms` is never earlier than a lease can be.
    pub fn shown_hold(&self, tenant: &TenantId, job_type: &JobType, now_ms: u64) -> Option<Hold> {
        let mut latest: Option<Hold> = None;
        for hold in self.holds(tenant, job_type, now_ms) {
            if hold.eligible_ms().is_none() {
                return Some(hold);
            }
            if latest.as_ref().and_then(Hold::eligible_ms) < hold.eligible_ms() {
                latest = Some(hold);
            }
        }
        latest
    }

    /// Everything that holds jobs of (tenant, job type) back at `now_ms`, lazily: an open
    /// breaker, then per scope (tenant, job type, both) a pause, a throttle, a quota's cap
    /// on leased jobs, a quota's rate.
    fn holds<'a>(
        &'a self,
        tenant: &TenantId,
        job_type: &JobType,
        now_ms: u64,
    ) -> impl Iterator<Item = Hold> + 'a {
        let ledger = &self.ledger;
        let blocked = ledger.blocked.contains_key(tenant).then_some(Hold::Blocked);
        let breaker = ledger
            .breakers
            .get(job_type)
            .is_some_and(|b| b.open_incident.is_some())
            .then_some(Hold::Breaker);
        let governed =
            !(ledger.paused.is_empty() && ledger.throttles.is_empty() && ledger.quotas.is_empty());
        let scopes = governed.then(|| Scope::covering(tenant, job_type));
        blocked.into_iter().chain(breaker).chain(
            scopes
                .into_iter()
                .flatten()
                .flat_map(move |scope| self.scope_holds(scope, now_ms).into_iter().flatten()),
        )
    }

    /// What holds one scope back at `now_ms`, in `holds`' order.
    fn scope_holds(&self, scope: Scope, now_ms: u64) -> [Option<Hold>; 4] {
        let ledger = &self.ledger;
        let active = self.idx.active.get(&scope).copied().unwrap_or(0);
        let paused = ledger.paused.contains_key(&scope);
        let throttled = ledger
            .throttles
            .get(&scope)
            .is_some_and(|&cap| active >= cap);
        let quota = ledger.quotas.get(&scope);
        let capped = quota.is_some_and(|q| q.max_active.is_some_and(|cap| active >= cap));
        let rate = quota
            .and_then(|q| q.rate.as_ref())
            .filter(|bucket| !bucket.has_token(now_ms))
            .map(|bucket| bucket.next_token_ms(now_ms));
        [
            paused.then(|| Hold::Paused(scope.clone())),
            throttled.then(|| Hold::Throttle(scope.clone())),
            capped.then(|| Hold::Active(scope.clone())),
            rate.map(|eligible_ms| Hold::Rate { scope, eligible_ms }),
        ]
    }

    /// Whether anything could hold a ready job back now: an open breaker, a pause, a
    /// throttle or a quota.
    pub(crate) fn holds_possible(&self) -> bool {
        let ledger = &self.ledger;
        !(ledger.paused.is_empty()
            && ledger.throttles.is_empty()
            && ledger.quotas.is_empty()
            && ledger.blocked.is_empty())
            || ledger.breakers.values().any(|b| b.open_incident.is_some())
    }

    fn grant(
        &mut self,
        tenant: &TenantId,
        job_type: &JobType,
        job_id: JobId,
        worker: &WorkerId,
        ttl_ms: Option<u64>,
        at: At,
    ) -> Grant {
        let lease_id = self.next_lease_id(at.log_index);
        for scope in Scope::covering(tenant, job_type) {
            if let Some(bucket) = self
                .ledger
                .quotas
                .get_mut(&scope)
                .and_then(|q| q.rate.as_mut())
            {
                bucket.take(at.now_ms);
            }
        }
        // `pick` found the job in the ready index, which the ledger's jobs derive.
        let job = self
            .ledger
            .jobs
            .get_mut(&job_id)
            .map(Arc::make_mut)
            .expect("a job in the ready index is in the ledger");
        let ttl = ttl_ms.unwrap_or(job.spec.lease_ttl_ms);
        let attempt = job.attempts.len() as u32 + 1;
        // Room for this attempt only (a first push would reserve four, 336 bytes a job
        // more, kept until retention), and for the three events a lease usually leads to:
        // leased, the attempt's end, the outcome.
        job.attempts.reserve_exact(1);
        job.history.reserve_exact(3);
        job.attempts.push(Attempt {
            number: attempt,
            worker: worker.clone(),
            lease_id,
            started_ms: at.now_ms,
            ended_ms: None,
            outcome: None,
            outputs: Vec::new(),
        });
        let payload = job.spec.payload.clone();
        let correlation_id = job.spec.correlation_id.clone();
        let lease = Lease {
            id: lease_id,
            worker: worker.clone(),
            until_ms: at.now_ms + ttl,
            ttl_ms: ttl,
        };
        let event = JobEventKind::Leased {
            lease_id,
            worker: worker.clone(),
        };
        self.set_state(job_id, JobState::Leased { lease }, at, event);
        Grant {
            job_id,
            lease_id,
            lease_until_ms: at.now_ms + ttl,
            ttl_ms: ttl,
            attempt,
            tenant: tenant.clone(),
            job_type: job_type.clone(),
            payload,
            correlation_id,
        }
    }

    fn next_lease_id(&mut self, log_index: u64) -> LeaseId {
        let floor = log_index.saturating_mul(1 << LEASES_PER_ENTRY_BITS);
        let id = floor.max(self.ledger.last_lease_id + 1);
        self.ledger.last_lease_id = id;
        LeaseId(id)
    }

    /// The live lease of `job_id` if `lease_id` is it; the typed rejection otherwise.
    fn live_lease(&self, job_id: JobId, lease_id: LeaseId) -> Result<Lease, SchedulerError> {
        let job = self.job_or_err(job_id)?;
        match &job.state {
            JobState::Leased { lease } if lease.id == lease_id => Ok(lease.clone()),
            JobState::Leased { lease } if self.fencing_disabled() => Ok(lease.clone()),
            JobState::Canceled {
                revoked_lease: Some(revoked),
                ..
            } if *revoked == lease_id => Err(SchedulerError::JobCanceled { job_id }),
            _ => Err(SchedulerError::StaleLease {
                job_id,
                presented: lease_id,
            }),
        }
    }

    pub(crate) fn heartbeat(&mut self, job_id: JobId, lease_id: LeaseId, at: At) -> Response {
        let mut lease = match self.live_lease(job_id, lease_id) {
            Ok(lease) => lease,
            Err(SchedulerError::JobCanceled { .. }) => {
                return Ok(Reply::HeartbeatAck {
                    lease_until_ms: at.now_ms,
                    canceled: true,
                })
            }
            Err(e) => return Err(e),
        };
        lease.until_ms = at.now_ms + lease.ttl_ms;
        let lease_until_ms = lease.until_ms;
        let job = self
            .ledger
            .jobs
            .get_mut(&job_id)
            .map(Arc::make_mut)
            .expect("live_lease found the job");
        if let Some(journal) = &mut self.journal {
            journal.push(Note::LeaseExtended {
                job: job_id,
                tenant: job.spec.tenant.clone(),
                job_type: job.spec.job_type.clone(),
                worker: lease.worker.clone(),
                lease_id,
                attempt: job.attempts.len() as u32,
                until_ms: lease_until_ms,
                at_ms: at.now_ms,
            });
        }
        self.idx.remove(job);
        job.state = JobState::Leased { lease };
        self.idx.add(job);
        Ok(Reply::HeartbeatAck {
            lease_until_ms,
            canceled: false,
        })
    }

    pub(crate) fn complete(
        &mut self,
        job_id: JobId,
        lease_id: LeaseId,
        completion: Completion,
        at: At,
    ) -> Response {
        self.live_lease(job_id, lease_id)?;
        let job_type = self.job_or_err(job_id)?.spec.job_type.clone();
        match completion {
            Completion::Succeeded { outputs } => {
                check_outputs(&outputs)?;
                self.end_attempt(job_id, AttemptOutcome::Succeeded, outputs, at);
                self.record_outcome(&job_type, false, at);
                let state = JobState::Succeeded { at_ms: at.now_ms };
                self.set_state(job_id, state, at, JobEventKind::Succeeded);
                self.release_dependents(job_id, at);
            }
            Completion::Failed { retryable, error } => {
                let error = clip(error);
                let outcome = AttemptOutcome::Failed {
                    retryable,
                    error: error.clone(),
                };
                self.end_attempt(job_id, outcome, Vec::new(), at);
                self.record_outcome(&job_type, true, at);
                self.after_failed_attempt(job_id, retryable, error, at);
            }
            Completion::TimedOut { error } => {
                let error = clip(format!("timed out: {error}"));
                self.end_attempt(job_id, AttemptOutcome::TimedOut, Vec::new(), at);
                self.record_outcome(&job_type, true, at);
                self.after_failed_attempt(job_id, true, error, at);
            }
            Completion::Canceled { reason } => {
                check_text("reason", &reason)?;
                let outcome = AttemptOutcome::Canceled {
                    reason: reason.clone(),
                };
                self.end_attempt(job_id, outcome, Vec::new(), at);
                self.cancel_job(job_id, format!("canceled by worker: {reason}"), None, at);
            }
        }
        let status = self.job_or_err(job_id)?.status();
        Ok(Reply::Completed { job_id, status })
    }

    /// A lease ran out without a completion: a timed-out attempt, retried like a failure.
    /// `job_id` comes from the lease-expiry index, so the job is in the ledger and leased;
    /// were it not, returning would leave the index entry in place and `advance_time` would
    /// loop on it forever.
    pub(crate) fn expire_lease(&mut self, job_id: JobId, at: At) {
        let job = self
            .ledger
            .jobs
            .get(&job_id)
            .expect("a job in the lease-expiry index is in the ledger");
        let lease = job
            .lease()
            .cloned()
            .expect("a job in the lease-expiry index is leased");
        let job_type = job.spec.job_type.clone();
        self.end_attempt(job_id, AttemptOutcome::TimedOut, Vec::new(), at);
        self.record_outcome(&job_type, true, at);
        let error = format!(
            "{} held by {} expired at {} without completion",
            lease.id, lease.worker, lease.until_ms
        );
        self.after_failed_attempt(job_id, true, error, at);
    }

    /// An operator takes a stuck lease back: the attempt ends `Released` (not counted
    /// against the retry policy, not fed to the breaker) and the job is ready again at once;
    /// the worker's next heartbeat or completion is refused as stale.
    pub(crate) fn release_lease(
        &mut self,
        job_id: JobId,
        expected: Option<LeaseId>,
        stamp: Stamp,
        at: At,
    ) -> Response {
        crate::submit::check_stamp(&stamp)?;
        let job = self.job_or_err(job_id)?;
        let Some(lease) = job.lease().map(|l| l.id) else {
            return Err(SchedulerError::WrongState {
                job_id,
                status: job.status(),
                action: "released (it holds no lease)".to_owned(),
            });
        };
        if let Some(presented) = expected.filter(|&e| e != lease) {
            return Err(SchedulerError::StaleLease { job_id, presented });
        }
        // Back in line where it stood: by its own eligible time, not behind newer work.
        let eligible_ms = job.spec.not_before_ms.unwrap_or(job.created_ms);
        let outcome = AttemptOutcome::Released {
            reason: stamp.reason.clone(),
        };
        self.end_attempt(job_id, outcome, Vec::new(), at);
        let ready = JobState::Ready { eligible_ms };
        self.set_state(job_id, ready, at, JobEventKind::Ready);
        let change = GovernanceChange::LeaseReleased { job: job_id, lease };
        self.govern(Some(stamp), change, at);
        Ok(Reply::Done)
    }

    /// Closes the open attempt of a leased job (its lease is its one open attempt).
    pub(crate) fn end_attempt(
        &mut self,
        job_id: JobId,
        outcome: AttemptOutcome,
        outputs: Vec<Artifact>,
        at: At,
    ) {
        let job = self
            .ledger
            .jobs
            .get_mut(&job_id)
            .map(Arc::make_mut)
            .expect("end_attempt is called only for a leased job in the ledger");
        let attempt = job
            .attempts
            .last_mut()
            .expect("a leased job has the attempt its lease opened");
        attempt.ended_ms = Some(at.now_ms);
        attempt.outcome = Some(outcome.clone());
        self.idx
            .add_artifacts(job_id, &outputs, crate::ledger::ArtifactUse::Wrote);
        attempt.outputs = outputs;
        let number = attempt.number;
        record(
            job,
            &mut self.journal,
            at,
            JobEventKind::AttemptEnded {
                attempt: number,
                outcome,
            },
        );
    }

    /// Retries with backoff while attempts remain and the failure is retryable;
    /// dead-letters (and cancels dependents) otherwise.
    fn after_failed_attempt(&mut self, job_id: JobId, retryable: bool, error: String, at: At) {
        let job = self
            .ledger
            .jobs
            .get(&job_id)
            .expect("an attempt ended for a job in the ledger");
        let made = job.counted_attempts();
        if retryable && made < job.spec.retry.max_attempts {
            // Saturating: `max_backoff_ms` is the client's, and may be near u64::MAX.
            let retry_at_ms = at
                .now_ms
                .saturating_add(backoff_ms(job_id, made, &job.spec.retry));
            let state = JobState::Failed { retry_at_ms, error };
            self.set_state(
                job_id,
                state,
                at,
                JobEventKind::RetryScheduled { retry_at_ms },
            );
            return;
        }
        let state = JobState::DeadLettered {
            at_ms: at.now_ms,
            error: error.clone(),
        };
        self.set_state(job_id, state, at, JobEventKind::DeadLettered { error });
        self.cancel_dependents(job_id, at);
    }

    /// Feeds a job type's circuit breaker; opens an incident when it trips.
    fn record_outcome(&mut self, job_type: &JobType, failed: bool, at: At) {
        let Some(breaker) = self.ledger.breakers.get_mut(job_type) else {
            return;
        };
        let Some(rate) = breaker.record(at.now_ms, failed) else {
            return;
        };
        let incident = IncidentId(self.ledger.next_incident_id);
        self.ledger.next_incident_id += 1;
        breaker.open_incident = Some(incident);
        self.ledger.incidents.insert(
            incident,
            Incident {
                id: incident,
                job_type: job_type.clone(),
                opened_ms: at.now_ms,
                opened_index: at.log_index,
                failure_rate_percent: rate,
                resolved: None,
            },
        );
        let change = GovernanceChange::BreakerTripped {
            job_type: job_type.clone(),
            incident,
        };
        self.govern(None, change, at);
    }
}

/// Exponential backoff after attempt `attempt` (1-based), capped, with "equal jitter": half
/// the backoff is fixed, the other half spread by a hash of (job, attempt), so replicas agree
/// and retries of many jobs that failed together do not return together.
pub fn backoff_ms(job_id: JobId, attempt: u32, policy: &RetryPolicy) -> u64 {
    let doublings = attempt.saturating_sub(1).min(63);
    let exponential = policy
        .base_backoff_ms
        .saturating_mul(1u64 << doublings)
        .min(policy.max_backoff_ms);
    let fixed = exponential / 2;
    let spread = exponential - fixed;
    let mut hasher = Sha256::new();
    hasher.update(job_id.0.to_be_bytes());
    hasher.update(attempt.to_be_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    fixed + u64::from_be_bytes(first) % (spread + 1)
}

pub(crate) fn check_outputs(outputs: &[Artifact]) -> Result<(), SchedulerError> {
    if outputs.len() > MAX_ARTIFACTS {
        return Err(SchedulerError::invalid(
            "outputs",
            format!("at most {MAX_ARTIFACTS} per completion"),
        ));
    }
    for output in outputs {
        check_artifact("outputs", output)?;
    }
    Ok(())
}

/// A worker's error text is kept, but never more than `MAX_TEXT_LEN` bytes of it: losing a
/// completion over a long stack trace would be worse than clipping it.
fn clip(mut error: String) -> String {
    if error.len() > MAX_TEXT_LEN {
        let mut end = MAX_TEXT_LEN;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
    }
    error
}

/// What makes a `Lease` request invalid, before any job is looked at.
pub(crate) fn check_lease(
    worker: &WorkerId,
    job_types: &[JobType],
    max: u32,
    ttl_ms: Option<u64>,
) -> Result<(), SchedulerError> {
    check_name("worker", worker.as_str())?;
    if job_types.is_empty() || job_types.len() > MAX_LEASE_JOB_TYPES {
        return Err(SchedulerError::invalid(
            "job_types",
            format!("name between 1 and {MAX_LEASE_JOB_TYPES} job types"),
        ));
    }
    for job_type in job_types {
        check_name("job_types", job_type.as_str())?;
    }
    if max == 0 || max > MAX_LEASE_BATCH {
        return Err(SchedulerError::invalid(
            "max",
            format!("must be between 1 and {MAX_LEASE_BATCH}"),
        ));
    }
    if let Some(ttl) = ttl_ms {
        check_ttl("ttl_ms", ttl)?;
    }
    Ok(())
}
