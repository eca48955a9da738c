//! Audit bundles: the jobs created in a window of log time (in memory and archived), their
//! history, the quota, throttle, pause and breaker changes, the incidents and the replays,
//! as chained JSON lines with a manifest signed by the node's audit key (`format`).
//!
//! A bundle is made from one replica at one applied index: two nodes at the same index give
//! the same bytes (ed25519 signatures are deterministic too). Payloads are not exported,
//! only their SHA-256 and size: a bundle leaves the cluster, the payloads need not.

pub mod dsse;
pub mod format;

use crate::status::{self, invalid};
use format::{ChainedFile, Files, Manifest, FILES, FORMAT};
use rota_raft::Applied;
use rota_state_machine::{
    ArchiveKey, ArchiveKind, Archived, ArchivedItem, AttemptOutcome, GovernanceChange,
    GovernanceEvent, Incident, Job, JobId, Scope,
};
use serde::Serialize;
use std::collections::BTreeMap;
use tonic::Status;

/// What an export covers.
pub struct Window {
    /// Jobs created at or after this log time.
    pub since_ms: u64,
    /// And before this one.
    pub until_ms: u64,
    /// Only this tenant's jobs (and the changes that name it or no tenant).
    pub tenant: Option<String>,
}

/// The most bytes a bundle may have: it travels in one message.
pub const MAX_BUNDLE_BYTES: usize = 48 * 1024 * 1024;

#[derive(Serialize)]
struct ArtifactLine<'a> {
    name: &'a str,
    uri: &'a str,
    digest: Option<&'a str>,
}

#[derive(Serialize)]
struct AttemptLine<'a> {
    number: u32,
    worker: &'a str,
    lease_id: u64,
    started_ms: u64,
    ended_ms: Option<u64>,
    outcome: &'static str,
    error: Option<&'a str>,
    outputs: Vec<ArtifactLine<'a>>,
}

#[derive(Serialize)]
struct JobLine<'a> {
    job_id: u64,
    tenant: &'a str,
    project: &'a str,
    job_type: &'a str,
    priority: u16,
    status: &'static str,
    created_ms: u64,
    idempotency_key: Option<&'a str>,
    correlation_id: Option<&'a str>,
    payload_sha256: String,
    payload_bytes: usize,
    depends_on: Vec<u64>,
    inputs: Vec<ArtifactLine<'a>>,
    backfill_reason: Option<&'a str>,
    backfill_ticket: Option<&'a str>,
    plan_id: Option<u64>,
    plan_step: Option<&'a str>,
    schedule: Option<&'a str>,
    schedule_fire_ms: Option<u64>,
    replay_of: Option<u64>,
    attempts: Vec<AttemptLine<'a>>,
    archived: bool,
}

#[derive(Serialize)]
struct HistoryLine<'a> {
    job_id: u64,
    log_index: u64,
    at_ms: u64,
    kind: &'static str,
    detail: &'a str,
}

#[derive(Serialize)]
struct ChangeLine<'a> {
    log_index: u64,
    at_ms: u64,
    kind: &'static str,
    actor: Option<&'a str>,
    reason: Option<&'a str>,
    ticket: Option<&'a str>,
    detail: String,
}

#[derive(Serialize)]
struct IncidentLine<'a> {
    id: u64,
    job_type: &'a str,
    opened_ms: u64,
    opened_index: u64,
    failure_rate_percent: u8,
    resolved_ms: Option<u64>,
    resolved_by: Option<&'a str>,
    resolved_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct ReplayLine<'a> {
    original: u64,
    replay: u64,
    original_payload_sha256: Option<String>,
    replay_payload_sha256: String,
    original_status: Option<&'static str>,
    replay_status: &'static str,
    replayed_by: Option<&'a str>,
    note: Option<&'a str>,
}

fn artifacts(list: &[rota_state_machine::Artifact]) -> Vec<ArtifactLine<'_>> {
    list.iter()
        .map(|a| ArtifactLine {
            name: &a.name,
            uri: &a.uri,
            digest: a.digest.as_deref(),
        })
        .collect()
}

fn outcome(outcome: Option<&AttemptOutcome>) -> &'static str {
    match outcome {
        None => "running",
        Some(AttemptOutcome::Succeeded) => "succeeded",
        Some(AttemptOutcome::Failed { .. }) => "failed",
        Some(AttemptOutcome::TimedOut) => "timed_out",
        Some(AttemptOutcome::Canceled { .. }) => "canceled",
        Some(AttemptOutcome::Released { .. }) => "released",
    }
}

