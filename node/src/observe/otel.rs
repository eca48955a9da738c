//! Traces: OpenTelemetry over OTLP/HTTP (protobuf), off unless an endpoint is given. A job
//! enqueued with a W3C `traceparent` (the Rust client adds the caller's span's) keeps it in
//! the replicated state; the node that answers records the job's spans under it:
//! `enqueue` (the call that created it), `schedule` (from enqueue to the lease, in log time),
//! `lease` (the call that granted it) and `complete` (the call that reported it), and the
//! worker runtime opens `worker_execute` under the same trace (`rota_client::trace`).
//!
//! The exporter batches spans on a thread of its own; its HTTP requests run on the tokio
//! runtime that started it, through our reqwest client (opentelemetry-otlp's own clients
//! would bring a second reqwest).

use opentelemetry::trace::{Tracer, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

/// Set once an exporter is installed: until then a span would go nowhere, and the node does
/// not look up trace contexts to record one.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The OTLP exporter's HTTP client: each request runs on the runtime the exporter was
/// started on, whichever thread asks.
#[derive(Debug, Clone)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        self.runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let status = response.status();
                let headers = response.headers().clone();
                let mut answer = Response::new(response.bytes().await?);
                *answer.status_mut() = status;
                *answer.headers_mut() = headers;
                Ok::<_, HttpError>(answer)
            })
            .await?
    }
}

/// An OTLP trace exporter, installed as the process's tracer provider.
pub struct Otlp {
    provider: SdkTracerProvider,
}

impl std::fmt::Debug for Otlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otlp").finish_non_exhaustive()
    }
}

impl Otlp {
    /// Exports the spans of this process, named `service`, to `endpoint` (the full URL of
    /// the collector's traces path, e.g. `http://127.0.0.1:4318/v1/traces`), batched and
    /// sent every `every`. Call within a tokio runtime.
    pub fn start(endpoint: &str, service: &str, every: Duration) -> Result<Self, String> {
        let url = reqwest::Url::parse(endpoint).map_err(|e| format!("{endpoint:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("{endpoint:?}: not an http:// or https:// URL"));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the OTLP exporter needs a tokio runtime".to_owned())?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(10))
            .with_http_client(OnRuntime { client, runtime })
            .build()
            .map_err(|e| e.to_string())?;
        let batches = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(every)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .build(),
            )
            .with_span_processor(batches)
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        EXPORTING.store(true, Ordering::Relaxed);
        Ok(Self { provider })
    }

    /// The `tracing` layer that turns this process's spans into OpenTelemetry spans.
    pub fn layer<S>(&self) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("rota"))
    }

    /// Sends what is batched now. Blocks: call it off the runtime (`spawn_blocking`).
    pub fn flush(&self) -> Result<(), String> {
        self.provider.force_flush().map_err(|e| e.to_string())
    }

    /// Sends what is batched and stops. Blocks, as `flush` does.
    pub fn shutdown(&self) -> Result<(), String> {
        self.provider.shutdown().map_err(|e| e.to_string())
    }
}

/// Log time (Unix milliseconds) as a timestamp.
pub fn log_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Records span `name` of the job whose trace `traceparent` names, from `start` to `end`.
/// Does nothing when no exporter is installed.
pub fn record(
    name: &'static str,
    traceparent: &str,
    (start, end): (SystemTime, SystemTime),
    attributes: Vec<KeyValue>,
) {
    if !exporting() {
        return;
    }
    let Some(parent) = rota_client::trace::remote_context(traceparent) else {
        return;
    };
    let tracer = opentelemetry::global::tracer("rota");
    let mut span = tracer
        .span_builder(name)
        .with_start_time(start)
        .with_attributes(attributes)
        .start_with_context(&tracer, &parent);
    opentelemetry::trace::Span::end_with_timestamp(&mut span, end.max(start));
}
