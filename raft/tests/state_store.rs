//! The state-machine adapter on its own: applying batches, snapshots, restarts.

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};
use rota_raft::{Batch, Entry, LogId, StateStore};
use rota_state_machine::JobSpec;
use rota_state_machine::{
    ArchiveKey, ArchivedItem, Command, Completion, JobId, JobType, Reply, RetentionChange, Stamp,
    WorkerId,
};

fn entry(index: u64, commands: Vec<Command>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Batch::new(1_000 + index, commands)),
    }
}

fn enqueue(i: u64) -> Command {
    Command::Enqueue {
        spec: JobSpec::new("acme", "email", i.to_be_bytes().to_vec()),
    }
}

#[tokio::test]
async fn batch_commands_get_one_response_each_in_order() {
    let mut store = StateStore::in_memory();
    let replies = store
        .apply([entry(1, vec![enqueue(0), enqueue(1), Command::Tick])])
        .await
        .expect("apply");
    assert_eq!(replies.len(), 1);
    let responses = &replies[0].responses;
    assert_eq!(responses.len(), 3);
    assert!(matches!(
        responses[0],
        Ok(Reply::Enqueued { created: true, .. })
    ));
    assert!(matches!(responses[2], Ok(Reply::Ticked)));
    let (applied, _) = store.applied_state().await.expect("applied");
    assert_eq!(applied.map(|id| id.index), Some(1));
}

#[tokio::test]
async fn restart_resumes_from_the_latest_snapshot_only() {
    for on_disk in [false, true] {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let mut store = if on_disk {
            StateStore::open_dir(dir.path()).expect("open")
        } else {
            StateStore::in_memory()
        };
        store
            .apply([entry(1, vec![enqueue(0)]), entry(2, vec![enqueue(1)])])
            .await
            .expect("apply");
        let snapshot = build(&mut store).await;
        store
            .apply([entry(3, vec![enqueue(2)])])
            .await
            .expect("apply");

        let restarted = store.restarted().expect("restart");
        let (applied, digest, jobs) = restarted.read_local_for_test();
        assert_eq!(applied, snapshot.meta.last_log_id, "on_disk={on_disk}");
        assert_eq!(
            jobs, 2,
            "the entry after the snapshot is replayed by Raft, not kept here"
        );
        let mut fresh = StateStore::in_memory();
        fresh
            .apply([entry(1, vec![enqueue(0)]), entry(2, vec![enqueue(1)])])
            .await
            .expect("apply");
        assert_eq!(digest, fresh.read_local_for_test().1);
    }
}

trait ReadForTest {
    fn read_local_for_test(&self) -> (Option<LogId>, String, usize);
}

impl ReadForTest for StateStore {
    fn read_local_for_test(&self) -> (Option<LogId>, String, usize) {
        let applied = self.read();
        (
            applied.last_applied,
            applied.state.digest().expect("digest"),
            applied.state.job_count(),
        )
    }
}

/// Builds a snapshot of what `store` has applied.
async fn build(store: &mut StateStore) -> openraft::storage::Snapshot<rota_raft::TypeConfig> {
    store
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot")
}

/// A store on `dir` with two entries applied and a snapshot of them built.
async fn snapshotted(dir: &std::path::Path) -> StateStore {
    let mut store = StateStore::open_dir(dir).expect("open");
    store
        .apply([entry(1, vec![enqueue(0)]), entry(2, vec![enqueue(1)])])
        .await
        .expect("apply");
    build(&mut store).await;
    store
}

#[tokio::test]
async fn a_corrupt_or_truncated_snapshot_file_is_detected_and_named() {
    for damage in ["flip a byte", "truncate"] {
        let dir = tempfile::TempDir::new().expect("temp dir");
        snapshotted(dir.path()).await;
        let path = dir.path().join("current.snapshot");
        let mut bytes = std::fs::read(&path).expect("the snapshot file");
        match damage {
            "flip a byte" => {
                let last = bytes.len() - 1;
                bytes[last] ^= 0xff;
            }
            _ => bytes.truncate(bytes.len() / 2),
        }
        std::fs::write(&path, &bytes).expect("damage it");
        let refused = StateStore::open_dir(dir.path()).expect_err(damage);
        let message = refused.to_string();
        assert!(message.contains("current.snapshot"), "{damage}: {message}");
        assert!(message.contains("checksum"), "{damage}: {message}");
    }
}