fn job_line(job: &Job, archived: bool) -> JobLine<'_> {
    let spec = &job.spec;
    JobLine {
        job_id: job.id.0,
        tenant: spec.tenant.as_str(),
        project: &spec.project,
        job_type: spec.job_type.as_str(),
        priority: spec.priority,
        status: job.status().as_str(),
        created_ms: job.created_ms,
        idempotency_key: spec.idempotency_key.as_deref(),
        correlation_id: spec.correlation_id.as_deref(),
        payload_sha256: job.payload_digest_hex(),
        payload_bytes: spec.payload.len(),
        depends_on: spec.depends_on.iter().map(|d| d.0).collect(),
        inputs: artifacts(&spec.inputs),
        backfill_reason: spec.backfill.as_ref().map(|b| b.reason.as_str()),
        backfill_ticket: spec.backfill.as_ref().map(|b| b.ticket.as_str()),
        plan_id: job.origin.plan.as_ref().map(|(p, _)| p.0),
        plan_step: job.origin.plan.as_ref().map(|(_, step)| step.as_str()),
        schedule: job.origin.schedule.as_ref().map(|(s, _)| s.as_str()),
        schedule_fire_ms: job.origin.schedule.as_ref().map(|(_, at)| *at),
        replay_of: job.origin.replay_of.map(|j| j.0),
        attempts: job
            .attempts
            .iter()
            .map(|a| AttemptLine {
                number: a.number,
                worker: a.worker.as_str(),
                lease_id: a.lease_id.0,
                started_ms: a.started_ms,
                ended_ms: a.ended_ms,
                outcome: outcome(a.outcome.as_ref()),
                error: match &a.outcome {
                    Some(AttemptOutcome::Failed { error, .. }) => Some(error.as_str()),
                    Some(AttemptOutcome::Canceled { reason })
                    | Some(AttemptOutcome::Released { reason }) => Some(reason.as_str()),
                    _ => None,
                },
                outputs: artifacts(&a.outputs),
            })
            .collect(),
        archived,
    }
}

/// Whether a governance change goes in `throttles.jsonl`, and names the tenant asked for
/// (or no tenant).
fn throttling(change: &GovernanceChange, tenant: Option<&str>) -> bool {
    let names = |scope: &Scope| {
        tenant.is_none()
            || scope.tenant.is_none()
            || scope.tenant.as_ref().map(|t| t.as_str()) == tenant
    };
    match change {
        GovernanceChange::QuotaSet { scope, .. }
        | GovernanceChange::Throttled { scope, .. }
        | GovernanceChange::SourcePaused { scope }
        | GovernanceChange::SourceResumed { scope } => names(scope),
        GovernanceChange::BreakerConfigured { .. }
        | GovernanceChange::BreakerTripped { .. }
        | GovernanceChange::BreakerReset { .. } => true,
        _ => false,
    }
}

