//! Retention: finished work leaves memory for the archive on windows of log time, and the
//! archive lets it go after its own window.

mod common;
use common::{spec, stamp, Cluster};
use rota_state_machine::*;

const MIN: u64 = 60_000;

fn short_windows() -> Retention {
    Retention {
        succeeded_ms: MIN,
        canceled_ms: 2 * MIN,
        dead_lettered_ms: 3 * MIN,
        history_ms: 5 * MIN,
        archive_ms: 10 * MIN,
    }
}

fn with_short_windows() -> Cluster {
    with_windows(short_windows())
}

/// Short windows for jobs, but the governance history (which holds the change of windows
/// itself) stays: the archive then holds jobs alone.
fn with_jobs_only_windows() -> Cluster {
    with_windows(Retention {
        history_ms: MAX_RETENTION_MS,
        ..short_windows()
    })
}

/// Every window of `r`, as a change.
fn all_of(r: Retention) -> RetentionChange {
    RetentionChange {
        succeeded_ms: Some(r.succeeded_ms),
        canceled_ms: Some(r.canceled_ms),
        dead_lettered_ms: Some(r.dead_lettered_ms),
        history_ms: Some(r.history_ms),
        archive_ms: Some(r.archive_ms),
    }
}

fn with_windows(retention: Retention) -> Cluster {
    let mut c = Cluster::new();
    let set = c.apply(Command::SetRetention {
        change: all_of(retention),
        stamp: stamp(),
    });
    assert_eq!(set, Ok(Reply::Done));
    c
}

/// Runs one job of type `t` to success and returns its id.
fn run_to_success(c: &mut Cluster, job: JobSpec) -> JobId {
    let id = c.enqueue(job);
    let grants = c.lease("w", &["t"], 1);
    assert_eq!(grants[0].job_id, id);
    c.succeed(&grants[0]);
    id
}

fn puts(ops: &[ArchiveOp]) -> Vec<ArchiveKey> {
    ops.iter()
        .filter_map(|op| match op {
            ArchiveOp::Put { key, .. } => Some(*key),
            ArchiveOp::Delete { .. } => None,
        })
        .collect()
}

fn deletes(ops: &[ArchiveOp]) -> Vec<ArchiveKey> {
    ops.iter()
        .filter_map(|op| match op {
            ArchiveOp::Delete { key } => Some(*key),
            ArchiveOp::Put { .. } => None,
        })
        .collect()
}

#[test]
fn nothing_leaves_memory_until_the_log_sets_windows_and_unset_ones_take_the_defaults() {
    let mut c = Cluster::new();
    assert_eq!(c.state.retention(), None);
    let id = run_to_success(&mut c, spec("acme", "t"));
    c.advance(365 * 24 * 60 * MIN);
    assert!(c.state.job(id).is_some(), "no retention until one is set");
    assert_eq!(c.state.next_due_ms(), None, "and nothing waits on it");

    let set = c.apply(Command::SetRetention {
        change: RetentionChange {
            canceled_ms: Some(5 * MIN),
            ..RetentionChange::default()
        },
        stamp: stamp(),
    });
    assert_eq!(set, Ok(Reply::Done));
    let r = *c.state.retention().expect("set");
    assert_eq!(r.canceled_ms, 5 * MIN);
    assert_eq!(r.succeeded_ms, 3_600_000, "the defaults for the rest");
    assert_eq!(r.dead_lettered_ms, 7 * 86_400_000);
    assert_eq!(r.archive_ms, 30 * 86_400_000);
    assert!(
        c.state.job(id).is_some(),
        "windows apply from the next command"
    );
    c.advance(0);
    assert!(
        c.state.job(id).is_none(),
        "long past its window once one is set"
    );

    // A later change keeps what an earlier one set.
    c.apply(Command::SetRetention {
        change: RetentionChange {
            archive_ms: Some(MIN),
            ..RetentionChange::default()
        },
        stamp: stamp(),
    })
    .unwrap();
    let r = *c.state.retention().expect("set");
    assert_eq!((r.canceled_ms, r.archive_ms), (5 * MIN, MIN));
}

