//! `rota cluster add` and `remove` through the admin API: a node joins a running cluster as
//! a learner at once, catches up, and only then votes; an address where nothing listens
//! neither blocks nor gets a vote, and its learner can be removed; removing voters below
//! three (or below a live quorum) needs `force`; every change is in the governance history.

mod common;

use rota_client::proto as pb;
use rota_client::{Client, ClientConfig};
use rota_node::{NodeSettings, RunningNode};
use std::time::{Duration, Instant};

async fn node(id: u64, dir: &std::path::Path) -> RunningNode {
    let settings = NodeSettings::new(
        id,
        "127.0.0.1:0".parse().expect("addr"),
        dir.join(id.to_string()),
    );
    RunningNode::start(settings).await.expect("node starts")
}

fn stamp(reason: &str) -> Option<pb::Stamp> {
    Some(pb::Stamp {
        actor: "ops@example.com".to_owned(),
        reason: reason.to_owned(),
        ticket: Some("OPS-17".to_owned()),
    })
}

fn add(id: u64, addr: String) -> pb::AddNodeRequest {
    pb::AddNodeRequest {
        id,
        addr,
        learner: false,
        stamp: stamp("more replicas"),
    }
}

fn remove(id: u64, force: bool) -> pb::RemoveNodeRequest {
    pb::RemoveNodeRequest {
        id,
        force,
        stamp: stamp("fewer replicas"),
    }
}

fn voters(status: &pb::ClusterStatusResponse) -> Vec<u64> {
    status
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect()
}

async fn leader_view(client: &Client) -> pb::ClusterStatusResponse {
    client
        .cluster_status(pb::ClusterStatusRequest {
            digest: false,
            leader_view: true,
        })
        .await
        .expect("status")
}

/// Waits until the leader's view has `want` as its voters.
async fn wait_voters(client: &Client, want: &[u64]) -> pb::ClusterStatusResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = leader_view(client).await;
        if voters(&status) == want {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "voters {:?}, not {want:?}",
            voters(&status)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn membership_history(client: &Client) -> Vec<String> {
    let history = client
        .governance_history(pb::GovernanceHistoryRequest {
            kinds: vec!["membership".to_owned()],
            ..pb::GovernanceHistoryRequest::default()
        })
        .await
        .expect("history");
    history
        .events
        .into_iter()
        .map(|e| {
            let stamp = e.stamp.expect("a stamp");
            assert_eq!(stamp.ticket.as_deref(), Some("OPS-17"));
            e.detail
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_as_a_learner_votes_once_caught_up_and_leaves_only_by_force() {
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
    let outsider = Client::with_config(ClientConfig {
        retry_for: Duration::from_millis(300),
        ..ClientConfig::new([second.addr().to_string()])
    })
    .expect("client");
    let refused = outsider
        .add_node(add(2, second.addr().to_string()))
        .await
        .expect_err("a node outside the cluster can't add itself");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");
    let unstamped = client
        .add_node(pb::AddNodeRequest {
            stamp: None,
            ..add(2, second.addr().to_string())
        })
        .await
        .expect_err("a membership change says why");
    assert_eq!(unstamped.code(), tonic::Code::InvalidArgument);
    let bad_addr = client
        .add_node(add(2, "no-port".to_owned()))
        .await
        .expect_err("an address without a port");
    assert_eq!(bad_addr.code(), tonic::Code::InvalidArgument);

    client
        .add_node(add(2, second.addr().to_string()))
        .await
        .expect("add node");
    let status = wait_voters(&client, &[1, 2]).await;
    second
        .raft()
        .wait_applied(
            status.applied_index.unwrap_or_default(),
            Duration::from_secs(10),
        )
        .await
        .expect("the new node catches up");
    assert_eq!(first.raft().digest(), second.raft().digest());
    let again = client
        .add_node(add(2, second.addr().to_string()))
        .await
        .expect_err("already a voter");
    assert_eq!(again.code(), tonic::Code::AlreadyExists);
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
        .remove_node(remove(9, false))
        .await
        .expect_err("no node 9");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // Two voters down to one: not without force.
    let weak = client
        .remove_node(remove(2, false))
        .await
        .expect_err("would leave one voter");
    assert_eq!(weak.code(), tonic::Code::FailedPrecondition, "{weak}");
    assert!(weak.to_string().contains("--force"), "{weak}");
    let status = client.remove_node(remove(2, true)).await.expect("forced");
    assert_eq!(voters(&status), vec![1]);
    let last = client
        .remove_node(remove(1, true))
        .await
        .expect_err("never the last voter");
    assert_eq!(last.code(), tonic::Code::InvalidArgument);

    let history = membership_history(&client).await;
    assert_eq!(history.len(), 3, "{history:?}");
    assert!(history[0].contains("LearnerAdded"), "{history:?}");
    assert!(history[1].contains("Promoted"), "{history:?}");
    assert!(
        history[2].contains("Removed") && history[2].contains("forced: true"),
        "{history:?}"
    );
    second.shutdown().await.expect("shutdown");
    first.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_neither_blocks_nor_votes_and_can_be_removed() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let nodes = common::cluster(dir.path()).await;
    let client = Client::with_config(ClientConfig {
        retry_for: Duration::from_secs(10),
        ..ClientConfig::new(nodes.iter().map(|n| n.addr().to_string()))
    })
    .expect("client");
    // Port 9 on loopback: nothing listens there.
    let started = Instant::now();
    let status = client
        .add_node(add(4, "127.0.0.1:9".to_owned()))
        .await
        .expect("added as a learner");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(voters(&status), vec![1, 2, 3]);
    assert!(status.members.iter().any(|m| m.id == 4 && !m.voter));
    // Given time, it still has no vote: it never caught up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = leader_view(&client).await;
    assert_eq!(voters(&status), vec![1, 2, 3]);
    let learner = status
        .members
        .iter()
        .find(|m| m.id == 4)
        .expect("still a learner");
    assert_eq!(learner.matched_index, None, "{learner:?}");
    // Elsewhere: refused while it is a learner at another address.
    let moved = client
        .add_node(add(4, "127.0.0.1:10".to_owned()))
        .await
        .expect_err("a learner elsewhere");
    assert_eq!(moved.code(), tonic::Code::AlreadyExists);

    let status = client
        .remove_node(remove(4, false))
        .await
        .expect("a learner goes without force");
    assert!(status.members.iter().all(|m| m.id != 4), "{status:?}");

    // Three voters down to two: not without force; then it goes, once.
    let gone = common::follower(&nodes).raft().id();
    let weak = client
        .remove_node(remove(gone, false))
        .await
        .expect_err("would leave two voters");
    assert_eq!(weak.code(), tonic::Code::FailedPrecondition, "{weak}");
    let status = client
        .remove_node(remove(gone, true))
        .await
        .expect("forced");
    let left: Vec<u64> = [1, 2, 3].into_iter().filter(|&n| n != gone).collect();
    assert_eq!(voters(&status), left);
    let history = membership_history(&client).await;
    assert_eq!(history.len(), 3, "{history:?}");
    for node in nodes {
        node.shutdown().await.expect("shutdown");
    }
}