/// Every archived record of `kind` archived at or after `since_ms` (what a window starting
/// there can hold: a record is archived after it happened), read back whole; a record the
/// book lists that this node's archive lacks or holds damaged fails the export rather than
/// leave a signed bundle short.
fn archived_since(
    applied: &Applied,
    kind: ArchiveKind,
    since_ms: u64,
    mut visit: impl FnMut(ArchivedItem) -> Result<(), Status>,
) -> Result<(), Status> {
    let keys: Vec<ArchiveKey> = applied
        .state
        .archived_entries(kind)
        .filter(|(_, entry)| entry.archived_ms >= since_ms)
        .map(|(key, _)| key)
        .collect();
    for key in keys {
        match applied.archived(key) {
            Ok(Some(archived)) => visit(archived.item)?,
            Ok(None) => {}
            Err(e) => {
                return Err(status::with_kind(
                    tonic::Code::Unavailable,
                    "archive_damaged",
                    format!(
                        "{e}: this node cannot make a whole bundle; export through another node"
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// A bundle's files as they fill, and the byte budget they draw on.
struct Writing {
    jobs: ChainedFile,
    history: ChainedFile,
    range: Option<(u64, u64)>,
    /// (original, replay, the replay's payload digest, its status), in the jobs' order.
    replays: Vec<(JobId, JobId, String, &'static str)>,
}

impl Writing {
    fn cover(&mut self, index: u64) {
        self.range = Some(match self.range {
            None => (index, index),
            Some((low, high)) => (low.min(index), high.max(index)),
        });
    }

    fn job(&mut self, job: &Job, archived: bool) -> Result<(), Status> {
        self.jobs.push(&job_line(job, archived)).map_err(encoding)?;
        for event in &job.history {
            let (kind, detail) = crate::convert::event_out(&event.kind);
            self.cover(event.log_index);
            self.history
                .push(&HistoryLine {
                    job_id: job.id.0,
                    log_index: event.log_index,
                    at_ms: event.at_ms,
                    kind,
                    detail: &detail,
                })
                .map_err(encoding)?;
        }
        if let Some(original) = job.origin.replay_of {
            self.replays.push((
                original,
                job.id,
                job.payload_digest_hex(),
                job.status().as_str(),
            ));
        }
        if self.jobs.len() + self.history.len() > MAX_BUNDLE_BYTES {
            return Err(too_big());
        }
        Ok(())
    }
}

fn encoding(e: serde_json::Error) -> Status {
    status::internal(format!("encoding the bundle: {e}"))
}

fn too_big() -> Status {
    status::over_budget(
        "audit bundle",
        "the window holds more than one bundle carries (48 MiB): export shorter windows",
    )
}

/// The bundle of `window` from `applied`, unsigned (the manifest and signature are added by
/// `format::seal`). Jobs come archived first, then those in memory, each by id: the same
/// order on every replica at the same applied index.
pub fn bundle(applied: &Applied, window: &Window) -> Result<(Files, Manifest), Status> {
    if window.until_ms <= window.since_ms {
        return Err(invalid("until_ms", "must be after since_ms"));
    }
    let in_window = |job: &Job| {
        job.created_ms >= window.since_ms
            && job.created_ms < window.until_ms
            && window
                .tenant
                .as_deref()
                .is_none_or(|t| job.spec.tenant.as_str() == t)
    };
    let in_time = |at: u64| at >= window.since_ms && at < window.until_ms;
    let mut writing = Writing {
        jobs: ChainedFile::default(),
        history: ChainedFile::default(),
        range: None,
        replays: Vec::new(),
    };
    archived_since(
        applied,
        ArchiveKind::Job,
        window.since_ms,
        |item| match item {
            ArchivedItem::Job(job) if in_window(&job) => writing.job(&job, true),
            _ => Ok(()),
        },
    )?;
    for job in applied.state.jobs().filter(|j| in_window(j)) {
        writing.job(job, false)?;
    }

    let mut governance: Vec<GovernanceEvent> = Vec::new();
    archived_since(applied, ArchiveKind::Governance, window.since_ms, |item| {
        if let ArchivedItem::Governance(event) = item {
            governance.push(event);
        }
        Ok(())
    })?;
    governance.extend(applied.state.governance_history().iter().cloned());
    governance.retain(|e| in_time(e.at_ms));
    let mut throttles = ChainedFile::default();
    let mut replay_notes: BTreeMap<(u64, u64), &GovernanceEvent> = BTreeMap::new();
    for event in &governance {
        if let GovernanceChange::JobReplayed { job, replay } = &event.change {
            replay_notes.insert((job.0, replay.0), event);
        }
        if !throttling(&event.change, window.tenant.as_deref()) {
            continue;
        }
        writing.cover(event.log_index);
        let stamp = event.stamp.as_ref();
        throttles
            .push(&ChangeLine {
                log_index: event.log_index,
                at_ms: event.at_ms,
                kind: event.change.kind(),
                actor: stamp.map(|s| s.actor.as_str()),
                reason: stamp.map(|s| s.reason.as_str()),
                ticket: stamp.and_then(|s| s.ticket.as_deref()),
                detail: format!("{:?}", event.change),
            })
            .map_err(encoding)?;
    }

    let mut opened: Vec<Incident> = Vec::new();
    archived_since(applied, ArchiveKind::Incident, window.since_ms, |item| {
        if let ArchivedItem::Incident(incident) = item {
            opened.push(incident);
        }
        Ok(())
    })?;
    opened.extend(applied.state.incidents(false).into_iter().cloned());
    opened.retain(|i| in_time(i.opened_ms));
    opened.sort_by_key(|i| i.id);
    opened.dedup_by_key(|i| i.id);
    let mut incidents = ChainedFile::default();
    for incident in &opened {
        writing.cover(incident.opened_index);
        let resolved = incident.resolved.as_ref();
        incidents
            .push(&IncidentLine {
                id: incident.id.0,
                job_type: incident.job_type.as_str(),
                opened_ms: incident.opened_ms,
                opened_index: incident.opened_index,
                failure_rate_percent: incident.failure_rate_percent,
                resolved_ms: resolved.map(|(t, _)| *t),
                resolved_by: resolved.map(|(_, s)| s.actor.as_str()),
                resolved_reason: resolved.map(|(_, s)| s.reason.as_str()),
            })
            .map_err(encoding)?;
    }

    let mut replays = ChainedFile::default();
    for (original, replay, replay_digest, replay_status) in &writing.replays {
        let found: Option<(String, &'static str)> = match applied.state.job(*original) {
            Some(job) => Some((job.payload_digest_hex(), job.status().as_str())),
            None => match applied.archived(ArchiveKey::job(*original)) {
                Ok(Some(Archived {
                    item: ArchivedItem::Job(job),
                    ..
                })) => Some((job.payload_digest_hex(), job.status().as_str())),
                Ok(_) => None,
                Err(e) => return Err(status::archive(&e)),
            },
        };
        let note = replay_notes
            .get(&(original.0, replay.0))
            .and_then(|e| e.stamp.as_ref());
        replays
            .push(&ReplayLine {
                original: original.0,
                replay: replay.0,
                original_payload_sha256: found.as_ref().map(|(digest, _)| digest.clone()),
                replay_payload_sha256: replay_digest.clone(),
                original_status: found.as_ref().map(|(_, status)| *status),
                replay_status,
                replayed_by: note.map(|s| s.actor.as_str()),
                note: note.map(|s| s.reason.as_str()),
            })
            .map_err(encoding)?;
    }

    let range = writing.range;
    let all = [writing.jobs, writing.history, throttles, incidents, replays];
    let (files, entries, counts) = format::assemble(FILES.into_iter().zip(all).collect());
    if files.values().map(Vec::len).sum::<usize>() > MAX_BUNDLE_BYTES {
        return Err(too_big());
    }
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        since_ms: window.since_ms,
        until_ms: window.until_ms,
        tenant: window.tenant.clone(),
        cluster_id: applied.state.cluster_id().map(str::to_owned),
        voters: applied.membership.membership().voter_ids().collect(),
        applied_index: applied.last_applied.map_or(0, |id| id.index),
        log_time_ms: applied.state.now_ms(),
        first_log_index: range.map(|(low, _)| low),
        last_log_index: range.map(|(_, high)| high),
        counts,
        files: entries,
    };
    Ok((files, manifest))
}

/// What a signed job's payload holds: the job's line as a bundle's `jobs.jsonl` has it
/// (without `prev`), and the replica's applied index, log time and voters it was read at.
#[derive(Serialize)]
struct JobStatement<'a> {
    format: &'static str,
    cluster_id: Option<&'a str>,
    applied_index: u64,
    log_time_ms: u64,
    voters: Vec<u64>,
    job: JobLine<'a>,
}

/// Job `id`'s signed-answer payload (`dsse::JOB_STATEMENT`), from memory or the archive;
/// none for a job this replica does not hold.
pub fn job_statement(applied: &Applied, id: JobId) -> Result<Option<Vec<u8>>, Status> {
    let statement = |job: &Job, archived: bool| {
        let statement = JobStatement {
            format: dsse::JOB_STATEMENT,
            cluster_id: applied.state.cluster_id(),
            applied_index: applied.last_applied.map_or(0, |id| id.index),
            log_time_ms: applied.state.now_ms(),
            voters: applied.membership.membership().voter_ids().collect(),
            job: job_line(job, archived),
        };
        serde_json::to_vec(&statement).map(Some).map_err(encoding)
    };
    if let Some(job) = applied.state.job(id) {
        return statement(job, false);
    }
    match applied.archived(ArchiveKey::job(id)) {
        Ok(Some(Archived {
            item: ArchivedItem::Job(job),
            ..
        })) => statement(&job, true),
        Ok(_) => Ok(None),
        Err(e) => Err(status::archive(&e)),
    }
}
