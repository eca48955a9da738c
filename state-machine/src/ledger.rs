//! The scheduler's state: the persisted ledger, the indexes derived from it, and `apply`.

use crate::archive::{ended_ms, ArchiveKey, ArchiveOp, BookEntry, Retained};
use crate::command::{Command, Reply, Response};
use crate::governance::{
    Breaker, GovernanceChange, GovernanceEvent, Incident, Quota, Scope, Stamp,
};
use crate::ids::{ClientId, IncidentId, JobId, JobType, PlanId, ScheduleId, TenantId};
use crate::job::{Artifact, Job, JobEvent, JobEventKind, JobSpec, JobState, Status};
use crate::journal::Note;
use crate::plan::Plan;
use crate::schedule::Schedule;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A client's latest request and its answer, kept so that a retry is answered once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The sequence number of the client's latest applied request.
    pub seq: u64,
    /// What that request was answered; a retry gets it again.
    pub response: Response,
    /// Log time of the client's latest applied request; the session is forgotten
    /// `SESSION_TTL_MS` after it.
    pub last_seen_ms: u64,
}

/// Everything that is replicated and snapshotted. Indexes are not here: they are rebuilt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ledger {
    /// Log time of the latest applied command; never goes backwards.
    pub now_ms: u64,
    pub next_job_id: u64,
    pub next_plan_id: u64,
    pub next_incident_id: u64,
    pub last_lease_id: u64,
    /// A persistent map of shared jobs: cloning the ledger for a snapshot costs almost
    /// nothing, and apply goes on while the clone is written out (a job or tree node the
    /// snapshot still shares is copied when it next changes). Its nodes hold pointers, not
    /// 500-byte jobs.
    pub jobs: imbl::OrdMap<JobId, Arc<Job>>,
    pub plans: BTreeMap<PlanId, Plan>,
    pub schedules: BTreeMap<ScheduleId, Schedule>,
    pub quotas: BTreeMap<Scope, Quota>,
    pub throttles: BTreeMap<Scope, u32>,
    pub paused: BTreeMap<Scope, Stamp>,
    pub breakers: BTreeMap<JobType, Breaker>,
    pub incidents: BTreeMap<IncidentId, Incident>,
    pub maintenance: Option<Stamp>,
    pub governance: Vec<GovernanceEvent>,
    /// The tenant served last, where the next lease's round-robin starts after.
    pub fair_cursor: Option<TenantId>,
    /// Each client's latest request and answer, so retries are answered once.
    pub sessions: BTreeMap<ClientId, Session>,
    /// Retention windows and the archive's book. Encoded after the ledger in a snapshot
    /// (so a snapshot written before retention existed still reads), not inside it.
    #[serde(skip)]
    pub retained: Retained,
    /// Tokens. Encoded after `retained` in a snapshot (version 3), for the same reason.
    #[serde(skip)]
    pub access: crate::access::Access,
    /// The W3C trace context of each job in memory that was enqueued with one (removed
    /// with the job). Encoded after `access` in a snapshot (version 4). Persistent, as
    /// `jobs` is, so that freezing the state for a snapshot copies no string.
    #[serde(skip)]
    pub traces: imbl::OrdMap<JobId, Arc<str>>,
    /// Who acknowledged each incident in memory, and when (log time). Encoded after
    /// `traces` in a snapshot (version 5); leaves with its incident.
    #[serde(skip)]
    pub incident_acks: BTreeMap<IncidentId, (u64, Stamp)>,
    /// The cluster's name, set once by `NameCluster`. Encoded after `incident_acks` in a
    /// snapshot (version 6).
    #[serde(skip)]
    pub cluster_id: Option<String>,
    /// Blocked tenants, with who blocked each and why. Encoded after `cluster_id` in a
    /// snapshot (version 7).
    #[serde(skip)]
    pub blocked: BTreeMap<TenantId, Stamp>,
}

/// Orders ready jobs within a (tenant, job type): priority (highest first), then eligible
/// time, then id.
pub(crate) type ReadyKey = (u16, u64, JobId);

pub(crate) fn ready_key(priority: u16, eligible_ms: u64, id: JobId) -> ReadyKey {
    (u16::MAX - priority, eligible_ms, id)
}

