//! The journal: what applying noted for watchers, only when asked for, in the order it
//! happened, and nothing else about the state.

mod common;

use common::{spec, stamp, Cluster};
use rota_state_machine::*;

#[test]
fn the_journal_notes_each_change_in_order_only_when_kept() {
    let mut cluster = Cluster::new();
    cluster
        .apply(Command::Enqueue {
            spec: spec("acme", "email"),
        })
        .expect("enqueued");
    assert!(
        cluster.state.take_journal().is_empty(),
        "off by default: nothing grows where nobody drains it"
    );

    cluster.state.keep_journal(true);
    cluster
        .apply(Command::Enqueue {
            spec: spec("acme", "email"),
        })
        .expect("enqueued");
    let notes = cluster.state.take_journal();
    let kinds: Vec<(JobEventKind, Status)> = notes
        .iter()
        .map(|note| match note {
            Note::Job {
                event,
                status,
                tenant,
                job_type,
                ..
            } => {
                assert_eq!((tenant.as_str(), job_type.as_str()), ("acme", "email"));
                (event.clone(), *status)
            }
            other => panic!("a job note, not {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (JobEventKind::Enqueued, Status::Ready),
            (JobEventKind::Ready, Status::Ready)
        ]
    );
    assert!(cluster.state.take_journal().is_empty(), "taken once");

    cluster
        .apply(Command::SetMaintenance {
            enabled: true,
            stamp: stamp(),
        })
        .expect("maintenance on");
    let notes = cluster.state.take_journal();
    assert!(
        matches!(
            notes.as_slice(),
            [Note::Governance { stamp: Some(s), .. }] if s.actor == "ops@example.com"
        ),
        "{notes:?}"
    );
}
