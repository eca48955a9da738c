//! The state-machine adapter on its own: applying batches, snapshots, restarts.

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};
use rota_raft::{Batch, Entry, LogId, StateStore};
use rota_state_machine::{Command, JobSpec, Reply};

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
        let snapshot = store
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
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
