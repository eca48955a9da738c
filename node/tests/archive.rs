//! Retention through the API: a finished job leaves memory for the archive, and every node
//! answers it from there, one that caught up through a snapshot and one restarted from its
//! own snapshot included; its idempotency key still dedupes, and it can no longer change.
//! A node whose snapshot is damaged on disk rebuilds it from a peer's.

mod common;

use common::ManualClock;
use rota_client::proto as pb;
use rota_client::{Client, ClientConfig};
use rota_node::{NodeSettings, RunningNode};
use std::time::Duration;

const T0: u64 = 1_800_000_000_000;

fn settings(id: u64, dir: &std::path::Path, clock: &ManualClock) -> NodeSettings {
    let mut settings = NodeSettings::new(
        id,
        "127.0.0.1:0".parse().expect("addr"),
        dir.join(id.to_string()),
    );
    settings.clock = clock.clock();
    settings.tick_interval = Duration::from_millis(50);
    settings
}

fn client(node: &RunningNode) -> Client {
    Client::with_config(ClientConfig {
        retry_for: Duration::from_secs(5),
        ..ClientConfig::new([node.addr().to_string()])
    })
    .expect("client")
}

fn stamp(reason: &str) -> Option<pb::Stamp> {
    Some(pb::Stamp {
        actor: "test".to_owned(),
        reason: reason.to_owned(),
        ticket: None,
    })
}

fn keyed_job() -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        session: None,
        spec: Some(pb::JobSpec {
            tenant: "acme".to_owned(),
            job_type: "email".to_owned(),
            payload: b"hello".to_vec(),
            idempotency_key: Some("order-7".to_owned()),
            ..pb::JobSpec::default()
        }),
    }
}

/// The job as `node` reads it from its own replica.
async fn stale_get(client: &Client, id: u64) -> Result<pb::Job, rota_client::ClientError> {
    let answer = client
        .get_job(pb::GetJobRequest {
            signed: false,
            job_id: id,
            read: Some(pb::ReadOptions { stale: true }),
        })
        .await?;
    Ok(answer.job.expect("a job"))
}

