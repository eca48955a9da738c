//! Traces from producer to worker: a job enqueued under a span, run by the worker runtime,
//! shows as one trace at an in-process OTLP receiver with the node's `enqueue`, `schedule`,
//! `lease` and `complete` spans and the worker's `worker_execute`, all under the producer's
//! span. (Its own test binary: the tracing subscriber is process-wide.)

mod common;

use axum::body::Bytes;
use axum::extract::State;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use rota_client::proto as pb;
use rota_client::{Client, Outcome, Worker, WorkerConfig};
use rota_node::observe::otel::Otlp;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Each exported span: (trace id, span id, parent span id), by name.
type Received = Arc<Mutex<Vec<(String, String, String, String)>>>;

async fn collect(State(received): State<Received>, body: Bytes) -> axum::http::StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return axum::http::StatusCode::BAD_REQUEST;
    };
    let mut received = received.lock().expect("received");
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            for span in scope.spans {
                received.push((
                    span.name,
                    hex::encode(span.trace_id),
                    hex::encode(span.span_id),
                    hex::encode(span.parent_span_id),
                ));
            }
        }
    }
    axum::http::StatusCode::OK
}

async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(collect))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/v1/traces", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_shows_a_job_from_submit_to_finish() {
    let (url, received) = receiver().await;
    let otlp = Arc::new(Otlp::start(&url, "rota-test", Duration::from_millis(100)).expect("otlp"));
    // As `rota` does: spans at info and above (not the transport's own trace spans).
    tracing_subscriber::registry()
        .with(otlp.layer().with_filter(LevelFilter::INFO))
        .try_init()
        .expect("the only subscriber of this test binary");

    let dir = tempfile::tempdir().expect("tempdir");
    let node = common::one_node(common::settings(dir.path())).await;
    let client = Client::connect([node.addr().to_string()]).expect("client");

    // The producer's span: the client carries its context with the job.
    let submit = tracing::info_span!("submit");
    let job_id = async {
        client
            .enqueue(pb::EnqueueRequest {
                session: None,
                spec: Some(pb::JobSpec {
                    tenant: "acme".to_owned(),
                    job_type: "email".to_owned(),
                    ..pb::JobSpec::default()
                }),
            })
            .await
            .expect("enqueue")
            .job_id
    }
    .instrument(submit.clone())
    .await;
    drop(submit);

    let worker = Worker::new(
        client.clone(),
        WorkerConfig {
            idle_poll: Duration::from_millis(20),
            ..WorkerConfig::new("w-trace")
        },
    )
    .handle("email", |ctx| async move {
        assert!(
            ctx.job.traceparent.is_some(),
            "the lease hands the trace on"
        );
        tracing::info!("sending");
        Outcome::success()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = client
            .get_job(pb::GetJobRequest {
                signed: false,
                job_id,
                read: None,
            })
            .await
            .expect("get job")
            .job
            .expect("a job");
        if job.status == pb::JobStatus::Succeeded as i32 {
            break;
        }
        assert!(Instant::now() < deadline, "the job never finished: {job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    running.await.expect("worker task").expect("worker ran");

    // Flushing blocks until the receiver has the spans; off the runtime's threads.
    let flushing = otlp.clone();
    tokio::task::spawn_blocking(move || flushing.flush())
        .await
        .expect("flush task")
        .expect("flushed");
    let wanted = [
        "submit",
        "enqueue",
        "schedule",
        "lease",
        "worker_execute",
        "complete",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans = received.lock().expect("received").clone();
        let names: Vec<&str> = spans.iter().map(|s| s.0.as_str()).collect();
        if wanted.iter().all(|w| names.contains(w)) || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by_name: BTreeMap<&str, &(String, String, String, String)> =
        spans.iter().map(|s| (s.0.as_str(), s)).collect();
    for name in wanted {
        assert!(by_name.contains_key(name), "no {name} span in {spans:#?}");
    }
    let root = by_name["submit"];
    for name in ["enqueue", "schedule", "lease", "worker_execute", "complete"] {
        let span = by_name[name];
        assert_eq!(span.1, root.1, "{name} is in another trace: {spans:#?}");
        assert_eq!(span.3, root.2, "{name}'s parent is not the producer's span");
    }
    // The handler's own events and spans stay inside worker_execute's trace.
    assert_eq!(
        spans.iter().filter(|s| s.1 == root.1).count(),
        6,
        "exactly the job's spans in its trace: {spans:#?}"
    );
    node.shutdown().await.expect("shutdown");
    let closing = otlp.clone();
    let _ = tokio::task::spawn_blocking(move || closing.shutdown()).await;
}
