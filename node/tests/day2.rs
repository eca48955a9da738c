//! Day-2 operations over real nodes: a backup saved through a follower restores into a new
//! node with the digest and the jobs it recorded, and takes writes; a leader transfer moves
//! leadership to the named voter (or the best placed one) while writes go on, and refuses
//! what it cannot do.

mod common;

use rota_client::proto as pb;
use rota_client::{Client, ClientConfig};
use rota_node::{NodeSettings, RunningNode};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn spec(n: u32) -> pb::JobSpec {
    pb::JobSpec {
        tenant: "acme".to_owned(),
        job_type: "email".to_owned(),
        payload: n.to_be_bytes().to_vec(),
        ..pb::JobSpec::default()
    }
}

async fn enqueue(client: &Client, n: u32) -> u64 {
    client
        .enqueue(pb::EnqueueRequest {
            session: None,
            spec: Some(spec(n)),
        })
        .await
        .expect("enqueue")
        .job_id
}

async fn job(client: &Client, id: u64) -> pb::Job {
    client
        .get_job(pb::GetJobRequest {
            job_id: id,
            ..pb::GetJobRequest::default()
        })
        .await
        .expect("get job")
        .job
        .expect("a job")
}

async fn leader_view(client: &Client) -> pb::ClusterStatusResponse {
    client
        .cluster_status(pb::ClusterStatusRequest {
            digest: true,
            leader_view: true,
        })
        .await
        .expect("status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_new_node_with_its_digest_and_jobs() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    // No ticks after the first: nothing changes the state while the test compares it.
    let nodes = common::cluster_with(dir.path(), |s| {
        s.tick_interval = Duration::from_secs(3600);
    })
    .await;
    let leader = Client::connect(nodes.iter().map(|n| n.addr().to_string())).expect("client");
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(enqueue(&leader, n).await);
    }
    // Some jobs run: one succeeds, one is canceled, the rest wait.
    let leased = leader
        .lease(pb::LeaseRequest {
            worker: "w1".to_owned(),
            job_types: vec!["email".to_owned()],
            max: 2,
            ..pb::LeaseRequest::default()
        })
        .await
        .expect("lease");
    let done = &leased.jobs[0];
    leader
        .complete(pb::CompleteRequest {
            job_id: done.job_id,
            lease_id: done.lease_id,
            outcome: Some(pb::complete_request::Outcome::Succeeded(pb::Succeeded {
                outputs: vec![],
            })),
            ..pb::CompleteRequest::default()
        })
        .await
        .expect("complete");
    leader
        .cancel_job(pb::CancelJobRequest {
            job_id: ids[29],
            stamp: Some(pb::Stamp {
                actor: "ops".to_owned(),
                reason: "not needed".to_owned(),
                ticket: None,
            }),
            ..pb::CancelJobRequest::default()
        })
        .await
        .expect("cancel");

    // Asked through a follower: the leader builds it, the follower passes the stream on.
    let follower = common::follower(&nodes);
    let through_follower = Client::connect([follower.addr().to_string()]).expect("client");
    let mut stream = through_follower.save_snapshot().await.expect("backup");
    let mut bytes = Vec::new();
    let mut info = None;
    while let Some(chunk) = stream.message().await.expect("chunk") {
        info = info.or(chunk.info);
        bytes.extend_from_slice(&chunk.data);
    }
    let info = info.expect("the first chunk says what the backup covers");
    assert_eq!(info.size_bytes, bytes.len() as u64);
    let summary = rota_raft::inspect_snapshot(&bytes).expect("the backup checks");
    assert_eq!(
        summary.last_log_id.map(|id| id.index),
        Some(info.last_log_index)
    );
    let source = leader_view(&leader).await;
    assert_eq!(source.applied_index, Some(info.last_log_index));
    assert_eq!(
        source.state_digest, summary.digest,
        "the backup holds the state the cluster had"
    );

    // A damaged copy is refused, and so is a directory that holds a node already.
    let mut damaged = bytes.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    let refused = rota_raft::inspect_snapshot(&damaged).expect_err("a damaged backup");
    assert!(refused.to_string().contains("checksum"), "{refused}");
    let voters = BTreeMap::from([(1, "127.0.0.1:1".to_owned())]);
    let occupied = rota_raft::backup::restore(&bytes, &dir.path().join("1"), 1, &voters)
        .await
        .expect_err("a node's directory");
    assert!(
        occupied.to_string().contains("must hold none"),
        "{occupied}"
    );

    let mut expected = Vec::new();
    for id in &ids {
        expected.push(job(&leader, *id).await);
    }
    for node in nodes {
        node.shutdown().await.expect("shutdown");
    }

    let restored_dir = dir.path().join("restored");
    let restored = rota_raft::backup::restore(&bytes, &restored_dir, 1, &voters)
        .await
        .expect("restore");
    assert_eq!(restored.digest, summary.digest);
    let mut settings = NodeSettings::new(1, "127.0.0.1:0".parse().expect("addr"), restored_dir);
    settings.tick_interval = Duration::from_secs(3600);
    let node = RunningNode::start(settings)
        .await
        .expect("the restored node starts");
    let (applied, digest) = node.raft().digest();
    assert_eq!(applied.map(|id| id.index), Some(info.last_log_index));
    assert_eq!(digest, summary.digest, "the restored node has the digest");
    node.raft()
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("the restored node elects itself");
    let client = Client::connect([node.addr().to_string()]).expect("client");
    for (id, before) in ids.iter().zip(&expected) {
        let after = job(&client, *id).await;
        assert_eq!(after.status, before.status, "job {id}");
        assert_eq!(after.payload_digest, before.payload_digest, "job {id}");
    }
    let statuses: Vec<i32> = expected.iter().map(|j| j.status).collect();
    assert!(statuses.contains(&(pb::JobStatus::Succeeded as i32)));
    assert!(statuses.contains(&(pb::JobStatus::Canceled as i32)));
    // It is a cluster that takes writes: its first election came after the backup's term.
    let new = enqueue(&client, 1_000).await;
    assert!(new > *ids.iter().max().expect("ids"));
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_the_named_voter_while_writes_go_on() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let nodes = common::cluster(dir.path()).await;
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
    let client = Client::connect(addrs.clone()).expect("client");

    // A writer that never stops while leadership moves; each enqueue must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        let client = Client::with_config(ClientConfig::new(addrs.clone())).expect("client");
        tokio::spawn(async move {
            let mut n = 0;
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                enqueue(&client, n).await;
                slowest = slowest.max(started.elapsed());
                written.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
            slowest
        })
    };

    let first = leader_view(&client).await.leader_id.expect("a leader");
    let to = nodes
        .iter()
        .map(|n| n.raft().id())
        .find(|id| *id != first)
        .expect("a follower");
    let moved = client
        .transfer_leader(pb::TransferLeaderRequest { to: Some(to) })
        .await
        .expect("transfer");
    assert_eq!(moved.leader_id, Some(to), "the old leader sees the new one");
    assert_eq!(leader_view(&client).await.leader_id, Some(to));

    // Without a name, to the best placed voter: not the one leading.
    let again = client
        .transfer_leader(pb::TransferLeaderRequest { to: None })
        .await
        .expect("transfer");
    let third = again.leader_id.expect("a leader");
    assert_ne!(third, to);

    // Asked again (an answer lost): done already. A node that is no voter is refused, and
    // leadership stays.
    let again = client
        .transfer_leader(pb::TransferLeaderRequest { to: Some(third) })
        .await
        .expect("already there");
    assert_eq!(again.leader_id, Some(third));
    let refused = client
        .transfer_leader(pb::TransferLeaderRequest { to: Some(42) })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
    assert_eq!(refused.kind(), Some("transfer"), "{refused}");
    assert_eq!(leader_view(&client).await.leader_id, Some(third));

    let before = written.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while written.load(Ordering::SeqCst) < before + 20 {
        assert!(
            Instant::now() < deadline,
            "writes stopped after the transfers"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let slowest = writer.await.expect("every write succeeded");
    eprintln!(
        "{} writes through three leaders; the slowest took {slowest:?}",
        written.load(Ordering::SeqCst)
    );
    for node in nodes {
        node.shutdown().await.expect("shutdown");
    }
}
