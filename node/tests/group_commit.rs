//! Group commit: writes that arrive together share log entries, and each is still answered
//! only once committed.

mod common;

use rota_client::proto as pb;
use rota_client::Client;
use tokio::task::JoinSet;

const WRITERS: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_log_entries() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let node = common::one_node(common::settings(dir.path())).await;
    let client = Client::connect([node.addr().to_string()]).expect("client");
    let before = node.raft().digest().0.map_or(0, |id| id.index);

    let mut writers = JoinSet::new();
    for n in 0..WRITERS {
        let client = client.clone();
        writers.spawn(async move {
            let spec = pb::JobSpec {
                tenant: "acme".to_owned(),
                job_type: "email".to_owned(),
                payload: n.to_be_bytes().to_vec(),
                ..pb::JobSpec::default()
            };
            client
                .enqueue(pb::EnqueueRequest {
                    session: None,
                    spec: Some(spec),
                })
                .await
                .expect("enqueue")
                .job_id
        });
    }
    let mut ids = Vec::new();
    while let Some(id) = writers.join_next().await {
        ids.push(id.expect("writer"));
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len() as u64,
        WRITERS,
        "every write answered with its own job"
    );

    // Every answered write is applied (answers come after commit and apply)...
    let applied = node.raft().read_local(|a| a.state.job_count());
    assert_eq!(applied as u64, WRITERS);
    // ...and they took far fewer entries than writes: each synced append carried many.
    let after = node.raft().digest().0.map_or(0, |id| id.index);
    let entries = after - before;
    assert!(
        entries * 2 <= WRITERS,
        "{WRITERS} concurrent writes took {entries} log entries"
    );
    node.shutdown().await.expect("shutdown");
}
