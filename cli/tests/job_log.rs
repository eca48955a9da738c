//! The job log as a collector reads it: `rota dev --log-format json` writes one JSON object
//! per line to stderr, and a job's life shows as one `rota::job` event per transition with
//! the fields an operator filters on, each told once.

use rota_client::proto as pb;
use rota_client::Client;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn spec(job_type: &str, max_attempts: u32) -> pb::JobSpec {
    pb::JobSpec {
        tenant: "acme".to_owned(),
        job_type: job_type.to_owned(),
        retry: Some(pb::RetryPolicy {
            max_attempts,
            base_backoff_ms: 10,
            max_backoff_ms: 10,
        }),
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

/// Leases one job of `job_type`, waiting out a backoff if need be.
async fn lease(client: &Client, job_type: &str) -> pb::LeasedJob {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leased = client
            .lease(pb::LeaseRequest {
                worker: "w-log".to_owned(),
                job_types: vec![job_type.to_owned()],
                max: 1,
                ..pb::LeaseRequest::default()
            })
            .await
            .expect("lease");
        if let Some(job) = leased.jobs.into_iter().next() {
            return job;
        }
        assert!(Instant::now() < deadline, "no {job_type} job to lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn complete(client: &Client, job: &pb::LeasedJob, outcome: pb::complete_request::Outcome) {
    client
        .complete(pb::CompleteRequest {
            session: None,
            job_id: job.job_id,
            lease_id: job.lease_id,
            outcome: Some(outcome),
        })
        .await
        .expect("complete");
}

fn failure() -> pb::complete_request::Outcome {
    pb::complete_request::Outcome::Failed(pb::Failed {
        retryable: true,
        error: "smtp timeout".to_owned(),
    })
}

fn stamp() -> Option<pb::Stamp> {
    Some(pb::Stamp {
        actor: "ops@example.com".to_owned(),
        reason: "test".to_owned(),
        ticket: Some("OPS-1".to_owned()),
    })
}

/// The `rota::job` events of the log so far, parsed.
fn job_events(log: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"))
        })
        .filter(|v| v["target"] == "rota::job")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_life_is_in_the_json_log_once_per_transition() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let log = dir.path().join("stderr.jsonl");
    let endpoint = format!(
        "127.0.0.1:{}",
        rota_benches::cluster::free_port().expect("a free port")
    );
    let mut dev = Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["dev", "--listen", &endpoint, "--http-listen", "127.0.0.1:0"])
        .args(["--log-format", "json"])
        .env("ROTA_DEV_DIR", dir.path().join("data"))
        .env_remove("ROTA_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("rota dev starts");
    let client = Client::connect([endpoint.clone()]).expect("client");

    // A job that succeeds after a heartbeat.
    let good = enqueue(&client, spec("email", 3)).await;
    let leased = lease(&client, "email").await;
    assert_eq!(leased.job_id, good);
    client
        .heartbeat(pb::HeartbeatRequest {
            session: None,
            job_id: good,
            lease_id: leased.lease_id,
        })
        .await
        .expect("heartbeat");
    complete(
        &client,
        &leased,
        pb::complete_request::Outcome::Succeeded(pb::Succeeded::default()),
    )
    .await;
    // A job that fails, is retried, fails again and is dead-lettered, then replayed.
    let bad = enqueue(&client, spec("sms", 2)).await;
    let first = lease(&client, "sms").await;
    complete(&client, &first, failure()).await;
    let second = lease(&client, "sms").await;
    assert_eq!(second.job_id, bad);
    complete(&client, &second, failure()).await;
    let replay = client
        .replay_job(pb::ReplayJobRequest {
            session: None,
            job_id: bad,
            stamp: stamp(),
        })
        .await
        .expect("replay")
        .job_id;
    // A job canceled while it waits.
    let dropped = enqueue(&client, spec("report", 1)).await;
    client
        .cancel_job(pb::CancelJobRequest {
            session: None,
            job_id: dropped,
            stamp: stamp(),
        })
        .await
        .expect("cancel");

    // The log is written off the apply path: wait for the last transition to show.
    let deadline = Instant::now() + Duration::from_secs(20);
    let events = loop {
        let events = job_events(&log);
        let done = events
            .iter()
            .any(|e| e["jobId"] == dropped && e["event"] == "canceled");
        if done || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = dev.kill();
    let _ = dev.wait();
    let governance: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["target"] == "rota::governance")
        .collect();
    let canceled = governance
        .iter()
        .find(|g| g["event"] == "job_canceled")
        .unwrap_or_else(|| panic!("no governance event for the cancel: {governance:#?}"));
    assert_eq!(canceled["actor"], "ops@example.com");
    assert_eq!(canceled["reason"], "test");
    assert_eq!(canceled["ticket"], "OPS-1");
    assert!(canceled["logIndex"].is_u64());

    let of = |job: u64| -> Vec<&Value> { events.iter().filter(|e| e["jobId"] == job).collect() };
    let names = |job: u64| -> Vec<String> {
        of(job)
            .iter()
            .map(|e| e["event"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    assert_eq!(
        names(good),
        ["enqueued", "leased", "extended", "succeeded"],
        "{events:#?}"
    );
    assert_eq!(
        names(bad),
        [
            "enqueued",
            "leased",
            "failed",
            "retried",
            "leased",
            "failed",
            "dead_lettered",
            "replayed"
        ],
        "{events:#?}"
    );
    assert_eq!(names(replay), ["enqueued"], "{events:#?}");
    assert_eq!(names(dropped), ["enqueued", "canceled"], "{events:#?}");

    // Every event carries the fields a collector filters on.
    for event in &events {
        for field in [
            "jobId", "jobType", "tenant", "status", "attempt", "node", "logIndex",
        ] {
            assert!(!event[field].is_null(), "{field} missing: {event}");
        }
        assert_eq!(event["tenant"], "acme", "{event}");
        assert_eq!(event["node"], 1, "{event}");
        assert_eq!(event["level"], "INFO", "{event}");
    }
    let at = |job: u64, name: &str, nth: usize| -> &Value {
        of(job)
            .into_iter()
            .filter(|e| e["event"] == name)
            .nth(nth)
            .unwrap_or_else(|| panic!("job {job} has no {name} #{nth}: {events:#?}"))
    };
    let granted = at(good, "leased", 0);
    assert_eq!(granted["workerId"], "w-log");
    assert_eq!(granted["leaseId"], leased.lease_id);
    assert_eq!(granted["status"], "leased");
    assert_eq!(granted["attempt"], 1);
    assert_eq!(granted["jobType"], "email");
    assert_eq!(at(good, "extended", 0)["leaseId"], leased.lease_id);
    assert_eq!(at(good, "succeeded", 0)["status"], "succeeded");
    assert_eq!(at(good, "succeeded", 0)["workerId"], "w-log");
    assert_eq!(at(bad, "failed", 0)["error"], "smtp timeout");
    assert_eq!(at(bad, "failed", 0)["leaseId"], first.lease_id);
    assert!(at(bad, "retried", 0)["retryAtMs"].is_u64());
    assert_eq!(at(bad, "leased", 1)["attempt"], 2);
    assert_eq!(at(bad, "dead_lettered", 0)["status"], "dead_lettered");
    assert_eq!(at(bad, "replayed", 0)["replayJobId"], replay);
    assert!(at(dropped, "canceled", 0)["reason"].is_string());
    // Log positions name each event once.
    let mut positions: Vec<(u64, u64)> = events
        .iter()
        .map(|e| {
            (
                e["logIndex"].as_u64().unwrap_or(0),
                e["ordinal"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let all = positions.len();
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(positions.len(), all, "an event logged twice");
}

/// Starts `rota dev` on `endpoint` with its data in `data` and its JSON log in `log`.
fn dev(endpoint: &str, data: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["dev", "--listen", endpoint, "--http-listen", "127.0.0.1:0"])
        .args(["--log-format", "json"])
        .env("ROTA_DEV_DIR", data)
        .env_remove("ROTA_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("rota dev starts")
}

/// Waits until the log at `log` tells `event` of `job`.
async fn wait_for(log: &std::path::Path, job: u64, event: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = job_events(log);
        if events
            .iter()
            .any(|e| e["jobId"] == job && e["event"] == event)
        {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "no {event} of job {job}: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_does_not_log_again_what_it_replays() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let data = dir.path().join("data");
    let (first_log, second_log) = (
        dir.path().join("first.jsonl"),
        dir.path().join("second.jsonl"),
    );
    let endpoint = format!(
        "127.0.0.1:{}",
        rota_benches::cluster::free_port().expect("a free port")
    );
    let mut node = dev(&endpoint, &data, &first_log);
    let client = Client::connect([endpoint.clone()]).expect("client");
    let before = enqueue(&client, spec("email", 3)).await;
    wait_for(&first_log, before, "enqueued").await;
    let _ = node.kill();
    let _ = node.wait();

    // The restarted node replays its log (the job is still there) and logs only what is new.
    let mut node = dev(&endpoint, &data, &second_log);
    let after = enqueue(&client, spec("email", 3)).await;
    let events = wait_for(&second_log, after, "enqueued").await;
    let _ = node.kill();
    let _ = node.wait();
    assert!(
        events.iter().all(|e| e["jobId"] != before),
        "the replayed job was logged again: {events:#?}"
    );
}
