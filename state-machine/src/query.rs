//! Read-only views of the state: what the APIs and the CLI show.

use crate::archive::ArchiveKey;
use crate::governance::{GovernanceEvent, Hold, Incident, Quota, Scope, Stamp};
use crate::ids::{JobId, JobType, PlanId, ScheduleId, TenantId, WorkerId};
use crate::job::{Artifact, Job, Status};
use crate::ledger::State;
use crate::plan::{Plan, PlanStatus};
use crate::schedule::Schedule;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Most jobs one page returns.
pub const MAX_PAGE: usize = 1_000;

/// Most jobs a listing by status examines for one page while governance may hold jobs back
/// (a held ready job shows as pending, so such a page skips over jobs it does not return).
pub const MAX_EXAMINED: usize = 20_000;

/// Which jobs a listing returns. Every field narrows; `None` means any.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFilter {
    /// Only jobs in this status.
    pub status: Option<Status>,
    /// Only this tenant's jobs.
    pub tenant: Option<TenantId>,
    /// Only jobs of this type.
    pub job_type: Option<JobType>,
    /// Created at or after this log time.
    pub since_ms: Option<u64>,
    /// Created before this log time.
    pub until_ms: Option<u64>,
}

/// The ids of a name's index entry from `low` up to `high`; none for a name never seen.
fn within(
    ids: Option<&BTreeSet<JobId>>,
    low: JobId,
    high: JobId,
) -> Box<dyn Iterator<Item = JobId> + '_> {
    match ids {
        Some(ids) => Box::new(ids.range(low..high).copied()),
        None => Box::new(std::iter::empty()),
    }
}

impl JobFilter {
    /// Whether `job` passes every filter set.
    pub fn matches(&self, job: &Job) -> bool {
        self.matches_as(job, job.status())
    }

    /// Whether `job`, shown in status `shown`, passes every filter set.
    pub fn matches_as(&self, job: &Job, shown: Status) -> bool {
        self.status.is_none_or(|s| shown == s)
            && self.tenant.as_ref().is_none_or(|t| &job.spec.tenant == t)
            && self
                .job_type
                .as_ref()
                .is_none_or(|t| &job.spec.job_type == t)
            && self.since_ms.is_none_or(|s| job.created_ms >= s)
            && self.until_ms.is_none_or(|u| job.created_ms < u)
    }
}

/// One page of a listing, in job id order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobPage<'a> {
    /// The page's jobs, at most the limit asked for.
    pub jobs: Vec<&'a Job>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next_after: Option<JobId>,
}

/// Jobs of one (tenant, job type) by status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// The tenant counted.
    pub tenant: TenantId,
    /// The job type counted.
    pub job_type: JobType,
    /// Waiting for dependencies or a not-before time.
    pub pending: u32,
    /// Waiting for a worker.
    pub ready: u32,
    /// Held by a worker now.
    pub leased: u32,
    /// Failed and waiting out a backoff.
    pub retrying: u32,
}

/// A plan with its derived status and its steps' states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanView<'a> {
    /// The plan as submitted.
    pub plan: &'a Plan,
    /// Its run status, derived from its steps.
    pub status: PlanStatus,
    /// Each step's key, its job and the job's status, in submission order.
    pub steps: Vec<(&'a str, JobId, Status)>,
}

/// Which way `State::lineage_of` follows an artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineageScope {
    /// Up: what the producers read, and who wrote that.
    pub up: bool,
    /// Down: what the consumers wrote, and who read that.
    pub down: bool,
    /// Steps beyond the jobs that read or wrote the artifact itself.
    pub depth: u32,
    /// The most links returned.
    pub max_links: usize,
}

/// One job's use of one artifact in a lineage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineageLink<'a> {
    /// The job.
    pub job: &'a Job,
    /// True when the job wrote the artifact (an attempt's output), false when it read it.
    pub wrote: bool,
    /// The artifact as the job named it.
    pub artifact: &'a Artifact,
    /// 0 for the artifact asked about; each step up or down adds one.
    pub depth: u32,
}

