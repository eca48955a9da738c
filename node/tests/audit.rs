//! Audit bundles over a three-node cluster: an export holds the window's jobs (archived
//! ones too), their history, the throttle changes and the replays; two nodes at the same
//! index export the same bytes; the bundle verifies offline, and tampering is caught.

mod common;

use rota_client::proto as pb;
use rota_client::{Client, ClientConfig};
use rota_node::audit::format::{self, Files};
use std::sync::Arc;
use std::time::Duration;

fn client(addrs: &[String]) -> Client {
    Client::with_config(ClientConfig {
        retry_for: Duration::from_secs(10),
        ..ClientConfig::new(addrs.to_vec())
    })
    .expect("client")
}

fn stamp(reason: &str) -> Option<pb::Stamp> {
    Some(pb::Stamp {
        actor: "ops@example.com".to_owned(),
        reason: reason.to_owned(),
        ticket: Some("AUD-1".to_owned()),
    })
}

async fn enqueue(client: &Client, tenant: &str, payload: &str) -> u64 {
    client
        .enqueue(pb::EnqueueRequest {
            session: None,
            spec: Some(pb::JobSpec {
                tenant: tenant.to_owned(),
                job_type: "bill".to_owned(),
                payload: payload.as_bytes().to_vec(),
                retry: Some(pb::RetryPolicy {
                    max_attempts: 1,
                    base_backoff_ms: 1_000,
                    max_backoff_ms: 1_000,
                }),
                ..pb::JobSpec::default()
            }),
        })
        .await
        .expect("enqueue")
        .job_id
}

async fn lease_and(client: &Client, outcome: pb::complete_request::Outcome) -> u64 {
    let leased = client
        .lease(pb::LeaseRequest {
            session: None,
            worker: "w-1".to_owned(),
            job_types: vec!["bill".to_owned()],
            max: 1,
            ttl_ms: None,
            wait_ms: None,
        })
        .await
        .expect("lease")
        .jobs;
    let job = &leased[0];
    client
        .complete(pb::CompleteRequest {
            session: None,
            job_id: job.job_id,
            lease_id: job.lease_id,
            outcome: Some(outcome),
        })
        .await
        .expect("complete");
    job.job_id
}

fn as_files(answer: pb::ExportAuditResponse) -> Files {
    answer
        .files
        .into_iter()
        .map(|f| (f.name, f.content))
        .collect()
}