/// Lookup structures derived from the ledger alone; `check_invariants` rebuilds and compares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Indexes {
    pub ready: BTreeMap<TenantId, BTreeMap<JobType, BTreeSet<ReadyKey>>>,
    pub by_status: BTreeSet<(Status, JobId)>,
    /// Jobs per status, indexed by `Status as usize`: kept, so counting is free.
    pub status_counts: [u64; 7],
    /// Jobs by tenant and by job type, for lists that filter on them: one name per tenant
    /// or type, not per job (a million jobs of few tenants cost ids, not strings).
    pub by_tenant: BTreeMap<TenantId, BTreeSet<JobId>>,
    pub by_type: BTreeMap<JobType, BTreeSet<JobId>>,
    pub idempotency: BTreeMap<(TenantId, String), JobId>,
    /// Dependency to the pending jobs still waiting on it.
    pub dependents: BTreeMap<JobId, BTreeSet<JobId>>,
    /// Wake-ups: pending jobs' not-before times and failed jobs' retry times.
    pub timers: BTreeSet<(u64, JobId)>,
    pub lease_expiry: BTreeSet<(u64, JobId)>,
    /// Leased jobs per scope, for throttles and quotas.
    pub active: BTreeMap<Scope, u32>,
    /// Jobs per (tenant, job type) and status, indexed by `Status as usize`.
    pub depth: BTreeMap<(TenantId, JobType), [u32; 7]>,
    pub schedule_due: BTreeSet<(u64, ScheduleId)>,
    /// Sessions by the log time they were last used, oldest first.
    pub session_expiry: BTreeSet<(u64, ClientId)>,
    /// Terminal jobs by status and the log time they ended: eviction's queue.
    pub finished: BTreeSet<(Status, u64, JobId)>,
    /// Archived records by the log time they were archived: the archive's expiry queue.
    pub archive_expiry: BTreeSet<(u64, ArchiveKey)>,
    /// Idempotency keys of archived jobs, which still deduplicate.
    pub archived_keys: BTreeMap<(TenantId, String), JobId>,
    /// Token names by the SHA-256 of their secrets: how a presented token is found.
    pub token_by_hash: BTreeMap<[u8; 32], String>,
    /// Lineage: each artifact's name, URI and digest to the jobs in memory that read it
    /// (their inputs) or wrote it (an attempt's outputs).
    pub artifacts: BTreeMap<String, BTreeSet<(JobId, ArtifactUse)>>,
}

/// How a job used an artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ArtifactUse {
    /// Declared it as an input.
    Read,
    /// An attempt reported it as an output.
    Wrote,
}

/// The index keys of an artifact: its name, URI and digest.
fn artifact_keys(artifact: &Artifact) -> impl Iterator<Item = &str> {
    [
        Some(artifact.name.as_str()),
        Some(artifact.uri.as_str()),
        artifact.digest.as_deref(),
    ]
    .into_iter()
    .flatten()
}

/// Files `id` under `name`, cloning the name only the first time it is seen.
fn file_under<K: Ord + Clone>(index: &mut BTreeMap<K, BTreeSet<JobId>>, name: &K, id: JobId) {
    match index.get_mut(name) {
        Some(ids) => {
            ids.insert(id);
        }
        None => {
            index.insert(name.clone(), BTreeSet::from([id]));
        }
    }
}

/// Takes `id` out from under `name`, and the name with it once nothing is filed there.
fn unfile<K: Ord>(index: &mut BTreeMap<K, BTreeSet<JobId>>, name: &K, id: JobId) {
    if let Some(ids) = index.get_mut(name) {
        ids.remove(&id);
        if ids.is_empty() {
            index.remove(name);
        }
    }
}

impl Indexes {
    /// Gives `spec` the copies of its tenant's and job type's names the indexes already
    /// hold, if any, so that the jobs of one name share one allocation (a name decoded
    /// from an entry is the entry's own; names compare by their text, so nothing else
    /// changes).
    pub(crate) fn share_names(&self, spec: &mut JobSpec) {
        if let Some((tenant, _)) = self.by_tenant.get_key_value(&spec.tenant) {
            spec.tenant = tenant.clone();
        }
        if let Some((job_type, _)) = self.by_type.get_key_value(&spec.job_type) {
            spec.job_type = job_type.clone();
        }
    }

    pub(crate) fn rebuild(ledger: &Ledger) -> Indexes {
        let mut idx = Indexes::default();
        for job in ledger.jobs.values() {
            idx.add_created(job);
            idx.add(job);
            for attempt in &job.attempts {
                idx.add_artifacts(job.id, &attempt.outputs, ArtifactUse::Wrote);
            }
        }
        for schedule in ledger.schedules.values() {
            idx.add_schedule(schedule);
        }
        for (client, session) in &ledger.sessions {
            idx.session_expiry
                .insert((session.last_seen_ms, client.clone()));
        }
        for (key, entry) in &ledger.retained.book {
            idx.add_archived(*key, entry);
        }
        for (name, token) in &ledger.access.tokens {
            idx.token_by_hash.insert(token.hash, name.clone());
        }
        idx
    }

