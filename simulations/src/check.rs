//! The history checker: judges what clients saw against the final ledger and the replicas.
//! Each property is a function; `check` runs them all and returns every violation found.

use crate::history::{Event, Record};
use rota_client::proto as pb;
use std::collections::{BTreeMap, BTreeSet};

/// The cluster at the end of a run, once faults have healed and the workload drained.
#[derive(Clone, Debug, Default)]
pub struct Final {
    /// Every job in the ledger, with attempts and history.
    pub jobs: Vec<pb::Job>,
    /// Each replica's (node id, applied index, state digest), read when all had settled.
    pub replicas: Vec<(u64, Option<u64>, String)>,
    /// The `max_active` quota set per tenant during the run.
    pub quotas: BTreeMap<String, u32>,
}

/// A broken promise, with what the checker saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// 1. An acknowledged enqueue has no job in the final ledger.
    LostEnqueue { key: String, job: u64 },
    /// 2. A job recorded two successful attempts.
    DoubleSuccess { job: u64, successes: usize },
    /// 2. A completion was accepted for a lease that was not the attempt it ended.
    StaleCompletionAccepted {
        job: u64,
        lease: u64,
        detail: String,
    },
    /// 3. Two attempts of one job overlapped in the ledger.
    OverlappingLeases { job: u64, first: u64, second: u64 },
    /// 4. A job neither finished nor waits for a reason the checker can name.
    Unfinished {
        job: u64,
        status: i32,
        detail: String,
    },
    /// 5. One (tenant, idempotency key) maps to more than one job.
    DuplicateForKey { key: String, jobs: Vec<u64> },
    /// 6. Replicas at the same applied index disagree, or never reached the same index.
    ReplicasDiverge {
        replicas: Vec<(u64, Option<u64>, String)>,
    },
    /// 7. More of a tenant's jobs were leased at once than its `max_active` allows.
    QuotaExceeded {
        tenant: String,
        at_ms: u64,
        active: u32,
        max: u32,
    },
}

/// Every violation of the seven properties in `history` and `end`.
pub fn check(history: &[Record], end: &Final) -> Vec<Violation> {
    let mut out = Vec::new();
    let jobs: BTreeMap<u64, &pb::Job> = end.jobs.iter().map(|j| (j.id, j)).collect();
    no_lost_enqueue(history, &jobs, &mut out);
    no_double_or_stale_success(history, &jobs, &mut out);
    no_overlapping_attempts(&jobs, &mut out);
    every_job_finished(&jobs, &mut out);
    one_job_per_key(history, &jobs, &mut out);
    replicas_agree(&end.replicas, &mut out);
    quotas_held(&jobs, &end.quotas, &mut out);
    out
}

fn no_lost_enqueue(history: &[Record], jobs: &BTreeMap<u64, &pb::Job>, out: &mut Vec<Violation>) {
    for record in history {
        let acknowledged = match &record.event {
            Event::Enqueued { key, job, .. } => vec![(key.clone(), *job)],
            Event::PlanSubmitted { plan, jobs } => jobs
                .iter()
                .map(|(step, job)| (format!("plan-{plan}/{step}"), *job))
                .collect(),
            _ => continue,
        };
        for (key, job) in acknowledged {
            if !jobs.contains_key(&job) {
                out.push(Violation::LostEnqueue { key, job });
            }
        }
    }
}

fn outcome_is(attempt: &pb::Attempt, outcome: pb::AttemptOutcome) -> bool {
    attempt.outcome == outcome as i32
}

fn no_double_or_stale_success(
    history: &[Record],
    jobs: &BTreeMap<u64, &pb::Job>,
    out: &mut Vec<Violation>,
) {
    for job in jobs.values() {
        let successes = job
            .attempts
            .iter()
            .filter(|a| outcome_is(a, pb::AttemptOutcome::Succeeded))
            .count();
        if successes > 1 {
            out.push(Violation::DoubleSuccess {
                job: job.id,
                successes,
            });
        }
    }
    for record in history {
        let Event::Completed {
            job,
            lease,
            succeeded,
            ..
        } = &record.event
        else {
            continue;
        };
        let Some(found) = jobs.get(job) else {
            continue;
        };
        let attempt = found.attempts.iter().find(|a| a.lease_id == *lease);
        let expected = if *succeeded {
            pb::AttemptOutcome::Succeeded
        } else {
            pb::AttemptOutcome::Failed
        };
        match attempt {
            Some(a) if outcome_is(a, expected) => {}
            Some(a) => out.push(Violation::StaleCompletionAccepted {
                job: *job,
                lease: *lease,
                detail: format!(
                    "the completion was accepted, but the ledger ended attempt {} as {:?}",
                    a.number,
                    pb::AttemptOutcome::try_from(a.outcome)
                ),
            }),
            None => out.push(Violation::StaleCompletionAccepted {
                job: *job,
                lease: *lease,
                detail: "the completion was accepted, but no attempt holds that lease".to_owned(),
            }),
        }
    }
}

