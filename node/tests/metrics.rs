//! `GET /metrics` on a three-node cluster running jobs: the counters and gauges say what the
//! test did (on every node, since every node applies every entry), the state's gauges agree
//! across nodes, the leader alone reports commit index and replication lag, and the whole
//! exposition is Prometheus' text format, line by line.

mod common;

use prometheus_parse::{LineInfo, Sample, Scrape, Value};
use rota_client::proto as pb;
use rota_client::Client;
use rota_node::RunningNode;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

async fn scrape_text(node: &RunningNode) -> String {
    let url = format!("http://{}/metrics", node.http_addr().expect("an HTTP port"));
    let response = reqwest::get(url).await.expect("the node answers");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.expect("a body")
}

/// Parses the whole exposition, refusing any line that is not a comment, a TYPE or HELP
/// line, or a sample of a declared metric with a numeric value.
fn parse_strictly(text: &str) -> Scrape {
    let mut declared: BTreeMap<String, String> = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        match LineInfo::parse(line) {
            LineInfo::Doc { .. } | LineInfo::Empty => {}
            LineInfo::Type {
                metric_name,
                metric_alias,
                sample_type,
            } => {
                let name = metric_alias.unwrap_or(metric_name);
                declared.insert(name, format!("{sample_type:?}"));
            }
            LineInfo::Sample {
                metric_name, value, ..
            } => {
                assert!(
                    value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
                    "line {number}: value {value:?} is not a number: {line}"
                );
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| {
                        metric_name
                            .strip_suffix(suffix)
                            .filter(|base| declared.get(*base).is_some_and(|t| t == "Histogram"))
                    })
                    .unwrap_or(metric_name);
                assert!(
                    declared.contains_key(family),
                    "line {number}: {metric_name} has no TYPE line before it"
                );
            }
            LineInfo::Ignored => panic!("line {number} is not Prometheus text: {line:?}"),
        }
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("the exposition parses")
}

/// The value of the sample of `metric` whose labels include all of `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let sample = find(scrape, metric, labels)?;
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        Value::Histogram(buckets) => buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map(|b| b.count),
        Value::Summary(_) => None,
    }
}

fn find<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape.samples.iter().find(|s| {
        s.metric == metric
            && labels
                .iter()
                .all(|(name, want)| s.labels.get(name) == Some(*want))
    })
}

fn spec(tenant: &str, job_type: &str, retryable_backoff_ms: u64) -> pb::JobSpec {
    pb::JobSpec {
        tenant: tenant.to_owned(),
        job_type: job_type.to_owned(),
        retry: Some(pb::RetryPolicy {
            max_attempts: 3,
            base_backoff_ms: retryable_backoff_ms,
            max_backoff_ms: retryable_backoff_ms,
        }),
        lease_ttl_ms: Some(60_000),
        ..pb::JobSpec::default()
    }
}

