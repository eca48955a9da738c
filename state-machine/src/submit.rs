//! Getting work in and out of the ledger: enqueue, plans, cancel, replay, and the
//! dependency bookkeeping they share.

use crate::archive::ArchiveKey;
use crate::command::{PlanStep, Reply, Response};
use crate::error::SchedulerError;
use crate::governance::{GovernanceChange, Stamp};
use crate::ids::{JobId, PlanId, ScheduleId, TenantId};
use crate::job::{
    Artifact, AttemptOutcome, Backfill, Job, JobEventKind, JobSpec, JobState, Origin, Status,
    REPLAY_PRIORITY,
};
use crate::ledger::{record, At, State};
use crate::plan::{topological_order, Plan};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Longest tenant, project, job type, worker or schedule name.
pub const MAX_NAME_LEN: usize = 128;
/// Largest payload the scheduler itself accepts; nodes may set a lower limit.
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;
/// Most steps in one plan.
pub const MAX_PLAN_STEPS: usize = 10_000;
/// Most dependencies of one job.
pub const MAX_DEPENDENCIES: usize = 1_000;
/// Longest free text (reasons, errors, keys).
pub const MAX_TEXT_LEN: usize = 4_096;
/// Shortest and longest lease time-to-live.
pub const LEASE_TTL_RANGE_MS: (u64, u64) = (100, 24 * 3_600_000);
/// Most artifacts a job declares as inputs, or a completion reports as outputs.
pub const MAX_ARTIFACTS: usize = 1_000;
/// The most fire times one `Backfill` runs.
pub const MAX_BACKFILL: usize = 1_000;
/// Most attempts a retry policy may allow.
pub const MAX_ATTEMPTS_LIMIT: u32 = 1_000;