fn no_overlapping_attempts(jobs: &BTreeMap<u64, &pb::Job>, out: &mut Vec<Violation>) {
    for job in jobs.values() {
        let mut attempts: Vec<&pb::Attempt> = job.attempts.iter().collect();
        attempts.sort_by_key(|a| a.number);
        for pair in attempts.windows(2) {
            let ended = pair[0].ended_ms.unwrap_or(u64::MAX);
            if pair[1].started_ms < ended {
                out.push(Violation::OverlappingLeases {
                    job: job.id,
                    first: pair[0].lease_id,
                    second: pair[1].lease_id,
                });
            }
        }
    }
}

fn is_terminal(status: i32) -> bool {
    [
        pb::JobStatus::Succeeded,
        pb::JobStatus::DeadLettered,
        pb::JobStatus::Canceled,
    ]
    .iter()
    .any(|s| *s as i32 == status)
}

fn every_job_finished(jobs: &BTreeMap<u64, &pb::Job>, out: &mut Vec<Violation>) {
    for job in jobs.values() {
        if is_terminal(job.status) {
            continue;
        }
        // A named reason to wait: a dependency that has not finished yet.
        let waiting_on: Vec<u64> = job
            .unmet_dependencies
            .iter()
            .copied()
            .filter(|d| jobs.get(d).is_some_and(|dep| !is_terminal(dep.status)))
            .collect();
        if job.status == pb::JobStatus::Pending as i32 && !waiting_on.is_empty() {
            continue;
        }
        out.push(Violation::Unfinished {
            job: job.id,
            status: job.status,
            detail: format!(
                "{:?} with {} attempts and no reason to wait",
                pb::JobStatus::try_from(job.status),
                job.attempts.len()
            ),
        });
    }
}

fn one_job_per_key(history: &[Record], jobs: &BTreeMap<u64, &pb::Job>, out: &mut Vec<Violation>) {
    let mut by_key: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for record in history {
        if let Event::Enqueued {
            tenant, key, job, ..
        } = &record.event
        {
            by_key
                .entry(format!("{tenant}/{key}"))
                .or_default()
                .insert(*job);
        }
    }
    for job in jobs.values() {
        let Some(spec) = &job.spec else { continue };
        if let Some(key) = &spec.idempotency_key {
            by_key
                .entry(format!("{}/{key}", spec.tenant))
                .or_default()
                .insert(job.id);
        }
    }
    for (key, ids) in by_key {
        if ids.len() > 1 {
            out.push(Violation::DuplicateForKey {
                key,
                jobs: ids.into_iter().collect(),
            });
        }
    }
}

fn replicas_agree(replicas: &[(u64, Option<u64>, String)], out: &mut Vec<Violation>) {
    let same_index = replicas.windows(2).all(|w| w[0].1 == w[1].1);
    let same_digest = replicas.windows(2).all(|w| w[0].2 == w[1].2);
    if replicas.is_empty() || !same_index || !same_digest {
        out.push(Violation::ReplicasDiverge {
            replicas: replicas.to_vec(),
        });
    }
}

