//! The REST API on a cluster with TLS: HTTP/1.1 over TLS works, and it takes the gRPC
//! port's credentials with the same scopes and tenant bindings.

mod common;

use common::secure::{https, SecureCluster};
use reqwest::StatusCode;
use rota_node::tls::issue::{client_files, node_files};
use serde_json::{json, Value};

/// The status and JSON body of a request.
async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("the node answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_takes_the_same_credentials_scopes_and_tenants_as_grpc() {
    let cluster = SecureCluster::start().await;
    let certs = cluster.certs.path().to_owned();
    let reader = cluster.token("reader", &["orchestrator:read"], &[]).await;
    let acme_worker = cluster
        .token(
            "acme-worker",
            &["orchestrator:lease", "orchestrator:read"],
            &["acme"],
        )
        .await;
    // A follower's HTTP port: it must know the tokens (it waits for its log to bring them).
    let via = cluster.follower().await;
    let base = format!("https://{}", via.http_addr().expect("HTTP port"));
    let url = |path: &str| format!("{base}{path}");
    let anonymous = https(&certs, None);
    let ops = https(&certs, Some(client_files("ops")));

    let (status, body) = answer(anonymous.get(url("/api/jobs"))).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated")),
        "{body}"
    );
    for open in ["/readyz", "/livez", "/api/openapi.json"] {
        let health = anonymous.get(url(open)).send().await.expect("answer");
        assert_eq!(
            health.status(),
            StatusCode::OK,
            "{open} needs no credentials"
        );
    }
    // The dashboard's files hold no data: they need no credentials, and run only the
    // node's own script. What the page reads does need them (above).
    for file in ["/", "/dashboard/app.js", "/dashboard/style.css"] {
        let page = anonymous.get(url(file)).send().await.expect("answer");
        assert_eq!(page.status(), StatusCode::OK, "{file}");
        let policy = page.headers()["content-security-policy"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(policy.contains("default-src 'self'"), "{file}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{file}: {policy}"
        );
        let kind = page.headers()["content-type"].to_str().expect("ascii");
        assert!(kind.starts_with("text/"), "{file}: {kind}");
    }
    // A node's certificate is for the peer port, not for clients.
    let node = https(&certs, Some(node_files(1)));
    let (status, body) = answer(node.get(url("/api/jobs"))).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated")),
        "{body}"
    );

    let (status, body) = answer(anonymous.get(url("/api/jobs")).bearer_auth(&reader)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let submit = |tenant: &str| json!({"tenant": tenant, "jobType": "email", "payload": tenant});
    let (status, body) = answer(
        anonymous
            .post(url("/api/jobs"))
            .bearer_auth(&reader)
            .json(&submit("acme")),
    )
    .await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (StatusCode::FORBIDDEN, Some("missing_scope")),
        "{body}"
    );

    // The operator's client certificate holds every scope.
    let (status, acme) = answer(ops.post(url("/api/jobs")).json(&submit("acme"))).await;
    assert_eq!(status, StatusCode::CREATED, "{acme}");
    let (status, other) = answer(ops.post(url("/api/jobs")).json(&submit("globex"))).await;
    assert_eq!(status, StatusCode::CREATED, "{other}");

    // A worker bound to acme leases acme's job only, and does not see globex's.
    let lease = json!({"worker": "w", "jobTypes": ["email"], "max": 10});
    let (status, leased) = answer(
        anonymous
            .post(url("/api/leases"))
            .bearer_auth(&acme_worker)
            .json(&lease),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{leased}");
    let ids: Vec<_> = leased["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["jobId"].clone())
        .collect();
    assert_eq!(ids, vec![acme["jobId"].clone()], "{leased}");
    let hidden = format!("/api/jobs/{}", other["jobId"]);
    let (status, body) = answer(anonymous.get(url(&hidden)).bearer_auth(&acme_worker)).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (StatusCode::NOT_FOUND, Some("job_not_found")),
        "{body}"
    );
    let (status, body) = answer(anonymous.get(url("/api/cluster")).bearer_auth(&acme_worker)).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (StatusCode::FORBIDDEN, Some("tenant_denied")),
        "{body}"
    );

    // Metrics name every tenant: a reader not bound to tenants scrapes them, a tenant's
    // worker and an anonymous caller do not.
    let scrape = anonymous
        .get(url("/metrics"))
        .bearer_auth(&reader)
        .send()
        .await
        .expect("answer");
    assert_eq!(scrape.status(), StatusCode::OK);
    let text = scrape.text().await.expect("a body");
    assert!(text.contains("job_queue_depth{"), "{text}");
    let (status, body) = answer(anonymous.get(url("/metrics"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = answer(anonymous.get(url("/metrics")).bearer_auth(&acme_worker)).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (StatusCode::FORBIDDEN, Some("tenant_denied")),
        "{body}"
    );

    // A cancel's actor is the principal, whatever the body claims.
    let canceled = format!("/api/jobs/{}/cancel", other["jobId"]);
    let body = json!({"reason": "test", "actor": "mallory"});
    let (status, _) = answer(ops.post(url(&canceled)).json(&body)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, job) = answer(ops.get(url(&format!("/api/jobs/{}", other["jobId"])))).await;
    let history = job["history"].to_string();
    assert!(
        history.contains("client:ops") && !history.contains("mallory"),
        "{history}"
    );

    cluster.stop().await;
}
