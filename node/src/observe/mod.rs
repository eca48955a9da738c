//! What an operator watches: Prometheus metrics at `/metrics` (one registry per node), the
//! job log (one structured event per job transition, told once), incidents pushed to a
//! webhook, and traces over OTLP. Nothing here is read by a decision.

mod calls;
mod incidents;
pub mod joblog;
mod jobs;
mod labels;
pub mod otel;
mod state;

pub use calls::{CallMetrics, CommitMetrics};
pub use incidents::{signature, Incident, IncidentSettings, Webhook};
pub use joblog::JobLog;

use prometheus_client::registry::Registry;
use rota_raft::RaftNode;
use std::sync::Arc;

/// `Content-Type` of `/metrics`: Prometheus' text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One node's metrics: what it counts as it goes, and what it reads at each scrape.
pub struct Metrics {
    registry: Registry,
    /// gRPC and HTTP calls.
    pub calls: CallMetrics,
    /// The group commit's entries.
    pub commit: CommitMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The metrics of `raft`'s node: its job counters start counting now, at entries past
    /// what its log held when it started (a restart replays those, and they were counted
    /// before).
    pub fn start(raft: Arc<RaftNode>) -> Arc<Self> {
        let mut registry = Registry::default();
        let calls = CallMetrics::register(&mut registry);
        let commit = CommitMetrics::register(&mut registry);
        let boot_index = raft.boot_index();
        let tallies = Arc::new(jobs::Tallies::default());
        let tap = tallies.clone();
        raft.events().tap(Arc::new(move |events| {
            if events.first().is_some_and(|e| e.index > boot_index) {
                tap.count(events);
            }
        }));
        registry.register_collector(Box::new(tallies));
        registry.register_collector(Box::new(state::StateGauges::new(raft)));
        Arc::new(Self {
            registry,
            calls,
            commit,
        })
    }

    /// The exposition, in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "could not encode the metrics");
        }
        out
    }
}