    pub(crate) fn add_archived(&mut self, key: ArchiveKey, entry: &BookEntry) {
        self.archive_expiry.insert((entry.archived_ms, key));
        if let Some(idempotency) = &entry.idempotency {
            self.archived_keys
                .insert(idempotency.clone(), JobId(key.id));
        }
    }

    pub(crate) fn remove_archived(&mut self, key: ArchiveKey, entry: &BookEntry) {
        self.archive_expiry.remove(&(entry.archived_ms, key));
        if let Some(idempotency) = &entry.idempotency {
            if self.archived_keys.get(idempotency) == Some(&JobId(key.id)) {
                self.archived_keys.remove(idempotency);
            }
        }
    }

    /// Removes what `add_created` added, when the job leaves memory.
    pub(crate) fn remove_created(&mut self, job: &Job) {
        let spec = &job.spec;
        if let Some(key) = &spec.idempotency_key {
            let named = (spec.tenant.clone(), key.clone());
            if self.idempotency.get(&named) == Some(&job.id) {
                self.idempotency.remove(&named);
            }
        }
        unfile(&mut self.by_tenant, &spec.tenant, job.id);
        unfile(&mut self.by_type, &spec.job_type, job.id);
        let outputs = job.attempts.iter().flat_map(|a| &a.outputs);
        for (artifact, used) in spec
            .inputs
            .iter()
            .map(|a| (a, ArtifactUse::Read))
            .chain(outputs.map(|a| (a, ArtifactUse::Wrote)))
        {
            for key in artifact_keys(artifact) {
                if let Some(jobs) = self.artifacts.get_mut(key) {
                    jobs.remove(&(job.id, used));
                    if jobs.is_empty() {
                        self.artifacts.remove(key);
                    }
                }
            }
        }
    }

    /// Files `artifacts` as read or written by `job`.
    pub(crate) fn add_artifacts(&mut self, job: JobId, artifacts: &[Artifact], used: ArtifactUse) {
        for artifact in artifacts {
            for key in artifact_keys(artifact) {
                match self.artifacts.get_mut(key) {
                    Some(jobs) => {
                        jobs.insert((job, used));
                    }
                    None => {
                        self.artifacts
                            .insert(key.to_owned(), BTreeSet::from([(job, used)]));
                    }
                }
            }
        }
    }

    /// Adds the entries a job has for its whole life: its idempotency key, tenant and type.
    pub(crate) fn add_created(&mut self, job: &Job) {
        let spec = &job.spec;
        if let Some(key) = &spec.idempotency_key {
            self.idempotency
                .insert((spec.tenant.clone(), key.clone()), job.id);
        }
        file_under(&mut self.by_tenant, &spec.tenant, job.id);
        file_under(&mut self.by_type, &spec.job_type, job.id);
        self.add_artifacts(job.id, &spec.inputs, ArtifactUse::Read);
    }

    /// Adds the entries of `job` in its current state.
    pub(crate) fn add(&mut self, job: &Job) {
        self.index(job, true);
    }

    /// Removes the entries of `job` in its current state.
    pub(crate) fn remove(&mut self, job: &Job) {
        self.index(job, false);
    }

