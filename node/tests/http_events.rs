//! `GET /api/events`: live events through a follower, ids that are log positions, and a
//! resume with `Last-Event-ID` on another node after the leader is killed that loses and
//! repeats nothing.

mod common;

use common::rest::Rest;
use common::{cluster, follower};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// One server-sent event.
#[derive(Clone, Debug, PartialEq)]
struct Sse {
    id: String,
    event: String,
    data: Value,
}

/// Reads a stream's events as they come.
struct Reader {
    response: Response,
    buffer: String,
}

impl Reader {
    async fn open(http: &Client, url: String, last: Option<&str>) -> Self {
        let mut request = http.get(url);
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        let response = request.send().await.expect("the stream opens");
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped); panics after 10 s without one.
    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut sse = Sse {
                    id: String::new(),
                    event: String::new(),
                    data: Value::Null,
                };
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id:") {
                        sse.id = id.trim().to_owned();
                    } else if let Some(event) = line.strip_prefix("event:") {
                        sse.event = event.trim().to_owned();
                    } else if let Some(data) = line.strip_prefix("data:") {
                        sse.data = serde_json::from_str(data.trim())
                            .unwrap_or_else(|_| Value::String(data.trim().to_owned()));
                    }
                }
                if sse.event.is_empty() {
                    continue;
                }
                return sse;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event within 10 s")
                .expect("the stream reads")
                .expect("the stream stays open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until one of `kind` for job `job`, inclusive.
    async fn until(&mut self, kind: &str, job: u64) -> Vec<Sse> {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await;
            let done = event.event == kind && event.data["jobId"].as_u64() == Some(job);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

async fn submit(rest: &Rest, n: u32) -> u64 {
    let spec = json!({"tenant": "acme", "jobType": "email", "payload": n});
    let made = rest.post("/api/jobs", spec, StatusCode::CREATED).await;
    made["jobId"]
        .as_u64()
        .unwrap_or_else(|| panic!("a job id: {made}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_resume_by_log_position_on_another_node_after_a_leader_kill() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let mut nodes = cluster(dir.path()).await;
    let via = follower(&nodes);
    let via_http = via.http_addr();
    let base = format!("http://{}", via.http_addr().expect("HTTP port"));
    let http = Client::new();
    let rest = Rest {
        http: http.clone(),
        base: base.clone(),
    };

    let mut watching = Reader::open(&http, format!("{base}/api/events?tenant=acme"), None).await;
    let first = submit(&rest, 1).await;
    let events = watching.until("ready", first).await;
    let enqueued = events
        .iter()
        .find(|e| e.event == "enqueued" && e.data["jobId"].as_u64() == Some(first))
        .expect("an enqueued event");
    assert_eq!(enqueued.data["tenant"], "acme");
    assert_eq!(enqueued.data["jobType"], "email");
    let index: u64 = enqueued
        .id
        .split('-')
        .next()
        .and_then(|i| i.parse().ok())
        .expect("INDEX-ORDINAL");
    assert_eq!(enqueued.data["logIndex"].as_u64(), Some(index));
    // Leased and completed through the REST worker calls.
    let lease = json!({"worker": "w1", "jobTypes": ["email"]});
    let leased = rest.post("/api/leases", lease, StatusCode::OK).await;
    let lease_id = leased["jobs"][0]["leaseId"].as_u64().expect("a lease");
    let leased_events = watching.until("leased", first).await;
    assert_eq!(
        leased_events.last().map(|e| e.data["workerId"].clone()),
        Some(json!("w1"))
    );
    let resume_at = leased_events.last().map(|e| e.id.clone()).expect("an id");
    let done = json!({"leaseId": lease_id, "outcome": "succeeded"});
    rest.post(&format!("/api/jobs/{first}/complete"), done, StatusCode::OK)
        .await;
    let mut after_resume = watching.until("succeeded", first).await;

    // Kill the leader; more jobs go in through the follower once another leads.
    let leader_at = nodes
        .iter()
        .position(|n| n.raft().is_leader())
        .expect("a leader");
    let leader = nodes.remove(leader_at);
    leader.shutdown().await.expect("the leader stops");
    let second = loop {
        let answer = http
            .post(format!("{base}/api/jobs"))
            .json(&json!({"tenant": "acme", "jobType": "email", "payload": 2}))
            .send()
            .await
            .expect("answer");
        if answer.status() == StatusCode::CREATED {
            let made: Value = answer.json().await.expect("JSON");
            break made["jobId"].as_u64().expect("a job id");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    after_resume.extend(watching.until("ready", second).await);

    // The other survivor, resumed after the lease: exactly what the first stream showed
    // after it, same ids, same order.
    let other = nodes
        .iter()
        .find(|n| n.http_addr() != via_http)
        .expect("the other survivor");
    let other_base = format!("http://{}", other.http_addr().expect("HTTP port"));
    let mut resumed = Reader::open(
        &http,
        format!("{other_base}/api/events?tenant=acme"),
        Some(&resume_at),
    )
    .await;
    let replayed = resumed.until("ready", second).await;
    assert_eq!(replayed, after_resume);

    // An id that is not one is refused.
    let bad = http
        .get(format!("{base}/api/events"))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .expect("answer");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    for node in nodes {
        node.shutdown().await.expect("node stops");
    }
}
