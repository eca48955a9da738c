//! Budgets in bytes, enforced at the edge: a write over an entry's budget is refused before
//! the log, group commit closes an entry at its byte budget, and a page of jobs closes at
//! its own and says where the next starts.

mod common;

use rota_client::proto as pb;
use rota_client::Client;
use tokio::task::JoinSet;

fn spec(payload: Vec<u8>) -> pb::JobSpec {
    pb::JobSpec {
        tenant: "acme".to_owned(),
        job_type: "email".to_owned(),
        payload,
        ..pb::JobSpec::default()
    }
}

fn applied(node: &rota_node::RunningNode) -> u64 {
    node.raft().digest().0.map_or(0, |id| id.index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_over_the_entry_budget_is_refused_naming_it_and_never_logged() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let mut settings = common::settings(dir.path());
    settings.limits.max_payload_bytes = 1_000;
    settings.commit.max_entry_bytes = 10_000;
    let node = common::one_node(settings).await;
    let client = Client::connect([node.addr().to_string()]).expect("client");
    let before = applied(&node);

    let refused = client
        .enqueue_batch(pb::EnqueueBatchRequest {
            session: None,
            specs: (0..20).map(|_| spec(vec![7; 900])).collect(),
        })
        .await
        .expect_err("18 KB in one write");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    assert_eq!(refused.kind(), Some("over_budget"), "{refused}");
    assert!(refused.to_string().contains("max_entry_bytes"), "{refused}");
    assert_eq!(applied(&node), before, "the refused write reached the log");

    // Under the budget, the same jobs go in.
    let added = client
        .enqueue_batch(pb::EnqueueBatchRequest {
            session: None,
            specs: (0..5).map(|_| spec(vec![7; 900])).collect(),
        })
        .await
        .expect("4.5 KB in one write");
    assert_eq!(added.results.len(), 5);
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_closes_an_entry_at_its_byte_budget() {
    const WRITERS: u64 = 100;
    const PAYLOAD: usize = 2_000;
    const BUDGET: usize = 8_000;
    let dir = tempfile::TempDir::new().expect("temp dir");
    let mut settings = common::settings(dir.path());
    settings.commit.max_entry_bytes = BUDGET;
    let node = common::one_node(settings).await;
    let client = Client::connect([node.addr().to_string()]).expect("client");
    let before = applied(&node);

    let mut writers = JoinSet::new();
    for _ in 0..WRITERS {
        let client = client.clone();
        writers.spawn(async move {
            client
                .enqueue(pb::EnqueueRequest {
                    session: None,
                    spec: Some(spec(vec![1; PAYLOAD])),
                })
                .await
                .expect("enqueue")
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    // Each write is a little over PAYLOAD bytes, so an entry holds at most three of them:
    // however the writes arrived together, they took at least a third as many entries.
    let entries = applied(&node) - before;
    let per_entry = (BUDGET / PAYLOAD) as u64 - 1;
    assert!(
        entries * per_entry >= WRITERS,
        "{WRITERS} writes of {PAYLOAD} bytes took only {entries} entries of at most {BUDGET} bytes"
    );
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_closes_at_its_byte_budget_and_paging_reads_every_job_once() {
    const JOBS: u64 = 7;
    let dir = tempfile::TempDir::new().expect("temp dir");
    let mut settings = common::settings(dir.path());
    // Room for about two jobs of 1,000-byte payloads a page.
    settings.limits.max_page_bytes = 2_500;
    let node = common::one_node(settings).await;
    let client = Client::connect([node.addr().to_string()]).expect("client");
    for _ in 0..JOBS {
        client
            .enqueue(pb::EnqueueRequest {
                session: None,
                spec: Some(spec(vec![3; 1_000])),
            })
            .await
            .expect("enqueue");
    }

    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = client
            .list_jobs(pb::ListJobsRequest {
                after,
                limit: 100,
                ..pb::ListJobsRequest::default()
            })
            .await
            .expect("list");
        pages += 1;
        assert!(!page.jobs.is_empty(), "a page holds at least one job");
        assert!(
            prost::Message::encoded_len(&page) <= 2_500 + 1_200,
            "a page passed its budget by more than one job"
        );
        seen.extend(page.jobs.iter().map(|j| j.id));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
        assert!(pages <= JOBS, "paging does not end");
    }
    assert_eq!(
        seen,
        (0..JOBS).collect::<Vec<_>>(),
        "every job once, in order"
    );
    assert!(
        pages >= 3,
        "{JOBS} jobs of 1 KB fit in {pages} pages of 2.5 KB"
    );
    node.shutdown().await.expect("shutdown");
}
