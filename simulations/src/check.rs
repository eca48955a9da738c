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
    /// Each member's replica (node id, applied index, state digest), read when all had
    /// settled.
    pub replicas: Vec<(u64, Option<u64>, String)>,
    /// The membership at the end: (node id, voter).
    pub members: Vec<(u64, bool)>,
    /// The `max_active` quota set per tenant during the run.
    pub quotas: BTreeMap<String, u32>,
    /// The TTL every lease and heartbeat asked for: a lease's log time is its end less this.
    pub lease_ttl_ms: u64,
    /// How far apart the nodes' clocks were at most during the run (the largest offset any
    /// node's clock had from simulated time, less the smallest, zero counted): a lease may
    /// end that much early in simulated time.
    pub clock_spread_ms: u64,
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
    /// 10. A lease or heartbeat asked after another was answered carries an earlier log time.
    LogTimeWentBack {
        earlier_lease: u64,
        earlier_log_ms: u64,
        later_lease: u64,
        later_log_ms: u64,
    },
    /// 11. In simulated time, a job was granted again before its timed-out lease could
    ///     have run out by what its holder was told (less the clocks' spread).
    LeaseEndedEarly {
        job: u64,
        lease: u64,
        held_until_sim_ms: u64,
        granted: u64,
        granted_sim_ms: u64,
    },
    /// 12. A lease asked after maintenance was acknowledged on was granted before
    ///     maintenance was asked off.
    LeasedInMaintenance {
        job: u64,
        lease: u64,
        asked_ms: u64,
        answered_ms: u64,
    },
    /// 13. A lease granted while the tenant already had its (lowered) `max_active` leased.
    QuotaExceededAtGrant {
        tenant: String,
        job: u64,
        lease: u64,
        active: u32,
        max: u32,
    },
    /// 14. A job whose cancel was acknowledged ran again or did not end canceled.
    CancelNotFinal { job: u64, detail: String },
    /// 15. The membership at the end contradicts a change the cluster acknowledged.
    MembershipLost { node: u64, detail: String },
}