    fn index(&mut self, job: &Job, add: bool) {
        let id = job.id;
        let spec = &job.spec;
        let status = job.status();
        toggle(&mut self.by_status, (status, id), add);
        if let Some(ended) = ended_ms(&job.state) {
            toggle(&mut self.finished, (status, ended, id), add);
        }
        let count = &mut self.status_counts[status as usize];
        *count = match add {
            true => *count + 1,
            false => count
                .checked_sub(1)
                .expect("a job is removed from the status count it was added to"),
        };
        let depth = self
            .depth
            .entry((spec.tenant.clone(), spec.job_type.clone()))
            .or_default();
        if add {
            depth[status as usize] += 1;
        } else {
            depth[status as usize] = depth[status as usize]
                .checked_sub(1)
                .expect("a job is removed from the depth count it was added to");
            if depth.iter().all(|&n| n == 0) {
                self.depth
                    .remove(&(spec.tenant.clone(), spec.job_type.clone()));
            }
        }
        match &job.state {
            JobState::Pending {
                unmet,
                not_before_ms,
            } => {
                if unmet.is_empty() {
                    toggle(&mut self.timers, (*not_before_ms, id), add);
                }
                for dep in unmet {
                    let waiting = self.dependents.entry(*dep).or_default();
                    toggle(waiting, id, add);
                    if waiting.is_empty() {
                        self.dependents.remove(dep);
                    }
                }
            }
            JobState::Ready { eligible_ms } => {
                let key = ready_key(spec.priority, *eligible_ms, id);
                let by_type = self.ready.entry(spec.tenant.clone()).or_default();
                let set = by_type.entry(spec.job_type.clone()).or_default();
                toggle(set, key, add);
                if set.is_empty() {
                    by_type.remove(&spec.job_type);
                    if by_type.is_empty() {
                        self.ready.remove(&spec.tenant);
                    }
                }
            }
            JobState::Leased { lease } => {
                toggle(&mut self.lease_expiry, (lease.until_ms, id), add);
                for scope in Scope::covering(&spec.tenant, &spec.job_type) {
                    let count = self.active.entry(scope.clone()).or_default();
                    if add {
                        *count += 1;
                    } else {
                        *count = count.checked_sub(1).expect(
                            "a leased job is removed from the active count it was added to",
                        );
                    }
                    if *count == 0 {
                        self.active.remove(&scope);
                    }
                }
            }
            JobState::Failed { retry_at_ms, .. } => {
                toggle(&mut self.timers, (*retry_at_ms, id), add);
            }
            JobState::Succeeded { .. }
            | JobState::DeadLettered { .. }
            | JobState::Canceled { .. } => {}
        }
    }

    pub(crate) fn add_schedule(&mut self, schedule: &Schedule) {
        if let (false, Some(next)) = (schedule.paused, schedule.next_fire_ms) {
            self.schedule_due.insert((next, schedule.id.clone()));
        }
    }

    pub(crate) fn remove_schedule(&mut self, schedule: &Schedule) {
        if let Some(next) = schedule.next_fire_ms {
            self.schedule_due.remove(&(next, schedule.id.clone()));
        }
    }
}

fn toggle<T: Ord>(set: &mut BTreeSet<T>, item: T, add: bool) {
    if add {
        set.insert(item);
    } else {
        set.remove(&item);
    }
}

/// Where `apply` is: the log time and the log index of the command being applied.
#[derive(Clone, Copy, Debug)]
pub(crate) struct At {
    pub now_ms: u64,
    pub log_index: u64,
}

/// The whole scheduler: the ledger and its indexes. Replicas that apply the same log reach
/// equal states, which `digest` shows.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub(crate) ledger: Ledger,
    pub(crate) idx: Indexes,
    /// Fault injection for simulations only: when set, a heartbeat or completion is taken
    /// for the job's live lease whatever token it presents. Never set in a real node; not
    /// part of snapshots or the digest. Exists only with the `simulation` feature.
    #[cfg(feature = "simulation")]
    pub(crate) fencing_disabled: bool,
    /// What the store must still do to the archive; drained by `take_archive_ops`.
    pub(crate) archive_ops: Vec<ArchiveOp>,
    /// What applying changed, for watchers, when kept (`keep_journal`); drained by
    /// `take_journal`. Never read by a decision.
    pub(crate) journal: Option<Vec<Note>>,
}

impl State {
    /// An empty scheduler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns fencing off (or back on): a simulation's switch for showing that its checker
    /// catches zombie workers. Compiled only with the `simulation` feature, which only the
    /// simulations turn on.
    #[cfg(feature = "simulation")]
    pub fn set_fencing_disabled_for_simulation(&mut self, disabled: bool) {
        self.fencing_disabled = disabled;
    }

    /// Whether a stale fencing token is taken for the live lease: never, outside a
    /// simulation that switched fencing off.
    pub(crate) fn fencing_disabled(&self) -> bool {
        #[cfg(feature = "simulation")]
        return self.fencing_disabled;
        #[cfg(not(feature = "simulation"))]
        false
    }

    /// Applies one command at log time `now_ms` (clamped so time never goes backwards) from
    /// the log entry at `log_index`. Time-driven work (lease expiry, backoff promotion,
    /// schedule firings) runs first, then the command.
    pub fn apply(&mut self, command: Command, now_ms: u64, log_index: u64) -> Response {
        let now_ms = now_ms.max(self.ledger.now_ms);
        self.ledger.now_ms = now_ms;
        let at = At { now_ms, log_index };
        self.advance_time(at);
        self.execute(command, at)
    }

