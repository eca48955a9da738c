//! A follower forwards to the leader it knows; when that leader is gone, the caller gets a
//! status with a `rota-error` kind it can act on, not tonic's raw transport error. A call
//! is passed on at most twice.

use rota_client::proto as pb;
use rota_client::{job_service, ERROR_KIND_KEY, FORWARDED_KEY};
use rota_node::{NodeSettings, RunningNode};
use rota_raft::RotaNode;
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::transport::Endpoint;

/// A node whose election timeout is `election_ms`: the test decides who leads and how long
/// the others wait before they would elect another.
async fn node(id: u64, dir: &std::path::Path, election_ms: u64) -> RunningNode {
    let mut settings = NodeSettings::new(
        id,
        "127.0.0.1:0".parse().expect("addr"),
        dir.join(id.to_string()),
    );
    settings.raft.election_timeout_min = election_ms;
    settings.raft.election_timeout_max = election_ms + 1;
    RunningNode::start(settings).await.expect("node starts")
}

/// The `rota-error` kind a status carries, if any.
fn kind(status: &tonic::Status) -> Option<&str> {
    status
        .metadata()
        .get(ERROR_KIND_KEY)
        .and_then(|v| v.to_str().ok())
}

fn enqueue_request(n: u8) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        session: None,
        spec: Some(pb::JobSpec {
            tenant: "acme".to_owned(),
            job_type: "email".to_owned(),
            payload: vec![n],
            ..pb::JobSpec::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_leader_is_gone_answers_unavailable_with_a_kind() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    // Node 1 elects itself quickly; the others would wait a minute before electing, so for
    // the rest of the test they still believe node 1 leads after it is gone.
    let leader = node(1, dir.path(), 200).await;
    let follower = node(2, dir.path(), 60_000).await;
    let third = node(3, dir.path(), 60_000).await;
    let members: BTreeMap<u64, RotaNode> = [&leader, &follower, &third]
        .iter()
        .map(|n| {
            let addr = n.addr().to_string();
            (n.raft().id(), RotaNode { addr })
        })
        .collect();
    leader
        .raft()
        .initialize(members)
        .await
        .expect("cluster founded");
    let known = follower
        .raft()
        .wait_for_leader(Duration::from_secs(20))
        .await
        .expect("a leader");
    assert_eq!(known, 1, "node 1 leads");

    let channel = Endpoint::from_shared(format!("http://{}", follower.addr()))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the follower");
    let mut jobs = job_service(channel);
    let forwarded = jobs
        .enqueue(enqueue_request(1))
        .await
        .expect("a follower forwards to the live leader");
    assert!(forwarded.into_inner().created);

    // A node that has just handed leadership away passes a forwarded call on once more (to
    // its successor); a call already passed on twice is refused, so none goes round a loop.
    let mut passed_once = tonic::Request::new(enqueue_request(3));
    passed_once
        .metadata_mut()
        .insert(FORWARDED_KEY, "1".parse().expect("ascii"));
    let again = jobs
        .enqueue(passed_once)
        .await
        .expect("a call passed on once may be passed on again");
    assert!(again.into_inner().created);
    for mark in ["2", "junk"] {
        let mut passed = tonic::Request::new(enqueue_request(4));
        passed
            .metadata_mut()
            .insert(FORWARDED_KEY, mark.parse().expect("ascii"));
        let refused = jobs
            .enqueue(passed)
            .await
            .expect_err("passed on as often as allowed");
        assert_eq!(kind(&refused), Some("not_leader"), "{mark}: {refused:?}");
    }

    leader.shutdown().await.expect("leader stops");
    let refused = jobs
        .enqueue(enqueue_request(2))
        .await
        .expect_err("the leader is gone");
    assert_eq!(kind(&refused), Some("unavailable"), "{refused:?}");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("may or may not have been applied"),
        "the message says the write's fate is unknown: {refused:?}"
    );

    let read = jobs
        .get_job(pb::GetJobRequest {
            signed: false,
            job_id: 0,
            read: None,
        })
        .await
        .expect_err("a linearizable read needs the leader too");
    assert_eq!(kind(&read), Some("unavailable"), "{read:?}");

    follower.shutdown().await.expect("follower stops");
    third.shutdown().await.expect("third stops");
}