/// What a job read and what each of its attempts wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lineage<'a> {
    /// The artifacts the job declared it reads.
    pub inputs: &'a [Artifact],
    /// (attempt number, outputs) for attempts that reported any.
    pub outputs: Vec<(u32, &'a [Artifact])>,
}

/// Two ascending id sequences as one.
fn merged(
    a: impl Iterator<Item = JobId>,
    b: impl Iterator<Item = JobId>,
) -> impl Iterator<Item = JobId> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y < x => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

impl State {
    /// What holds `job` back from a lease now, if it is ready and governance holds its
    /// tenant or job type back (see `Hold`).
    pub fn job_hold(&self, job: &Job) -> Option<Hold> {
        if job.status() != Status::Ready {
            return None;
        }
        self.shown_hold(&job.spec.tenant, &job.spec.job_type, self.now_ms())
    }

    /// `job`'s status as users see it: a ready job that governance holds back shows as
    /// pending (DESIGN.md: "a job over its quota waits as pending with a next eligible
    /// time"); to the scheduler it stays ready, in its place in line.
    pub fn shown_status(&self, job: &Job) -> Status {
        match self.job_hold(job) {
            Some(_) => Status::Pending,
            None => job.status(),
        }
    }

    /// One job with its attempts and history.
    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.ledger.jobs.get(&id).map(Arc::as_ref)
    }

    /// The earliest log time at which something happens by itself (a lease expires, a
    /// backoff or not-before time ends, a schedule fires, finished work leaves memory or the
    /// archive); `None` when nothing waits on time.
    /// The leader ticks only when this has come, so an idle cluster's log stays still.
    pub fn next_due_ms(&self) -> Option<u64> {
        [
            self.idx.lease_expiry.first().map(|(t, _)| *t),
            self.idx.timers.first().map(|(t, _)| *t),
            self.idx.schedule_due.first().map(|(t, _)| *t),
            self.next_retire_ms(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether a `Lease` for `job_types` at log time `now_ms` could grant anything: false
    /// only when the lease would be valid and grant nothing — no tenant has a ready job of
    /// those types that governance lets go now (quotas, throttles, pauses, breakers), nothing
    /// time-driven (an expiry, a retry, a schedule) is due by `now_ms`, and maintenance is
    /// off. A node answers such a lease empty without a log entry, and a long-polling lease
    /// waits. True promises nothing (a payload budget, another worker first); the lease then
    /// goes through the log as usual.
    pub fn lease_may_grant(
        &self,
        worker: &WorkerId,
        job_types: &[JobType],
        max: u32,
        ttl_ms: Option<u64>,
        tenants: Option<&BTreeSet<TenantId>>,
        now_ms: u64,
    ) -> bool {
        if crate::leasing::check_lease(worker, job_types, max, ttl_ms).is_err()
            || self.ledger.maintenance.is_some()
            || self.next_due_ms().is_some_and(|due| due <= now_ms)
        {
            return true;
        }
        self.idx
            .ready
            .iter()
            .filter(|(tenant, _)| tenants.is_none_or(|only| only.contains(*tenant)))
            .any(|(tenant, by_type)| {
                job_types.iter().any(|t| {
                    by_type.get(t).is_some_and(|set| !set.is_empty())
                        && self.may_lease(tenant, t, now_ms)
                })
            })
    }

    /// Number of jobs in the ledger, terminal ones included.
    pub fn job_count(&self) -> usize {
        self.ledger.jobs.len()
    }

    /// Jobs matching `filter` with ids after `after`, at most `limit` (capped at `MAX_PAGE`).
    pub fn list_jobs(&self, filter: &JobFilter, after: Option<JobId>, limit: usize) -> JobPage<'_> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (low, high) = self.id_window(filter, after);
        // The most selective index the filter allows; no scan of the ledger beyond it.
        let in_status = |status: Status| {
            self.idx
                .by_status
                .range((status, low)..(status, high))
                .map(|(_, id)| *id)
        };
        let holds = self.holds_possible();
        let ids: Box<dyn Iterator<Item = JobId>> = match (&filter.status, &filter.tenant) {
            // Ready jobs held back by governance show as pending.
            (Some(Status::Pending), _) if holds => {
                Box::new(merged(in_status(Status::Pending), in_status(Status::Ready)))
            }
            (Some(status), _) => Box::new(in_status(*status)),
            (None, Some(tenant)) => within(self.idx.by_tenant.get(tenant), low, high),
            (None, None) => match &filter.job_type {
                Some(job_type) => within(self.idx.by_type.get(job_type), low, high),
                None => Box::new(self.ledger.jobs.range(low..high).map(|(id, _)| *id)),
            },
        };
        // Where holds may hide jobs from a status filter, a page examines at most
        // `MAX_EXAMINED` and may end short, naming where the next one starts.
        let mut jobs: Vec<&Job> = Vec::new();
        let mut examined = 0;
        let mut next_after = None;
        for id in ids {
            let Some(job) = self.ledger.jobs.get(&id).map(Arc::as_ref) else {
                continue;
            };
            examined += 1;
            if filter.matches_as(job, self.shown_status(job)) {
                if jobs.len() == limit {
                    next_after = jobs.last().map(|j| j.id);
                    break;
                }
                jobs.push(job);
            }
            if holds && filter.status.is_some() && examined >= MAX_EXAMINED {
                next_after = Some(id);
                break;
            }
        }
        JobPage { jobs, next_after }
    }

    /// The ids a listing may return, `low` included and `high` not: after `after`, and
    /// inside the filter's time window. Jobs are created in id order and log time never
    /// goes back, so creation times grow with ids and a window is an id range.
    fn id_window(&self, filter: &JobFilter, after: Option<JobId>) -> (JobId, JobId) {
        let after = after.map_or(0, |a| a.0.saturating_add(1));
        let since = filter
            .since_ms
            .map_or(0, |ms| self.first_id_created_at_or_after(ms));
        let until = filter
            .until_ms
            .map_or(u64::MAX, |ms| self.first_id_created_at_or_after(ms));
        (JobId(after.max(since)), JobId(until.max(after.max(since))))
    }

    /// The smallest id whose job was created at or after `ms` (binary search over ids).
    fn first_id_created_at_or_after(&self, ms: u64) -> u64 {
        let (mut low, mut high) = (0, self.ledger.next_job_id);
        while low < high {
            let mid = low + (high - low) / 2;
            match self.ledger.jobs.range(JobId(mid)..).next() {
                Some((id, job)) if job.created_ms < ms => low = id.0 + 1,
                _ => high = mid,
            }
        }
        low
    }

    /// The dead-letter queue, oldest first.
    pub fn dead_letters(&self, after: Option<JobId>, limit: usize) -> JobPage<'_> {
        let filter = JobFilter {
            status: Some(Status::DeadLettered),
            ..JobFilter::default()
        };
        self.list_jobs(&filter, after, limit)
    }

    /// Non-terminal jobs per (tenant, job type).
    pub fn queue_depth(&self) -> Vec<QueueDepth> {
        self.idx
            .depth
            .iter()
            .map(|((tenant, job_type), n)| QueueDepth {
                tenant: tenant.clone(),
                job_type: job_type.clone(),
                pending: n[Status::Pending as usize],
                ready: n[Status::Ready as usize],
                leased: n[Status::Leased as usize],
                retrying: n[Status::Failed as usize],
            })
            .filter(|d| d.pending + d.ready + d.leased + d.retrying > 0)
            .collect()
    }

    /// Jobs per (tenant, job type) and status (indexed by `Status as usize`), terminal
    /// ones included, in name order; pairs with no job left are absent. Kept as jobs move,
    /// so reading it costs a walk over the pairs only.
    pub fn depth_by_status(&self) -> impl Iterator<Item = (&TenantId, &JobType, [u32; 7])> {
        self.idx
            .depth
            .iter()
            .map(|((tenant, job_type), n)| (tenant, job_type, *n))
    }

    /// Each job type with a breaker, and whether it is open (tripped, not yet reset).
    pub fn breakers(&self) -> impl Iterator<Item = (&JobType, bool)> {
        self.ledger
            .breakers
            .iter()
            .map(|(job_type, breaker)| (job_type, breaker.open_incident.is_some()))
    }

    /// Jobs per status across the ledger.
    pub fn status_counts(&self) -> [(Status, usize); 7] {
        Status::ALL.map(|s| (s, self.idx.status_counts[s as usize] as usize))
    }

    /// A job's status, whether it is in memory or in the archive.
    pub fn job_status(&self, id: JobId) -> Option<Status> {
        match self.ledger.jobs.get(&id) {
            Some(job) => Some(job.status()),
            None => self.archived(ArchiveKey::job(id))?.status,
        }
    }

    /// A plan, its derived status and its steps (a step's job may be archived).
    pub fn plan(&self, id: PlanId) -> Option<PlanView<'_>> {
        let plan = self.ledger.plans.get(&id)?;
        let steps: Vec<(&str, JobId, Status)> = plan
            .steps
            .iter()
            .filter_map(|(key, job)| Some((key.as_str(), *job, self.job_status(*job)?)))
            .collect();
        let status = PlanStatus::derive(steps.iter().map(|s| s.2));
        Some(PlanView {
            plan,
            status,
            steps,
        })
    }

    /// Incidents, optionally only those still open.
    pub fn incidents(&self, open_only: bool) -> Vec<&Incident> {
        self.ledger
            .incidents
            .values()
            .filter(|i| !open_only || i.resolved.is_none())
            .collect()
    }

    /// Who acknowledged incident `id` and when, if anyone did.
    pub fn incident_ack(
        &self,
        id: crate::ids::IncidentId,
    ) -> Option<&(u64, crate::governance::Stamp)> {
        self.ledger.incident_acks.get(&id)
    }

    /// A job's lineage: its declared inputs and the outputs its attempts reported.
    pub fn lineage(&self, id: JobId) -> Option<Lineage<'_>> {
        let job = self.ledger.jobs.get(&id)?;
        let outputs = job
            .attempts
            .iter()
            .filter(|a| !a.outputs.is_empty())
            .map(|a| (a.number, a.outputs.as_slice()))
            .collect();
        Some(Lineage {
            inputs: &job.spec.inputs,
            outputs,
        })
    }

    /// The jobs in memory that read or wrote the artifact named `term` (its name, URI or
    /// digest), then step by step up (what the writers read, who wrote that) and down (what
    /// the readers wrote, who read that), each job's use listed once, at most
    /// `scope.max_links`; the bool is true when that bound, or the walk's own (100,000 job
    /// uses examined), cut it short. Steps follow artifacts by URI.
    pub fn lineage_of(&self, term: &str, scope: LineageScope) -> (Vec<LineageLink<'_>>, bool) {
        const MAX_EXAMINED: usize = 100_000;
        let mut links: Vec<LineageLink<'_>> = Vec::new();
        let mut seen: BTreeSet<(JobId, bool, &str)> = BTreeSet::new();
        // (key to look up, depth, follow up, follow down)
        // Breadth first, so that each link has its shortest depth.
        let mut frontier: std::collections::VecDeque<(&str, u32, bool, bool)> =
            [(term, 0, true, true)].into();
        // Each (artifact, direction) is looked up once, and the walk examines at most
        // MAX_EXAMINED (job, artifact) pairs, however many jobs share an artifact.
        let mut looked_up: BTreeSet<(&str, bool, bool)> = BTreeSet::new();
        let mut examined = 0usize;
        while let Some((key, depth, up, down)) = frontier.pop_front() {
            if !looked_up.insert((key, up, down)) {
                continue;
            }
            let Some(users) = self.idx.artifacts.get(key) else {
                continue;
            };
            for &(id, used) in users {
                examined += 1;
                if examined > MAX_EXAMINED {
                    links.sort_by_key(|l| (l.depth, l.job.id, !l.wrote));
                    return (links, true);
                }
                let wrote = used == crate::ledger::ArtifactUse::Wrote;
                // Up follows writers, down follows readers; the artifact asked about shows both.
                if (wrote && !up) || (!wrote && !down) {
                    continue;
                }
                let Some(job) = self.ledger.jobs.get(&id).map(Arc::as_ref) else {
                    continue;
                };
                let named = |a: &&Artifact| {
                    a.name == key || a.uri == key || a.digest.as_deref() == Some(key)
                };
                let artifact = match wrote {
                    true => job.attempts.iter().flat_map(|a| &a.outputs).find(named),
                    false => job.spec.inputs.iter().find(named),
                };
                let Some(artifact) = artifact else {
                    continue;
                };
                if !seen.insert((id, wrote, artifact.uri.as_str())) {
                    continue;
                }
                if links.len() == scope.max_links {
                    links.sort_by_key(|l| (l.depth, l.job.id, !l.wrote));
                    return (links, true);
                }
                links.push(LineageLink {
                    job,
                    wrote,
                    artifact,
                    depth,
                });
                if depth == scope.depth {
                    continue;
                }
                if wrote && scope.up {
                    for input in &job.spec.inputs {
                        frontier.push_back((input.uri.as_str(), depth + 1, true, false));
                    }
                }
                if !wrote && scope.down {
                    for output in job.attempts.iter().flat_map(|a| &a.outputs) {
                        frontier.push_back((output.uri.as_str(), depth + 1, false, true));
                    }
                }
            }
        }
        links.sort_by_key(|l| (l.depth, l.job.id, !l.wrote));
        (links, false)
    }

    /// Recurring schedules by name.
    pub fn schedules(&self) -> impl Iterator<Item = &Schedule> {
        self.ledger.schedules.values()
    }

    /// The jobs in memory, by id.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.ledger.jobs.values().map(Arc::as_ref)
    }

    /// One schedule.
    pub fn schedule(&self, id: &ScheduleId) -> Option<&Schedule> {
        self.ledger.schedules.get(id)
    }

    /// Quotas by scope.
    pub fn quotas(&self) -> impl Iterator<Item = (&Scope, &Quota)> {
        self.ledger.quotas.iter()
    }

    /// Concurrency caps by scope.
    pub fn throttles(&self) -> impl Iterator<Item = (&Scope, u32)> {
        self.ledger.throttles.iter().map(|(s, &cap)| (s, cap))
    }

    /// Paused sources and who paused them.
    pub fn paused_sources(&self) -> impl Iterator<Item = (&Scope, &Stamp)> {
        self.ledger.paused.iter()
    }

    /// Jobs of `scope` leased right now.
    pub fn active(&self, scope: &Scope) -> u32 {
        self.idx.active.get(scope).copied().unwrap_or(0)
    }

    /// Who turned maintenance mode on, if it is on.
    pub fn maintenance(&self) -> Option<&Stamp> {
        self.ledger.maintenance.as_ref()
    }

    /// The cluster-wide governance history, oldest first.
    pub fn governance_history(&self) -> &[GovernanceEvent] {
        &self.ledger.governance
    }

    /// The highest fencing token granted so far.
    pub fn last_lease_id(&self) -> u64 {
        self.ledger.last_lease_id
    }
}