    /// Applies one command once time-driven work has run.
    pub(crate) fn execute(&mut self, command: Command, at: At) -> Response {
        match command {
            Command::Tick => Ok(Reply::Ticked),
            Command::Enqueue { spec } => self.enqueue(spec, at),
            Command::SubmitPlan { steps, backfill } => self.submit_plan(steps, backfill, at),
            Command::Lease {
                worker,
                job_types,
                max,
                ttl_ms,
            } => self.lease(worker, job_types, max, ttl_ms, at),
            Command::Heartbeat { job_id, lease_id } => self.heartbeat(job_id, lease_id, at),
            Command::Complete {
                job_id,
                lease_id,
                completion,
            } => self.complete(job_id, lease_id, completion, at),
            Command::EnqueueBatch { specs } => self.enqueue_batch(specs, at),
            Command::CompleteBatch { items } => self.complete_batch(items, at),
            Command::Cancel { job_id, stamp } => self.cancel(job_id, stamp, at),
            Command::Replay { job_id, stamp } => self.replay(job_id, stamp, at),
            Command::SetQuota {
                tenant,
                job_type,
                max_active,
                max_per_hour,
                burst,
                stamp,
            } => self.set_quota(tenant, job_type, max_active, max_per_hour, burst, stamp, at),
            Command::Throttle {
                scope,
                max_concurrent,
                stamp,
            } => self.throttle(scope, max_concurrent, stamp, at),
            Command::PauseSource { scope, stamp } => self.pause_source(scope, stamp, at),
            Command::ResumeSource { scope, stamp } => self.resume_source(scope, stamp, at),
            Command::ConfigureBreaker {
                job_type,
                config,
                stamp,
            } => self.configure_breaker(job_type, config, stamp, at),
            Command::ResetBreaker { job_type, stamp } => self.reset_breaker(job_type, stamp, at),
            Command::SetMaintenance { enabled, stamp } => self.set_maintenance(enabled, stamp, at),
            Command::CreateSchedule {
                id,
                template,
                cadence,
                catch_up,
                start_ms,
                end_ms,
                stamp,
            } => {
                let new = crate::operate::NewSchedule {
                    id,
                    template,
                    cadence,
                    catch_up,
                    start_ms,
                    end_ms,
                };
                self.create_schedule(new, stamp, at)
            }
            Command::PauseSchedule { id, paused, stamp } => {
                self.pause_schedule(id, paused, stamp, at)
            }
            Command::DeleteSchedule { id, stamp } => self.delete_schedule(id, stamp, at),
            Command::SetRetention { change, stamp } => self.set_retention(change, stamp, at),
            Command::CreateToken {
                spec,
                bootstrap,
                stamp,
            } => self.create_token(spec, bootstrap, stamp, at),
            Command::RevokeToken { name, stamp } => self.revoke_token(name, stamp, at),
            Command::LeaseWithin {
                worker,
                job_types,
                max,
                ttl_ms,
                tenants,
            } => self.lease_within(worker, job_types, max, ttl_ms, tenants, at),
            Command::Traced {
                traceparents,
                command,
            } => self.traced(traceparents, *command, at),
            Command::Backfill {
                schedule,
                fire_times,
                stamp,
            } => self.backfill(schedule, fire_times, stamp, at),
            Command::CancelPlan { plan_id, stamp } => self.cancel_plan(plan_id, stamp, at),
            Command::AcknowledgeIncident { incident, stamp } => {
                self.acknowledge_incident(incident, stamp, at)
            }
            Command::ResolveIncident { incident, stamp } => {
                self.resolve_incident(incident, stamp, at)
            }
            Command::NameCluster { id } => {
                check_cluster_id(&id)?;
                self.ledger.cluster_id.get_or_insert(id);
                Ok(Reply::Done)
            }
            Command::ReleaseLease {
                job_id,
                lease_id,
                stamp,
            } => self.release_lease(job_id, lease_id, stamp, at),
            Command::BlockTenant {
                tenant,
                blocked,
                stamp,
            } => self.block_tenant(tenant, blocked, stamp, at),
            Command::NoteMembership { change, stamp } => {
                crate::submit::check_stamp(&stamp)?;
                crate::validate::check_membership(&change)?;
                self.govern(Some(stamp), GovernanceChange::Membership { change }, at);
                Ok(Reply::Done)
            }
        }
    }

