//! Batch enqueue and batch completion: each item behaves as its single command would.

mod common;
use common::{spec, Cluster};
use rota_state_machine::*;

fn replies(response: Response) -> Vec<Response> {
    match response {
        Ok(Reply::Batch { replies }) => replies,
        other => panic!("expected a batch reply, got {other:?}"),
    }
}

fn succeeded() -> Completion {
    Completion::Succeeded { outputs: vec![] }
}

#[test]
fn a_batch_enqueue_answers_each_job_and_matches_single_enqueues() {
    let mut batched = Cluster::new();
    let mut single = Cluster::new();
    let mut keyed = spec("acme", "email");
    keyed.idempotency_key = Some("k1".into());
    let specs = vec![spec("acme", "email"), keyed.clone(), keyed.clone()];

    let answers = replies(batched.apply(Command::EnqueueBatch {
        specs: specs.clone(),
    }));
    let created: Vec<(JobId, bool)> = answers
        .into_iter()
        .map(|r| match r {
            Ok(Reply::Enqueued { job_id, created }) => (job_id, created),
            other => panic!("{other:?}"),
        })
        .collect();
    // The repeated key returns the job the same batch created.
    assert_eq!(created[1].0, created[2].0);
    assert_eq!(
        created.iter().map(|c| c.1).collect::<Vec<_>>(),
        [true, true, false]
    );

    // One entry of three enqueues ends in the same state as three entries of one, up to
    // the log index; applied in one entry at the same index, the digests agree.
    for s in specs {
        single.index = batched.index - 1;
        let _ = single
            .state
            .apply(Command::Enqueue { spec: s }, batched.now_ms, batched.index);
    }
    assert_eq!(single.state.digest().ok(), batched.state.digest().ok());
}

#[test]
fn one_bad_item_is_refused_alone() {
    let mut c = Cluster::new();
    let bad = spec("", "email");
    let answers = replies(c.apply(Command::EnqueueBatch {
        specs: vec![spec("acme", "email"), bad, spec("acme", "email")],
    }));
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    assert!(
        matches!(answers[1], Err(SchedulerError::InvalidInput { .. })),
        "{answers:?}"
    );
    assert_eq!(c.lease("w", &["email"], 10).len(), 2);
}

#[test]
fn empty_and_oversized_batches_are_refused_whole() {
    let mut c = Cluster::new();
    for specs in [vec![], vec![spec("acme", "email"); MAX_BATCH + 1]] {
        let err = c.apply(Command::EnqueueBatch { specs }).unwrap_err();
        assert!(matches!(err, SchedulerError::InvalidInput { .. }), "{err}");
    }
    let err = c
        .apply(Command::CompleteBatch { items: vec![] })
        .unwrap_err();
    assert!(matches!(err, SchedulerError::InvalidInput { .. }), "{err}");
    assert!(c.lease("w", &["email"], 10).is_empty());
}

#[test]
fn a_batch_completion_fences_each_item() {
    let mut c = Cluster::new();
    for _ in 0..3 {
        c.enqueue(spec("acme", "email"));
    }
    let grants = c.lease("w", &["email"], 3);
    let mut items: Vec<CompleteItem> = grants
        .iter()
        .map(|g| CompleteItem {
            job_id: g.job_id,
            lease_id: g.lease_id,
            completion: succeeded(),
        })
        .collect();
    // A stale token on the second item.
    items[1].lease_id = LeaseId(items[1].lease_id.0 + 999);
    let answers = replies(c.apply(Command::CompleteBatch { items }));
    assert!(matches!(
        answers[0],
        Ok(Reply::Completed {
            status: Status::Succeeded,
            ..
        })
    ));
    assert!(
        matches!(answers[1], Err(SchedulerError::StaleLease { .. })),
        "{answers:?}"
    );
    assert!(answers[2].is_ok());
    let status = |id| c.state.job(id).map(|j| j.status());
    assert_eq!(status(grants[0].job_id), Some(Status::Succeeded));
    assert_eq!(status(grants[1].job_id), Some(Status::Leased));
    assert_eq!(status(grants[2].job_id), Some(Status::Succeeded));
}
