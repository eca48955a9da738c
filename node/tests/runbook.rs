//! The runbook's commands through the API (docs/runbook.md): a stuck lease released (the
//! job ready again, the attempt released, the stuck worker refused), a tenant blocked
//! (enqueues refused with the reason, jobs held) and unblocked, a quota expanded.

mod common;

use rota_client::proto as pb;
use rota_client::{Client, ClientConfig};
use std::time::Duration;

fn stamp(reason: &str) -> Option<pb::Stamp> {
    Some(pb::Stamp {
        actor: "oncall@example.com".to_owned(),
        reason: reason.to_owned(),
        ticket: Some("RUN-1".to_owned()),
    })
}

async fn enqueue(client: &Client, tenant: &str) -> Result<u64, rota_client::ClientError> {
    let answer = client
        .enqueue(pb::EnqueueRequest {
            session: None,
            spec: Some(pb::JobSpec {
                tenant: tenant.to_owned(),
                job_type: "etl".to_owned(),
                lease_ttl_ms: Some(600_000),
                ..pb::JobSpec::default()
            }),
        })
        .await?;
    Ok(answer.job_id)
}

async fn lease(client: &Client, worker: &str) -> Vec<pb::LeasedJob> {
    client
        .lease(pb::LeaseRequest {
            session: None,
            worker: worker.to_owned(),
            job_types: vec!["etl".to_owned()],
            max: 10,
            ttl_ms: None,
            wait_ms: None,
        })
        .await
        .expect("lease")
        .jobs
}

async fn job(client: &Client, job_id: u64) -> pb::Job {
    client
        .get_job(pb::GetJobRequest {
            job_id,
            read: None,
            signed: false,
        })
        .await
        .expect("get job")
        .job
        .expect("a job")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_a_stuck_lease_block_a_tenant_and_expand_a_quota() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let node = common::one_node(common::settings(dir.path())).await;
    let client = Client::with_config(ClientConfig {
        retry_for: Duration::from_secs(5),
        ..ClientConfig::new([node.addr().to_string()])
    })
    .expect("client");

    // A worker holds a job with a ten-minute lease and hangs: release it.
    let id = enqueue(&client, "acme").await.expect("enqueue");
    let stuck = lease(&client, "w-stuck").await.remove(0);
    client
        .release_lease(pb::ReleaseLeaseRequest {
            session: None,
            job_id: id,
            lease_id: Some(stuck.lease_id),
            stamp: stamp("worker w-stuck hangs"),
        })
        .await
        .expect("released");
    let released = job(&client, id).await;
    assert_eq!(released.status, pb::JobStatus::Ready as i32);
    assert_eq!(
        released.attempts[0].outcome,
        pb::AttemptOutcome::Released as i32
    );
    let taken = lease(&client, "w-2").await;
    assert_eq!(taken.iter().map(|j| j.job_id).collect::<Vec<_>>(), [id]);
    assert_eq!(taken[0].attempt, 2);
    let late = client
        .complete(pb::CompleteRequest {
            session: None,
            job_id: id,
            lease_id: stuck.lease_id,
            outcome: Some(pb::complete_request::Outcome::Succeeded(
                pb::Succeeded::default(),
            )),
        })
        .await
        .expect_err("the stuck worker's lease is gone");
    assert_eq!(late.code(), tonic::Code::FailedPrecondition, "{late}");
    let twice = client
        .release_lease(pb::ReleaseLeaseRequest {
            session: None,
            job_id: enqueue(&client, "acme").await.expect("enqueue"),
            lease_id: None,
            stamp: stamp("not leased"),
        })
        .await
        .expect_err("a job without a lease");
    assert_eq!(twice.code(), tonic::Code::FailedPrecondition, "{twice}");

    // A tenant floods the cluster: block it.
    let held = enqueue(&client, "noisy").await.expect("enqueue");
    client
        .block_tenant(pb::BlockTenantRequest {
            session: None,
            tenant: "noisy".to_owned(),
            blocked: true,
            stamp: stamp("floods the queue"),
        })
        .await
        .expect("blocked");
    let refused = enqueue(&client, "noisy").await.expect_err("blocked");
    assert_eq!(refused.kind(), Some("tenant_blocked"), "{refused}");
    assert!(
        refused.to_string().contains("floods the queue"),
        "{refused}"
    );
    let shown = job(&client, held).await;
    assert_eq!(shown.status, pb::JobStatus::Pending as i32);
    assert_eq!(shown.held_by.as_deref(), Some("blocked"));
    assert!(lease(&client, "w-3")
        .await
        .iter()
        .all(|j| j.tenant != "noisy"));
    let governance = client
        .get_governance(pb::GetGovernanceRequest::default())
        .await
        .expect("governance");
    assert_eq!(governance.blocked.len(), 1);
    assert_eq!(governance.blocked[0].tenant, "noisy");
    client
        .block_tenant(pb::BlockTenantRequest {
            session: None,
            tenant: "noisy".to_owned(),
            blocked: false,
            stamp: stamp("calmed down"),
        })
        .await
        .expect("unblocked");
    enqueue(&client, "noisy").await.expect("enqueues again");
    let taken = lease(&client, "w-3").await;
    assert!(taken.iter().any(|j| j.job_id == held), "{taken:?}");

    // A tenant at its quota: expand it.
    let quota = |max_active| pb::SetQuotaRequest {
        session: None,
        tenant: "capped".to_owned(),
        job_type: None,
        max_active: Some(max_active),
        max_per_hour: None,
        burst: None,
        stamp: stamp("expand for the month end"),
    };
    client.set_quota(quota(1)).await.expect("quota");
    let first = enqueue(&client, "capped").await.expect("enqueue");
    let second = enqueue(&client, "capped").await.expect("enqueue");
    let taken = lease(&client, "w-4").await;
    assert!(taken.iter().any(|j| j.job_id == first));
    assert_eq!(job(&client, second).await.held_by.as_deref(), Some("quota"));
    client.set_quota(quota(2)).await.expect("expanded");
    let taken = lease(&client, "w-4").await;
    assert_eq!(taken.iter().map(|j| j.job_id).collect::<Vec<_>>(), [second]);

    let history = client
        .governance_history(pb::GovernanceHistoryRequest {
            kinds: vec![
                "lease_released".to_owned(),
                "tenant_blocked".to_owned(),
                "tenant_unblocked".to_owned(),
            ],
            ..pb::GovernanceHistoryRequest::default()
        })
        .await
        .expect("history");
    let kinds: Vec<&str> = history.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["lease_released", "tenant_blocked", "tenant_unblocked"]
    );
    node.shutdown().await.expect("shutdown");
}
