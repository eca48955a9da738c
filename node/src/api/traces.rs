//! The spans the node records for traced jobs (see `observe::otel`): `enqueue` and
//! `complete` around the write calls that created or reported them, `schedule` and `lease`
//! when a lease grants them. Only jobs that carry a `traceparent` cost anything.

use super::Api;
use crate::observe::otel::{exporting, log_time, record};
use opentelemetry::KeyValue;
use rota_client::proto as pb;
use rota_state_machine::{Command, JobId, Reply};
use std::time::SystemTime;

/// What a write will tell its jobs' traces, read off its command before it is proposed.
pub(super) enum Watched {
    /// The trace contexts of the specs, in order (empty: none).
    Enqueue(Vec<String>),
    /// The jobs reported.
    Complete(Vec<JobId>),
    Nothing,
}

impl Watched {
    pub(super) fn of(command: &Command) -> Self {
        match command {
            Command::Traced { traceparents, .. } => Watched::Enqueue(traceparents.clone()),
            Command::Complete { job_id, .. } => Watched::Complete(vec![*job_id]),
            Command::CompleteBatch { items } => {
                Watched::Complete(items.iter().map(|item| item.job_id).collect())
            }
            _ => Watched::Nothing,
        }
    }
}

fn job_attribute(job: JobId) -> KeyValue {
    KeyValue::new("rota.job.id", i64::try_from(job.0).unwrap_or(i64::MAX))
}

impl Api {
    /// Records the `enqueue` or `complete` spans of a write answered `reply`, begun at
    /// `started`.
    pub(super) fn record_write(&self, watched: Watched, reply: &Reply, started: SystemTime) {
        // Without an exporter the spans go nowhere: a completion takes no look-up for them.
        if !exporting() {
            return;
        }
        match watched {
            Watched::Nothing => {}
            Watched::Enqueue(traceparents) => {
                let jobs: Vec<Option<JobId>> = match reply {
                    Reply::Enqueued { job_id, .. } => vec![Some(*job_id)],
                    Reply::Batch { replies } => replies
                        .iter()
                        .map(|r| match r {
                            Ok(Reply::Enqueued { job_id, .. }) => Some(*job_id),
                            _ => None,
                        })
                        .collect(),
                    Reply::PlanSubmitted { jobs, .. } => {
                        jobs.iter().map(|(_, id)| Some(*id)).collect()
                    }
                    _ => Vec::new(),
                };
                let now = SystemTime::now();
                for (job, traceparent) in jobs.into_iter().zip(traceparents) {
                    if let (Some(job), false) = (job, traceparent.is_empty()) {
                        record(
                            "enqueue",
                            &traceparent,
                            (started, now),
                            vec![job_attribute(job)],
                        );
                    }
                }
            }
            Watched::Complete(jobs) => {
                let traced = self.traceparents(&jobs);
                let now = SystemTime::now();
                for (job, traceparent) in traced {
                    record(
                        "complete",
                        &traceparent,
                        (started, now),
                        vec![job_attribute(job)],
                    );
                }
            }
        }
    }

    /// The jobs of `jobs` that carry trace context, with it.
    fn traceparents(&self, jobs: &[JobId]) -> Vec<(JobId, String)> {
        self.raft.read_local(|applied| {
            let state = &applied.state;
            if !state.has_traces() {
                return Vec::new();
            }
            jobs.iter()
                .filter_map(|job| Some((*job, state.traceparent(*job)?.to_owned())))
                .collect()
        })
    }

    /// Gives each granted job its trace context, and records its `schedule` (enqueue to
    /// grant, in log time) and `lease` (the call, from `started`) spans.
    pub(super) fn trace_leases(
        &self,
        jobs: &mut [pb::LeasedJob],
        worker: &str,
        started: SystemTime,
    ) {
        if jobs.is_empty() {
            return;
        }
        let traced: Vec<(usize, String, u64)> = self.raft.read_local(|applied| {
            let state = &applied.state;
            if !state.has_traces() {
                return Vec::new();
            }
            jobs.iter()
                .enumerate()
                .filter_map(|(i, leased)| {
                    let id = JobId(leased.job_id);
                    let traceparent = state.traceparent(id)?.to_owned();
                    let created_ms = state.job(id)?.created_ms;
                    Some((i, traceparent, created_ms))
                })
                .collect()
        });
        let now = SystemTime::now();
        for (i, traceparent, created_ms) in traced {
            let Some(leased) = jobs.get_mut(i) else {
                continue;
            };
            let job = JobId(leased.job_id);
            // The grant's log time: the lease lasts its TTL from it.
            let granted_ms = leased.lease_until_ms.saturating_sub(leased.ttl_ms);
            record(
                "schedule",
                &traceparent,
                (log_time(created_ms), log_time(granted_ms.max(created_ms))),
                vec![job_attribute(job)],
            );
            record(
                "lease",
                &traceparent,
                (started, now),
                vec![
                    job_attribute(job),
                    KeyValue::new(
                        "rota.lease.id",
                        i64::try_from(leased.lease_id).unwrap_or(i64::MAX),
                    ),
                    KeyValue::new("rota.worker", worker.to_owned()),
                    KeyValue::new("rota.attempt", i64::from(leased.attempt)),
                ],
            );
            leased.traceparent = Some(traceparent);
        }
    }
}
