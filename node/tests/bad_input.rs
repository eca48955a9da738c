//! Bad input gets a clear, typed error and changes nothing; the node keeps serving.

mod common;

use rota_client::proto as pb;
use rota_client::{Client, ClientConfig, ClientError};
use rota_node::{Limits, RunningNode};
use std::io::{Read, Write};
use std::time::Duration;
use tonic::Code;

const MAX_PAYLOAD: usize = 1_000;

async fn dev_node(dir: &std::path::Path) -> RunningNode {
    dev_node_with_clock(dir, rota_node::system_clock()).await
}

async fn dev_node_with_clock(dir: &std::path::Path, clock: rota_node::Clock) -> RunningNode {
    let mut settings = common::settings(dir);
    settings.clock = clock;
    settings.limits = Limits {
        max_payload_bytes: MAX_PAYLOAD,
        ..Limits::default()
    };
    common::one_node(settings).await
}

fn client(node: &RunningNode) -> Client {
    Client::with_config(ClientConfig {
        retry_for: Duration::from_secs(10),
        ..ClientConfig::new([node.addr().to_string()])
    })
    .expect("client")
}

async fn get_job(client: &Client, job: u64) -> pb::Job {
    client
        .get_job(pb::GetJobRequest {
            signed: false,
            job_id: job,
            read: None,
        })
        .await
        .expect("get job")
        .job
        .expect("job body")
}