fn quotas_held(
    jobs: &BTreeMap<u64, &pb::Job>,
    quotas: &BTreeMap<String, u32>,
    out: &mut Vec<Violation>,
) {
    for (tenant, max) in quotas {
        // (time, +1 start / -1 end); at equal times ends count first.
        let mut edges: Vec<(u64, i32)> = Vec::new();
        for job in jobs.values() {
            if job.spec.as_ref().is_none_or(|s| &s.tenant != tenant) {
                continue;
            }
            for attempt in &job.attempts {
                edges.push((attempt.started_ms, 1));
                edges.push((attempt.ended_ms.unwrap_or(u64::MAX), -1));
            }
        }
        edges.sort();
        let mut active: i32 = 0;
        for (at_ms, delta) in edges {
            active += delta;
            if active > *max as i32 {
                out.push(Violation::QuotaExceeded {
                    tenant: tenant.clone(),
                    at_ms,
                    active: active as u32,
                    max: *max,
                });
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, tenant: &str, status: pb::JobStatus, attempts: Vec<pb::Attempt>) -> pb::Job {
        pb::Job {
            id,
            spec: Some(pb::JobSpec {
                tenant: tenant.to_owned(),
                job_type: "work".to_owned(),
                idempotency_key: Some(format!("key-{id}")),
                ..pb::JobSpec::default()
            }),
            status: status as i32,
            attempts,
            ..pb::Job::default()
        }
    }

    fn attempt(
        number: u32,
        lease: u64,
        start: u64,
        end: Option<u64>,
        outcome: pb::AttemptOutcome,
    ) -> pb::Attempt {
        pb::Attempt {
            number,
            worker: "w".to_owned(),
            lease_id: lease,
            started_ms: start,
            ended_ms: end,
            outcome: outcome as i32,
            ..pb::Attempt::default()
        }
    }

    fn record(at_ms: u64, event: Event) -> Record {
        Record { at_ms, event }
    }

    fn healthy() -> Final {
        Final {
            jobs: vec![job(
                1,
                "acme",
                pb::JobStatus::Succeeded,
                vec![attempt(1, 10, 5, Some(9), pb::AttemptOutcome::Succeeded)],
            )],
            replicas: vec![(1, Some(7), "d".to_owned()), (2, Some(7), "d".to_owned())],
            quotas: BTreeMap::new(),
        }
    }

    fn enqueued(job: u64, key: &str) -> Event {
        Event::Enqueued {
            producer: "p".to_owned(),
            tenant: "acme".to_owned(),
            key: key.to_owned(),
            job,
            created: true,
        }
    }

    fn completed(job: u64, lease: u64) -> Event {
        Event::Completed {
            worker: "w".to_owned(),
            job,
            lease,
            succeeded: true,
            status: pb::JobStatus::Succeeded as i32,
        }
    }

    #[test]
    fn a_healthy_history_passes() {
        let history = [record(1, enqueued(1, "key-1")), record(9, completed(1, 10))];
        assert_eq!(check(&history, &healthy()), vec![]);
    }

    #[test]
    fn a_lost_enqueue_is_caught() {
        let history = [
            record(1, enqueued(1, "key-1")),
            record(2, enqueued(2, "key-2")),
        ];
        let found = check(&history, &healthy());
        assert!(
            found.contains(&Violation::LostEnqueue {
                key: "key-2".to_owned(),
                job: 2
            }),
            "{found:?}"
        );
    }

    #[test]
    fn a_double_success_is_caught() {
        let mut end = healthy();
        end.jobs[0]
            .attempts
            .push(attempt(2, 11, 10, Some(12), pb::AttemptOutcome::Succeeded));
        let found = check(&[], &end);
        assert!(
            found.contains(&Violation::DoubleSuccess {
                job: 1,
                successes: 2
            }),
            "{found:?}"
        );
    }

    #[test]
    fn overlapping_leases_are_caught() {
        let mut end = healthy();
        end.jobs[0].attempts = vec![
            attempt(1, 10, 5, Some(20), pb::AttemptOutcome::TimedOut),
            attempt(2, 11, 15, Some(25), pb::AttemptOutcome::Succeeded),
        ];
        let found = check(&[], &end);
        assert!(
            found.contains(&Violation::OverlappingLeases {
                job: 1,
                first: 10,
                second: 11
            }),
            "{found:?}"
        );
    }

    #[test]
    fn a_completion_accepted_with_a_stale_token_is_caught() {
        let mut end = healthy();
        end.jobs[0].attempts = vec![
            attempt(1, 10, 5, Some(8), pb::AttemptOutcome::TimedOut),
            attempt(2, 11, 8, Some(12), pb::AttemptOutcome::Succeeded),
        ];
        // The zombie holding lease 10 was told its success counted.
        let history = [record(12, completed(1, 10))];
        let found = check(&history, &end);
        assert!(
            found.iter().any(|v| matches!(
                v,
                Violation::StaleCompletionAccepted {
                    job: 1,
                    lease: 10,
                    ..
                }
            )),
            "{found:?}"
        );
    }

    #[test]
    fn duplicates_divergence_quota_and_unfinished_jobs_are_caught() {
        let mut end = healthy();
        end.jobs.push(job(2, "acme", pb::JobStatus::Ready, vec![]));
        end.jobs[1].spec.as_mut().expect("spec").idempotency_key = Some("key-1".to_owned());
        end.jobs.push(job(
            3,
            "acme",
            pb::JobStatus::Succeeded,
            vec![attempt(1, 12, 6, Some(8), pb::AttemptOutcome::Succeeded)],
        ));
        end.replicas[1].2 = "other".to_owned();
        end.quotas.insert("acme".to_owned(), 1);
        let found = check(&[], &end);
        assert!(
            found.iter().any(
                |v| matches!(v, Violation::DuplicateForKey { jobs, .. } if jobs == &vec![1, 2])
            ),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|v| matches!(v, Violation::ReplicasDiverge { .. })),
            "{found:?}"
        );
        assert!(
            found.iter().any(|v| matches!(
                v,
                Violation::QuotaExceeded {
                    active: 2,
                    max: 1,
                    ..
                }
            )),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|v| matches!(v, Violation::Unfinished { job: 2, .. })),
            "{found:?}"
        );
    }
}