async fn lease(client: &Client, job_type: &str, max: u32) -> Vec<pb::LeasedJob> {
    client
        .lease(pb::LeaseRequest {
            worker: "w-metrics".to_owned(),
            job_types: vec![job_type.to_owned()],
            max,
            ..pb::LeaseRequest::default()
        })
        .await
        .expect("lease")
        .jobs
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

fn failed(retryable: bool) -> pb::complete_request::Outcome {
    pb::complete_request::Outcome::Failed(pb::Failed {
        retryable,
        error: "boom".to_owned(),
    })
}

/// Waits until every node has applied what the leader has, and scrapes each.
async fn settled_scrapes(nodes: &[RunningNode]) -> Vec<Scrape> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let applied: BTreeSet<Option<u64>> = nodes
            .iter()
            .map(|n| n.raft().metrics().borrow().last_applied.map(|l| l.index))
            .collect();
        if applied.len() == 1 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut scrapes = Vec::new();
    for node in nodes {
        scrapes.push(parse_strictly(&scrape_text(node).await));
    }
    scrapes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_say_what_the_cluster_did_on_every_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = common::cluster(dir.path()).await;
    let client = Client::connect(nodes.iter().map(|n| n.addr().to_string())).expect("client");

    for _ in 0..5 {
        client
            .enqueue(pb::EnqueueRequest {
                session: None,
                spec: Some(spec("acme", "email", 600_000)),
            })
            .await
            .expect("enqueue");
    }
    for _ in 0..2 {
        client
            .enqueue(pb::EnqueueRequest {
                session: None,
                spec: Some(spec("beta", "sms", 600_000)),
            })
            .await
            .expect("enqueue");
    }
    // acme/email: one succeeds, one fails and waits out a ten-minute backoff, one is held
    // and extended by a heartbeat, two stay ready.
    let two = lease(&client, "email", 2).await;
    assert_eq!(two.len(), 2);
    complete(
        &client,
        &two[0],
        pb::complete_request::Outcome::Succeeded(pb::Succeeded::default()),
    )
    .await;
    complete(&client, &two[1], failed(true)).await;
    let held = lease(&client, "email", 1).await;
    assert_eq!(held.len(), 1);
    client
        .heartbeat(pb::HeartbeatRequest {
            session: None,
            job_id: held[0].job_id,
            lease_id: held[0].lease_id,
        })
        .await
        .expect("heartbeat");
    // beta/sms: one fails for good (dead-lettered), one stays ready.
    let sms = lease(&client, "sms", 1).await;
    complete(&client, &sms[0], failed(false)).await;

    // A refused call, counted with its kind.
    let missing = client
        .get_job(pb::GetJobRequest {
            signed: false,
            job_id: 999_999,
            read: None,
        })
        .await;
    assert!(missing.is_err(), "{missing:?}");

    let scrapes = settled_scrapes(&nodes).await;
    for (i, scrape) in scrapes.iter().enumerate() {
        let node = format!("node {}", nodes[i].raft().id());
        let email = [("tenant", "acme"), ("jobType", "email")];
        let sms = [("tenant", "beta"), ("jobType", "sms")];
        let depth = |pair: &[(&str, &str)], status: &str| {
            let mut labels = pair.to_vec();
            labels.push(("status", status));
            value(scrape, "job_queue_depth", &labels)
        };
        assert_eq!(depth(&email, "ready"), Some(2.0), "{node}");
        assert_eq!(depth(&email, "leased"), Some(1.0), "{node}");
        assert_eq!(depth(&email, "failed"), Some(1.0), "{node}");
        assert_eq!(depth(&email, "succeeded"), Some(1.0), "{node}");
        assert_eq!(depth(&sms, "ready"), Some(1.0), "{node}");
        assert_eq!(depth(&sms, "dead_lettered"), Some(1.0), "{node}");

        // Counted as each node applied the entries.
        let count = |metric: &str, pair: &[(&str, &str)]| value(scrape, metric, pair);
        assert_eq!(count("job_enqueued_total", &email), Some(5.0), "{node}");
        assert_eq!(count("job_enqueued_total", &sms), Some(2.0), "{node}");
        assert_eq!(count("lease_granted_total", &email), Some(3.0), "{node}");
        assert_eq!(count("job_succeeded_total", &email), Some(1.0), "{node}");
        assert_eq!(count("job_failures_total", &email), Some(1.0), "{node}");
        assert_eq!(count("job_retry_total", &email), Some(1.0), "{node}");
        assert_eq!(count("lease_extensions_total", &email), Some(1.0), "{node}");
        assert_eq!(count("job_failures_total", &sms), Some(1.0), "{node}");
        assert_eq!(count("job_retry_total", &sms), Some(0.0), "{node}");
        assert_eq!(count("job_dead_letters_total", &sms), Some(1.0), "{node}");
        let mut run = email.to_vec();
        run.push(("phase", "run"));
        assert_eq!(
            value(scrape, "job_latency_seconds", &run),
            Some(2.0),
            "{node}: two attempts ended by a worker"
        );
        let mut queued = email.to_vec();
        queued.push(("phase", "queued"));
        assert_eq!(
            value(scrape, "job_latency_seconds", &queued),
            Some(3.0),
            "{node}"
        );
        assert_eq!(value(scrape, "maintenance_mode", &[]), Some(0.0), "{node}");
        assert!(
            value(scrape, "raft_term", &[]).is_some_and(|t| t >= 1.0),
            "{node}"
        );
        assert!(
            value(scrape, "process_resident_memory_bytes", &[]).is_some_and(|b| b > 0.0),
            "{node}"
        );
        assert!(
            value(scrape, "raft_log_entries_total", &[]).is_some_and(|n| n > 0.0),
            "{node}"
        );
    }

    // The state's gauges are the same everywhere once the nodes have applied the same log.
    let depths: Vec<BTreeMap<String, f64>> = scrapes
        .iter()
        .map(|scrape| {
            scrape
                .samples
                .iter()
                .filter(|s| s.metric == "job_queue_depth")
                .filter_map(|s| match s.value {
                    Value::Gauge(v) => Some((s.labels.to_string(), v)),
                    _ => None,
                })
                .collect()
        })
        .collect();
    assert!(depths[0].len() >= 14, "{:?}", depths[0]);
    assert!(depths.iter().all(|d| d == &depths[0]), "{depths:#?}");

    // Only the leader knows the commit index and how far behind each follower is.
    let leader = nodes
        .iter()
        .position(|n| n.raft().is_leader())
        .expect("a leader");
    for (i, scrape) in scrapes.iter().enumerate() {
        let leads = i == leader;
        assert_eq!(
            value(scrape, "raft_is_leader", &[]),
            Some(f64::from(u8::from(leads)))
        );
        assert_eq!(value(scrape, "raft_commit_index", &[]).is_some(), leads);
        let lags = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "raft_replication_lag_entries")
            .count();
        assert_eq!(lags, if leads { 2 } else { 0 }, "node {i}");

        // The write path's stages, timed where each runs: the leader proposes and sends,
        // followers serve appends, every node syncs its log and applies.
        let stage = |name: &str| {
            let times = value(scrape, "raft_stage_total", &[("stage", name)]);
            let seconds = value(scrape, "raft_stage_seconds_total", &[("stage", name)]);
            (times.unwrap_or(-1.0), seconds.unwrap_or(-1.0))
        };
        for name in ["log_sync", "applied"] {
            let (times, seconds) = stage(name);
            assert!(
                times > 0.0 && seconds > 0.0,
                "node {i} {name}: {times} {seconds}"
            );
        }
        for name in ["queued", "committed", "replicated"] {
            let (times, _) = stage(name);
            assert_eq!(times > 0.0, leads, "node {i} {name}: {times}");
        }
        let (served, _) = stage("append_served");
        assert_eq!(served > 0.0, !leads, "node {i} append_served: {served}");
    }

    // Calls are counted by method and code on the node that answered them.
    let calls: f64 = scrapes
        .iter()
        .filter_map(|s| {
            value(
                s,
                "rpc_requests_total",
                &[("method", "/rota.v1.JobService/Enqueue"), ("code", "Ok")],
            )
        })
        .sum();
    assert!(
        calls >= 7.0,
        "seven enqueues answered, some maybe forwarded: {calls}"
    );
    let refused: f64 = scrapes
        .iter()
        .filter_map(|s| {
            value(
                s,
                "rpc_requests_total",
                &[
                    ("method", "/rota.v1.JobService/GetJob"),
                    ("code", "NotFound"),
                    ("kind", "job_not_found"),
                ],
            )
        })
        .sum();
    assert!(
        refused >= 1.0,
        "the refused read is counted with its kind: {refused}"
    );
    let scraped = value(
        &parse_strictly(&scrape_text(&nodes[0]).await),
        "http_requests_total",
        &[("route", "/metrics"), ("method", "GET"), ("status", "200")],
    );
    assert!(scraped.is_some_and(|n| n >= 1.0), "{scraped:?}");

    for node in nodes {
        node.shutdown().await.expect("shutdown");
    }
}
