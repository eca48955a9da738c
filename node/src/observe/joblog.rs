//! The job log: one structured event per job transition and per governance change, under
//! the targets `rota::job` and `rota::governance`, with the fields an operator filters on
//! (`jobId`, `jobType`, `tenant`, `workerId`, `leaseId`, `status`, `attempt`, `node`,
//! `logIndex`). Every node applies every entry; by default only the node that proposed an
//! entry (its leader then) logs it, so a cluster tells each transition once. A node does not
//! log again what it replays as it restarts (entries up to its log's end at start).
//!
//! The log is written by a task fed by a tap on the node's event stream (which alone sees
//! heartbeats), off the apply path; should it fall 16,384 entries behind it skips entries
//! and logs how many events it skipped. The same task raises incidents (`incidents.rs`)
//! from the entries this node proposed.

use super::incidents::{IncidentSettings, Incidents};
use rota_raft::{Event, EventBody, NodeId, RaftNode};
use rota_state_machine::{AttemptOutcome, JobEventKind, Note};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Which entries a node logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JobLog {
    /// Those this node proposed as leader: each transition once across the cluster.
    #[default]
    Leader,
    /// Every entry this node applies (each transition once per node).
    All,
    /// None.
    Off,
}

impl std::str::FromStr for JobLog {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "leader" => Ok(Self::Leader),
            "all" => Ok(Self::All),
            "off" => Ok(Self::Off),
            other => Err(format!(
                "unknown job log mode {other:?}: leader, all or off"
            )),
        }
    }
}

/// Entries waiting for the job log's task; past this it skips entries, and says so.
const BACKLOG: usize = 16_384;

/// Starts the job log and the incidents of `raft`'s node, until `stop`.
pub fn start(
    raft: &RaftNode,
    mode: JobLog,
    incidents: IncidentSettings,
    stop: watch::Receiver<bool>,
) {
    let me = raft.id();
    let boot_index = raft.boot_index();
    // A tap sees every entry's events, heartbeats included (the event ring does not keep
    // those); what it hands over is formatted off the apply path.
    let (sender, entries) = mpsc::channel::<Vec<Arc<Event>>>(BACKLOG);
    let skipped = Arc::new(AtomicU64::new(0));
    let dropped = skipped.clone();
    raft.events().tap(Arc::new(move |events: &[Arc<Event>]| {
        if events.first().is_none_or(|e| e.index <= boot_index) {
            return;
        }
        if sender.try_send(events.to_vec()).is_err() {
            dropped.fetch_add(events.len() as u64, Ordering::Relaxed);
        }
    }));
    let mut incidents = Incidents::start(incidents, stop.clone());
    let watch = move |event: &Event| {
        let proposed = event.leader == me;
        if mode == JobLog::All || (mode == JobLog::Leader && proposed) {
            log(event, me);
        }
        if proposed {
            incidents.see(event, me);
        }
    };
    tokio::spawn(follow(entries, skipped, watch, stop));
}

async fn follow(
    mut entries: mpsc::Receiver<Vec<Arc<Event>>>,
    skipped: Arc<AtomicU64>,
    mut watch: impl FnMut(&Event),
    mut stop: watch::Receiver<bool>,
) {
    let mut reported = 0;
    loop {
        let events = tokio::select! {
            events = entries.recv() => match events {
                Some(events) => events,
                None => return,
            },
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let now = skipped.load(Ordering::Relaxed);
        if now > reported {
            tracing::warn!(
                target: "rota::job",
                skipped = now - reported,
                "the job log fell behind and skipped events"
            );
            reported = now;
        }
        for event in &events {
            watch(event);
        }
    }
}

/// The name a job event is logged under, or none for those not logged on their own (a job
/// becoming ready; an attempt's success, which `succeeded` tells).
fn transition(kind: &JobEventKind) -> Option<&'static str> {
    Some(match kind {
        JobEventKind::Enqueued => "enqueued",
        JobEventKind::Leased { .. } => "leased",
        JobEventKind::AttemptEnded { outcome, .. } => match outcome {
            AttemptOutcome::Failed { .. } => "failed",
            AttemptOutcome::TimedOut => "lease_expired",
            AttemptOutcome::Canceled { .. } => "attempt_canceled",
            AttemptOutcome::Released { .. } => "lease_released",
            AttemptOutcome::Succeeded => return None,
        },
        JobEventKind::RetryScheduled { .. } => "retried",
        JobEventKind::Succeeded => "succeeded",
        JobEventKind::DeadLettered { .. } => "dead_lettered",
        JobEventKind::Canceled { .. } => "canceled",
        JobEventKind::Replayed { .. } => "replayed",
        JobEventKind::Ready => return None,
    })
}

fn log(event: &Event, me: NodeId) {
    let EventBody::Note(note) = &event.body else {
        return;
    };
    match note {
        Note::Job {
            job,
            tenant,
            job_type,
            status,
            event: kind,
            attempts,
            holder,
            at_ms,
            ..
        } => {
            let Some(name) = transition(kind) else {
                return;
            };
            let (error, retry_at, reason, replay) = match kind {
                JobEventKind::AttemptEnded {
                    outcome: AttemptOutcome::Failed { error, .. },
                    ..
                } => (Some(error.as_str()), None, None, None),
                JobEventKind::AttemptEnded {
                    outcome: AttemptOutcome::Canceled { reason },
                    ..
                } => (None, None, Some(reason.as_str()), None),
                JobEventKind::DeadLettered { error } => (Some(error.as_str()), None, None, None),
                JobEventKind::RetryScheduled { retry_at_ms } => {
                    (None, Some(*retry_at_ms), None, None)
                }
                JobEventKind::Canceled { reason } => (None, None, Some(reason.as_str()), None),
                JobEventKind::Replayed { new_job } => (None, None, None, Some(new_job.0)),
                _ => (None, None, None, None),
            };
            tracing::info!(
                target: "rota::job",
                event = name,
                jobId = job.0,
                jobType = job_type.as_str(),
                tenant = tenant.as_str(),
                workerId = holder.as_ref().map(|(worker, _)| worker.as_str()),
                leaseId = holder.as_ref().map(|(_, lease)| lease.0),
                status = status.as_str(),
                attempt = *attempts,
                node = me,
                logIndex = event.index,
                ordinal = event.ordinal,
                atMs = *at_ms,
                error,
                retryAtMs = retry_at,
                reason,
                replayJobId = replay,
                "job {name}"
            );
        }
        Note::LeaseExtended {
            job,
            tenant,
            job_type,
            worker,
            lease_id,
            attempt,
            until_ms,
            at_ms,
        } => {
            tracing::info!(
                target: "rota::job",
                event = "extended",
                jobId = job.0,
                jobType = job_type.as_str(),
                tenant = tenant.as_str(),
                workerId = worker.as_str(),
                leaseId = lease_id.0,
                status = "leased",
                attempt = *attempt,
                node = me,
                logIndex = event.index,
                ordinal = event.ordinal,
                atMs = *at_ms,
                leaseUntilMs = *until_ms,
                "job extended"
            );
        }
        Note::Governance {
            change,
            stamp,
            at_ms,
        } => {
            tracing::info!(
                target: "rota::governance",
                event = change.kind(),
                change = ?change,
                actor = stamp.as_ref().map(|s| s.actor.as_str()),
                reason = stamp.as_ref().map(|s| s.reason.as_str()),
                ticket = stamp.as_ref().and_then(|s| s.ticket.as_deref()),
                node = me,
                logIndex = event.index,
                ordinal = event.ordinal,
                atMs = *at_ms,
                "governance {}",
                change.kind()
            );
        }
    }
}