pub(crate) fn check_name(field: &str, name: &str) -> Result<(), SchedulerError> {
    if name.is_empty() {
        return Err(SchedulerError::invalid(field, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(SchedulerError::invalid(
            field,
            format!("is longer than {MAX_NAME_LEN} bytes"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(SchedulerError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

pub(crate) fn check_text(field: &str, text: &str) -> Result<(), SchedulerError> {
    if text.trim().is_empty() {
        return Err(SchedulerError::invalid(field, "must not be empty"));
    }
    if text.len() > MAX_TEXT_LEN {
        return Err(SchedulerError::invalid(
            field,
            format!("is longer than {MAX_TEXT_LEN} bytes"),
        ));
    }
    Ok(())
}

pub(crate) fn check_stamp(stamp: &Stamp) -> Result<(), SchedulerError> {
    check_name("actor", &stamp.actor)?;
    check_text("reason", &stamp.reason)?;
    match &stamp.ticket {
        Some(ticket) => check_text("ticket", ticket),
        None => Ok(()),
    }
}

/// An artifact's name, location and (if given) digest, each free text within its limit.
pub(crate) fn check_artifact(field: &str, artifact: &Artifact) -> Result<(), SchedulerError> {
    check_text(&format!("{field}.name"), &artifact.name)?;
    check_text(&format!("{field}.uri"), &artifact.uri)?;
    match &artifact.digest {
        Some(digest) => check_text(&format!("{field}.digest"), digest),
        None => Ok(()),
    }
}

fn check_backfill(backfill: &Option<Backfill>) -> Result<(), SchedulerError> {
    match backfill {
        Some(b) if b.reason.trim().is_empty() || b.ticket.trim().is_empty() => {
            Err(SchedulerError::BackfillNeedsReasonAndTicket)
        }
        Some(b) => {
            check_text("backfill.reason", &b.reason).and(check_text("backfill.ticket", &b.ticket))
        }
        None => Ok(()),
    }
}

/// Checks everything about a spec that does not depend on the ledger.
pub(crate) fn check_spec(spec: &JobSpec) -> Result<(), SchedulerError> {
    check_name("tenant", spec.tenant.as_str())?;
    check_name("project", &spec.project)?;
    check_name("job_type", spec.job_type.as_str())?;
    if spec.payload.len() > MAX_PAYLOAD_BYTES {
        return Err(SchedulerError::invalid(
            "payload",
            format!(
                "is {} bytes, more than the limit of {MAX_PAYLOAD_BYTES}",
                spec.payload.len()
            ),
        ));
    }
    if let Some(key) = &spec.idempotency_key {
        check_text("idempotency_key", key)?;
    }
    if let Some(id) = &spec.correlation_id {
        check_text("correlation_id", id)?;
    }
    if spec.depends_on.len() > MAX_DEPENDENCIES {
        return Err(SchedulerError::invalid(
            "depends_on",
            format!("has more than {MAX_DEPENDENCIES} entries"),
        ));
    }
    let retry = &spec.retry;
    if retry.max_attempts == 0 || retry.max_attempts > MAX_ATTEMPTS_LIMIT {
        return Err(SchedulerError::invalid(
            "retry.max_attempts",
            format!("must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
        ));
    }
    if retry.base_backoff_ms == 0 || retry.base_backoff_ms > retry.max_backoff_ms {
        return Err(SchedulerError::invalid(
            "retry.base_backoff_ms",
            "must be at least 1 and at most retry.max_backoff_ms",
        ));
    }
    check_ttl("lease_ttl_ms", spec.lease_ttl_ms)?;
    if spec.inputs.len() > MAX_ARTIFACTS {
        return Err(SchedulerError::invalid(
            "inputs",
            format!("at most {MAX_ARTIFACTS} per job"),
        ));
    }
    for input in &spec.inputs {
        check_artifact("inputs", input)?;
    }
    check_backfill(&spec.backfill)
}

pub(crate) fn check_ttl(field: &str, ttl_ms: u64) -> Result<(), SchedulerError> {
    let (low, high) = LEASE_TTL_RANGE_MS;
    if !(low..=high).contains(&ttl_ms) {
        return Err(SchedulerError::invalid(
            field,
            format!("must be between {low} and {high} ms"),
        ));
    }
    Ok(())
}

/// A plan's backfill, size and step graph (no cycle, no unknown or doubled key); its
/// steps in an order where every step follows what it depends on.
fn check_plan_shape(
    steps: &[PlanStep],
    backfill: &Option<Backfill>,
) -> Result<Vec<usize>, SchedulerError> {
    check_backfill(backfill)?;
    if steps.len() > MAX_PLAN_STEPS {
        return Err(SchedulerError::invalid(
            "steps",
            format!("a plan has at most {MAX_PLAN_STEPS} steps"),
        ));
    }
    for step in steps {
        if step.key.len() > MAX_NAME_LEN {
            return Err(SchedulerError::invalid(
                "steps.key",
                format!("is longer than {MAX_NAME_LEN} bytes"),
            ));
        }
        if step.depends_on.len() > MAX_DEPENDENCIES {
            return Err(SchedulerError::invalid(
                "steps.depends_on",
                format!("a step depends on at most {MAX_DEPENDENCIES} steps"),
            ));
        }
    }
    topological_order(steps)
}

/// Two steps of one plan may not share an idempotency key (of one tenant).
fn check_key_unique_in_plan<'a>(
    step: &'a PlanStep,
    keys_in_plan: &mut BTreeSet<(&'a TenantId, &'a String)>,
) -> Result<(), SchedulerError> {
    match &step.spec.idempotency_key {
        Some(key) if !keys_in_plan.insert((&step.spec.tenant, key)) => {
            Err(SchedulerError::invalid(
                "idempotency_key",
                format!("{key:?} is used by two steps of the plan"),
            ))
        }
        _ => Ok(()),
    }
}

/// Everything about a plan that does not depend on the ledger.
pub(crate) fn check_plan(
    steps: &[PlanStep],
    backfill: &Option<Backfill>,
) -> Result<(), SchedulerError> {
    check_plan_shape(steps, backfill)?;
    let mut keys_in_plan = BTreeSet::new();
    for step in steps {
        check_spec(&step.spec)?;
        check_key_unique_in_plan(step, &mut keys_in_plan)?;
    }
    Ok(())
}

impl State {
    pub(crate) fn enqueue(&mut self, spec: JobSpec, at: At) -> Response {
        check_spec(&spec)?;
        // A key that names an existing job answers with it, blocked or not: the same key
        // gets the same answer.
        if let Some(job_id) = self.idempotent_match(&spec.tenant, &spec.idempotency_key) {
            return Ok(Reply::Enqueued {
                job_id,
                created: false,
            });
        }
        self.check_not_blocked(&spec.tenant)?;
        self.check_dependencies(&spec.depends_on)?;
        let backfill = spec.backfill.clone();
        let job_id = self.create_job(spec, Origin::default(), at);
        if let Some(b) = backfill {
            self.record_backfill(vec![job_id], b, None, at);
        }
        Ok(Reply::Enqueued {
            job_id,
            created: true,
        })
    }

    pub(crate) fn submit_plan(
        &mut self,
        steps: Vec<PlanStep>,
        backfill: Option<Backfill>,
        at: At,
    ) -> Response {
        self.submit_plan_by(steps, backfill, None, at)
    }

    /// Runs `schedule`'s template for `fire_times` as one backfill plan.
    pub(crate) fn backfill(
        &mut self,
        schedule: ScheduleId,
        mut fire_times: Vec<u64>,
        stamp: Stamp,
        at: At,
    ) -> Response {
        check_stamp(&stamp)?;
        let ticket = stamp
            .ticket
            .clone()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| SchedulerError::invalid("stamp.ticket", "a backfill needs a ticket"))?;
        let Some(found) = self.ledger.schedules.get(&schedule) else {
            return Err(SchedulerError::ScheduleNotFound(schedule));
        };
        if fire_times.is_empty() || fire_times.len() > MAX_BACKFILL {
            return Err(SchedulerError::invalid(
                "fire_times",
                format!("give 1 to {MAX_BACKFILL} fire times"),
            ));
        }
        fire_times.sort_unstable();
        fire_times.dedup();
        for &t in &fire_times {
            let on_cadence = found.cadence.latest_at_or_before(found.anchor_ms, t) == Some(t);
            if !on_cadence || t > at.now_ms {
                return Err(SchedulerError::invalid(
                    "fire_times",
                    format!("{t} is not a past fire time of schedule {schedule}"),
                ));
            }
        }
        let backfill = Backfill {
            reason: stamp.reason.clone(),
            ticket,
        };
        let steps = fire_times
            .iter()
            .map(|&t| {
                let mut spec = found.template.clone();
                spec.idempotency_key = Some(found.firing_key(t));
                spec.not_before_ms = None;
                spec.backfill = Some(backfill.clone());
                PlanStep {
                    key: t.to_string(),
                    spec,
                    depends_on: Vec::new(),
                }
            })
            .collect();
        self.submit_plan_by(steps, Some(backfill), Some(stamp), at)
    }

    /// Cancels every live job plan `plan_id` created (not the jobs its steps reused, which
    /// belong to whoever made them). Canceling a job cancels the jobs that depend on it, so
    /// each is looked at again as its turn comes: what is already finished is passed over.
    pub(crate) fn cancel_plan(&mut self, plan_id: PlanId, stamp: Stamp, at: At) -> Response {
        check_stamp(&stamp)?;
        let Some(plan) = self.ledger.plans.get(&plan_id) else {
            return Err(SchedulerError::PlanNotFound(plan_id));
        };
        // Its own jobs that are live now; nothing below can be refused once the stamp and
        // the plan are good, so the command changes all of them or (refused) none.
        let live: Vec<JobId> = plan
            .steps
            .iter()
            .map(|(_, job)| *job)
            .filter(|job| {
                self.ledger.jobs.get(job).is_some_and(|j| {
                    !j.status().is_terminal()
                        && j.origin.plan.as_ref().is_some_and(|(p, _)| *p == plan_id)
                })
            })
            .collect();
        for &job in &live {
            let still_live = self
                .ledger
                .jobs
                .get(&job)
                .is_some_and(|j| !j.status().is_terminal());
            if still_live {
                self.cancel(job, stamp.clone(), at)?;
            }
        }
        let mut canceled: Vec<JobId> = live
            .into_iter()
            .filter(|job| self.job_status(*job) == Some(Status::Canceled))
            .collect();
        canceled.sort_unstable();
        Ok(Reply::PlanCanceled { plan_id, canceled })
    }

    fn submit_plan_by(
        &mut self,
        steps: Vec<PlanStep>,
        backfill: Option<Backfill>,
        by: Option<Stamp>,
        at: At,
    ) -> Response {
        let order = check_plan_shape(&steps, &backfill)?;
        let mut keys_in_plan = BTreeSet::new();
        for step in &steps {
            check_spec(&step.spec)?;
            self.check_not_blocked(&step.spec.tenant)?;
            self.check_dependencies(&step.spec.depends_on)?;
            check_key_unique_in_plan(step, &mut keys_in_plan)?;
        }
        self.check_matched_steps(&steps)?;

        let plan_id = PlanId(self.ledger.next_plan_id);
        self.ledger.next_plan_id += 1;
        let mut job_of: BTreeMap<&str, JobId> = BTreeMap::new();
        let mut created = Vec::new();
        for i in order {
            let step = &steps[i];
            let mut spec = step.spec.clone();
            spec.depends_on.extend(
                step.depends_on
                    .iter()
                    .filter_map(|k| job_of.get(k.as_str())),
            );
            if spec.backfill.is_none() {
                spec.backfill = backfill.clone();
            }
            let job_id = match self.idempotent_match(&spec.tenant, &spec.idempotency_key) {
                Some(existing) => existing,
                None => {
                    let origin = Origin {
                        plan: Some((plan_id, step.key.clone())),
                        ..Origin::default()
                    };
                    let id = self.create_job(spec, origin, at);
                    created.push(id);
                    id
                }
            };
            job_of.insert(&step.key, job_id);
        }
        let jobs: Vec<(String, JobId)> = steps
            .iter()
            .filter_map(|s| Some((s.key.clone(), *job_of.get(s.key.as_str())?)))
            .collect();
        self.ledger.plans.insert(
            plan_id,
            Plan {
                id: plan_id,
                created_ms: at.now_ms,
                steps: jobs.clone(),
                backfill: backfill.clone(),
            },
        );
        if let Some(b) = backfill {
            self.record_backfill(created, b, by, at);
        }
        Ok(Reply::PlanSubmitted { plan_id, jobs })
    }

    pub(crate) fn cancel(&mut self, job_id: JobId, stamp: Stamp, at: At) -> Response {
        check_stamp(&stamp)?;
        let job = self.job_or_err(job_id)?;
        let status = job.status();
        if status.is_terminal() {
            return Err(SchedulerError::WrongState {
                job_id,
                status,
                action: "canceled".to_owned(),
            });
        }
        let revoked_lease = job.lease().map(|l| l.id);
        if revoked_lease.is_some() {
            self.end_attempt(
                job_id,
                AttemptOutcome::Canceled {
                    reason: stamp.reason.clone(),
                },
                Vec::new(),
                at,
            );
        }
        let reason = format!("canceled by {}: {}", stamp.actor, stamp.reason);
        self.cancel_job(job_id, reason, revoked_lease, at);
        self.govern(
            Some(stamp),
            GovernanceChange::JobCanceled { job: job_id },
            at,
        );
        Ok(Reply::Canceled { job_id })
    }

    pub(crate) fn replay(&mut self, job_id: JobId, stamp: Stamp, at: At) -> Response {
        check_stamp(&stamp)?;
        let job = self.job_or_err(job_id)?;
        let status = job.status();
        // Only finished work: a failed job waiting for its retry would run twice, the
        // replay and the retry side by side.
        if !matches!(
            status,
            Status::DeadLettered | Status::Succeeded | Status::Canceled
        ) {
            return Err(SchedulerError::WrongState {
                job_id,
                status,
                action: "replayed".to_owned(),
            });
        }
        self.check_not_blocked(&job.spec.tenant)?;
        let mut spec = job.spec.clone();
        spec.priority = REPLAY_PRIORITY;
        spec.idempotency_key = None;
        spec.depends_on.clear();
        spec.not_before_ms = None;
        let origin = Origin {
            replay_of: Some(job_id),
            ..Origin::default()
        };
        let new_job = self.create_job(spec, origin, at);
        let original = self
            .ledger
            .jobs
            .get_mut(&job_id)
            .map(Arc::make_mut)
            .expect("job_or_err found the replayed job");
        record(
            original,
            &mut self.journal,
            at,
            JobEventKind::Replayed { new_job },
        );
        self.govern(
            Some(stamp),
            GovernanceChange::JobReplayed {
                job: job_id,
                replay: new_job,
            },
            at,
        );
        Ok(Reply::Replayed { job_id: new_job })
    }

    pub(crate) fn job_or_err(&self, job_id: JobId) -> Result<&Job, SchedulerError> {
        self.ledger
            .jobs
            .get(&job_id)
            .map(Arc::as_ref)
            .ok_or_else(|| match self.archived(ArchiveKey::job(job_id)) {
                Some(_) => SchedulerError::Archived(job_id),
                None => SchedulerError::JobNotFound(job_id),
            })
    }

    pub(crate) fn idempotent_match(
        &self,
        tenant: &TenantId,
        key: &Option<String>,
    ) -> Option<JobId> {
        let named = (tenant.clone(), key.as_ref()?.clone());
        self.idx
            .idempotency
            .get(&named)
            .or_else(|| self.idx.archived_keys.get(&named))
            .copied()
    }

    /// A step whose idempotency key names an existing job becomes that job; a step that
    /// depends on it then depends on that job, which must still be able to succeed.
    fn check_matched_steps(&self, steps: &[PlanStep]) -> Result<(), SchedulerError> {
        for step in steps {
            let Some(existing) =
                self.idempotent_match(&step.spec.tenant, &step.spec.idempotency_key)
            else {
                continue;
            };
            let depended_on = steps.iter().any(|s| s.depends_on.contains(&step.key));
            match self.job_status(existing) {
                Some(status @ (Status::DeadLettered | Status::Canceled)) if depended_on => {
                    return Err(SchedulerError::DependencyFailed {
                        dependency: existing,
                        status,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Every dependency must exist (in memory or in the archive) and still be able to
    /// succeed.
    fn check_dependencies(&self, deps: &[JobId]) -> Result<(), SchedulerError> {
        for &dep in deps {
            let archived = self.archived(ArchiveKey::job(dep)).and_then(|e| e.status);
            let status = match archived {
                Some(status) => status,
                None => self.job_or_err(dep)?.status(),
            };
            if matches!(status, Status::DeadLettered | Status::Canceled) {
                return Err(SchedulerError::DependencyFailed {
                    dependency: dep,
                    status,
                });
            }
        }
        Ok(())
    }

    /// Adds a job to the ledger; the spec and its dependencies are already checked.
    pub(crate) fn create_job(&mut self, mut spec: JobSpec, origin: Origin, at: At) -> JobId {
        self.idx.share_names(&mut spec);
        let id = JobId(self.ledger.next_job_id);
        self.ledger.next_job_id += 1;
        let unmet: BTreeSet<JobId> = spec
            .depends_on
            .iter()
            .copied()
            .filter(|dep| {
                self.ledger
                    .jobs
                    .get(dep)
                    .is_some_and(|j| j.status() != Status::Succeeded)
            })
            .collect();
        let not_before_ms = spec.not_before_ms.unwrap_or(0);
        let state = if unmet.is_empty() && not_before_ms <= at.now_ms {
            JobState::Ready {
                eligible_ms: at.now_ms,
            }
        } else {
            JobState::Pending {
                unmet,
                not_before_ms,
            }
        };
        let mut job = Job {
            id,
            payload_digest: Sha256::digest(&spec.payload).into(),
            spec,
            created_ms: at.now_ms,
            origin,
            state,
            attempts: Vec::new(),
            // Enqueued, and ready unless it waits: a first push would reserve four.
            history: Vec::with_capacity(2),
        };
        record(&mut job, &mut self.journal, at, JobEventKind::Enqueued);
        if job.status() == Status::Ready {
            record(&mut job, &mut self.journal, at, JobEventKind::Ready);
        }
        self.idx.add_created(&job);
        self.idx.add(&job);
        self.ledger.jobs.insert(id, Arc::new(job));
        id
    }

    /// Records a backfill in the governance history, under `by` when the command carried a
    /// stamp (a `Backfill`), else under "producer" (an enqueue or plan marked as one, whose
    /// commands carry no actor).
    fn record_backfill(&mut self, jobs: Vec<JobId>, backfill: Backfill, by: Option<Stamp>, at: At) {
        let stamp = by.unwrap_or_else(|| Stamp {
            actor: "producer".to_owned(),
            reason: backfill.reason.clone(),
            ticket: Some(backfill.ticket.clone()),
        });
        let change = GovernanceChange::Backfill {
            jobs,
            ticket: backfill.ticket,
        };
        self.govern(Some(stamp), change, at);
    }

    /// `dep` succeeded: its dependents lose one unmet dependency, and may become ready.
    pub(crate) fn release_dependents(&mut self, dep: JobId, at: At) {
        let waiting: Vec<JobId> = self
            .idx
            .dependents
            .get(&dep)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default();
        for id in waiting {
            let Some(JobState::Pending {
                unmet,
                not_before_ms,
            }) = self.ledger.jobs.get(&id).map(|j| &j.state)
            else {
                continue;
            };
            let mut unmet = unmet.clone();
            let not_before_ms = *not_before_ms;
            unmet.remove(&dep);
            if unmet.is_empty() && not_before_ms <= at.now_ms {
                let ready = JobState::Ready {
                    eligible_ms: at.now_ms,
                };
                self.set_state(id, ready, at, JobEventKind::Ready);
            } else {
                self.replace_pending(id, unmet, not_before_ms);
            }
        }
    }

    /// Changes a pending job's unmet set without a history event: that is bookkeeping.
    fn replace_pending(&mut self, id: JobId, unmet: BTreeSet<JobId>, not_before_ms: u64) {
        let job = self
            .ledger
            .jobs
            .get_mut(&id)
            .map(Arc::make_mut)
            .expect("replace_pending is called only for a pending job in the ledger");
        self.idx.remove(job);
        job.state = JobState::Pending {
            unmet,
            not_before_ms,
        };
        self.idx.add(job);
    }

    /// Cancels a job and, transitively, every job waiting on it.
    pub(crate) fn cancel_job(
        &mut self,
        id: JobId,
        reason: String,
        revoked_lease: Option<crate::ids::LeaseId>,
        at: At,
    ) {
        let state = JobState::Canceled {
            at_ms: at.now_ms,
            reason: reason.clone(),
            revoked_lease,
        };
        self.set_state(id, state, at, JobEventKind::Canceled { reason });
        self.cancel_dependents(id, at);
    }

    /// `root` will never succeed: every job waiting on it, directly or not, is canceled,
    /// each with a reason that names the root cause.
    pub(crate) fn cancel_dependents(&mut self, root: JobId, at: At) {
        let status = self
            .ledger
            .jobs
            .get(&root)
            .expect("cancel_dependents is called only for a job in the ledger")
            .status()
            .as_str();
        let cause = format!("{root} is {status}");
        let mut work = vec![root];
        while let Some(dep) = work.pop() {
            let waiting: Vec<JobId> = self
                .idx
                .dependents
                .get(&dep)
                .map(|set| set.iter().copied().collect())
                .unwrap_or_default();
            let reason = if dep == root {
                format!("dependency {cause}")
            } else {
                format!("dependency {dep} was canceled because {cause}")
            };
            for id in waiting {
                let state = JobState::Canceled {
                    at_ms: at.now_ms,
                    reason: reason.clone(),
                    revoked_lease: None,
                };
                let event = JobEventKind::Canceled {
                    reason: reason.clone(),
                };
                self.set_state(id, state, at, event);
                work.push(id);
            }
        }
    }
}
