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
    /// 8. From the workers' side: a lease on a job was granted while another worker still
    ///    held one by what the cluster had told it (its lease's end, or its own report).
    LeaseHeldTwice {
        job: u64,
        held: u64,
        held_until_ms: u64,
        granted: u64,
        granted_ms: u64,
    },
    /// 8. A lease ended (timed out) at a log time earlier than its holder was last told.
    LeaseCutShort {
        job: u64,
        lease: u64,
        told_until_ms: u64,
        ended_ms: u64,
    },
    /// 9. A completion was refused for a reason the ledger contradicts.
    RefusedWrongly {
        job: u64,
        lease: u64,
        kind: String,
        detail: String,
    },
}

/// Every violation of the nine properties in `history` and `end`.
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
    one_holder_at_a_time(history, &jobs, &mut out);
    refusals_justified(history, &jobs, &mut out);
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

/// Whether the attempt ended by its worker's own report, which the worker then knows of.
fn ended_by_worker(attempt: &pb::Attempt) -> bool {
    outcome_is(attempt, pb::AttemptOutcome::Succeeded)
        || outcome_is(attempt, pb::AttemptOutcome::Failed)
}

fn one_holder_at_a_time(
    history: &[Record],
    jobs: &BTreeMap<u64, &pb::Job>,
    out: &mut Vec<Violation>,
) {
    // What each lease's holder was last told: the lease lasts until this log time.
    let mut told: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for record in history {
        let (job, lease, until_ms) = match &record.event {
            Event::Leased {
                job,
                lease,
                until_ms,
                ..
            }
            | Event::Extended {
                job,
                lease,
                until_ms,
                ..
            } => (*job, *lease, *until_ms),
            _ => continue,
        };
        let latest = told.entry((job, lease)).or_default();
        *latest = (*latest).max(until_ms);
    }
    for job in jobs.values() {
        // Each attempt as its worker saw it: held from its start until the end it was told
        // of, or its own report, whichever came first. An operator's cancel or release ends
        // a lease early by design; the worker hears of it on its next call.
        for a in &job.attempts {
            let (Some(&until), Some(ended)) = (told.get(&(job.id, a.lease_id)), a.ended_ms) else {
                continue;
            };
            if outcome_is(a, pb::AttemptOutcome::TimedOut) && ended < until {
                out.push(Violation::LeaseCutShort {
                    job: job.id,
                    lease: a.lease_id,
                    told_until_ms: until,
                    ended_ms: ended,
                });
            }
        }
        let held: Vec<(u64, u64, u64)> = job
            .attempts
            .iter()
            .filter_map(|a| {
                let until = *told.get(&(job.id, a.lease_id))?;
                let told_of_end = ended_by_worker(a)
                    || outcome_is(a, pb::AttemptOutcome::Canceled)
                    || outcome_is(a, pb::AttemptOutcome::Released);
                let end = match a.ended_ms {
                    Some(ended) if told_of_end => until.min(ended),
                    _ => until,
                };
                Some((a.lease_id, a.started_ms, end))
            })
            .collect();
        for (held_lease, started, held_until) in &held {
            for other in &job.attempts {
                if other.lease_id == *held_lease {
                    continue;
                }
                if other.started_ms >= *started && other.started_ms < *held_until {
                    out.push(Violation::LeaseHeldTwice {
                        job: job.id,
                        held: *held_lease,
                        held_until_ms: *held_until,
                        granted: other.lease_id,
                        granted_ms: other.started_ms,
                    });
                }
            }
        }
    }
}

