//! Long-poll leases: a lease call with `wait_ms` waits on the node it reached and is
//! answered with a job once one is ready (enqueued, or ready by time alone), empty once the
//! wait is over; a wait past the limit is refused.

mod common;

use rota_client::proto as pb;
use rota_client::{Client, ERROR_KIND_KEY};
use std::time::{Duration, Instant};

fn lease_request(wait_ms: u32) -> pb::LeaseRequest {
    pb::LeaseRequest {
        session: None,
        worker: "w-poll".to_owned(),
        job_types: vec!["email".to_owned()],
        max: 10,
        ttl_ms: None,
        wait_ms: Some(wait_ms),
    }
}

fn spec(payload: &[u8]) -> pb::JobSpec {
    pb::JobSpec {
        tenant: "acme".to_owned(),
        job_type: "email".to_owned(),
        payload: payload.to_vec(),
        ..pb::JobSpec::default()
    }
}

async fn enqueue(client: &Client, spec: pb::JobSpec) -> u64 {
    client
        .enqueue(pb::EnqueueRequest {
            session: None,
            spec: Some(spec),
        })
        .await
        .expect("enqueue")
        .job_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_lease_on_a_follower_is_answered_with_the_job_enqueued_meanwhile() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let nodes = common::cluster(dir.path()).await;
    let follower = Client::connect([common::follower(&nodes).addr().to_string()]).expect("client");
    let leader = nodes
        .iter()
        .find(|n| n.raft().is_leader())
        .expect("a leader");
    let producer = Client::connect([leader.addr().to_string()]).expect("client");

    // Nothing to lease yet: the call waits (30 s at most) on the follower.
    let asked = Instant::now();
    let waiting = tokio::spawn(async move { follower.lease(lease_request(30_000)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    if waiting.is_finished() {
        panic!(
            "a lease with nothing to grant waits instead of answering: {:?}",
            waiting.await
        );
    }
    let job_id = enqueue(&producer, spec(b"hello")).await;

    let leased = waiting.await.expect("task").expect("lease");
    let ids: Vec<u64> = leased.jobs.iter().map(|j| j.job_id).collect();
    assert_eq!(ids, vec![job_id], "the waiting lease got the new job");
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "answered when the job came, not when the wait ran out"
    );
    assert_eq!(leased.jobs[0].payload, b"hello".to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_with_nothing_to_grant_answers_empty_once_its_wait_is_over() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let node = common::one_node(common::settings(dir.path())).await;
    let client = Client::connect([node.addr().to_string()]).expect("client");

    let asked = Instant::now();
    let leased = client.lease(lease_request(400)).await.expect("lease");
    assert!(leased.jobs.is_empty());
    assert!(
        asked.elapsed() >= Duration::from_millis(400),
        "the call waited its 400 ms before answering empty (answered after {:?})",
        asked.elapsed()
    );

    // Without a wait the answer is immediate, as before.
    let leased = client.lease(lease_request(0)).await.expect("lease");
    assert!(leased.jobs.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_ready_by_time_alone_wakes_a_waiting_lease() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let clock = common::ManualClock::at(1_000_000);
    let node = common::one_node(common::clocked(dir.path(), &clock)).await;
    let client = Client::connect([node.addr().to_string()]).expect("client");

    // A job that fails once and backs off for a minute of log time.
    let job_id = enqueue(
        &client,
        pb::JobSpec {
            retry: Some(pb::RetryPolicy {
                max_attempts: 3,
                base_backoff_ms: 60_000,
                max_backoff_ms: 60_000,
            }),
            ..spec(b"retry me")
        },
    )
    .await;
    let first = client.lease(lease_request(0)).await.expect("lease");
    let lease_id = first.jobs[0].lease_id;
    client
        .complete(pb::CompleteRequest {
            session: None,
            job_id,
            lease_id,
            outcome: Some(pb::complete_request::Outcome::Failed(pb::Failed {
                error: "try later".to_owned(),
                retryable: true,
            })),
        })
        .await
        .expect("fail");

    let waiter = client.clone();
    let waiting = tokio::spawn(async move { waiter.lease(lease_request(30_000)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the job is backing off: the lease waits"
    );
    // No entry makes the job ready: only time does.
    clock.advance(61_000);
    let leased = waiting.await.expect("task").expect("lease");
    let ids: Vec<u64> = leased.jobs.iter().map(|j| j.job_id).collect();
    assert_eq!(ids, vec![job_id]);
    assert_eq!(leased.jobs[0].attempt, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_past_the_limit_is_refused() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let node = common::one_node(common::settings(dir.path())).await;
    let mut raw = rota_client::worker_service(
        tonic::transport::Endpoint::from_shared(format!("http://{}", node.addr()))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect"),
    );
    let refused = raw
        .lease(lease_request(rota_client::MAX_LEASE_WAIT_MS + 1))
        .await
        .expect_err("a wait over 30 s is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("wait"), "{}", refused.message());
    assert!(refused.metadata().get(ERROR_KIND_KEY).is_some());
}
