//! Incidents through the API: acknowledged (who and when shown), resolved with a reason
//! (the breaker reset, the jobs leased again), and refused once closed.

mod common;

use rota_client::proto as pb;
use rota_client::{Client, ClientConfig};
use std::time::Duration;

fn stamp(actor: &str, reason: &str) -> Option<pb::Stamp> {
    Some(pb::Stamp {
        actor: actor.to_owned(),
        reason: reason.to_owned(),
        ticket: Some("INC-7".to_owned()),
    })
}

async fn lease(client: &Client, max: u32) -> Vec<pb::LeasedJob> {
    client
        .lease(pb::LeaseRequest {
            session: None,
            worker: "w".to_owned(),
            job_types: vec!["pay".to_owned()],
            max,
            ttl_ms: None,
            wait_ms: None,
        })
        .await
        .expect("lease")
        .jobs
}

async fn incidents(client: &Client) -> Vec<pb::IncidentView> {
    client
        .get_governance(pb::GetGovernanceRequest {
            read: None,
            archived_incidents: false,
        })
        .await
        .expect("governance")
        .incidents
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_is_acknowledged_then_resolved_and_its_jobs_lease_again() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let node = common::one_node(common::settings(dir.path())).await;
    let c = Client::with_config(ClientConfig {
        retry_for: Duration::from_secs(5),
        ..ClientConfig::new([node.addr().to_string()])
    })
    .expect("client");
    c.configure_breaker(pb::ConfigureBreakerRequest {
        session: None,
        job_type: "pay".to_owned(),
        config: Some(pb::BreakerConfig {
            failure_threshold_percent: 50,
            window_ms: 60_000,
            min_attempts: 2,
        }),
        stamp: stamp("ops", "guard the gateway"),
    })
    .await
    .expect("breaker");
    for _ in 0..4 {
        c.enqueue(pb::EnqueueRequest {
            session: None,
            spec: Some(pb::JobSpec {
                tenant: "acme".to_owned(),
                job_type: "pay".to_owned(),
                retry: Some(pb::RetryPolicy {
                    max_attempts: 1,
                    base_backoff_ms: 1_000,
                    max_backoff_ms: 1_000,
                }),
                ..pb::JobSpec::default()
            }),
        })
        .await
        .expect("enqueue");
    }
    for job in lease(&c, 2).await {
        c.complete(pb::CompleteRequest {
            session: None,
            job_id: job.job_id,
            lease_id: job.lease_id,
            outcome: Some(pb::complete_request::Outcome::Failed(pb::Failed {
                retryable: false,
                error: "gateway down".to_owned(),
            })),
        })
        .await
        .expect("complete");
    }
    let open = incidents(&c).await;
    assert_eq!(open.len(), 1);
    let id = open[0].id;
    assert!(lease(&c, 10).await.is_empty(), "the breaker holds pay jobs");

    let request = |actor: &str, reason: &str| pb::IncidentRequest {
        session: None,
        incident_id: id,
        stamp: stamp(actor, reason),
    };
    c.acknowledge_incident(request("oncall", "on it"))
        .await
        .expect("ack");
    let seen = &incidents(&c).await[0];
    assert_eq!(
        seen.acknowledged_by.as_ref().map(|s| s.actor.as_str()),
        Some("oncall")
    );
    assert!(seen.acknowledged_ms.is_some() && !seen.resolved);

    c.resolve_incident(request("oncall", "gateway back"))
        .await
        .expect("resolve");
    let closed = &incidents(&c).await[0];
    assert!(closed.resolved);
    assert_eq!(
        closed.resolved_by.as_ref().map(|s| s.reason.as_str()),
        Some("gateway back")
    );
    assert_eq!(lease(&c, 10).await.len(), 2, "pay jobs lease again");
    let again = c
        .resolve_incident(request("oncall", "twice"))
        .await
        .expect_err("closed");
    assert_eq!(again.kind(), Some("incident_not_open"), "{again}");
    let unknown = c
        .acknowledge_incident(pb::IncidentRequest {
            incident_id: 99,
            ..request("x", "y")
        })
        .await
        .expect_err("unknown");
    assert_eq!(unknown.kind(), Some("incident_not_open"), "{unknown}");
    node.shutdown().await.expect("node stops");
}
