//! `rota cluster add` and `remove` through the admin API: a node joins a running cluster,
//! catches up, votes, and leaves again.

use rota_client::proto as pb;
use rota_client::Client;
use rota_node::{NodeSettings, RunningNode};
use std::time::Duration;

async fn node(id: u64, dir: &std::path::Path) -> RunningNode {
    let settings = NodeSettings::new(
        id,
        "127.0.0.1:0".parse().expect("addr"),
        dir.join(id.to_string()),
    );
    RunningNode::start(settings).await.expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_a_running_cluster_catches_up_and_leaves() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let first = node(1, dir.path()).await;
    let second = node(2, dir.path()).await;
    first.initialize_alone().await.expect("one-node cluster");
    let client = Client::connect([first.addr().to_string()]).expect("client");
    for n in 0..20u8 {
        let spec = pb::JobSpec {
            tenant: "acme".to_owned(),
            job_type: "email".to_owned(),
            payload: vec![n],
            ..pb::JobSpec::default()
        };
        client
            .enqueue(pb::EnqueueRequest {
                session: None,
                spec: Some(spec),
            })
            .await
            .expect("enqueue");
    }

    // Asked through the joining node itself: it isn't in the cluster yet, so it can't
    // forward, and says so.
    let outsider = Client::with_config(rota_client::ClientConfig {
        retry_for: Duration::from_millis(300),
        ..rota_client::ClientConfig::new([second.addr().to_string()])
    })
    .expect("client");
    let refused = outsider
        .add_node(pb::AddNodeRequest {
            id: 2,
            addr: second.addr().to_string(),
        })
        .await
        .expect_err("a node outside the cluster can't add itself");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");

    let status = client
        .add_node(pb::AddNodeRequest {
            id: 2,
            addr: second.addr().to_string(),
        })
        .await
        .expect("add node");
    let voters: Vec<u64> = status
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect();
    assert_eq!(voters, vec![1, 2]);
    let joined = outsider
        .cluster_status(pb::ClusterStatusRequest {
            digest: true,
            leader_view: false,
        })
        .await
        .expect("status");
    assert_eq!(joined.leader_id, Some(1));
    second
        .raft()
        .wait_applied(
            status.applied_index.unwrap_or_default(),
            Duration::from_secs(10),
        )
        .await
        .expect("the new node catches up");
    assert_eq!(first.raft().digest(), second.raft().digest());
    // Writes through the new member are forwarded to the leader.
    let via_second = outsider
        .enqueue(pb::EnqueueRequest {
            session: None,
            spec: Some(pb::JobSpec {
                tenant: "acme".to_owned(),
                job_type: "email".to_owned(),
                ..pb::JobSpec::default()
            }),
        })
        .await
        .expect("forwarded enqueue");
    assert_eq!(via_second.job_id, 20);

    let missing = client
        .remove_node(pb::RemoveNodeRequest { id: 9 })
        .await
        .expect_err("no node 9");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let status = client
        .remove_node(pb::RemoveNodeRequest { id: 2 })
        .await
        .expect("remove node");
    let voters: Vec<u64> = status
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect();
    assert_eq!(voters, vec![1]);
    second.shutdown().await.expect("shutdown");
    first.shutdown().await.expect("shutdown");
}