/// Waits until `job`'s timed-out attempt has been recorded and its retry scheduled: an
/// event the tick loop brings about, polled for rather than slept on.
async fn wait_for_retry(client: &Client, job: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let shown = get_job(client, job).await;
        if let Some(retry_at) = shown.retry_at_ms {
            return retry_at;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the expired lease was never noticed: {shown:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn spec(payload: Vec<u8>) -> pb::JobSpec {
    pb::JobSpec {
        tenant: "acme".to_owned(),
        job_type: "email".to_owned(),
        payload,
        // Short backoffs, so a timed-out attempt is retried within the test.
        retry: Some(pb::RetryPolicy {
            max_attempts: 3,
            base_backoff_ms: 10,
            max_backoff_ms: 10,
        }),
        ..pb::JobSpec::default()
    }
}

async fn enqueue(client: &Client, payload: Vec<u8>) -> Result<pb::EnqueueResponse, ClientError> {
    client
        .enqueue(pb::EnqueueRequest {
            session: None,
            spec: Some(spec(payload)),
        })
        .await
}

/// The node's applied index: unchanged across requests means none of them reached the log
/// (the callers leave nothing due on the clock, so no tick moves it meanwhile).
async fn applied_index(client: &Client) -> Option<u64> {
    client
        .cluster_status(pb::ClusterStatusRequest {
            digest: false,
            leader_view: false,
        })
        .await
        .expect("status")
        .applied_index
}

/// Every job with its attempts and history, and the governance settings: equal before and
/// after means a refused request changed nothing (log time moves on; that is not a change).
async fn fingerprint(client: &Client) -> (Vec<pb::Job>, pb::GetGovernanceResponse) {
    let jobs = client
        .list_jobs(pb::ListJobsRequest {
            limit: 1_000,
            ..pb::ListJobsRequest::default()
        })
        .await
        .expect("list");
    let governance = client
        .get_governance(pb::GetGovernanceRequest {
            read: None,
            archived_incidents: false,
        })
        .await
        .expect("governance");
    (jobs.jobs, governance)
}

fn assert_rejected(
    result: Result<impl std::fmt::Debug, ClientError>,
    code: Code,
    kind: &str,
    words: &str,
) {
    let error = result.expect_err("the request must be refused");
    assert_eq!(error.code(), code, "{error}");
    assert_eq!(error.kind(), Some(kind), "{error}");
    assert!(
        error.to_string().contains(words),
        "message {error:?} should mention {words:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_clearly_and_change_nothing() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let clock = common::ManualClock::at(1_700_000_000_000);
    let node = dev_node_with_clock(dir.path(), clock.clock()).await;
    let client = client(&node);
    let job = enqueue(&client, b"hello".to_vec())
        .await
        .expect("enqueue")
        .job_id;
    let before = fingerprint(&client).await;

    // An unknown job id.
    let unknown = client
        .get_job(pb::GetJobRequest {
            signed: false,
            job_id: 999_999,
            read: None,
        })
        .await;
    assert_rejected(
        unknown,
        Code::NotFound,
        "job_not_found",
        "job-999999 not found",
    );
    let cancel = client
        .cancel_job(pb::CancelJobRequest {
            session: None,
            job_id: 999_999,
            stamp: Some(pb::Stamp {
                actor: "ops".to_owned(),
                reason: "cleanup".to_owned(),
                ticket: None,
            }),
        })
        .await;
    assert_rejected(cancel, Code::NotFound, "job_not_found", "not found");
    // What is invalid whatever the ledger holds is refused before the log; the cancel
    // above needed the ledger to be judged.
    let applied = applied_index(&client).await;

    // A plan with a cycle.
    let step = |key: &str, deps: &[&str]| pb::PlanStep {
        key: key.to_owned(),
        spec: Some(spec(Vec::new())),
        depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
    };
    let cycle = client
        .submit_plan(pb::SubmitPlanRequest {
            session: None,
            steps: vec![step("a", &["c"]), step("b", &["a"]), step("c", &["b"])],
            backfill: None,
        })
        .await;
    assert_rejected(cycle, Code::InvalidArgument, "plan_cycle", "cycle");

    // An oversized payload, against the node's configured limit.
    let big = enqueue(&client, vec![b'x'; MAX_PAYLOAD + 1]).await;
    assert_rejected(
        big,
        Code::InvalidArgument,
        "invalid_input",
        "max_payload_bytes",
    );

    // A job type name the scheduler refuses.
    let mut bad_spec = spec(Vec::new());
    bad_spec.job_type = String::new();
    let empty = client
        .enqueue(pb::EnqueueRequest {
            session: None,
            spec: Some(bad_spec),
        })
        .await;
    assert_rejected(empty, Code::InvalidArgument, "invalid_input", "job_type");
    assert_eq!(
        fingerprint(&client).await,
        before,
        "refused requests changed the state"
    );
    assert_eq!(
        applied_index(&client).await,
        applied,
        "an invalid request reached the log"
    );

    // A stale fencing token: the lease expires (the clock moves past its TTL), the job is
    // leased again, and the first worker's completion is refused.
    let lease = |worker: &str| pb::LeaseRequest {
        session: None,
        worker: worker.to_owned(),
        job_types: vec!["email".to_owned()],
        max: 1,
        ttl_ms: Some(200),
        wait_ms: None,
    };
    let first = client.lease(lease("slow")).await.expect("lease").jobs;
    assert_eq!(
        first.iter().map(|j| j.job_id).collect::<Vec<_>>(),
        vec![job]
    );
    clock.advance(800);
    // The tick loop sees the lease expire and schedules the retry; then the backoff passes.
    let retry_at = wait_for_retry(&client, job).await;
    clock.advance_to(retry_at);
    let second = client.lease(lease("fast")).await.expect("lease").jobs;
    assert_eq!(second.len(), 1, "the expired job is leased again");
    assert!(
        second[0].lease_id > first[0].lease_id,
        "fencing tokens increase"
    );
    let stale = client
        .complete(pb::CompleteRequest {
            session: None,
            job_id: job,
            lease_id: first[0].lease_id,
            outcome: Some(pb::complete_request::Outcome::Succeeded(pb::Succeeded {
                outputs: vec![],
            })),
        })
        .await;
    assert_rejected(
        stale,
        Code::FailedPrecondition,
        "stale_lease",
        "fencing token",
    );
    let shown = get_job(&client, job).await;
    assert_eq!(
        shown.status,
        pb::JobStatus::Leased as i32,
        "the stale completion changed nothing"
    );
    assert_eq!(shown.lease_id, Some(second[0].lease_id));
    // A summary leaves the attempts out but still counts them.
    let summary = client
        .list_jobs(pb::ListJobsRequest {
            summary: true,
            ..pb::ListJobsRequest::default()
        })
        .await
        .expect("list");
    assert!(summary.jobs[0].attempts.is_empty());
    assert_eq!(summary.jobs[0].attempt_count, 2);

    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_grpc_port_does_not_hurt_the_node() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let node = dev_node(dir.path()).await;
    let addr = node.addr();
    let garbage: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\x01\x02\x03\xff\xfe\xfd not http at all",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00garbage-frames",
        &[0xAB; 64 * 1024],
    ];
    for bytes in garbage {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let _ = stream.write_all(bytes);
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    }
    // A gRPC message whose body isn't the message it claims to be.
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let _ = stream.write_all(b"POST /rota.v1.JobService/Enqueue HTTP/1.1\r\ncontent-type: application/grpc\r\n\r\n\x00\x00\x00\x00\x05\xff\xff\xff\xff\xff");
    drop(stream);

    let client = client(&node);
    let answer = enqueue(&client, b"still here".to_vec())
        .await
        .expect("the node still serves");
    assert!(answer.created);
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_is_answered_once() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let node = dev_node(dir.path()).await;
    let mut raw =
        pb::worker_service_client::WorkerServiceClient::connect(format!("http://{}", node.addr()))
            .await
            .expect("connect");
    let mut jobs =
        pb::job_service_client::JobServiceClient::connect(format!("http://{}", node.addr()))
            .await
            .expect("connect");
    for n in 0..4u8 {
        jobs.enqueue(pb::EnqueueRequest {
            session: None,
            spec: Some(spec(vec![n])),
        })
        .await
        .expect("enqueue");
    }
    let session = pb::Session {
        client_id: "worker-7".to_owned(),
        seq: 1,
    };
    let lease = pb::LeaseRequest {
        session: Some(session.clone()),
        worker: "worker-7".to_owned(),
        job_types: vec!["email".to_owned()],
        max: 2,
        ttl_ms: None,
        wait_ms: None,
    };
    let first = raw.lease(lease.clone()).await.expect("lease").into_inner();
    // The same request again, as after a timeout: the same jobs, not two more.
    let retry = raw.lease(lease.clone()).await.expect("retry").into_inner();
    assert_eq!(first.jobs.len(), 2);
    assert_eq!(retry, first);
    let next = pb::LeaseRequest {
        session: Some(pb::Session {
            seq: 2,
            ..session.clone()
        }),
        ..lease.clone()
    };
    let second = raw.lease(next).await.expect("next lease").into_inner();
    assert_eq!(second.jobs.len(), 2);
    assert!(second
        .jobs
        .iter()
        .all(|j| first.jobs.iter().all(|f| f.job_id != j.job_id)));
    // An older sequence than the latest is refused: its answer is gone.
    let old = raw.lease(lease).await.expect_err("stale request");
    assert_eq!(old.code(), Code::FailedPrecondition);
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_answer_each_item_and_refuse_malformed_requests_whole() {
    use pb::complete_result::Result as Done;
    use pb::enqueue_result::Result as Added;
    let dir = tempfile::TempDir::new().expect("temp dir");
    let node = dev_node(dir.path()).await;
    let client = client(&node);

    // Malformed requests change nothing: an oversized payload (the node's own limit) and
    // an empty batch are refused whole.
    let before = fingerprint(&client).await;
    let applied = applied_index(&client).await;
    let oversized = client
        .enqueue_batch(pb::EnqueueBatchRequest {
            session: None,
            specs: vec![spec(vec![1]), spec(vec![0; MAX_PAYLOAD + 1])],
        })
        .await
        .expect_err("oversized payload");
    assert_eq!(oversized.code(), Code::InvalidArgument);
    assert_eq!(oversized.kind(), Some("invalid_input"));
    assert!(oversized.to_string().contains("specs[1]"), "{oversized}");
    let empty = client
        .enqueue_batch(pb::EnqueueBatchRequest {
            session: None,
            specs: vec![],
        })
        .await
        .expect_err("empty batch");
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert_eq!(fingerprint(&client).await.0, before.0);
    // So is a job the scheduler would refuse whatever the ledger holds (no tenant).
    let mut nameless = spec(vec![2]);
    nameless.tenant = String::new();
    let malformed = client
        .enqueue_batch(pb::EnqueueBatchRequest {
            session: None,
            specs: vec![spec(vec![1]), nameless],
        })
        .await
        .expect_err("a nameless job");
    assert_eq!(malformed.kind(), Some("invalid_input"));
    assert!(
        malformed.to_string().contains("specs[1].tenant"),
        "{malformed}"
    );
    assert_eq!(
        applied_index(&client).await,
        applied,
        "nothing was proposed"
    );

    // A job the ledger refuses (it depends on a job that does not exist) gets its error in
    // its place; the others are added.
    let mut orphan = spec(vec![2]);
    orphan.depends_on = vec![999_999];
    let added = client
        .enqueue_batch(pb::EnqueueBatchRequest {
            session: None,
            specs: vec![spec(vec![1]), orphan, spec(vec![3])],
        })
        .await
        .expect("batch enqueue")
        .results;
    assert_eq!(added.len(), 3);
    assert!(
        matches!(added[0].result, Some(Added::Enqueued(_))),
        "{added:?}"
    );
    match &added[1].result {
        Some(Added::Error(e)) => assert_eq!(e.kind, "job_not_found", "{e:?}"),
        other => panic!("expected an item error, got {other:?}"),
    }
    assert!(
        matches!(added[2].result, Some(Added::Enqueued(_))),
        "{added:?}"
    );

    // A stale fencing token fails only its own item.
    let leased = client
        .lease(pb::LeaseRequest {
            session: None,
            worker: "w".to_owned(),
            job_types: vec!["email".to_owned()],
            max: 10,
            ttl_ms: None,
            wait_ms: None,
        })
        .await
        .expect("lease")
        .jobs;
    assert_eq!(leased.len(), 2);
    let succeeded = || {
        Some(pb::complete_item::Outcome::Succeeded(
            pb::Succeeded::default(),
        ))
    };
    let items = vec![
        pb::CompleteItem {
            job_id: leased[0].job_id,
            lease_id: leased[0].lease_id + 1_000,
            outcome: succeeded(),
        },
        pb::CompleteItem {
            job_id: leased[1].job_id,
            lease_id: leased[1].lease_id,
            outcome: succeeded(),
        },
    ];
    let done = client
        .complete_batch(pb::CompleteBatchRequest {
            session: None,
            items,
        })
        .await
        .expect("batch complete")
        .results;
    match &done[0].result {
        Some(Done::Error(e)) => assert_eq!(e.kind, "stale_lease", "{e:?}"),
        other => panic!("expected a stale lease, got {other:?}"),
    }
    match &done[1].result {
        Some(Done::Completed(c)) => assert_eq!(c.status, pb::JobStatus::Succeeded as i32),
        other => panic!("expected a completion, got {other:?}"),
    }
    let first = client
        .get_job(pb::GetJobRequest {
            signed: false,
            job_id: leased[0].job_id,
            read: None,
        })
        .await
        .expect("job")
        .job
        .expect("a job");
    assert_eq!(first.status, pb::JobStatus::Leased as i32);
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_client_id_is_refused_even_when_there_is_nothing_to_lease() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let node = dev_node(dir.path()).await;
    // The raw stub: rota's own client sets the session itself.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.addr()))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut workers = rota_client::worker_service(channel);
    // Nothing is ready, so an accepted lease would be answered empty without the log.
    let lease = workers
        .lease(pb::LeaseRequest {
            session: Some(pb::Session {
                client_id: "w".repeat(257),
                seq: 1,
            }),
            worker: "w1".to_owned(),
            job_types: vec!["email".to_owned()],
            max: 1,
            ttl_ms: None,
            wait_ms: None,
        })
        .await;
    let refused = lease.expect_err("an over-long client id is refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("client_id"), "{refused:?}");
    node.shutdown().await.expect("shutdown");
}
