//! Audit bundles: the jobs created in a window of log time (in memory and archived), their
//! history, the quota, throttle, pause and breaker changes, the incidents and the replays,
//! as chained JSON lines with a manifest signed by the node's audit key (`format`).
//!
//! A bundle is made from one replica at one applied index: two nodes at the same index give
//! the same bytes (ed25519 signatures are deterministic too). Payloads are not exported,
//! only their SHA-256 and size: a bundle leaves the cluster, the payloads need not.

pub mod format;

use crate::status::{self, invalid};
use format::{ChainedFile, Files, Manifest, FILES, FORMAT};
use rota_raft::Applied;
use rota_state_machine::{
    ArchiveKind, ArchivedItem, AttemptOutcome, GovernanceChange, GovernanceEvent, Incident, Job,
    JobId, Scope,
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
        payload_sha256: format::sha256_hex(&spec.payload),
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
                    Some(AttemptOutcome::Canceled { reason }) => Some(reason.as_str()),
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

/// Everything a bundle draws from, read from one replica.
struct Gathered {
    jobs: BTreeMap<JobId, (Job, bool)>,
    governance: Vec<GovernanceEvent>,
    incidents: Vec<Incident>,
}

fn gather(applied: &Applied, window: &Window) -> Result<Gathered, Status> {
    let in_window = |job: &Job| {
        job.created_ms >= window.since_ms
            && job.created_ms < window.until_ms
            && window
                .tenant
                .as_deref()
                .is_none_or(|t| job.spec.tenant.as_str() == t)
    };
    let mut jobs = BTreeMap::new();
    let mut bytes = 0;
    let mut take = |job: Job, archived: bool| -> Result<(), Status> {
        bytes += 512 + job.spec.payload.len().min(64) + job.history.len() * 160;
        if bytes > MAX_BUNDLE_BYTES {
            return Err(status::over_budget(
                "audit bundle",
                "the window holds more than one bundle carries (48 MiB): export shorter windows",
            ));
        }
        jobs.insert(job.id, (job, archived));
        Ok(())
    };
    let mut failed = None;
    applied
        .scan_archived(ArchiveKind::Job, 0, |_, archived| {
            if let Some(ArchivedItem::Job(job)) = archived.map(|a| a.item) {
                if in_window(&job) {
                    if let Err(e) = take(*job, true) {
                        failed = Some(e);
                        return false;
                    }
                }
            }
            true
        })
        .map_err(|e| status::archive(&e))?;
    if let Some(e) = failed {
        return Err(e);
    }
    for job in applied.state.jobs().filter(|j| in_window(j)) {
        take(job.clone(), false)?;
    }
    let mut governance = Vec::new();
    applied
        .scan_archived(ArchiveKind::Governance, 0, |_, archived| {
            if let Some(ArchivedItem::Governance(event)) = archived.map(|a| a.item) {
                governance.push(event);
            }
            true
        })
        .map_err(|e| status::archive(&e))?;
    governance.extend(applied.state.governance_history().iter().cloned());
    let mut incidents = Vec::new();
    applied
        .scan_archived(ArchiveKind::Incident, 0, |_, archived| {
            if let Some(ArchivedItem::Incident(incident)) = archived.map(|a| a.item) {
                incidents.push(incident);
            }
            true
        })
        .map_err(|e| status::archive(&e))?;
    incidents.extend(applied.state.incidents(false).into_iter().cloned());
    incidents.sort_by_key(|i| i.id);
    incidents.dedup_by_key(|i| i.id);
    Ok(Gathered {
        jobs,
        governance,
        incidents,
    })
}

/// The bundle of `window` from `applied`, unsigned (the manifest and signature are added by
/// `format::seal`).
pub fn bundle(applied: &Applied, window: &Window) -> Result<(Files, Manifest), Status> {
    if window.until_ms <= window.since_ms {
        return Err(invalid("until_ms", "must be after since_ms"));
    }
    let gathered = gather(applied, window)?;
    let json = |e: serde_json::Error| status::internal(format!("encoding the bundle: {e}"));
    let mut range: Option<(u64, u64)> = None;
    let mut cover = |index: u64| {
        range = Some(match range {
            None => (index, index),
            Some((low, high)) => (low.min(index), high.max(index)),
        });
    };

    let mut jobs = ChainedFile::default();
    let mut history = ChainedFile::default();
    for (job, archived) in gathered.jobs.values() {
        jobs.push(&job_line(job, *archived)).map_err(json)?;
        for event in &job.history {
            let (kind, detail) = crate::convert::event_out(&event.kind);
            cover(event.log_index);
            history
                .push(&HistoryLine {
                    job_id: job.id.0,
                    log_index: event.log_index,
                    at_ms: event.at_ms,
                    kind,
                    detail: &detail,
                })
                .map_err(json)?;
        }
    }

    let mut throttles = ChainedFile::default();
    let in_time = |at: u64| at >= window.since_ms && at < window.until_ms;
    let mut replay_notes: BTreeMap<(u64, u64), &GovernanceEvent> = BTreeMap::new();
    for event in &gathered.governance {
        if let GovernanceChange::JobReplayed { job, replay } = &event.change {
            replay_notes.insert((job.0, replay.0), event);
        }
        if !in_time(event.at_ms) || !throttling(&event.change, window.tenant.as_deref()) {
            continue;
        }
        cover(event.log_index);
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
            .map_err(json)?;
    }

    let mut incidents = ChainedFile::default();
    for incident in gathered.incidents.iter().filter(|i| in_time(i.opened_ms)) {
        cover(incident.opened_index);
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
            .map_err(json)?;
    }

    let mut replays = ChainedFile::default();
    for (job, _) in gathered.jobs.values() {
        let Some(original) = job.origin.replay_of else {
            continue;
        };
        let found = gathered
            .jobs
            .get(&original)
            .map(|(j, _)| j.clone())
            .or_else(|| {
                applied.state.job(original).cloned().or_else(|| {
                    match applied.archived(rota_state_machine::ArchiveKey::job(original)) {
                        Ok(Some(rota_state_machine::Archived {
                            item: ArchivedItem::Job(job),
                            ..
                        })) => Some(*job),
                        _ => None,
                    }
                })
            });
        let note = replay_notes
            .get(&(original.0, job.id.0))
            .and_then(|e| e.stamp.as_ref());
        replays
            .push(&ReplayLine {
                original: original.0,
                replay: job.id.0,
                original_payload_sha256: found
                    .as_ref()
                    .map(|j| format::sha256_hex(&j.spec.payload)),
                replay_payload_sha256: format::sha256_hex(&job.spec.payload),
                original_status: found.as_ref().map(|j| j.status().as_str()),
                replay_status: job.status().as_str(),
                replayed_by: note.map(|s| s.actor.as_str()),
                note: note.map(|s| s.reason.as_str()),
            })
            .map_err(json)?;
    }

    let mut files = Files::new();
    let mut entries = Vec::new();
    let mut counts = BTreeMap::new();
    for (name, file) in FILES
        .into_iter()
        .zip([jobs, history, throttles, incidents, replays])
    {
        let (entry, bytes) = file.finish(name);
        counts.insert(name.trim_end_matches(".jsonl").to_owned(), entry.lines);
        entries.push(entry);
        files.insert(name.to_owned(), bytes);
    }
    let total: usize = files.values().map(Vec::len).sum();
    if total > MAX_BUNDLE_BYTES {
        return Err(status::over_budget(
            "audit bundle",
            format!("the window makes {total} bytes, more than one bundle carries (48 MiB): export shorter windows"),
        ));
    }
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        since_ms: window.since_ms,
        until_ms: window.until_ms,
        tenant: window.tenant.clone(),
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
