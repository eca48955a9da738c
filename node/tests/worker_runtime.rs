//! The worker runtime against a real node: heartbeats keep a long job's lease, a canceled
//! job's handler is told to stop, and shutdown finishes or gives back what is running.

mod common;

use rota_client::proto as pb;
use rota_client::{Client, Outcome, Worker, WorkerConfig};
use rota_node::RunningNode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

async fn dev_node(dir: &std::path::Path) -> (RunningNode, Client) {
    let node = common::one_node(common::settings(dir)).await;
    let client = Client::connect([node.addr().to_string()]).expect("client");
    (node, client)
}

async fn enqueue(client: &Client, job_type: &str, ttl_ms: u64) -> u64 {
    let spec = pb::JobSpec {
        tenant: "acme".to_owned(),
        job_type: job_type.to_owned(),
        lease_ttl_ms: Some(ttl_ms),
        retry: Some(pb::RetryPolicy {
            max_attempts: 5,
            base_backoff_ms: 10,
            max_backoff_ms: 10,
        }),
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
}

async fn job(client: &Client, id: u64) -> pb::Job {
    client
        .get_job(pb::GetJobRequest {
            signed: false,
            job_id: id,
            read: None,
        })
        .await
        .expect("get job")
        .job
        .expect("job body")
}

async fn wait_status(client: &Client, id: u64, status: pb::JobStatus) -> pb::Job {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = job(client, id).await;
        if job.status == status as i32 {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never became {status:?}: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config(id: &str, grace: Duration) -> WorkerConfig {
    WorkerConfig {
        idle_poll: Duration::from_millis(20),
        shutdown_grace: grace,
        ..WorkerConfig::new(id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_job_longer_than_its_ttl_and_cancel_reaches_the_handler() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let (node, client) = dev_node(dir.path()).await;
    let long = enqueue(&client, "long", 300).await;
    let stuck = enqueue(&client, "stuck", 300).await;
    let noticed = Arc::new(AtomicBool::new(false));
    let seen = noticed.clone();
    let worker = Worker::new(client.clone(), config("w1", Duration::from_secs(5)))
        .handle("long", |_ctx| async {
            // Four lease TTLs: only heartbeats keep the lease.
            tokio::time::sleep(Duration::from_millis(1_200)).await;
            Outcome::success()
        })
        .handle("stuck", move |ctx| {
            let seen = seen.clone();
            async move {
                ctx.canceled().await;
                seen.store(true, Ordering::SeqCst);
                Outcome::success()
            }
        });
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));

    wait_status(&client, stuck, pb::JobStatus::Leased).await;
    client
        .cancel_job(pb::CancelJobRequest {
            session: None,
            job_id: stuck,
            stamp: Some(pb::Stamp {
                actor: "ops".to_owned(),
                reason: "not needed".to_owned(),
                ticket: None,
            }),
        })
        .await
        .expect("cancel");
    let done = wait_status(&client, long, pb::JobStatus::Succeeded).await;
    assert_eq!(
        done.attempts.len(),
        1,
        "one attempt, kept alive by heartbeats: {done:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !noticed.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the handler never learned of the cancel"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        job(&client, stuck).await.status,
        pb::JobStatus::Canceled as i32
    );
    let _ = stop.send(());
    running.await.expect("worker task").expect("worker ran");
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_quick_jobs_and_gives_back_slow_ones() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let (node, client) = dev_node(dir.path()).await;
    let quick = enqueue(&client, "quick", 30_000).await;
    let slow = enqueue(&client, "slow", 30_000).await;
    let worker = Worker::new(client.clone(), config("w2", Duration::from_millis(500)))
        .handle("quick", |_ctx| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Outcome::success()
        })
        .handle("slow", |_ctx| async {
            tokio::time::sleep(Duration::from_secs(600)).await;
            Outcome::success()
        });
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    wait_status(&client, quick, pb::JobStatus::Leased).await;
    wait_status(&client, slow, pb::JobStatus::Leased).await;
    let _ = stop.send(());
    running.await.expect("worker task").expect("worker ran");

    assert_eq!(
        job(&client, quick).await.status,
        pb::JobStatus::Succeeded as i32
    );
    // The slow job was given back at once as a retryable failure, not left to its 30 s lease.
    let given_back = job(&client, slow).await;
    assert_ne!(
        given_back.status,
        pb::JobStatus::Leased as i32,
        "{given_back:?}"
    );
    let attempt = &given_back.attempts[0];
    assert_eq!(attempt.outcome, pb::AttemptOutcome::Failed as i32);
    assert!(attempt.retryable);
    assert!(attempt
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("shut down"));
    node.shutdown().await.expect("shutdown");
}
