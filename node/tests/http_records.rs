//! The REST routes of schedules, backfills, plan cancels, lineage, the governance history,
//! incidents, audit bundles and signed jobs, on a three-node cluster through a follower; and
//! a job held back by a quota shown pending with its next eligible time.

mod common;

use common::rest::Rest;
use common::{cluster_with, follower};
use reqwest::{Client, Method, StatusCode};
use rota_node::audit::{dsse, format};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const MINUTE: u64 = 60_000;

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .expect("in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn why(reason: &str) -> Value {
    json!({"reason": reason, "ticket": "OPS-7", "actor": "ops@example.com"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_backfills_lineage_history_incidents_and_audit_over_rest() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let key = Arc::new(format::generate().expect("a key"));
    let nodes = cluster_with(dir.path(), |s| s.audit_key = Some(key.clone())).await;
    let via = follower(&nodes);
    let rest = Rest {
        http: Client::new(),
        base: format!("http://{}", via.http_addr().expect("HTTP port")),
    };
    // The first leader names the cluster; every node shows the same name.
    let mut cluster_id = None;
    for _ in 0..100 {
        let view = rest.get("/api/cluster").await;
        if let Some(id) = view["clusterId"].as_str() {
            cluster_id = Some(id.to_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let cluster_id = cluster_id.expect("the cluster is named within 10 s");
    assert_eq!(cluster_id.len(), 32);
    for node in &nodes {
        let other = Rest {
            http: Client::new(),
            base: format!("http://{}", node.http_addr().expect("HTTP port")),
        };
        let mut seen = None;
        for _ in 0..100 {
            seen = other.get("/api/cluster").await["clusterId"]
                .as_str()
                .map(str::to_owned);
            if seen.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(seen.as_deref(), Some(cluster_id.as_str()));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    // New Year's Day, yearly, since mid-2021: five past firings (skipped, as missed) to
    // backfill, and none due while the test runs (unless it runs at midnight on Jan 1).
    let start = 1_622_505_600_000; // 2021-06-01T00:00:00Z
    let until = 1_780_272_000_000; // 2026-06-01T00:00:00Z
    assert!(until < now, "the clock is before mid-2026");
    let made = rest
        .post(
            "/api/schedules",
            json!({
                "id": "new-year",
                "template": {"tenant": "acme", "jobType": "report", "payload": {"kind": "sales"}},
                "cron": "0 0 1 1 *",
                "start": rfc3339(start),
                "reason": "sales reports", "ticket": "OPS-7",
            }),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(made["id"], "new-year");
    let listed = rest.get("/api/schedules").await;
    assert_eq!(listed["schedules"][0]["id"], "new-year");
    let shown = rest.get("/api/schedules/new-year?upcoming=3").await;
    assert_eq!(shown["cron"], "0 0 1 1 *");
    assert_eq!(shown["catchUp"], "skip");
    assert_eq!(shown["template"]["payload"], json!({"kind": "sales"}));
    assert_eq!(shown["upcoming"].as_array().map(Vec::len), Some(3));
    assert_eq!(shown["createdBy"]["reason"], "sales reports");
    let both = rest
        .call(
            Method::POST,
            "/api/schedules",
            Some(json!({
                "id": "x", "template": {"tenant": "acme", "jobType": "report"},
                "cron": "@daily", "intervalMs": MINUTE, "reason": "r",
            })),
        )
        .await;
    assert_eq!(both.status(), StatusCode::BAD_REQUEST);

    // Pause and resume.
    rest.post(
        "/api/schedules/new-year/pause",
        why("freeze"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(rest.get("/api/schedules/new-year").await["paused"], true);
    rest.post(
        "/api/schedules/new-year/resume",
        why("thaw"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(rest.get("/api/schedules/new-year").await["paused"], false);

    // A backfill of five past fire times: one plan, one job per fire time, idempotent.
    let window = json!({
        "since": rfc3339(start), "until": rfc3339(until),
        "reason": "rerun after the outage", "ticket": "INC-42",
    });
    let backfill = rest
        .post(
            "/api/schedules/new-year/backfill",
            window.clone(),
            StatusCode::CREATED,
        )
        .await;
    let jobs: Vec<u64> = backfill["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["jobId"].as_u64().expect("jobId"))
        .collect();
    assert_eq!(jobs.len(), 5);
    let again = rest
        .post(
            "/api/schedules/new-year/backfill",
            window,
            StatusCode::CREATED,
        )
        .await;
    let again: Vec<u64> = again["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["jobId"].as_u64().expect("jobId"))
        .collect();
    assert_eq!(again, jobs, "run again, it creates nothing new");
    let first = rest.get(&format!("/api/jobs/{}", jobs[0])).await;
    // 2022-01-01T00:00:00Z, keyed as the schedule's own firing would be.
    assert_eq!(first["idempotencyKey"], "schedule:new-year:1640995200000");
    assert_eq!(first["backfill"]["ticket"], "INC-42");
    let no_ticket = rest
        .call(
            Method::POST,
            "/api/schedules/new-year/backfill",
            Some(json!({"since": rfc3339(start), "until": rfc3339(until), "reason": "r"})),
        )
        .await;
    assert_eq!(no_ticket.status(), StatusCode::BAD_REQUEST);

    // Cancel the backfill as a whole.
    let plan = backfill["planId"].as_u64().expect("planId");
    let canceled = rest
        .post(
            &format!("/api/plans/{plan}/cancel"),
            why("wrong window"),
            StatusCode::OK,
        )
        .await;
    let mut canceled: Vec<u64> = canceled["canceled"]
        .as_array()
        .expect("canceled")
        .iter()
        .map(|v| v.as_u64().expect("id"))
        .collect();
    canceled.sort_unstable();
    assert_eq!(canceled, jobs);
    let plan_view = rest.get(&format!("/api/plans/{plan}")).await;
    assert!(
        plan_view["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .all(|s| s["status"] == "canceled"),
        "{plan_view}"
    );

    // Lineage: who read an artifact.
    let reader = rest
        .post(
            "/api/jobs",
            json!({
                "tenant": "acme", "jobType": "etl",
                "inputs": [{"name": "raw.csv", "uri": "s3://bucket/raw.csv"}],
            }),
            StatusCode::CREATED,
        )
        .await["jobId"]
        .as_u64()
        .expect("jobId");
    let lineage = rest.get("/api/lineage?artifact=raw.csv").await;
    assert_eq!(lineage["links"][0]["jobId"], reader);
    assert_eq!(lineage["links"][0]["wrote"], false);
    assert_eq!(
        lineage["links"][0]["artifact"]["uri"],
        "s3://bucket/raw.csv"
    );
    let sideways = rest
        .call(
            Method::GET,
            "/api/lineage?artifact=raw.csv&direction=sideways",
            None,
        )
        .await;
    assert_eq!(sideways.status(), StatusCode::BAD_REQUEST);

    // A job over its quota's rate shows pending with its next eligible time.
    rest.post(
        "/api/quotas",
        json!({"tenant": "slow", "maxPerHour": 1, "burst": 1, "reason": "a trial tenant"}),
        StatusCode::OK,
    )
    .await;
    for _ in 0..2 {
        rest.post(
            "/api/jobs",
            json!({"tenant": "slow", "jobType": "trial"}),
            StatusCode::CREATED,
        )
        .await;
    }
    let leased = rest
        .post(
            "/api/leases",
            json!({"worker": "w-1", "jobTypes": ["trial"], "max": 5}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(leased["jobs"].as_array().map(Vec::len), Some(1));
    let pending = rest.get("/api/jobs?status=pending&tenant=slow").await;
    let held = &pending["jobs"][0];
    assert_eq!(held["status"], "pending", "{pending}");
    assert_eq!(held["heldBy"], "rate_limit");
    let eligible =
        chrono::DateTime::parse_from_rfc3339(held["eligibleAt"].as_str().expect("eligibleAt"))
            .expect("an instant")
            .timestamp_millis() as u64;
    assert!(eligible > now + 50 * MINUTE, "an hour's refill: {held}");
    assert!(held["heldDetail"]
        .as_str()
        .expect("detail")
        .contains("slow"));
    let ready = rest.get("/api/jobs?status=ready&tenant=slow").await;
    assert_eq!(
        ready["jobs"],
        json!([]),
        "held jobs are not listed as ready"
    );

    // An incident: a breaker trips, is acknowledged, then resolved.
    rest.post(
        "/api/breakers/pay",
        json!({"config": {"failureThresholdPercent": 50, "windowMs": 60_000, "minAttempts": 1},
               "reason": "guard the gateway"}),
        StatusCode::OK,
    )
    .await;
    rest.post(
        "/api/jobs",
        json!({"tenant": "acme", "jobType": "pay", "retry": {"maxAttempts": 1, "baseBackoffMs": 1000, "maxBackoffMs": 1000}}),
        StatusCode::CREATED,
    )
    .await;
    let pay = rest
        .post(
            "/api/leases",
            json!({"worker": "w-2", "jobTypes": ["pay"]}),
            StatusCode::OK,
        )
        .await;
    let job = &pay["jobs"][0];
    rest.post(
        &format!("/api/jobs/{}/complete", job["jobId"]),
        json!({"leaseId": job["leaseId"], "outcome": "failed", "error": "gateway down", "retryable": false}),
        StatusCode::OK,
    )
    .await;
    let governance = rest.get("/api/governance").await;
    let incident = governance["incidents"][0]["id"]
        .as_u64()
        .expect("an incident");
    rest.post(
        &format!("/api/incidents/{incident}/acknowledge"),
        why("looking"),
        StatusCode::OK,
    )
    .await;
    let governance = rest.get("/api/governance").await;
    assert_eq!(
        governance["incidents"][0]["acknowledgedBy"]["reason"],
        "looking"
    );
    rest.post(
        &format!("/api/incidents/{incident}/resolve"),
        why("gateway back"),
        StatusCode::OK,
    )
    .await;
    let governance = rest.get("/api/governance").await;
    assert_eq!(governance["incidents"][0]["resolved"], true);
    assert_eq!(
        governance["incidents"][0]["resolvedBy"]["reason"],
        "gateway back"
    );
    let again = rest
        .call(
            Method::POST,
            &format!("/api/incidents/{incident}/resolve"),
            Some(why("twice")),
        )
        .await;
    assert!(again.status().is_client_error(), "{}", again.status());

    // The governance history, filtered by kind; an unknown kind is refused.
    let history = rest
        .get("/api/governance/history?kinds=schedule_created,schedule_paused,backfill")
        .await;
    let kinds: Vec<&str> = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "schedule_created",
            "schedule_paused",
            "backfill",
            "backfill"
        ]
    );
    assert_eq!(history["events"][0]["stamp"]["reason"], "sales reports");
    let unknown = rest
        .call(Method::GET, "/api/governance/history?kinds=nonsense", None)
        .await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);

    // A signed job opens with the cluster's audit key and names the job.
    let signed = rest
        .call(Method::GET, &format!("/api/jobs/{reader}/signed"), None)
        .await;
    assert_eq!(signed.status(), StatusCode::OK);
    let envelope = signed.bytes().await.expect("a body");
    let payload = dsse::open(&envelope, &key.verifying_key(), dsse::JOB_PAYLOAD_TYPE)
        .expect("signed by the audit key");
    let statement: Value = serde_json::from_slice(&payload).expect("JSON");
    assert_eq!(statement["format"], dsse::JOB_STATEMENT);
    assert_eq!(statement["cluster_id"], cluster_id.as_str());
    assert_eq!(statement["job"]["job_id"], reader);
    assert_eq!(statement["job"]["inputs"][0]["name"], "raw.csv");

    // An audit bundle as a tar archive that verifies offline.
    let bundle = rest
        .call(
            Method::GET,
            &format!("/api/audit?since={}", rfc3339(now - 60 * MINUTE)),
            None,
        )
        .await;
    assert_eq!(bundle.status(), StatusCode::OK);
    assert_eq!(bundle.headers()["content-type"], "application/x-tar");
    assert_eq!(
        bundle.headers()["x-rota-audit-key-id"],
        format::key_id(&key.verifying_key()).as_str()
    );
    let tar = bundle.bytes().await.expect("a body");
    let files = format::read_tar(tar.as_ref()).expect("a tar archive");
    let verified = format::verify(&files, &key.verifying_key()).expect("verifies");
    assert_eq!(verified.manifest.counts["jobs"], 5 + 1 + 2 + 1);
    assert_eq!(
        verified.manifest.cluster_id.as_deref(),
        Some(cluster_id.as_str())
    );

    // Delete the schedule; it is gone.
    let deleted = rest
        .json(
            Method::DELETE,
            "/api/schedules/new-year",
            Some(why("retired")),
            StatusCode::OK,
        )
        .await;
    assert_eq!(deleted["ok"], true);
    let gone = rest
        .call(Method::GET, "/api/schedules/new-year", None)
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    for node in nodes {
        node.shutdown().await.expect("node stops");
    }
}