    /// Runs what log time has made due: expired leases first (their retries may fall due
    /// at once), then wake-ups, then schedule firings.
    fn advance_time(&mut self, at: At) {
        while let Some(&(until, id)) = self.idx.lease_expiry.first() {
            if until > at.now_ms {
                break;
            }
            self.expire_lease(id, at);
        }
        while let Some(&(due, id)) = self.idx.timers.first() {
            if due > at.now_ms {
                break;
            }
            self.wake(id, due, at);
        }
        while let Some((due, id)) = self.idx.schedule_due.first().cloned() {
            if due > at.now_ms {
                break;
            }
            self.fire_schedule(&id, at);
        }
        self.expire_sessions(at.now_ms);
        self.retire(at);
    }

    /// A pending job's not-before time or a failed job's backoff has passed.
    fn wake(&mut self, id: JobId, due_ms: u64, at: At) {
        let Some(job) = self.ledger.jobs.get(&id) else {
            self.idx.timers.remove(&(due_ms, id));
            return;
        };
        if matches!(
            job.state,
            JobState::Pending { .. } | JobState::Failed { .. }
        ) {
            self.set_state(
                id,
                JobState::Ready {
                    eligible_ms: due_ms,
                },
                at,
                JobEventKind::Ready,
            );
        } else {
            self.idx.timers.remove(&(due_ms, id));
        }
    }

    /// Moves a job to a new state, keeping every index in step, and records the event.
    /// Every caller found the job in the ledger or in an index derived from it, so a
    /// missing job is a bug in the scheduler, never a client's doing.
    pub(crate) fn set_state(&mut self, id: JobId, state: JobState, at: At, event: JobEventKind) {
        let job = self
            .ledger
            .jobs
            .get_mut(&id)
            .map(Arc::make_mut)
            .expect("set_state is called only for a job in the ledger");
        self.idx.remove(job);
        job.state = state;
        self.idx.add(job);
        record(job, &mut self.journal, at, event);
    }

    /// Appends to the cluster-wide governance history.
    pub(crate) fn govern(&mut self, stamp: Option<Stamp>, change: GovernanceChange, at: At) {
        if let Some(journal) = &mut self.journal {
            journal.push(Note::Governance {
                change: change.clone(),
                stamp: stamp.clone(),
                at_ms: at.now_ms,
            });
        }
        self.ledger.governance.push(GovernanceEvent {
            log_index: at.log_index,
            at_ms: at.now_ms,
            stamp,
            change,
        });
    }

    /// The cluster's name, once a leader has given it one (`NameCluster`).
    pub fn cluster_id(&self) -> Option<&str> {
        self.ledger.cluster_id.as_deref()
    }

    /// Log time of the latest applied command.
    pub fn now_ms(&self) -> u64 {
        self.ledger.now_ms
    }

    /// Starts (or stops) keeping the journal of what applying changes: the notes of each
    /// command for `take_journal`. Off by default, so that nothing grows where nobody
    /// drains it.
    pub fn keep_journal(&mut self, keep: bool) {
        self.journal = keep.then(Vec::new);
    }

    /// What applying changed since the last call, in order; empty when not kept.
    pub fn take_journal(&mut self) -> Vec<Note> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

/// Appends an event to a job's history, and notes it in `journal` when one is kept.
pub(crate) fn record(job: &mut Job, journal: &mut Option<Vec<Note>>, at: At, kind: JobEventKind) {
    if let Some(journal) = journal {
        let latest = job.attempts.last();
        journal.push(Note::Job {
            job: job.id,
            tenant: job.spec.tenant.clone(),
            job_type: job.spec.job_type.clone(),
            status: job.status(),
            event: kind.clone(),
            attempts: job.attempts.len() as u32,
            holder: latest.map(|a| (a.worker.clone(), a.lease_id)),
            created_ms: job.created_ms,
            started_ms: latest.map(|a| a.started_ms),
            at_ms: at.now_ms,
        });
    }
    job.history.push(JobEvent {
        log_index: at.log_index,
        at_ms: at.now_ms,
        kind,
    });
}

/// A cluster id as `NameCluster` takes it: 32 lowercase hex digits (128 random bits).
pub(crate) fn check_cluster_id(id: &str) -> Result<(), crate::SchedulerError> {
    if id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(crate::SchedulerError::invalid(
            "cluster_id",
            "must be 32 lowercase hex digits",
        ))
    }
}