fn lines(files: &Files, name: &str) -> Vec<serde_json::Value> {
    String::from_utf8(files[name].clone())
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_is_the_same_from_two_nodes_verifies_and_shows_tampering() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let key = Arc::new(format::generate().expect("a key"));
    let nodes = common::cluster_with(dir.path(), |settings| {
        settings.audit_key = Some(key.clone());
    })
    .await;
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
    let c = client(&addrs);

    // A job that succeeds, one that fails for good and is replayed, another tenant's job,
    // a quota change.
    let ok = enqueue(&c, "acme", "invoice 1").await;
    lease_and(
        &c,
        pb::complete_request::Outcome::Succeeded(pb::Succeeded::default()),
    )
    .await;
    let bad = enqueue(&c, "acme", "invoice 2").await;
    lease_and(
        &c,
        pb::complete_request::Outcome::Failed(pb::Failed {
            retryable: false,
            error: "card declined".to_owned(),
        }),
    )
    .await;
    let replay = c
        .replay_job(pb::ReplayJobRequest {
            session: None,
            job_id: bad,
            stamp: stamp("card updated"),
        })
        .await
        .expect("replay")
        .job_id;
    let other = enqueue(&c, "globex", "invoice 3").await;
    c.set_quota(pb::SetQuotaRequest {
        session: None,
        tenant: "acme".to_owned(),
        job_type: None,
        max_active: Some(3),
        max_per_hour: None,
        burst: None,
        stamp: stamp("acme's share"),
    })
    .await
    .expect("quota");

    // Every node at the same applied index: their stale exports are byte for byte the same
    // (asked again until all three have applied the quota change and agree).
    let export = |addr: String| async move {
        let answer = client(&[addr])
            .export_audit(pb::ExportAuditRequest {
                since_ms: None,
                until_ms: None,
                tenant: None,
                read: Some(pb::ReadOptions { stale: true }),
            })
            .await
            .expect("export");
        as_files(answer)
    };
    let mut exports = Vec::new();
    for _ in 0..200 {
        exports.clear();
        for addr in &addrs {
            exports.push(export(addr.clone()).await);
        }
        let applied_quota = exports.iter().all(|files| {
            lines(files, "throttles.jsonl")
                .iter()
                .any(|l| l["kind"] == "quota_set")
        });
        if applied_quota && exports.iter().all(|files| *files == exports[0]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(exports[0], exports[1], "nodes 1 and 2 differ");
    assert_eq!(exports[0], exports[2], "nodes 1 and 3 differ");
    let files = exports.remove(0);

    let verified = format::verify(&files, &key.verifying_key()).expect("verifies");
    assert_eq!(verified.manifest.counts["jobs"], 4);
    let jobs = lines(&files, "jobs.jsonl");
    let ids: Vec<u64> = jobs.iter().map(|j| j["job_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![ok, bad, replay, other]);
    assert_eq!(jobs[1]["status"], "dead_lettered");
    assert_eq!(jobs[1]["attempts"][0]["error"], "card declined");
    assert_eq!(
        jobs[0]["payload_sha256"],
        format::sha256_hex(b"invoice 1"),
        "payload digests, not payloads"
    );
    assert!(!files["jobs.jsonl"]
        .windows(b"invoice".len())
        .any(|w| w == b"invoice"));
    let history = lines(&files, "history.jsonl");
    assert!(history
        .iter()
        .any(|h| h["job_id"] == bad && h["kind"] == "dead_lettered"));
    assert!(history.windows(2).all(|w| w[0]["prev"] != w[1]["prev"]));
    let replays = lines(&files, "replays.jsonl");
    assert_eq!(replays.len(), 1);
    assert_eq!(replays[0]["original"], bad);
    assert_eq!(replays[0]["replay"], replay);
    assert_eq!(
        replays[0]["original_payload_sha256"],
        replays[0]["replay_payload_sha256"]
    );
    assert_eq!(replays[0]["note"], "card updated");
    let throttles = lines(&files, "throttles.jsonl");
    assert_eq!(throttles[0]["ticket"], "AUD-1");

    // One tenant's bundle.
    let acme = as_files(
        c.export_audit(pb::ExportAuditRequest {
            since_ms: None,
            until_ms: None,
            tenant: Some("globex".to_owned()),
            read: None,
        })
        .await
        .expect("tenant export"),
    );
    format::verify(&acme, &key.verifying_key()).expect("verifies");
    let theirs = lines(&acme, "jobs.jsonl");
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["job_id"], other);

    // Tampering, each kind named.
    let mut changed = files.clone();
    let text = String::from_utf8(changed["jobs.jsonl"].clone()).unwrap();
    changed.insert(
        "jobs.jsonl".to_owned(),
        text.replacen("card declined", "card declinee", 1)
            .into_bytes(),
    );
    let refused = format::verify(&changed, &key.verifying_key())
        .unwrap_err()
        .0;
    assert!(
        refused.starts_with("jobs.jsonl line 2: changed"),
        "{refused}"
    );
    let other_key = format::generate().expect("a key");
    let refused = format::verify(&files, &other_key.verifying_key())
        .unwrap_err()
        .0;
    assert!(refused.contains("no signature by key"), "{refused}");

    for node in nodes {
        node.shutdown().await.expect("node stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_key_refuses_and_a_window_must_be_a_window() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let node = common::one_node(common::settings(dir.path())).await;
    let c = client(&[node.addr().to_string()]);
    let refused = c
        .export_audit(pb::ExportAuditRequest {
            since_ms: None,
            until_ms: None,
            tenant: None,
            read: None,
        })
        .await
        .expect_err("no key");
    assert_eq!(refused.kind(), Some("no_audit_key"), "{refused}");
    assert!(refused.to_string().contains("--audit-key"), "{refused}");
    node.shutdown().await.expect("node stops");

    let mut settings = common::settings(dir.path());
    settings.audit_key = Some(Arc::new(format::generate().expect("a key")));
    let node = rota_node::RunningNode::start(settings)
        .await
        .expect("restarts");
    node.raft()
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leads");
    let c = client(&[node.addr().to_string()]);
    let backwards = c
        .export_audit(pb::ExportAuditRequest {
            since_ms: Some(2_000),
            until_ms: Some(1_000),
            tenant: None,
            read: None,
        })
        .await
        .expect_err("backwards");
    assert_eq!(backwards.kind(), Some("invalid_input"), "{backwards}");
    node.shutdown().await.expect("node stops");
}
