//! Metrics counted as calls happen: each gRPC method's and HTTP route's requests, errors
//! by kind and latency, and the group commit's entries. Label values are method paths,
//! route templates and status codes: bounded sets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: String,
    code: String,
    /// The error's `rota-error` kind (`stale_lease`, `not_leader`, …); empty for OK.
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcMethod {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpRoute {
    route: String,
}

fn latency_histogram() -> Histogram {
    // 250 µs to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Calls served by this node.
#[derive(Debug)]
pub struct CallMetrics {
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_seconds: Family<RpcMethod, Histogram, fn() -> Histogram>,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<HttpRoute, Histogram, fn() -> Histogram>,
}

impl CallMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            rpc_requests: Family::default(),
            rpc_seconds: Family::new_with_constructor(latency_histogram),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            "rpc_requests",
            "gRPC calls answered, by method, status code and (for errors) rota's error kind",
            metrics.rpc_requests.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "Time to answer a gRPC call (to its response headers), by method",
            metrics.rpc_seconds.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            metrics.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to its response headers), by route template",
            metrics.http_seconds.clone(),
        );
        metrics
    }

    /// A gRPC call to `method` (its path) answered with `code` (and the error's `kind`)
    /// after `took`.
    pub fn rpc(&self, method: &str, code: tonic::Code, kind: &str, took: Duration) {
        self.rpc_requests
            .get_or_create(&RpcLabels {
                method: method.to_owned(),
                code: format!("{code:?}"),
                kind: kind.to_owned(),
            })
            .inc();
        self.rpc_seconds
            .get_or_create(&RpcMethod {
                method: method.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// An HTTP request to `route` (a template, or "unmatched") answered with `status`.
    pub fn http(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.http_seconds
            .get_or_create(&HttpRoute {
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }
}

/// The group commit: how many writes and bytes each entry it proposed carried.
#[derive(Debug)]
pub struct CommitMetrics {
    writes: Histogram,
    bytes: Histogram,
}

impl CommitMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            // 1 to 2048 writes.
            writes: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            // 64 bytes to 4 MiB.
            bytes: Histogram::new(exponential_buckets(64.0, 4.0, 9)),
        };
        registry.register(
            "commit_entry_writes",
            "Client writes per log entry this node proposed (count: entries; sum: writes)",
            metrics.writes.clone(),
        );
        registry.register(
            "commit_entry_bytes",
            "Request bytes per log entry this node proposed",
            metrics.bytes.clone(),
        );
        metrics
    }

    /// An entry of `writes` writes and `bytes` bytes was proposed.
    pub fn proposed(&self, writes: usize, bytes: usize) {
        self.writes.observe(writes as f64);
        self.bytes.observe(bytes as f64);
    }
}
