//! Auth on a three-node TLS cluster: nobody without credentials gets in, each token does
//! what its scopes allow and reaches only its tenants, a stamp names the principal that
//! made the change, and a revoked token is refused by every node.

mod common;

use common::secure::{Credential, SecureCluster};
use rota_client::proto as pb;
use rota_client::{Client, ClientError};
use tonic::Code;

/// The gRPC code and rota kind of a refused call.
fn refusal<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (Code, String) {
    match result {
        Err(ClientError::Rejected(status)) => {
            let kind = status
                .metadata()
                .get(rota_client::ERROR_KIND_KEY)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (status.code(), kind)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn job(tenant: &str) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        session: None,
        spec: Some(pb::JobSpec {
            tenant: tenant.to_owned(),
            job_type: "email".to_owned(),
            payload: tenant.as_bytes().to_vec(),
            ..pb::JobSpec::default()
        }),
    }
}

fn stamp(actor: &str) -> Option<pb::Stamp> {
    Some(pb::Stamp {
        actor: actor.to_owned(),
        reason: "the auth test".to_owned(),
        ticket: None,
    })
}

async fn token(admin: &Client, name: &str, scopes: &[&str], tenants: &[&str]) -> String {
    admin
        .create_token(pb::CreateTokenRequest {
            name: name.to_owned(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            tenants: tenants.iter().map(|s| s.to_string()).collect(),
            ttl_ms: None,
            stamp: stamp("ops"),
        })
        .await
        .unwrap()
        .secret
}

/// One call of each service, as `client` makes it.
async fn one_of_each(client: &Client) -> Vec<(Code, String)> {
    vec![
        refusal(client.enqueue(job("acme")).await),
        refusal(
            client
                .lease(pb::LeaseRequest {
                    worker: "w".to_owned(),
                    job_types: vec!["email".to_owned()],
                    max: 1,
                    ..pb::LeaseRequest::default()
                })
                .await,
        ),
        refusal(
            client
                .set_maintenance(pb::SetMaintenanceRequest {
                    enabled: true,
                    stamp: stamp("x"),
                    ..pb::SetMaintenanceRequest::default()
                })
                .await,
        ),
        refusal(
            client
                .get_job(pb::GetJobRequest {
                    signed: false,
                    job_id: 1,
                    read: None,
                })
                .await,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_scopes_tenants_and_revocation_hold_on_every_node() {
    let cluster = SecureCluster::start().await;
    let admin = cluster.client(0, Credential::Certificate("ops"));
    let before = cluster.settled().await;

    // Without credentials, or with a token the cluster never made, nothing gets in, on
    // any node, and nothing is written.
    let forged = format!("rota_{}", "0".repeat(64));
    for i in 0..3 {
        for credential in [Credential::Nothing, Credential::Token(forged.clone())] {
            for (code, kind) in one_of_each(&cluster.client(i, credential.clone())).await {
                assert_eq!(code, Code::Unauthenticated, "{credential:?} on node {i}");
                assert_eq!(kind, "unauthenticated");
            }
        }
    }
    assert_eq!(
        cluster.settled().await,
        before,
        "a refused call was written"
    );

    // The bootstrap token: asked for by an administrator (whoever founded the cluster),
    // through a follower as well, once.
    let anonymous = cluster
        .client(1, Credential::Nothing)
        .bootstrap_token(pb::BootstrapTokenRequest {})
        .await;
    assert_eq!(refusal(anonymous).0, Code::Unauthenticated);
    let bootstrap = cluster
        .client(1, Credential::Certificate("ops"))
        .bootstrap_token(pb::BootstrapTokenRequest {})
        .await
        .unwrap()
        .secret;
    assert!(bootstrap.starts_with("rota_"));
    let again = admin.bootstrap_token(pb::BootstrapTokenRequest {}).await;
    assert_eq!(
        refusal(again),
        (Code::FailedPrecondition, "already_bootstrapped".to_owned())
    );
    let root = cluster.client(2, Credential::Token(bootstrap.clone()));
    let producer = token(
        &root,
        "producer",
        &["orchestrator:write", "orchestrator:read"],
        &[],
    )
    .await;
    let reader = token(&admin, "reader", &["orchestrator:read"], &[]).await;
    let acme = token(&root, "acme-worker", &["orchestrator:*"], &["acme"]).await;
    let oncall = token(&root, "oncall", &["orch:admin", "orchestrator:read"], &[]).await;

    // Scopes: a reader reads and writes nothing. (A token made through the leader a
    // moment ago is known on a follower too.)
    let as_reader = cluster.client(1, Credential::Token(reader));
    let applied = cluster.settled().await;
    assert_eq!(
        refusal(as_reader.enqueue(job("acme")).await),
        (Code::PermissionDenied, "missing_scope".to_owned())
    );
    assert_eq!(
        cluster.settled().await,
        applied,
        "a refused enqueue was written"
    );

    // A producer (through a follower and the leader alike) enqueues for every tenant.
    let mut ids = Vec::new();
    for (i, tenant) in [(0, "acme"), (1, "globex"), (2, "acme"), (1, "globex")] {
        let as_producer = cluster.client(i, Credential::Token(producer.clone()));
        ids.push((
            tenant,
            as_producer.enqueue(job(tenant)).await.unwrap().job_id,
        ));
    }
    let globex_jobs: Vec<u64> = ids
        .iter()
        .filter(|(t, _)| *t == "globex")
        .map(|(_, id)| *id)
        .collect();
    let globex_job = globex_jobs[0];

    // A worker bound to acme leases acme's jobs only, cannot read or finish globex's,
    // and lists only acme's.
    let as_acme = cluster.client(1, Credential::Token(acme.clone()));
    let leased = as_acme
        .lease(pb::LeaseRequest {
            worker: "acme-1".to_owned(),
            job_types: vec!["email".to_owned()],
            max: 10,
            ..pb::LeaseRequest::default()
        })
        .await
        .unwrap();
    let tenants: Vec<String> = leased.jobs.iter().map(|j| j.tenant.clone()).collect();
    assert_eq!(tenants, ["acme", "acme"], "{leased:?}");
    assert_eq!(
        refusal(
            as_acme
                .get_job(pb::GetJobRequest {
                    signed: false,
                    job_id: globex_job,
                    read: None
                })
                .await
        )
        .0,
        Code::NotFound
    );
    // A globex job leased by an unbound worker: acme's worker cannot heartbeat or finish
    // it, even holding its fencing token.
    let globex_lease = root
        .lease(pb::LeaseRequest {
            worker: "globex-1".to_owned(),
            job_types: vec!["email".to_owned()],
            max: 1,
            ..pb::LeaseRequest::default()
        })
        .await
        .unwrap()
        .jobs
        .remove(0);
    assert_eq!(globex_lease.tenant, "globex");
    let applied = cluster.settled().await;
    let finish = pb::CompleteRequest {
        job_id: globex_lease.job_id,
        lease_id: globex_lease.lease_id,
        outcome: Some(pb::complete_request::Outcome::Succeeded(
            pb::Succeeded::default(),
        )),
        ..pb::CompleteRequest::default()
    };
    assert_eq!(
        refusal(as_acme.complete(finish.clone()).await).0,
        Code::NotFound
    );
    let beat = pb::HeartbeatRequest {
        job_id: globex_lease.job_id,
        lease_id: globex_lease.lease_id,
        ..pb::HeartbeatRequest::default()
    };
    assert_eq!(refusal(as_acme.heartbeat(beat).await).0, Code::NotFound);
    // Nor name it as a dependency, which would tell it how that job ends.
    let mut dependent = job("acme");
    dependent.spec.as_mut().unwrap().depends_on = vec![globex_lease.job_id];
    assert_eq!(refusal(as_acme.enqueue(dependent).await).0, Code::NotFound);
    assert_eq!(
        cluster.settled().await,
        applied,
        "a refused call was written"
    );
    root.complete(finish).await.unwrap();
    let listed = as_acme
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap();
    assert!(
        listed
            .jobs
            .iter()
            .all(|j| j.spec.as_ref().unwrap().tenant == "acme")
            && listed.jobs.len() == 2,
        "{listed:?}"
    );
    assert_eq!(
        refusal(
            as_acme
                .list_jobs(pb::ListJobsRequest {
                    tenant: Some("globex".to_owned()),
                    ..pb::ListJobsRequest::default()
                })
                .await
        ),
        (Code::PermissionDenied, "tenant_denied".to_owned())
    );
    // The other globex job is still there for someone allowed to take it.
    let globex_now = root
        .get_job(pb::GetJobRequest {
            signed: false,
            job_id: globex_jobs[1],
            read: None,
        })
        .await
        .unwrap();
    assert_eq!(globex_now.job.unwrap().status, pb::JobStatus::Ready as i32);
    // Limits are the operator's: acme's own principal may not lift its quota.
    let as_acme_quota = token(&root, "acme-quota", &["orch:quota"], &["acme"]).await;
    let lift = cluster
        .client(0, Credential::Token(as_acme_quota))
        .set_quota(pb::SetQuotaRequest {
            tenant: "acme".to_owned(),
            max_active: Some(1000),
            stamp: stamp("acme"),
            ..pb::SetQuotaRequest::default()
        })
        .await;
    assert_eq!(
        refusal(lift),
        (Code::PermissionDenied, "tenant_denied".to_owned())
    );

    // The stamp names the principal, whatever actor the request claims.
    let as_oncall = cluster.client(2, Credential::Token(oncall));
    as_oncall
        .set_maintenance(pb::SetMaintenanceRequest {
            enabled: true,
            stamp: stamp("somebody-else"),
            ..pb::SetMaintenanceRequest::default()
        })
        .await
        .unwrap();
    let governance = as_oncall
        .get_governance(pb::GetGovernanceRequest::default())
        .await
        .unwrap();
    assert_eq!(governance.maintenance.unwrap().actor, "token:oncall");

    // Revoked: from the commit on, every node refuses the token.
    root.revoke_token(pb::RevokeTokenRequest {
        name: "producer".to_owned(),
        stamp: stamp("ops"),
    })
    .await
    .unwrap();
    // Writes and linearizable reads are checked again at the leader, which applied the
    // revocation before it answered: no node lets the token through, not even once.
    for i in 0..3 {
        let as_producer = cluster.client(i, Credential::Token(producer.clone()));
        assert_eq!(
            refusal(as_producer.enqueue(job("acme")).await).0,
            Code::Unauthenticated,
            "node {i} took a revoked token for a write"
        );
        assert_eq!(
            refusal(
                as_producer
                    .get_job(pb::GetJobRequest {
                        signed: false,
                        job_id: globex_job,
                        read: None
                    })
                    .await
            )
            .0,
            Code::Unauthenticated,
            "node {i} took a revoked token for a read"
        );
    }
    let listed = admin.list_tokens(pb::ListTokensRequest {}).await.unwrap();
    let names: Vec<&str> = listed.tokens.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["acme-quota", "acme-worker", "bootstrap", "oncall", "reader"]
    );
    assert!(
        !format!("{listed:?}").contains(&bootstrap),
        "a secret was listed"
    );
    cluster.stop().await;
}
