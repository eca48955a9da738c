//! The REST API on a three-node cluster, every route called through a follower (which
//! forwards writes to the leader), its errors as problem+json, and its OpenAPI document.

mod common;

use common::rest::Rest;
use common::{cluster, follower};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Checks a problem+json answer of `status` and `kind`; returns its detail.
async fn problem(response: Response, status: StatusCode, kind: &str) -> String {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("a problem");
    assert_eq!(body["kind"], kind, "{body}");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert_eq!(body["type"], format!("urn:rota:error:{kind}"), "{body}");
    body["detail"].as_str().expect("a detail").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_through_a_follower() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let nodes = cluster(dir.path()).await;
    let via = follower(&nodes);
    let rest = Rest {
        http: Client::new(),
        base: format!("http://{}", via.http_addr().expect("HTTP port")),
    };

    let live = rest.call(Method::GET, "/livez", None).await;
    assert_eq!(live.status(), StatusCode::OK);
    let ready = rest.call(Method::GET, "/readyz", None).await;
    assert_eq!(ready.status(), StatusCode::OK);
    let healthz = rest.call(Method::GET, "/healthz", None).await;
    assert_eq!(healthz.status(), StatusCode::OK);

    // Submit, twice with one idempotency key: one job.
    let spec = json!({
        "tenant": "acme", "jobType": "email", "payload": {"to": "a@example.com"},
        "idempotencyKey": "welcome-1", "leaseTtlMs": 60_000,
    });
    let made = rest
        .post("/api/jobs", spec.clone(), StatusCode::CREATED)
        .await;
    assert_eq!(made["created"], true);
    let id = made["jobId"].as_u64().expect("jobId");
    let again = rest.post("/api/jobs", spec, StatusCode::OK).await;
    assert_eq!(
        (again["jobId"].as_u64(), again["created"].as_bool()),
        (Some(id), Some(false))
    );

    // A payload's JSON comes back byte for byte: key order and big numbers kept.
    let exact = r#"{"z": 1, "a": 123456789012345678901234567890}"#;
    let raw = rest
        .http
        .post(format!("{}/api/jobs", rest.base))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"tenant": "acme", "jobType": "report", "payload": {exact}}}"#
        ))
        .send()
        .await
        .expect("answer");
    assert_eq!(raw.status(), StatusCode::CREATED);
    let made_raw: Value = raw.json().await.expect("JSON");
    let shown = rest
        .http
        .get(format!("{}/api/jobs/{}", rest.base, made_raw["jobId"]))
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("text");
    assert!(shown.contains(&format!(r#""payload":{exact}"#)), "{shown}");

    let job = rest.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(job["status"], "ready", "{job}");
    assert_eq!(job["payload"], json!({"to": "a@example.com"}));
    assert_eq!(job["idempotencyKey"], "welcome-1");
    assert!(job["createdAt"].as_str().expect("createdAt").ends_with('Z'));
    let stale = rest.get(&format!("/api/jobs/{id}?stale=true")).await;
    assert_eq!(stale["jobId"].as_u64(), Some(id));
    let page = rest
        .get("/api/jobs?tenant=acme&status=ready&summary=true")
        .await;
    assert_eq!(page["jobs"][0]["jobId"].as_u64(), Some(id), "{page}");

    // A worker's round: lease, heartbeat, complete.
    let leased = rest
        .post(
            "/api/leases",
            json!({"worker": "w1", "jobTypes": ["email"], "max": 10}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(leased["held"], "none");
    let grant = &leased["jobs"][0];
    assert_eq!(grant["jobId"].as_u64(), Some(id), "{leased}");
    assert_eq!(grant["payload"], json!({"to": "a@example.com"}));
    assert_eq!(grant["idempotencyKey"], "welcome-1", "{leased}");
    assert_eq!(grant["worker"], "w1");
    assert!(grant["maxAttempts"].as_u64() >= Some(1), "{leased}");
    let lease_id = grant["leaseId"].as_u64().expect("leaseId");
    let beat = rest
        .post(
            &format!("/api/jobs/{id}/heartbeat"),
            json!({"leaseId": lease_id}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(beat["canceled"], false);
    assert!(beat["leaseUntil"].as_str().is_some());
    let done = rest
        .post(
            &format!("/api/jobs/{id}/complete"),
            json!({"leaseId": lease_id, "outcome": "succeeded"}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(done["status"], "succeeded");
    let late = rest
        .call(
            Method::POST,
            &format!("/api/jobs/{id}/complete"),
            Some(json!({"leaseId": lease_id, "outcome": "succeeded"})),
        )
        .await;
    problem(late, StatusCode::CONFLICT, "stale_lease").await;

    // Replay the finished job, cancel the replay.
    let replay = rest
        .post(
            &format!("/api/jobs/{id}/replay"),
            json!({"reason": "resend"}),
            StatusCode::CREATED,
        )
        .await;
    let second = replay["jobId"].as_u64().expect("the replay's id");
    assert_eq!(
        rest.get(&format!("/api/jobs/{second}")).await["replayOf"].as_u64(),
        Some(id)
    );
    rest.post(
        &format!("/api/jobs/{second}/cancel"),
        json!({"reason": "not needed", "ticket": "OPS-1"}),
        StatusCode::OK,
    )
    .await;
    let canceled = rest.get(&format!("/api/jobs/{second}")).await;
    assert_eq!(canceled["status"], "canceled", "{canceled}");

    // A plan: b waits for a.
    let plan = rest
        .post(
            "/api/plans",
            json!({"steps": [
                {"key": "a", "job": {"tenant": "acme", "jobType": "etl", "payload": 1}},
                {"key": "b", "dependsOn": ["a"], "job": {"tenant": "acme", "jobType": "etl"}},
            ]}),
            StatusCode::CREATED,
        )
        .await;
    let plan_id = plan["planId"].as_u64().expect("planId");
    let shown = rest.get(&format!("/api/plans/{plan_id}")).await;
    assert_eq!(shown["status"], "pending", "{shown}");
    let steps: BTreeMap<String, String> = shown["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap_or("").to_owned(),
                s["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(steps["a"], "ready", "{shown}");
    assert_eq!(steps["b"], "pending", "{shown}");

    // A job that fails for good lands in the dead letters.
    let doomed = rest
        .post(
            "/api/jobs",
            json!({"tenant": "acme", "jobType": "fax"}),
            StatusCode::CREATED,
        )
        .await["jobId"]
        .as_u64()
        .expect("jobId");
    let leased = rest
        .post(
            "/api/leases",
            json!({"worker": "w2", "jobTypes": ["fax"]}),
            StatusCode::OK,
        )
        .await;
    let lease_id = leased["jobs"][0]["leaseId"].as_u64().expect("leased");
    let gave_up = rest
        .post(
            &format!("/api/jobs/{doomed}/complete"),
            json!({"leaseId": lease_id, "outcome": "failed", "retryable": false, "error": "no fax machine"}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(gave_up["status"], "dead_lettered", "{gave_up}");
    let dead = rest.get("/api/dead-letters").await;
    assert_eq!(dead["jobs"][0]["jobId"].as_u64(), Some(doomed), "{dead}");

    // Governance: each change shows in /api/governance with its stamp.
    let stamped = |extra: Value| {
        let mut body = json!({"reason": "the REST test", "ticket": "OPS-2"});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    };
    rest.post(
        "/api/quotas",
        stamped(json!({"tenant": "acme", "maxActive": 5})),
        StatusCode::OK,
    )
    .await;
    rest.post(
        "/api/limits/throttle",
        stamped(json!({"jobType": "email", "maxConcurrent": 2})),
        StatusCode::OK,
    )
    .await;
    rest.post(
        "/api/sources/pause",
        stamped(json!({"tenant": "globex"})),
        StatusCode::OK,
    )
    .await;
    rest.post(
        "/api/breakers/etl",
        stamped(json!({"config": {"failureThresholdPercent": 50, "windowMs": 60000, "minAttempts": 10}})),
        StatusCode::OK,
    )
    .await;
    rest.post(
        "/api/maintenance",
        stamped(json!({"enabled": true})),
        StatusCode::OK,
    )
    .await;
    let governance = rest.get("/api/governance").await;
    assert_eq!(governance["quotas"][0]["maxActive"], 5, "{governance}");
    assert_eq!(
        governance["throttles"][0]["maxConcurrent"], 2,
        "{governance}"
    );
    assert_eq!(
        governance["paused"][0]["scope"]["tenant"], "globex",
        "{governance}"
    );
    assert_eq!(
        governance["maintenance"]["reason"], "the REST test",
        "{governance}"
    );
    let held = rest
        .post(
            "/api/leases",
            json!({"worker": "w3", "jobTypes": ["etl"]}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(held["held"], "maintenance", "{held}");
    rest.post(
        "/api/maintenance",
        stamped(json!({"enabled": false})),
        StatusCode::OK,
    )
    .await;
    rest.post(
        "/api/sources/resume",
        stamped(json!({"tenant": "globex"})),
        StatusCode::OK,
    )
    .await;
    let refused = rest
        .call(
            Method::POST,
            "/api/breakers/etl/reset",
            Some(stamped(json!({}))),
        )
        .await;
    problem(refused, StatusCode::CONFLICT, "breaker_not_open").await;
    let after = rest.get("/api/governance").await;
    assert!(after.get("maintenance").is_none(), "{after}");
    assert_eq!(after["paused"], json!([]), "{after}");

    let status = rest.get("/api/cluster").await;
    assert_eq!(status["nodeId"].as_u64(), Some(via.raft().id()));
    assert_eq!(status["role"], "follower", "{status}");
    assert_eq!(status["members"].as_array().map(Vec::len), Some(3));
    assert!(
        status["members"][0].get("matchedIndex").is_none(),
        "a follower does not know replication: {status}"
    );
    // The leader's view, forwarded: every member's replication, none past the leader's log.
    let seen = rest.get("/api/cluster?leader=true").await;
    assert_eq!(seen["role"], "leader", "{seen}");
    assert_eq!(seen["nodeId"], status["leaderId"], "{seen}");
    for member in seen["members"].as_array().expect("members") {
        assert!(member["matchedIndex"].is_u64(), "{seen}");
    }
    problem(
        rest.call(Method::GET, "/api/cluster?leader=maybe", None)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    )
    .await;
    let detail = problem(
        rest.call(Method::GET, "/api/events?kind=leased,finished", None)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    )
    .await;
    assert!(detail.contains("finished"), "{detail}");

    // The document names exactly the routes the tests call, and is whole.
    let doc = rest.get("/api/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    let submit_security = &doc["paths"]["/api/jobs"]["post"]["security"];
    assert_eq!(
        submit_security[0],
        json!({"bearer": []}),
        "{submit_security}"
    );
    assert!(doc["paths"]["/livez"]["get"].get("security").is_none());
    let served: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("a path item").keys().cloned();
            methods.map(move |m| (m, path.clone()))
        })
        .collect();
    let called: BTreeSet<(String, String)> = [
        ("get", "/livez"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("post", "/api/jobs"),
        ("get", "/api/jobs"),
        ("get", "/api/jobs/{id}"),
        ("post", "/api/leases"),
        ("post", "/api/jobs/{id}/heartbeat"),
        ("post", "/api/jobs/{id}/complete"),
        ("post", "/api/jobs/{id}/replay"),
        ("post", "/api/jobs/{id}/cancel"),
        ("get", "/api/cluster"),
        ("get", "/api/openapi.json"),
        ("post", "/api/plans"),
        ("get", "/api/plans/{id}"),
        ("get", "/api/dead-letters"),
        ("post", "/api/quotas"),
        ("post", "/api/limits/throttle"),
        ("post", "/api/sources/pause"),
        ("post", "/api/sources/resume"),
        ("post", "/api/breakers/{jobType}"),
        ("post", "/api/breakers/{jobType}/reset"),
        ("post", "/api/maintenance"),
        ("get", "/api/governance"),
        // Called in http_records.rs.
        ("get", "/api/jobs/{id}/signed"),
        ("post", "/api/plans/{id}/cancel"),
        ("post", "/api/schedules"),
        ("get", "/api/schedules"),
        ("get", "/api/schedules/{id}"),
        ("delete", "/api/schedules/{id}"),
        ("post", "/api/schedules/{id}/pause"),
        ("post", "/api/schedules/{id}/resume"),
        ("post", "/api/schedules/{id}/backfill"),
        ("get", "/api/lineage"),
        ("get", "/api/governance/history"),
        ("post", "/api/incidents/{id}/acknowledge"),
        ("post", "/api/incidents/{id}/resolve"),
        ("get", "/api/audit"),
        // Watched in http_events.rs.
        ("get", "/api/events"),
        // Scraped in metrics.rs (and with auth in http_auth.rs).
        ("get", "/metrics"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(served, called);
    every_reference_resolves(&doc, &doc);
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let responses = operation["responses"].as_object();
            assert!(
                responses.is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no response"
            );
        }
    }

    for node in nodes {
        node.shutdown().await.expect("node stops");
    }
}

/// Every `$ref` in `value` names a schema the document has.
fn every_reference_resolves(doc: &Value, value: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                let name = target
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("a reference outside the schemas: {target}"));
                assert!(
                    doc["components"]["schemas"].get(name).is_some(),
                    "{target} is not in the document"
                );
            }
            map.values().for_each(|v| every_reference_resolves(doc, v));
        }
        Value::Array(items) => items.iter().for_each(|v| every_reference_resolves(doc, v)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_problem_json_and_changes_nothing() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let nodes = cluster(dir.path()).await;
    let via = follower(&nodes);
    let base = format!("http://{}", via.http_addr().expect("HTTP port"));
    let http = Client::new();
    let post_raw = |path: &str, body: Vec<u8>| {
        http.post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let malformed = post_raw("/api/jobs", b"{\"tenant\": ".to_vec())
        .await
        .expect("answer");
    problem(malformed, StatusCode::BAD_REQUEST, "invalid_input").await;
    let unknown_field = post_raw(
        "/api/jobs",
        br#"{"tenant": "acme", "jobType": "email", "tennant": "x"}"#.to_vec(),
    )
    .await
    .expect("answer");
    let detail = problem(unknown_field, StatusCode::BAD_REQUEST, "invalid_input").await;
    assert!(detail.contains("tennant"), "{detail}");
    let mut huge = br#"{"tenant": "acme", "jobType": "email", "payloadBase64": ""#.to_vec();
    huge.extend(std::iter::repeat_n(b'A', 9 * 1024 * 1024));
    huge.extend(br#""}"#);
    // On a connection of its own: the node answers 413 without reading the rest and closes
    // the connection, so the client may see the close before the answer while it is still
    // sending; it tries again then (at most five times).
    let alone = Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut oversized = None;
    for _ in 0..5 {
        let sent = alone
            .post(format!("{base}/api/jobs"))
            .header("content-type", "application/json")
            .body(huge.clone())
            .send()
            .await;
        if let Ok(answer) = sent {
            oversized = Some(answer);
            break;
        }
    }
    let oversized = oversized.expect("an answer to the oversized body");
    problem(oversized, StatusCode::PAYLOAD_TOO_LARGE, "over_budget").await;
    let blank = post_raw(
        "/api/jobs",
        br#"{"tenant": "", "jobType": "email"}"#.to_vec(),
    )
    .await
    .expect("answer");
    problem(blank, StatusCode::BAD_REQUEST, "invalid_input").await;
    let no_type = http
        .post(format!("{base}/api/jobs"))
        .body(r#"{"tenant": "acme", "jobType": "email"}"#)
        .send()
        .await
        .expect("answer");
    problem(
        no_type,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let bad_time = post_raw(
        "/api/jobs",
        br#"{"tenant": "acme", "jobType": "email", "notBefore": "tomorrow"}"#.to_vec(),
    )
    .await
    .expect("answer");
    let detail = problem(bad_time, StatusCode::BAD_REQUEST, "invalid_input").await;
    assert!(detail.contains("notBefore"), "{detail}");

    let get = |path: &str| http.get(format!("{base}{path}")).send();
    problem(
        get("/api/jobs/abc").await.expect("answer"),
        StatusCode::BAD_REQUEST,
        "invalid_input",
    )
    .await;
    problem(
        get("/api/jobs/77").await.expect("answer"),
        StatusCode::NOT_FOUND,
        "job_not_found",
    )
    .await;
    problem(
        get("/api/jobs?status=done").await.expect("answer"),
        StatusCode::BAD_REQUEST,
        "invalid_input",
    )
    .await;
    problem(
        get("/api/jobs?colour=red").await.expect("answer"),
        StatusCode::BAD_REQUEST,
        "invalid_input",
    )
    .await;
    problem(
        get("/api/nothing").await.expect("answer"),
        StatusCode::NOT_FOUND,
        "unknown_path",
    )
    .await;
    let delete = http
        .delete(format!("{base}/api/jobs"))
        .send()
        .await
        .expect("answer");
    problem(delete, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;

    // Nothing above made a job.
    let page: Value = get("/api/jobs")
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(page["jobs"], json!([]), "{page}");

    for node in nodes {
        node.shutdown().await.expect("node stops");
    }
}