#[test]
fn a_lowered_window_evicts_over_several_commands_not_one() {
    let mut c = Cluster::new();
    let n = MAX_RETIRED_PER_COMMAND + 5;
    let specs: Vec<JobSpec> = (0..n).map(|_| spec("acme", "t")).collect();
    for chunk in specs.chunks(MAX_BATCH) {
        c.apply(Command::EnqueueBatch {
            specs: chunk.to_vec(),
        })
        .unwrap();
    }
    loop {
        let grants = c.lease("w", &["t"], MAX_LEASE_BATCH);
        if grants.is_empty() {
            break;
        }
        for chunk in grants.chunks(MAX_BATCH) {
            let items = chunk
                .iter()
                .map(|g| CompleteItem {
                    job_id: g.job_id,
                    lease_id: g.lease_id,
                    completion: Completion::Succeeded { outputs: vec![] },
                })
                .collect();
            c.apply(Command::CompleteBatch { items }).unwrap();
        }
    }
    c.apply(Command::SetRetention {
        change: RetentionChange {
            succeeded_ms: Some(0),
            ..RetentionChange::default()
        },
        stamp: stamp(),
    })
    .unwrap();
    c.advance(0);
    assert_eq!(c.state.job_count(), n - MAX_RETIRED_PER_COMMAND);
    assert!(c.state.next_due_ms().is_some_and(|due| due <= c.now_ms));
    c.advance(0);
    assert_eq!(c.state.job_count(), 0, "the next tick evicts the rest");
}

#[test]
fn a_succeeded_job_is_archived_once_its_window_passes_and_dropped_after_the_archives() {
    let mut c = with_jobs_only_windows();
    c.state.take_archive_ops();
    let id = run_to_success(&mut c, spec("acme", "t"));
    c.advance(MIN - 1);
    assert!(c.state.job(id).is_some(), "still within its window");
    assert!(c.state.take_archive_ops().is_empty());

    c.advance(1);
    assert!(c.state.job(id).is_none(), "left memory");
    let entry = c
        .state
        .archived(ArchiveKey::job(id))
        .cloned()
        .expect("in the book");
    assert_eq!(entry.status, Some(Status::Succeeded));
    let ops = c.state.take_archive_ops();
    assert_eq!(puts(&ops), vec![ArchiveKey::job(id)]);
    let ArchiveOp::Put { record, .. } = &ops[0] else {
        unreachable!()
    };
    assert_eq!(record_hash(record), entry.hash);
    let archived = Archived::decode(record).expect("the record decodes");
    let ArchivedItem::Job(job) = archived.item else {
        panic!("a job's record holds a job: {archived:?}")
    };
    assert_eq!((job.id, job.status()), (id, Status::Succeeded));
    assert_eq!(c.state.job_count(), 0);
    assert_eq!(c.state.archive_stats().records, 1);
    assert_eq!(c.state.job_status(id), Some(Status::Succeeded));

    c.advance(10 * MIN);
    assert_eq!(
        deletes(&c.state.take_archive_ops()),
        vec![ArchiveKey::job(id)]
    );
    assert!(c.state.archived(ArchiveKey::job(id)).is_none());
    assert_eq!(c.state.archive_stats(), ArchiveStats::default());
}

#[test]
fn each_final_state_has_its_own_window_and_live_jobs_stay() {
    let mut c = with_short_windows();
    let ok = run_to_success(&mut c, spec("acme", "t"));
    let canceled = c.enqueue(spec("acme", "t"));
    c.apply(Command::Cancel {
        job_id: canceled,
        stamp: stamp(),
    })
    .unwrap();
    let mut doomed = spec("acme", "t");
    doomed.retry.max_attempts = 1;
    let dead = c.enqueue(doomed);
    let grants = c.lease("w", &["t"], 1);
    c.fail(&grants[0], false);
    let live = c.enqueue(spec("acme", "other"));
    assert_eq!(c.status(dead), Status::DeadLettered);

    c.advance(MIN);
    assert!(c.state.job(ok).is_none());
    assert!(c.state.job(canceled).is_some());
    c.advance(MIN);
    assert!(c.state.job(canceled).is_none());
    assert!(c.state.job(dead).is_some());
    c.advance(MIN);
    assert!(c.state.job(dead).is_none());
    c.advance(60 * MIN);
    assert_eq!(c.status(live), Status::Ready, "live work never leaves");
}

#[test]
fn an_idempotency_key_dedupes_while_its_job_is_archived_and_not_after() {
    let mut c = with_short_windows();
    let mut keyed = spec("acme", "t");
    keyed.idempotency_key = Some("order-7".into());
    let id = run_to_success(&mut c, keyed.clone());
    c.advance(2 * MIN);
    assert!(c.state.job(id).is_none());
    let again = c.apply(Command::Enqueue {
        spec: keyed.clone(),
    });
    assert_eq!(
        again,
        Ok(Reply::Enqueued {
            job_id: id,
            created: false
        })
    );
    c.advance(10 * MIN);
    let after = c.apply(Command::Enqueue { spec: keyed });
    assert!(
        matches!(after, Ok(Reply::Enqueued { job_id, created: true }) if job_id != id),
        "after the archive's window the key is free again: {after:?}"
    );
}

