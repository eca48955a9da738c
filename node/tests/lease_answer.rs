//! What a lease answers (seed 003): the lease, the idempotency key, the retry hints, the
//! provenance, the inputs and the trace context; and every status a worker reports.

mod common;

use rota_client::proto as pb;
use rota_client::{Client, ClientConfig};
use std::time::Duration;

async fn lease(client: &Client, worker: &str) -> pb::LeasedJob {
    client
        .lease(pb::LeaseRequest {
            session: None,
            worker: worker.to_owned(),
            job_types: vec!["render".to_owned()],
            max: 1,
            ttl_ms: None,
            wait_ms: None,
        })
        .await
        .expect("lease")
        .jobs
        .pop()
        .expect("a job")
}

async fn complete(
    client: &Client,
    leased: &pb::LeasedJob,
    outcome: pb::complete_request::Outcome,
) -> i32 {
    client
        .complete(pb::CompleteRequest {
            session: None,
            job_id: leased.job_id,
            lease_id: leased.lease_id,
            outcome: Some(outcome),
        })
        .await
        .expect("complete")
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_carries_the_seeds_fields_and_workers_report_every_status() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let nodes = common::cluster(dir.path()).await;
    // Through a follower: the lease is proposed and described by the leader.
    let follower = common::follower(&nodes);
    let client = Client::with_config(ClientConfig {
        retry_for: Duration::from_secs(10),
        ..ClientConfig::new([follower.addr().to_string()])
    })
    .expect("client");
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let spec = |key: &str| pb::JobSpec {
        tenant: "acme".to_owned(),
        job_type: "render".to_owned(),
        project: Some("posters".to_owned()),
        idempotency_key: Some(key.to_owned()),
        correlation_id: Some("order-7".to_owned()),
        retry: Some(pb::RetryPolicy {
            max_attempts: 2,
            base_backoff_ms: 1_000,
            max_backoff_ms: 60_000,
        }),
        inputs: vec![pb::Artifact {
            name: "art".to_owned(),
            uri: "s3://b/art.png".to_owned(),
            digest: None,
        }],
        traceparent: Some(traceparent.to_owned()),
        ..pb::JobSpec::default()
    };
    for key in ["poster-1", "poster-2"] {
        client
            .enqueue(pb::EnqueueRequest {
                session: None,
                spec: Some(spec(key)),
            })
            .await
            .expect("enqueue");
    }

    let first = lease(&client, "runner-a").await;
    assert_eq!(first.idempotency_key.as_deref(), Some("poster-1"));
    assert_eq!((first.attempt, first.max_attempts), (1, 2));
    let backoff = first
        .retry_backoff_ms
        .expect("a failure now would be retried");
    assert!((500..=1_000).contains(&backoff), "{backoff}");
    assert_eq!(first.project, "posters");
    assert_eq!(first.worker, "runner-a");
    assert_eq!(first.tenant, "acme");
    assert_eq!(first.correlation_id.as_deref(), Some("order-7"));
    assert_eq!(first.inputs[0].uri, "s3://b/art.png");
    assert_eq!(first.traceparent.as_deref(), Some(traceparent));
    assert!(first.lease_until_ms > 0 && first.lease_id > 0);

    // timed_out: the attempt ends timed out and the job waits for its retry.
    let status = complete(
        &client,
        &first,
        pb::complete_request::Outcome::TimedOut(pb::TimedOut {
            error: "ran past its limit".to_owned(),
        }),
    )
    .await;
    assert_eq!(status, i32::from(pb::JobStatus::Failed));
    let job = client
        .get_job(pb::GetJobRequest {
            signed: false,
            job_id: first.job_id,
            read: None,
        })
        .await
        .expect("get")
        .job
        .expect("a job");
    assert_eq!(
        job.attempts[0].outcome,
        i32::from(pb::AttemptOutcome::TimedOut)
    );

    // canceled: the job is canceled.
    let second = lease(&client, "runner-b").await;
    assert_eq!(second.idempotency_key.as_deref(), Some("poster-2"));
    let status = complete(
        &client,
        &second,
        pb::complete_request::Outcome::Canceled(pb::GaveUp {
            reason: "the order was withdrawn".to_owned(),
        }),
    )
    .await;
    assert_eq!(status, i32::from(pb::JobStatus::Canceled));

    // The last attempt: no retry hint.
    let mut retried = None;
    for _ in 0..200 {
        let leased = client
            .lease(pb::LeaseRequest {
                session: None,
                worker: "runner-a".to_owned(),
                job_types: vec!["render".to_owned()],
                max: 1,
                ttl_ms: None,
                wait_ms: None,
            })
            .await
            .expect("lease")
            .jobs;
        if let Some(job) = leased.into_iter().next() {
            retried = Some(job);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let last = retried.expect("the retry is leased after its backoff");
    assert_eq!((last.job_id, last.attempt), (first.job_id, 2));
    assert_eq!(last.retry_backoff_ms, None, "a failure now dead-letters");
    let status = complete(
        &client,
        &last,
        pb::complete_request::Outcome::Succeeded(pb::Succeeded::default()),
    )
    .await;
    assert_eq!(status, i32::from(pb::JobStatus::Succeeded));
    for node in nodes {
        node.shutdown().await.expect("node stops");
    }
}