/// Waits (bounded) until `client`'s node reads job `id` as archived.
async fn wait_archived(client: &Client, id: u64) -> pb::Job {
    for _ in 0..200 {
        if let Ok(job) = stale_get(client, id).await {
            if job.archived {
                return job;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("job {id} was never archived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_job_is_answered_by_every_node_and_its_key_still_dedupes() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let clock = ManualClock::at(T0);
    let first = RunningNode::start(settings(1, dir.path(), &clock))
        .await
        .expect("node 1 starts");
    first.initialize_alone().await.expect("one-node cluster");
    let leader = client(&first);
    leader
        .set_retention(pb::SetRetentionRequest {
            session: None,
            retention: Some(pb::Retention {
                succeeded_ms: Some(1_000),
                ..pb::Retention::default()
            }),
            stamp: stamp("short windows"),
        })
        .await
        .expect("set retention");
    let status = leader
        .cluster_status(pb::ClusterStatusRequest {
            digest: false,
            leader_view: false,
        })
        .await
        .expect("status");
    let retention = status.retention.expect("retention shown");
    assert_eq!(retention.succeeded_ms, Some(1_000));
    assert_eq!(retention.archive_ms, Some(30 * 86_400_000), "the rest kept");

    let job = leader.enqueue(keyed_job()).await.expect("enqueue").job_id;
    let granted = leader
        .lease(pb::LeaseRequest {
            session: None,
            worker: "w".to_owned(),
            job_types: vec!["email".to_owned()],
            max: 1,
            ttl_ms: None,
            wait_ms: None,
        })
        .await
        .expect("lease")
        .jobs;
    assert_eq!(granted.len(), 1);
    leader
        .complete(pb::CompleteRequest {
            session: None,
            job_id: job,
            lease_id: granted[0].lease_id,
            outcome: Some(pb::complete_request::Outcome::Succeeded(pb::Succeeded {
                outputs: vec![],
            })),
        })
        .await
        .expect("complete");
    clock.advance(2_000);
    let archived = wait_archived(&leader, job).await;
    assert_eq!(archived.status, pb::JobStatus::Succeeded as i32);
    assert_eq!(archived.spec.expect("spec").payload, b"hello");
    assert!(archived.archived_ms.is_some());

    // Listed from the archive only when asked.
    let list = |archived: bool| pb::ListJobsRequest {
        archived,
        ..pb::ListJobsRequest::default()
    };
    let live = leader.list_jobs(list(false)).await.expect("list");
    assert!(live.jobs.is_empty(), "{live:?}");
    let page = leader.list_jobs(list(true)).await.expect("list archived");
    assert_eq!(
        page.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![job]
    );
    assert!(page.jobs[0].archived);

    // The key still names the archived job; the job can no longer change.
    let again = leader.enqueue(keyed_job()).await.expect("enqueue again");
    assert_eq!((again.job_id, again.created), (job, false));
    let refused = leader
        .replay_job(pb::ReplayJobRequest {
            session: None,
            job_id: job,
            stamp: stamp("again"),
        })
        .await
        .expect_err("archived jobs are read-only");
    assert_eq!(refused.kind(), Some("archived"), "{refused}");
    let status = leader
        .cluster_status(pb::ClusterStatusRequest {
            digest: false,
            leader_view: false,
        })
        .await
        .expect("status");
    let size = status.archive.expect("archive size shown");
    assert!(size.records >= 1 && size.bytes > 0, "{size:?}");

    // A node that joins after the log was purged catches up through a snapshot.
    let index = first
        .raft()
        .snapshot_now(Duration::from_secs(10))
        .await
        .expect("snapshot");
    first.raft().purge_log(index.index).await.expect("purge");
    let second = RunningNode::start(settings(2, dir.path(), &clock))
        .await
        .expect("node 2 starts");
    let status = leader
        .add_node(pb::AddNodeRequest {
            id: 2,
            addr: second.addr().to_string(),
            learner: false,
            stamp: Some(pb::Stamp {
                actor: "ops".to_owned(),
                reason: "a second replica".to_owned(),
                ticket: None,
            }),
        })
        .await
        .expect("add node 2");
    second
        .raft()
        .wait_applied(
            status.applied_index.unwrap_or_default(),
            Duration::from_secs(10),
        )
        .await
        .expect("node 2 catches up");
    let from_second = stale_get(&client(&second), job)
        .await
        .expect("node 2 reads it");
    assert!(from_second.archived);
    assert_eq!(first.raft().digest().1, second.raft().digest().1);

    // Restarted, node 2 rebuilds its archive from its snapshot.
    second.shutdown().await.expect("shutdown node 2");
    let second = RunningNode::start(settings(2, dir.path(), &clock))
        .await
        .expect("node 2 restarts");
    let restarted = wait_archived(&client(&second), job).await;
    assert_eq!(restarted.id, job);
    second.shutdown().await.expect("shutdown node 2");

    // Its snapshot damaged on disk (its log purged behind it), node 2 does not stop: it
    // fetches node 1's, which its damaged file still names as a member, and keeps the
    // damaged one aside.
    let snapshots = dir.path().join("2").join("snapshots");
    let file = snapshots.join("current.snapshot");
    let mut bytes = std::fs::read(&file).expect("node 2 has a snapshot");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, &bytes).expect("damage it");
    let second = RunningNode::start(settings(2, dir.path(), &clock))
        .await
        .expect("node 2 rebuilds its snapshot from node 1's");
    assert_eq!(
        std::fs::read(snapshots.join("current.snapshot.corrupt")).expect("kept aside"),
        bytes
    );
    let rebuilt = wait_archived(&client(&second), job).await;
    assert_eq!(rebuilt.spec.expect("spec").payload, b"hello");
    let applied = first.raft().digest().0.map(|id| id.index).unwrap_or(0);
    second
        .raft()
        .wait_applied(applied, Duration::from_secs(10))
        .await
        .expect("node 2 catches up");
    assert_eq!(first.raft().digest().1, second.raft().digest().1);
    second.shutdown().await.expect("shutdown node 2");
    first.shutdown().await.expect("shutdown node 1");
}