#[test]
fn an_archived_job_can_be_depended_on_but_not_replayed() {
    let mut c = with_short_windows();
    let id = run_to_success(&mut c, spec("acme", "t"));
    c.advance(MIN);
    let mut child = spec("acme", "t");
    child.depends_on = vec![id];
    let child = c.enqueue(child);
    assert_eq!(c.status(child), Status::Ready, "an archived success is met");
    let replay = c.apply(Command::Replay {
        job_id: id,
        stamp: stamp(),
    });
    assert_eq!(replay, Err(SchedulerError::Archived(id)));
}

#[test]
fn plans_and_history_leave_memory_too() {
    let mut c = with_short_windows();
    let step = |key: &str, deps: &[&str]| PlanStep {
        key: key.into(),
        spec: spec("acme", "t"),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
    };
    let Ok(Reply::PlanSubmitted { plan_id, jobs }) = c.apply(Command::SubmitPlan {
        steps: vec![step("a", &[]), step("b", &["a"])],
        backfill: None,
    }) else {
        panic!("plan refused")
    };
    let first = c.lease("w", &["t"], 2);
    assert_eq!(first.len(), 1, "b waits on a");
    c.succeed(&first[0]);
    c.advance(MIN + SWEEP_EVERY_MS);
    assert!(c.state.job(jobs[0].1).is_none(), "a is archived");
    let view = c.state.plan(plan_id).expect("b is still live");
    assert_eq!(view.status, PlanStatus::Running);
    assert_eq!(
        view.steps.iter().map(|s| s.2).collect::<Vec<_>>(),
        vec![Status::Succeeded, Status::Ready],
        "an archived step still shows, with its final status"
    );

    let second = c.lease("w", &["t"], 1);
    c.succeed(&second[0]);
    c.advance(MIN + SWEEP_EVERY_MS);
    assert!(c.state.plan(plan_id).is_none(), "all its jobs have left");
    assert!(c.state.archived(ArchiveKey::plan(plan_id)).is_some());
    assert_eq!(
        c.state.governance_history().len(),
        1,
        "the change of windows"
    );
    c.advance(5 * MIN);
    assert!(c.state.governance_history().is_empty());
    assert_eq!(c.state.governance_archived(), 1);
}

#[test]
fn retention_windows_are_checked_before_they_are_set() {
    let mut c = Cluster::new();
    let command = Command::SetRetention {
        change: RetentionChange {
            archive_ms: Some(MAX_RETENTION_MS + 1),
            ..RetentionChange::default()
        },
        stamp: stamp(),
    };
    assert!(
        matches!(command.check(), Err(SchedulerError::InvalidInput { ref field, .. }) if field == "archive_ms")
    );
    assert!(c.apply(command).is_err());
    assert_eq!(c.state.retention(), None);
}

#[test]
fn replicas_agree_and_a_snapshot_carries_the_book() {
    let mut a = with_jobs_only_windows();
    for _ in 0..5 {
        run_to_success(&mut a, spec("acme", "t"));
        a.advance(30_000);
    }
    a.advance(MIN);
    assert!(a.state.archive_stats().records > 0);
    let restored = State::restore(&a.state.snapshot().unwrap()).unwrap();
    restored.check_invariants().unwrap();
    assert_eq!(restored.digest().unwrap(), a.digest());
    assert_eq!(restored.archive_stats(), a.state.archive_stats());
    let mut b = Cluster {
        state: restored,
        index: a.index,
        now_ms: a.now_ms,
    };
    for c in [&mut a, &mut b] {
        c.advance(11 * MIN);
    }
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.state.archive_stats(), ArchiveStats::default());
    assert_eq!(b.state.archive_stats(), ArchiveStats::default());
}

#[test]
fn a_plan_step_depending_on_an_archived_failure_is_refused() {
    let mut c = with_short_windows();
    let mut doomed = spec("acme", "t");
    doomed.retry.max_attempts = 1;
    doomed.idempotency_key = Some("extract-2026-12-01".into());
    let dead = c.enqueue(doomed.clone());
    let grants = c.lease("w", &["t"], 1);
    c.fail(&grants[0], false);
    c.advance(3 * MIN);
    assert!(c.state.job(dead).is_none(), "archived");
    let steps = vec![
        PlanStep {
            key: "extract".into(),
            spec: doomed,
            depends_on: vec![],
        },
        PlanStep {
            key: "load".into(),
            spec: spec("acme", "t"),
            depends_on: vec!["extract".into()],
        },
    ];
    let refused = c.apply(Command::SubmitPlan {
        steps,
        backfill: None,
    });
    assert_eq!(
        refused,
        Err(SchedulerError::DependencyFailed {
            dependency: dead,
            status: Status::DeadLettered
        })
    );
}