fn refusals_justified(
    history: &[Record],
    jobs: &BTreeMap<u64, &pb::Job>,
    out: &mut Vec<Violation>,
) {
    for record in history {
        let Event::CompletionRefused {
            job, lease, kind, ..
        } = &record.event
        else {
            continue;
        };
        let wrongly = |detail: String| Violation::RefusedWrongly {
            job: *job,
            lease: *lease,
            kind: kind.clone(),
            detail,
        };
        // No answer at all (the client gave up): the outcome is unknown, nothing to judge.
        if kind.chars().next().is_some_and(char::is_uppercase) {
            continue;
        }
        let attempt = jobs
            .get(job)
            .and_then(|j| j.attempts.iter().find(|a| a.lease_id == *lease));
        let Some(attempt) = attempt else {
            out.push(wrongly(
                "the ledger has no attempt under that lease".to_owned(),
            ));
            continue;
        };
        let outcome = pb::AttemptOutcome::try_from(attempt.outcome);
        match kind.as_str() {
            // The lease was no longer the job's: its attempt must have ended otherwise than
            // by this worker's report (the only report that lease could carry).
            "stale_lease" | "archived" if ended_by_worker(attempt) => out.push(wrongly(format!(
                "attempt {} ended {outcome:?}, by its worker's report, yet the report was refused",
                attempt.number
            ))),
            "stale_lease" | "archived" => {}
            "job_canceled" if outcome_is(attempt, pb::AttemptOutcome::Canceled) => {}
            _ => out.push(wrongly(format!(
                "attempt {} ended {outcome:?}; nothing a worker holding its lease did calls for this refusal",
                attempt.number
            ))),
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

    fn leased(job: u64, lease: u64, until_ms: u64) -> Event {
        Event::Leased {
            worker: "w".to_owned(),
            job,
            lease,
            attempt: 1,
            until_ms,
        }
    }

    fn extended(job: u64, lease: u64, until_ms: u64) -> Event {
        Event::Extended {
            worker: "w".to_owned(),
            job,
            lease,
            until_ms,
        }
    }

    #[test]
    fn a_lease_granted_while_another_worker_was_told_it_held_one_is_caught() {
        let mut end = healthy();
        end.jobs[0].attempts = vec![
            attempt(1, 10, 5, Some(20), pb::AttemptOutcome::TimedOut),
            attempt(2, 11, 21, Some(25), pb::AttemptOutcome::Succeeded),
        ];
        // Told at the grant that the lease lasts until 20: the next grant at 21 is fine.
        let told = [record(5, leased(1, 10, 20)), record(21, leased(1, 11, 30))];
        assert_eq!(check(&told, &end), vec![]);
        // A heartbeat told the first worker it held the job until 30: the ledger expired
        // the lease at 20 and granted the job again at 21, while that worker still held it.
        let extended = [
            record(5, leased(1, 10, 20)),
            record(6, extended(1, 10, 30)),
            record(21, leased(1, 11, 30)),
        ];
        let found = check(&extended, &end);
        assert!(
            found.contains(&Violation::LeaseHeldTwice {
                job: 1,
                held: 10,
                held_until_ms: 30,
                granted: 11,
                granted_ms: 21,
            }),
            "{found:?}"
        );
    }

    #[test]
    fn a_lease_that_timed_out_before_its_holder_was_told_it_would_is_caught() {
        let mut end = healthy();
        end.jobs[0].attempts = vec![
            attempt(1, 10, 5, Some(20), pb::AttemptOutcome::TimedOut),
            attempt(2, 11, 31, Some(35), pb::AttemptOutcome::Succeeded),
        ];
        let history = [
            record(5, leased(1, 10, 20)),
            record(6, extended(1, 10, 30)),
            record(31, leased(1, 11, 40)),
        ];
        let found = check(&history, &end);
        assert!(
            found.contains(&Violation::LeaseCutShort {
                job: 1,
                lease: 10,
                told_until_ms: 30,
                ended_ms: 20,
            }),
            "{found:?}"
        );
        // Timed out at the end it was told of: nothing cut short.
        end.jobs[0].attempts[0].ended_ms = Some(30);
        assert_eq!(check(&history, &end), vec![]);
    }

    #[test]
    fn a_completion_refused_for_a_reason_the_ledger_contradicts_is_caught() {
        let refused = |kind: &str| {
            [record(
                9,
                Event::CompletionRefused {
                    worker: "w".to_owned(),
                    job: 1,
                    lease: 10,
                    kind: kind.to_owned(),
                },
            )]
        };
        // The ledger ended the attempt of lease 10 as its worker reported: a refusal of
        // that report as stale is a lie to the worker.
        let found = check(&refused("stale_lease"), &healthy());
        assert!(
            found.iter().any(|v| matches!(
                v,
                Violation::RefusedWrongly { lease: 10, kind, .. } if kind == "stale_lease"
            )),
            "{found:?}"
        );
        // The lease had expired: refused rightly.
        let mut expired = healthy();
        expired.jobs[0].attempts[0].outcome = pb::AttemptOutcome::TimedOut as i32;
        assert_eq!(check(&refused("stale_lease"), &expired), vec![]);
        // A cancel refusal needs a canceled attempt; a client that gave up is not judged.
        assert!(check(&refused("job_canceled"), &expired)
            .iter()
            .any(|v| matches!(v, Violation::RefusedWrongly { .. })));
        assert_eq!(check(&refused("Unavailable"), &healthy()), vec![]);
    }
}
