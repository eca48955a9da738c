//! Lineage through the API on a three-node cluster: who wrote an artifact, who read it, the
//! chain up and down, the same on every node.

mod common;

use rota_client::proto as pb;
use rota_client::{Client, ClientConfig};
use std::time::Duration;

fn artifact(name: &str) -> pb::Artifact {
    pb::Artifact {
        name: name.to_owned(),
        uri: format!("s3://lake/{name}"),
        digest: Some(format!("sha256:{name}")),
    }
}

/// Enqueues a `job_type` job reading `inputs`, leases it and has it write `outputs`.
async fn run(client: &Client, job_type: &str, inputs: &[&str], outputs: &[&str]) -> u64 {
    let id = client
        .enqueue(pb::EnqueueRequest {
            session: None,
            spec: Some(pb::JobSpec {
                tenant: "acme".to_owned(),
                job_type: job_type.to_owned(),
                inputs: inputs.iter().map(|n| artifact(n)).collect(),
                ..pb::JobSpec::default()
            }),
        })
        .await
        .expect("enqueue")
        .job_id;
    let leased = client
        .lease(pb::LeaseRequest {
            session: None,
            worker: "w".to_owned(),
            job_types: vec![job_type.to_owned()],
            max: 1,
            ttl_ms: None,
            wait_ms: None,
        })
        .await
        .expect("lease")
        .jobs;
    assert_eq!(leased[0].job_id, id);
    client
        .complete(pb::CompleteRequest {
            session: None,
            job_id: id,
            lease_id: leased[0].lease_id,
            outcome: Some(pb::complete_request::Outcome::Succeeded(pb::Succeeded {
                outputs: outputs.iter().map(|n| artifact(n)).collect(),
            })),
        })
        .await
        .expect("complete");
    id
}

fn links(answer: &pb::GetLineageResponse) -> Vec<(u64, bool, String, u32)> {
    answer
        .links
        .iter()
        .map(|l| {
            let name = l
                .artifact
                .as_ref()
                .map(|a| a.name.clone())
                .unwrap_or_default();
            (l.job_id, l.wrote, name, l.depth)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_finds_an_artifacts_writer_readers_and_chain_on_every_node() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let nodes = common::cluster(dir.path()).await;
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
    let client = Client::with_config(ClientConfig {
        retry_for: Duration::from_secs(10),
        ..ClientConfig::new(addrs.clone())
    })
    .expect("client");
    let extract = run(&client, "extract", &[], &["raw"]).await;
    let transform = run(&client, "transform", &["raw"], &["clean"]).await;
    let report = run(&client, "report", &["clean"], &["report"]).await;
    let audit = run(&client, "audit", &["clean"], &[]).await;

    let ask = |artifact: &str, direction: pb::LineageDirection, depth: u32, stale: bool| {
        pb::GetLineageRequest {
            artifact: artifact.to_owned(),
            direction: direction.into(),
            depth,
            read: Some(pb::ReadOptions { stale }),
        }
    };
    let direct = client
        .get_lineage(ask(
            "s3://lake/clean",
            pb::LineageDirection::Unspecified,
            0,
            false,
        ))
        .await
        .expect("lineage");
    assert_eq!(
        links(&direct),
        vec![
            (transform, true, "clean".to_owned(), 0),
            (report, false, "clean".to_owned(), 0),
            (audit, false, "clean".to_owned(), 0),
        ]
    );
    assert!(!direct.truncated);
    assert_eq!(direct.links[0].job_type, "transform");
    assert_eq!(direct.links[0].status, i32::from(pb::JobStatus::Succeeded));
    let up = client
        .get_lineage(ask("report", pb::LineageDirection::Up, 5, false))
        .await
        .expect("lineage up");
    assert_eq!(
        links(&up),
        vec![
            (report, true, "report".to_owned(), 0),
            (transform, true, "clean".to_owned(), 1),
            (extract, true, "raw".to_owned(), 2),
        ]
    );
    // Every node's own replica answers the same, once it has applied the last completion.
    for addr in &addrs {
        let one = Client::with_config(ClientConfig {
            retry_for: Duration::from_secs(10),
            ..ClientConfig::new([addr.clone()])
        })
        .expect("client");
        let mut seen = Vec::new();
        for _ in 0..200 {
            let answer = one
                .get_lineage(ask("sha256:raw", pb::LineageDirection::Down, 5, true))
                .await
                .expect("stale lineage");
            seen = links(&answer);
            if seen.len() == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(
            seen,
            vec![
                (extract, true, "raw".to_owned(), 0),
                (transform, false, "raw".to_owned(), 0),
                (report, false, "clean".to_owned(), 1),
                (audit, false, "clean".to_owned(), 1),
            ],
            "{addr}"
        );
    }
    let refused = client
        .get_lineage(ask("", pb::LineageDirection::Up, 0, false))
        .await
        .expect_err("no artifact");
    assert_eq!(refused.kind(), Some("invalid_input"));
    let deep = client
        .get_lineage(ask("raw", pb::LineageDirection::Up, 500, false))
        .await
        .expect_err("too deep");
    assert!(deep.to_string().contains("depth"), "{deep}");
    for node in nodes {
        node.shutdown().await.expect("node stops");
    }
}
