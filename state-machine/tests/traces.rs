//! Trace context carried with jobs: a `Traced` enqueue keeps each created job's
//! `traceparent` beside the ledger, replicas and snapshots agree on it, it leaves with the
//! job, and a bad one is refused whole.

mod common;

use common::{spec, stamp, Cluster};
use rota_state_machine::*;

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TP2: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn traced(traceparents: &[&str], command: Command) -> Command {
    Command::Traced {
        traceparents: traceparents.iter().map(|t| (*t).to_owned()).collect(),
        command: Box::new(command),
    }
}

fn enqueued(reply: Response) -> JobId {
    match reply {
        Ok(Reply::Enqueued { job_id, .. }) => job_id,
        other => panic!("not enqueued: {other:?}"),
    }
}

#[test]
fn a_traced_enqueue_keeps_each_jobs_context() {
    let mut c = Cluster::new();
    let plain = c.enqueue(spec("acme", "email"));
    let one = enqueued(c.apply(traced(
        &[TP],
        Command::Enqueue {
            spec: spec("acme", "email"),
        },
    )));
    assert_eq!(c.state.traceparent(one), Some(TP));
    assert_eq!(c.state.traceparent(plain), None);

    // A batch: each spec its own, an empty one for none; a deduplicated spec names an
    // existing job, which keeps what it had.
    let mut keyed = spec("acme", "email");
    keyed.idempotency_key = Some("k".to_owned());
    let first_keyed = c.enqueue(keyed.clone());
    let batch = c.apply(traced(
        &[TP2, "", TP],
        Command::EnqueueBatch {
            specs: vec![spec("acme", "email"), spec("acme", "email"), keyed],
        },
    ));
    let Ok(Reply::Batch { replies }) = batch else {
        panic!("{batch:?}");
    };
    let ids: Vec<JobId> = replies.into_iter().map(enqueued).collect();
    assert_eq!(c.state.traceparent(ids[0]), Some(TP2));
    assert_eq!(c.state.traceparent(ids[1]), None);
    assert_eq!(ids[2], first_keyed);
    assert_eq!(c.state.traceparent(first_keyed), None);
}

#[test]
fn bad_trace_context_is_refused_whole() {
    let mut c = Cluster::new();
    let jobs = c.state.job_count();
    for command in [
        traced(
            &["00-not-a-trace-01"],
            Command::Enqueue {
                spec: spec("acme", "email"),
            },
        ),
        traced(
            &[TP, TP],
            Command::Enqueue {
                spec: spec("acme", "email"),
            },
        ),
        traced(&[], Command::Tick),
        traced(
            &[TP],
            traced(
                &[TP],
                Command::Enqueue {
                    spec: spec("acme", "email"),
                },
            ),
        ),
    ] {
        assert!(command.check().is_err(), "{command:?} passed the check");
        let refused = c.apply(command);
        assert!(
            matches!(refused, Err(SchedulerError::InvalidInput { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(c.state.job_count(), jobs, "nothing was enqueued");
}

#[test]
fn snapshots_keep_trace_context_and_formats_3_to_6_still_read() {
    let mut c = Cluster::new();
    let id = enqueued(c.apply(traced(
        &[TP],
        Command::Enqueue {
            spec: spec("acme", "email"),
        },
    )));
    let bytes = c.state.snapshot().expect("snapshot");
    assert_eq!(bytes[0], SNAPSHOT_VERSION);
    let restored = State::restore(&bytes).expect("restore");
    assert_eq!(restored.traceparent(id), Some(TP));
    assert_eq!(restored.digest().expect("digest"), c.digest());

    // Format 6 is format 7 without the trailing map of blocked tenants, format 5 without
    // the cluster id before it too, format 4 without the map of acknowledgements before
    // that, format 3 without the trace contexts' map before that: an empty map, like a
    // missing id, is one zero byte.
    let mut plain = Cluster::new();
    plain.enqueue(spec("acme", "email"));
    let seven = plain.state.snapshot().expect("snapshot");
    assert_eq!(seven[0], 7);
    assert_eq!(
        seven[seven.len() - 4..],
        [0, 0, 0, 0],
        "three empty maps, no id"
    );
    for (version, cut) in [(6u8, 1), (5, 2), (4, 3), (3, 4)] {
        let mut older = seven[..seven.len() - cut].to_vec();
        older[0] = version;
        let old = State::restore(&older)
            .unwrap_or_else(|e| panic!("a format {version} snapshot reads: {e}"));
        assert_eq!(old.digest().expect("digest"), plain.digest());
    }
}

#[test]
fn trace_context_leaves_memory_with_its_job() {
    let mut c = Cluster::new();
    c.apply(Command::SetRetention {
        change: RetentionChange {
            succeeded_ms: Some(60_000),
            ..RetentionChange::default()
        },
        stamp: stamp(),
    })
    .expect("retention set");
    let id = enqueued(c.apply(traced(
        &[TP],
        Command::Enqueue {
            spec: spec("acme", "t"),
        },
    )));
    let grants = c.lease("w", &["t"], 1);
    assert_eq!(grants[0].job_id, id);
    c.succeed(&grants[0]);
    assert_eq!(c.state.traceparent(id), Some(TP));
    c.advance(120_000);
    assert!(c.state.job(id).is_none(), "the job left memory");
    assert_eq!(c.state.traceparent(id), None);
    assert!(!c.state.has_traces());
}
