//! Incidents pushed to a webhook: a breaker that trips and dead letters past a threshold
//! each reach an on-call receiver once, signed with the shared secret, after a failed first
//! delivery is retried.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use rota_client::proto as pb;
use rota_client::Client;
use rota_node::{IncidentSettings, Webhook};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "on-call-secret";

/// What the receiver was sent: each request's signature, delivery id and body.
#[derive(Default)]
struct Inbox {
    requests: Mutex<Vec<(String, String, Vec<u8>)>>,
}

async fn receive(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut requests = inbox.requests.lock().expect("inbox");
    requests.push((
        header("x-rota-signature"),
        header("x-rota-delivery"),
        body.to_vec(),
    ));
    // The first delivery fails: the node must retry it.
    if requests.len() == 1 {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

async fn receiver() -> (String, Arc<Inbox>) {
    let inbox = Arc::new(Inbox::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, inbox)
}

fn spec(job_type: &str) -> pb::JobSpec {
    pb::JobSpec {
        tenant: "acme".to_owned(),
        job_type: job_type.to_owned(),
        retry: Some(pb::RetryPolicy {
            max_attempts: 1,
            base_backoff_ms: 10,
            max_backoff_ms: 10,
        }),
        ..pb::JobSpec::default()
    }
}

/// Enqueues a job of `job_type`, leases it and reports it failed for good.
async fn fail_one(client: &Client, job_type: &str) {
    client
        .enqueue(pb::EnqueueRequest {
            session: None,
            spec: Some(spec(job_type)),
        })
        .await
        .expect("enqueue");
    let leased = client
        .lease(pb::LeaseRequest {
            worker: "w".to_owned(),
            job_types: vec![job_type.to_owned()],
            max: 1,
            ..pb::LeaseRequest::default()
        })
        .await
        .expect("lease");
    let job = leased.jobs.first().expect("a job to lease");
    client
        .complete(pb::CompleteRequest {
            session: None,
            job_id: job.job_id,
            lease_id: job.lease_id,
            outcome: Some(pb::complete_request::Outcome::Failed(pb::Failed {
                retryable: false,
                error: "boom".to_owned(),
            })),
        })
        .await
        .expect("complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_reach_the_webhook_once_each_signed() {
    let (url, inbox) = receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = common::settings(dir.path());
    settings.incidents = IncidentSettings {
        webhook: Some(Webhook::new(&url, SECRET).expect("a webhook")),
        dead_letters: 2,
        window: Duration::from_secs(3600),
    };
    let node = common::one_node(settings).await;
    let client = Client::connect([node.addr().to_string()]).expect("client");

    // Two dead letters of one type: one incident (a third adds none within the window).
    for _ in 0..3 {
        fail_one(&client, "sms").await;
    }
    // A breaker that trips on the first failure.
    client
        .configure_breaker(pb::ConfigureBreakerRequest {
            session: None,
            job_type: "flaky".to_owned(),
            config: Some(pb::BreakerConfig {
                failure_threshold_percent: 50,
                window_ms: 60_000,
                min_attempts: 1,
            }),
            stamp: Some(pb::Stamp {
                actor: "ops@example.com".to_owned(),
                reason: "test".to_owned(),
                ticket: None,
            }),
        })
        .await
        .expect("breaker configured");
    fail_one(&client, "flaky").await;

    // Three requests: the failed first delivery, its retry, and the breaker's.
    let deadline = Instant::now() + Duration::from_secs(20);
    while inbox.requests.lock().expect("inbox").len() < 3 {
        assert!(Instant::now() < deadline, "the webhook heard too little");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing more comes: each incident once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests = inbox.requests.lock().expect("inbox").clone();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert_eq!(
        requests[0], requests[1],
        "the retry sends the same delivery"
    );

    let mut kinds = Vec::new();
    for (signature, delivery, body) in &requests[1..] {
        assert_eq!(signature, &rota_node::observe::signature(SECRET, body));
        assert_ne!(
            signature,
            &rota_node::observe::signature("another secret", body)
        );
        let incident: Value = serde_json::from_slice(body).expect("JSON");
        assert_eq!(incident["id"].as_str(), Some(delivery.as_str()));
        assert_eq!(incident["node"], 1);
        assert!(incident["logIndex"].is_u64() && incident["atMs"].is_u64());
        kinds.push((
            incident["kind"].as_str().unwrap_or("?").to_owned(),
            incident["jobType"].as_str().unwrap_or("?").to_owned(),
        ));
    }
    assert_eq!(
        kinds,
        [
            ("dead_letters".to_owned(), "sms".to_owned()),
            ("breaker_tripped".to_owned(), "flaky".to_owned())
        ]
    );
    node.shutdown().await.expect("shutdown");
}
