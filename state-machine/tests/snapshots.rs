//! Snapshots, restore and digests.

mod common;
use common::{spec, stamp, Cluster};
use rota_state_machine::*;

fn busy_cluster() -> Cluster {
    let mut c = Cluster::new();
    c.apply(Command::SetQuota {
        tenant: TenantId::new("acme"),
        job_type: None,
        max_active: Some(3),
        max_per_hour: Some(100),
        burst: Some(10),
        stamp: stamp(),
    })
    .unwrap();
    c.apply(Command::CreateSchedule {
        id: ScheduleId::new("s"),
        template: spec("acme", "r"),
        cadence: Cadence::Every {
            interval_ms: 60_000,
        },
        catch_up: CatchUp::Skip,
        start_ms: None,
        end_ms: None,
        stamp: stamp(),
    })
    .unwrap();
    for i in 0..20 {
        let mut s = spec(if i % 3 == 0 { "acme" } else { "globex" }, "t");
        s.idempotency_key = Some(format!("k{i}"));
        c.enqueue(s);
    }
    let grants = c.lease("w", &["t"], 6);
    c.succeed(&grants[0]);
    c.fail(&grants[1], true);
    c
}

#[test]
fn restore_gives_an_equal_state_with_rebuilt_indexes() {
    let c = busy_cluster();
    let bytes = c.state.snapshot().unwrap();
    assert_eq!(bytes[0], SNAPSHOT_VERSION);
    let restored = State::restore(&bytes).unwrap();
    restored.check_invariants().unwrap();
    assert_eq!(restored.digest().unwrap(), c.digest());
    assert_eq!(restored.queue_depth(), c.state.queue_depth());
}

#[test]
fn restored_state_goes_on_exactly_like_the_original() {
    let mut a = busy_cluster();
    let mut b = Cluster {
        state: State::restore(&a.state.snapshot().unwrap()).unwrap(),
        index: a.index,
        now_ms: a.now_ms,
    };
    for c in [&mut a, &mut b] {
        c.advance(120_000);
        let grants = c.lease("w2", &["t", "r"], 10);
        for g in &grants {
            c.succeed(g);
        }
    }
    assert_eq!(a.digest(), b.digest());
}

#[test]
fn digest_changes_with_state() {
    let mut c = busy_cluster();
    let before = c.digest();
    c.enqueue(spec("acme", "t"));
    assert_ne!(c.digest(), before);
}

#[test]
fn corrupt_or_foreign_snapshots_are_errors_not_panics() {
    let c = busy_cluster();
    let bytes = c.state.snapshot().unwrap();
    assert!(matches!(State::restore(&[]), Err(SnapshotError::Empty)));
    let mut other_version = bytes.clone();
    other_version[0] = 99;
    assert!(matches!(
        State::restore(&other_version),
        Err(SnapshotError::NewerVersion(99))
    ));
    assert!(matches!(
        State::restore(&bytes[..bytes.len() / 2]),
        Err(SnapshotError::Corrupt(_))
    ));
    for cut in [1, 7, 100, bytes.len() - 1] {
        let _ = State::restore(&bytes[..cut]);
    }
    let mut flipped = bytes.clone();
    for i in (1..flipped.len()).step_by(97) {
        flipped[i] ^= 0x5a;
        let _ = State::restore(&flipped);
    }
}

#[test]
fn snapshot_is_compact_binary() {
    let c = busy_cluster();
    let bytes = c.state.snapshot().unwrap();
    assert!(
        debug_text_size(&c) > bytes.len() * 2,
        "binary is much smaller than text"
    );
}

/// The jobs rendered as text (Debug), a stand-in for a text format like JSON.
fn debug_text_size(c: &Cluster) -> usize {
    format!(
        "{:?}",
        c.state
            .list_jobs(&JobFilter::default(), None, MAX_PAGE)
            .jobs
    )
    .len()
}

#[test]
fn a_frozen_copy_keeps_its_moment_while_apply_goes_on() {
    let mut c = busy_cluster();
    let before = c.state.snapshot().expect("snapshot");
    let digest_before = c.state.digest().expect("digest");
    let frozen = c.state.freeze();
    // Apply changes every kind of job the copy shares: new, leased, completed.
    c.enqueue(spec("acme", "t"));
    for grant in c.lease("w9", &["t"], 5) {
        c.succeed(&grant);
    }
    assert_ne!(c.state.snapshot().expect("snapshot"), before);
    assert_eq!(frozen.snapshot().expect("frozen snapshot"), before);
    assert_eq!(frozen.digest().expect("frozen digest"), digest_before);
    let restored = State::restore(&frozen.snapshot().expect("snapshot")).expect("restore");
    assert_eq!(restored.digest().expect("digest"), digest_before);
}