/// Every violation of the fifteen properties in `history` and `end`.
pub fn check(history: &[Record], end: &Final) -> Vec<Violation> {
    let mut out = Vec::new();
    let jobs: BTreeMap<u64, &pb::Job> = end.jobs.iter().map(|j| (j.id, j)).collect();
    no_lost_enqueue(history, &jobs, &mut out);
    no_double_or_stale_success(history, &jobs, &mut out);
    no_overlapping_attempts(&jobs, &mut out);
    every_job_finished(&jobs, &mut out);
    one_job_per_key(history, &jobs, &mut out);
    replicas_agree(&end.replicas, &end.members, &mut out);
    quotas_held(&jobs, &end.quotas, &mut out);
    one_holder_at_a_time(history, &jobs, &mut out);
    refusals_justified(history, &jobs, &mut out);
    log_time_never_went_back(history, end.lease_ttl_ms, &mut out);
    leases_last_in_simulated_time(history, &jobs, end, &mut out);
    no_lease_in_maintenance(history, &mut out);
    lowered_quotas_held_at_grant(history, &jobs, end.lease_ttl_ms, &mut out);
    cancels_are_final(history, &jobs, &mut out);
    membership_as_acknowledged(history, &end.members, &mut out);
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

fn replicas_agree(
    replicas: &[(u64, Option<u64>, String)],
    members: &[(u64, bool)],
    out: &mut Vec<Violation>,
) {
    let same_index = replicas.windows(2).all(|w| w[0].1 == w[1].1);
    let same_digest = replicas.windows(2).all(|w| w[0].2 == w[1].2);
    // Every member reported (a checker test's hand-made end may name no members).
    let all_reported = members.is_empty() || replicas.len() == members.len();
    if replicas.is_empty() || !same_index || !same_digest || !all_reported {
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

/// A lease or an accepted heartbeat as a client saw it: asked and answered in simulated
/// time, with the log time the cluster stamped it at (its end less the TTL).
struct Stamped {
    lease: u64,
    asked_ms: u64,
    answered_ms: u64,
    log_ms: u64,
}

fn stamped(history: &[Record], ttl_ms: u64) -> Vec<Stamped> {
    history
        .iter()
        .filter_map(|record| match &record.event {
            Event::Leased {
                lease,
                until_ms,
                asked_ms,
                ..
            }
            | Event::Extended {
                lease,
                until_ms,
                asked_ms,
                ..
            } => Some(Stamped {
                lease: *lease,
                asked_ms: *asked_ms,
                answered_ms: record.at_ms,
                log_ms: until_ms.saturating_sub(ttl_ms),
            }),
            _ => None,
        })
        .collect()
}

/// Check 10: Log time never goes backwards as clients see it, whatever the nodes' clocks do: a
/// call asked after another was answered was applied after it, so its log time is no earlier.
fn log_time_never_went_back(history: &[Record], ttl_ms: u64, out: &mut Vec<Violation>) {
    let mut by_answer = stamped(history, ttl_ms);
    by_answer.sort_by_key(|s| s.answered_ms);
    let mut by_ask: Vec<&Stamped> = by_answer.iter().collect();
    by_ask.sort_by_key(|s| s.asked_ms);
    // The latest log time among calls answered before the one at hand was asked.
    let mut latest: Option<&Stamped> = None;
    let mut answered = by_answer.iter().peekable();
    for later in by_ask {
        while let Some(earlier) = answered.next_if(|e| e.answered_ms < later.asked_ms) {
            if latest.is_none_or(|l| earlier.log_ms > l.log_ms) {
                latest = Some(earlier);
            }
        }
        if let Some(earlier) = latest.filter(|e| e.log_ms > later.log_ms) {
            out.push(Violation::LogTimeWentBack {
                earlier_lease: earlier.lease,
                earlier_log_ms: earlier.log_ms,
                later_lease: later.lease,
                later_log_ms: later.log_ms,
            });
            return;
        }
    }
}

/// Check 11: A lease lasts, in simulated time, at least its TTL from the last call that set its
/// end (the grant or an accepted heartbeat), less the spread of the nodes' clocks: a new
/// leader whose clock runs ahead ends leases early by that much, and never by more. Only
/// leases that timed out are judged, against the next attempt's grant as its worker saw it
/// (the grant happened no later than its answer).
fn leases_last_in_simulated_time(
    history: &[Record],
    jobs: &BTreeMap<u64, &pb::Job>,
    end: &Final,
    out: &mut Vec<Violation>,
) {
    let calls = stamped(history, end.lease_ttl_ms);
    let mut last_asked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut answered: BTreeMap<u64, u64> = BTreeMap::new();
    for call in &calls {
        let asked = last_asked.entry(call.lease).or_default();
        *asked = (*asked).max(call.asked_ms);
        answered.entry(call.lease).or_insert(call.answered_ms);
    }
    for job in jobs.values() {
        for pair in job.attempts.windows(2) {
            let (held, next) = (&pair[0], &pair[1]);
            if !outcome_is(held, pb::AttemptOutcome::TimedOut) {
                continue;
            }
            let (Some(asked), Some(&granted_sim_ms)) =
                (last_asked.get(&held.lease_id), answered.get(&next.lease_id))
            else {
                continue;
            };
            let held_until_sim_ms = (asked + end.lease_ttl_ms).saturating_sub(end.clock_spread_ms);
            if granted_sim_ms < held_until_sim_ms {
                out.push(Violation::LeaseEndedEarly {
                    job: job.id,
                    lease: held.lease_id,
                    held_until_sim_ms,
                    granted: next.lease_id,
                    granted_sim_ms,
                });
            }
        }
    }
}

/// Check 12: No lease is granted in maintenance: a lease asked after maintenance was acknowledged
/// on, and answered before it was asked off, was granted while it was on.
fn no_lease_in_maintenance(history: &[Record], out: &mut Vec<Violation>) {
    // (acknowledged on, asked off) in simulated time; an "on" never turned off lasts.
    let mut windows: Vec<(u64, u64)> = Vec::new();
    for record in history {
        match &record.event {
            Event::Maintenance { on: true, .. } => windows.push((record.at_ms, u64::MAX)),
            Event::Maintenance {
                on: false,
                asked_ms,
            } => {
                if let Some(open) = windows.last_mut().filter(|w| w.1 == u64::MAX) {
                    open.1 = *asked_ms;
                }
            }
            _ => {}
        }
    }
    for record in history {
        let Event::Leased {
            job,
            lease,
            asked_ms,
            ..
        } = &record.event
        else {
            continue;
        };
        let inside = windows
            .iter()
            .any(|(on, off)| *asked_ms > *on && record.at_ms < *off);
        if inside {
            out.push(Violation::LeasedInMaintenance {
                job: *job,
                lease: *lease,
                asked_ms: *asked_ms,
                answered_ms: record.at_ms,
            });
        }
    }
}

/// Check 13: A quota the operator set holds at every grant made under it: a lease asked after the
/// quota was acknowledged, and answered before the next was asked, found fewer than
/// `max_active` of its tenant's jobs leased (by the ledger, at the grant's log time).
fn lowered_quotas_held_at_grant(
    history: &[Record],
    jobs: &BTreeMap<u64, &pb::Job>,
    ttl_ms: u64,
    out: &mut Vec<Violation>,
) {
    // Per tenant: (acknowledged, asked next, max_active).
    let mut windows: BTreeMap<&str, Vec<(u64, u64, u32)>> = BTreeMap::new();
    for record in history {
        if let Event::QuotaSet {
            tenant,
            max_active,
            asked_ms,
        } = &record.event
        {
            let list = windows.entry(tenant.as_str()).or_default();
            if let Some(open) = list.last_mut() {
                open.1 = open.1.min(*asked_ms);
            }
            list.push((record.at_ms, u64::MAX, *max_active));
        }
    }
    let tenant_of = |job: &pb::Job| job.spec.as_ref().map(|s| s.tenant.clone());
    for record in history {
        let Event::Leased {
            job,
            lease,
            until_ms,
            asked_ms,
            ..
        } = &record.event
        else {
            continue;
        };
        let Some(tenant) = jobs.get(job).and_then(|j| tenant_of(j)) else {
            continue;
        };
        let Some(&(_, _, max)) = windows.get(tenant.as_str()).and_then(|list| {
            list.iter()
                .find(|(set, next, _)| *asked_ms > *set && record.at_ms < *next)
        }) else {
            continue;
        };
        let granted_ms = until_ms.saturating_sub(ttl_ms);
        let active = jobs
            .values()
            .filter(|j| tenant_of(j).as_deref() == Some(tenant.as_str()))
            .flat_map(|j| j.attempts.iter())
            .filter(|a| a.lease_id != *lease)
            .filter(|a| a.started_ms <= granted_ms && a.ended_ms.is_none_or(|e| e > granted_ms))
            .count() as u32;
        if active >= max {
            out.push(Violation::QuotaExceededAtGrant {
                tenant,
                job: *job,
                lease: *lease,
                active: active + 1,
                max,
            });
        }
    }
}

/// Check 14: A cancel the cluster acknowledged is final: the job ends canceled, no attempt of it
/// succeeded, and no worker was granted it after the cancel was answered.
fn cancels_are_final(history: &[Record], jobs: &BTreeMap<u64, &pb::Job>, out: &mut Vec<Violation>) {
    for record in history {
        let Event::CancelAcknowledged { job } = &record.event else {
            continue;
        };
        let canceled_at = record.at_ms;
        let detail = match jobs.get(job) {
            None => Some("the job is not in the ledger".to_owned()),
            Some(j) if j.status != pb::JobStatus::Canceled as i32 => {
                Some(format!("it ended with status {}", j.status))
            }
            Some(j)
                if j.attempts
                    .iter()
                    .any(|a| outcome_is(a, pb::AttemptOutcome::Succeeded)) =>
            {
                Some("an attempt of it succeeded".to_owned())
            }
            Some(_) => history.iter().find_map(|r| match &r.event {
                Event::Leased {
                    job: leased,
                    lease,
                    asked_ms,
                    ..
                } if leased == job && *asked_ms > canceled_at => Some(format!(
                    "lease {lease} was asked at {asked_ms} ms and granted after the cancel"
                )),
                _ => None,
            }),
        };
        if let Some(detail) = detail {
            out.push(Violation::CancelNotFinal { job: *job, detail });
        }
    }
}

/// Check 15: membership changes the cluster acknowledged hold at the end: a node seen
/// promoted to voter (and not removed since) is a voter, a node added (and not removed
/// since) is a member, and a removed node is not.
fn membership_as_acknowledged(
    history: &[Record],
    members: &[(u64, bool)],
    out: &mut Vec<Violation>,
) {
    // The last acknowledged change per node.
    let mut last: BTreeMap<u64, &Event> = BTreeMap::new();
    for record in history {
        match &record.event {
            Event::NodeAdded { node }
            | Event::NodePromoted { node }
            | Event::NodeRemoved { node } => {
                last.insert(*node, &record.event);
            }
            _ => {}
        }
    }
    let member = |id: u64| {
        members
            .iter()
            .find(|(m, _)| *m == id)
            .map(|(_, voter)| *voter)
    };
    for (node, change) in last {
        let detail = match (change, member(node)) {
            (Event::NodeRemoved { .. }, Some(_)) => "removed, yet still a member",
            (Event::NodePromoted { .. }, Some(false)) => "promoted to voter, yet a learner",
            (Event::NodePromoted { .. } | Event::NodeAdded { .. }, None) => {
                "added, yet not a member"
            }
            _ => continue,
        };
        out.push(Violation::MembershipLost {
            node,
            detail: detail.to_owned(),
        });
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
            ..Final::default()
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
            asked_ms: 0,
        }
    }

    fn extended(job: u64, lease: u64, until_ms: u64) -> Event {
        Event::Extended {
            worker: "w".to_owned(),
            job,
            lease,
            until_ms,
            asked_ms: 0,
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

    /// A lease asked at `asked` and answered at `at` (simulated ms), ending at `until` (log).
    fn leased_at(job: u64, lease: u64, until: u64, asked: u64, at: u64) -> Record {
        record(
            at,
            Event::Leased {
                worker: "w".to_owned(),
                job,
                lease,
                attempt: 1,
                until_ms: until,
                asked_ms: asked,
            },
        )
    }

    #[test]
    fn log_time_that_went_backwards_between_calls_is_caught() {
        let mut end = healthy();
        end.lease_ttl_ms = 100;
        // Lease 10 answered at 12 stamped log time 1,000; lease 11 asked at 20 (after) stamped
        // 990: a clock jumped back and nothing clamped it.
        let back = [
            leased_at(1, 10, 1_100, 10, 12),
            leased_at(2, 11, 1_090, 20, 22),
        ];
        assert_eq!(
            check(&back, &end),
            vec![Violation::LogTimeWentBack {
                earlier_lease: 10,
                earlier_log_ms: 1_000,
                later_lease: 11,
                later_log_ms: 990,
            }]
        );
        // Asked before the first was answered: the calls overlap, either order is fine.
        let overlapping = [
            leased_at(1, 10, 1_100, 10, 12),
            leased_at(2, 11, 1_090, 11, 22),
        ];
        assert_eq!(check(&overlapping, &end), vec![]);
    }

    #[test]
    fn a_lease_ended_early_in_simulated_time_is_caught() {
        let mut end = healthy();
        end.lease_ttl_ms = 2_000;
        end.jobs[0].attempts = vec![
            attempt(1, 10, 5_000, Some(7_000), pb::AttemptOutcome::TimedOut),
            attempt(2, 11, 7_000, Some(7_050), pb::AttemptOutcome::Succeeded),
        ];
        // Lease 10 asked at 1,000 ms of simulated time, for 2,000 ms: the job was granted
        // again (answered) at 2,500 ms, 500 ms before the holder's lease could have run out.
        let history = [
            leased_at(1, 10, 7_000, 1_000, 1_010),
            leased_at(1, 11, 9_000, 2_490, 2_500),
        ];
        let early = Violation::LeaseEndedEarly {
            job: 1,
            lease: 10,
            held_until_sim_ms: 3_000,
            granted: 11,
            granted_sim_ms: 2_500,
        };
        assert!(check(&history, &end).contains(&early));
        // With clocks up to 600 ms apart, 500 ms early is what a clock ahead allows.
        end.clock_spread_ms = 600;
        assert!(!check(&history, &end)
            .iter()
            .any(|v| matches!(v, Violation::LeaseEndedEarly { .. })));
    }

    #[test]
    fn a_lease_granted_in_maintenance_is_caught() {
        let maintenance = |on: bool, asked: u64, at: u64| {
            record(
                at,
                Event::Maintenance {
                    on,
                    asked_ms: asked,
                },
            )
        };
        let history = [
            maintenance(true, 90, 100),
            leased_at(1, 10, 3_000, 150, 160),
            maintenance(false, 200, 210),
        ];
        assert_eq!(
            check(&history, &healthy()),
            vec![Violation::LeasedInMaintenance {
                job: 1,
                lease: 10,
                asked_ms: 150,
                answered_ms: 160,
            }]
        );
        // Asked before "on" was acknowledged, or answered after "off" was asked: either
        // side of the window may have granted it.
        for lease in [
            leased_at(1, 10, 3_000, 95, 160),
            leased_at(1, 10, 3_000, 150, 205),
        ] {
            let history = [
                maintenance(true, 90, 100),
                lease,
                maintenance(false, 200, 210),
            ];
            assert_eq!(check(&history, &healthy()), vec![]);
        }
    }

    #[test]
    fn a_grant_over_a_lowered_quota_is_caught() {
        let mut end = healthy();
        end.lease_ttl_ms = 1_000;
        end.jobs = vec![
            job(
                1,
                "t0",
                pb::JobStatus::Succeeded,
                vec![attempt(
                    1,
                    10,
                    100,
                    Some(500),
                    pb::AttemptOutcome::Succeeded,
                )],
            ),
            job(
                2,
                "t0",
                pb::JobStatus::Succeeded,
                vec![attempt(
                    1,
                    20,
                    300,
                    Some(400),
                    pb::AttemptOutcome::Succeeded,
                )],
            ),
        ];
        let quota = |max: u32, asked: u64, at: u64| {
            record(
                at,
                Event::QuotaSet {
                    tenant: "t0".to_owned(),
                    max_active: max,
                    asked_ms: asked,
                },
            )
        };
        // Quota 1 from 50: job 2 was granted at 300 while job 1 held its lease since 100.
        let history = [
            quota(1, 40, 50),
            leased_at(1, 10, 1_100, 90, 110),
            leased_at(2, 20, 1_300, 290, 310),
            quota(2, 600, 610),
        ];
        assert_eq!(
            check(&history, &end),
            vec![Violation::QuotaExceededAtGrant {
                tenant: "t0".to_owned(),
                job: 2,
                lease: 20,
                active: 2,
                max: 1,
            }]
        );
        // Under the restored quota of two, the same grants are fine.
        let history = [
            quota(1, 40, 50),
            quota(2, 60, 70),
            leased_at(1, 10, 1_100, 90, 110),
            leased_at(2, 20, 1_300, 290, 310),
        ];
        assert_eq!(check(&history, &end), vec![]);
    }

    #[test]
    fn membership_that_contradicts_an_acknowledged_change_is_caught() {
        let at = |at_ms: u64, event: Event| record(at_ms, event);
        let history = [
            at(1, Event::NodeAdded { node: 4 }),
            at(2, Event::NodePromoted { node: 4 }),
            at(3, Event::NodeRemoved { node: 2 }),
        ];
        let mut end = healthy();
        end.members = vec![(1, true), (3, true), (4, true)];
        end.replicas = [1, 3, 4].map(|id| (id, Some(7), "d".to_owned())).to_vec();
        assert_eq!(check(&history, &end), vec![]);
        // A member that never reported its replica is not a replica that agrees.
        let mut silent = end.clone();
        silent.replicas.pop();
        assert!(matches!(
            check(&history, &silent).as_slice(),
            [Violation::ReplicasDiverge { .. }]
        ));
        // Node 2 came back (a removal lost), node 4 is a learner again (a promotion lost).
        end.members = vec![(1, true), (2, true), (3, true), (4, false)];
        end.replicas = [1, 2, 3, 4]
            .map(|id| (id, Some(7), "d".to_owned()))
            .to_vec();
        let found = check(&history, &end);
        assert_eq!(
            found,
            vec![
                Violation::MembershipLost {
                    node: 2,
                    detail: "removed, yet still a member".to_owned()
                },
                Violation::MembershipLost {
                    node: 4,
                    detail: "promoted to voter, yet a learner".to_owned()
                },
            ]
        );
    }

    #[test]
    fn a_cancel_that_was_not_final_is_caught() {
        let canceled = |at: u64| record(at, Event::CancelAcknowledged { job: 1 });
        // The job succeeded after its cancel was acknowledged.
        let found = check(&[canceled(3)], &healthy());
        assert!(
            matches!(found.as_slice(), [Violation::CancelNotFinal { job: 1, .. }]),
            "{found:?}"
        );
        let mut end = healthy();
        end.jobs[0].status = pb::JobStatus::Canceled as i32;
        end.jobs[0].attempts[0].outcome = pb::AttemptOutcome::Canceled as i32;
        assert_eq!(check(&[canceled(3)], &end), vec![]);
        // Canceled in the end, but granted to a worker after the cancel was answered.
        let found = check(&[canceled(3), leased_at(1, 10, 2_000, 4, 6)], &end);
        assert!(
            found
                .iter()
                .any(|v| matches!(v, Violation::CancelNotFinal { job: 1, .. })),
            "{found:?}"
        );
    }
}