#[tokio::test]
async fn building_and_installing_at_once_leave_a_valid_snapshot() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let mut store = snapshotted(dir.path()).await;
    // What a leader would send: another store's snapshot, further along.
    let mut leader = StateStore::in_memory();
    leader
        .apply((1..=5).map(|i| entry(i, vec![enqueue(i)])))
        .await
        .expect("apply");
    let sent = build(&mut leader).await;
    let mut bytes = Vec::new();
    let mut data = sent.snapshot;
    tokio::io::AsyncReadExt::read_to_end(&mut data, &mut bytes)
        .await
        .expect("the leader's snapshot");

    // The build and the install each write on a blocking thread of their own, together.
    for round in 0..20 {
        let mut builder = store.get_snapshot_builder().await;
        let mut installer = store.clone();
        let meta = sent.meta.clone();
        let mut scratch = installer.begin_receiving_snapshot().await.expect("scratch");
        tokio::io::AsyncWriteExt::write_all(&mut scratch, &bytes)
            .await
            .expect("receive");
        let (built, installed) = tokio::join!(
            builder.build_snapshot(),
            installer.install_snapshot(&meta, scratch)
        );
        built.expect("build");
        installed.expect("install");
        let reopened = store
            .restarted()
            .unwrap_or_else(|e| panic!("round {round}: the snapshot on disk is unusable: {e}"));
        let (applied, _, _) = reopened.read_local_for_test();
        assert_eq!(
            applied, sent.meta.last_log_id,
            "round {round}: the snapshot kept went back behind the one installed"
        );
    }
}

fn at(index: u64, now_ms: u64, commands: Vec<Command>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Batch::new(now_ms, commands)),
    }
}

/// Sets short windows, runs job 0 to success at log time 1,001..1,004 and moves log time
/// `later_ms` on, so the job is archived.
async fn archive_one_job(store: &mut StateStore, later_ms: u64) {
    let set = Command::SetRetention {
        change: RetentionChange {
            succeeded_ms: Some(1_000),
            ..RetentionChange::default()
        },
        stamp: Stamp::new("ops", "short windows for the test"),
    };
    let lease = Command::Lease {
        worker: WorkerId::new("w"),
        job_types: vec![JobType::new("email")],
        max: 1,
        ttl_ms: None,
    };
    let replies = store
        .apply([
            at(1, 1_001, vec![set]),
            at(2, 1_002, vec![enqueue(0)]),
            at(3, 1_003, vec![lease]),
        ])
        .await
        .expect("apply");
    let Ok(Reply::Leased { grants, .. }) = &replies[2].responses[0] else {
        panic!("lease refused: {replies:?}");
    };
    let complete = Command::Complete {
        job_id: JobId(0),
        lease_id: grants[0].lease_id,
        completion: Completion::Succeeded { outputs: vec![] },
    };
    store
        .apply([
            at(4, 1_004, vec![complete]),
            at(5, 1_004 + later_ms, vec![Command::Tick]),
        ])
        .await
        .expect("apply");
}

fn archived_job(store: &StateStore) -> Option<JobId> {
    let applied = store.read();
    let archived = applied
        .archived(ArchiveKey::job(JobId(0)))
        .expect("the archive reads");
    archived.map(|a| match a.item {
        ArchivedItem::Job(job) => job.id,
        other => panic!("job 0's record holds {other:?}"),
    })
}

#[tokio::test]
async fn the_archive_is_carried_by_snapshots_to_a_restart_and_an_install() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let mut store = StateStore::open_dir(dir.path()).expect("open");
    archive_one_job(&mut store, 5_000).await;
    assert!(store.read().state.job(JobId(0)).is_none(), "left memory");
    assert_eq!(archived_job(&store), Some(JobId(0)));
    let sent = build(&mut store).await;
    drop(store);

    let restarted = StateStore::open_dir(dir.path()).expect("reopen");
    assert_eq!(archived_job(&restarted), Some(JobId(0)), "after a restart");

    let mut bytes = Vec::new();
    let mut data = sent.snapshot;
    tokio::io::AsyncReadExt::read_to_end(&mut data, &mut bytes)
        .await
        .expect("the snapshot");
    let mut follower = StateStore::in_memory();
    assert_eq!(archived_job(&follower), None);
    let mut scratch = follower.begin_receiving_snapshot().await.expect("scratch");
    tokio::io::AsyncWriteExt::write_all(&mut scratch, &bytes)
        .await
        .expect("receive");
    follower
        .install_snapshot(&sent.meta, scratch)
        .await
        .expect("install");
    assert_eq!(archived_job(&follower), Some(JobId(0)), "after an install");
    assert_eq!(
        follower.read_local_for_test().1,
        restarted.read_local_for_test().1
    );
}

#[tokio::test]
async fn a_snapshot_whose_archive_disagrees_with_its_book_is_refused() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let mut store = StateStore::open_dir(dir.path()).expect("open");
    archive_one_job(&mut store, 5_000).await;
    build(&mut store).await;
    drop(store);
    // Damage the record and fix the checksum up, as a buggy writer would.
    let path = dir.path().join("current.snapshot");
    let mut bytes = std::fs::read(&path).expect("the snapshot file");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let sum = <sha2::Sha256 as sha2::Digest>::digest(&bytes[40..]);
    bytes[8..40].copy_from_slice(&sum);
    std::fs::write(&path, &bytes).expect("damage it");
    let refused = StateStore::open_dir(dir.path()).expect_err("refused");
    let message = refused.to_string();
    assert!(message.contains("current.snapshot"), "{message}");
    assert!(message.contains("book"), "{message}");
}
