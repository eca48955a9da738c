//! What stops a bench run or a wait on the local cluster, named by the step that failed.
//! A call that fails for good in the middle of a phase is not one of these: the run counts
//! it in its report and goes on, and the audit tells what it cost.

use rota_client::proto as pb;
use rota_client::ClientError;
use std::path::PathBuf;
use std::time::Duration;

/// Why a bench run stopped, or why the cluster it drives did not get where it was waited for.
///
/// The wrapped error, when there is one, is the `source`, not part of the message, so
/// `{:#}` (as `rota` prints errors) reads "step: cause" once.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Settings no run can use; nothing was started.
    #[error("{0}")]
    Settings(&'static str),
    /// A batch size outside what one command may carry.
    #[error("{which} batch must be between 1 and {max}")]
    BatchSize { which: &'static str, max: usize },
    /// The temporary directory for the started agents' data.
    #[error("data directory")]
    DataDir(#[source] std::io::Error),
    /// Free loopback ports for the started agents.
    #[error("ports for the agents")]
    Ports(#[source] std::io::Error),
    /// An agent process that would not start.
    #[error("starting {}", .bin.display())]
    StartAgent {
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A started agent that exited, or did not listen in time; `log` is its log's end.
    #[error("node {node} {what}; the end of its log:\n{}", if .log.is_empty() { "(empty)" } else { .log })]
    AgentDown {
        node: u64,
        what: String,
        log: String,
    },
    /// The certificates of a local cluster with TLS, which could not be made or written.
    #[error("the local cluster's certificates")]
    Certificates(#[from] rota_node::tls::issue::CertError),
    /// A killed agent process that would not start again.
    #[error("restarting node {node}")]
    RestartAgent {
        node: u64,
        #[source]
        source: std::io::Error,
    },
    /// A client that could not be made for the endpoints (a bad address, say).
    #[error(transparent)]
    Client(ClientError),
    /// A call the run cannot go on without (`call` names it) that failed for good.
    #[error("{call}")]
    Call {
        call: &'static str,
        #[source]
        source: ClientError,
    },
    /// The nodes' statuses did not show `what` within `within`; `seen` is the last poll.
    #[error("no {what} within {within:?}; last seen: {seen:?}")]
    Timeout {
        what: String,
        within: Duration,
        seen: Vec<pb::ClusterStatusResponse>,
    },
    /// After every node was killed and restarted, a read was not answered within `within`.
    #[error("the cluster did not serve within {} s", .within.as_secs())]
    NotServing {
        within: Duration,
        #[source]
        last: ClientError,
    },
    /// The whole run outlasted its timeout (plus the grace the run allows itself).
    #[error("the run took longer than {0:?}")]
    RunTimeout(Duration),
    /// No enqueue was answered, so no job can be read back.
    #[error("no enqueue was answered")]
    NothingEnqueued,
    /// A producer, a worker or the leader killer that panicked or was cancelled.
    #[error("{task}")]
    Task {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// Histograms that would not merge (their bounds differ).
    #[error("histogram")]
    Histogram(#[from] hdrhistogram::AdditionError),
    /// The started agents' lock, poisoned by a panic while it was held.
    #[error("agents lock poisoned")]
    AgentsLockPoisoned,
    /// The node every other node named leader is not one the bench started.
    #[error("leader {0} is not one of the started agents")]
    UnknownLeader(u64),
    /// A node stopped with SIGTERM was still running after the grace period (it was
    /// SIGKILLed then).
    #[error("node {0} did not stop within the grace period after SIGTERM")]
    StopTimedOut(u64),
    /// The audit found jobs lost or run more than once (the report lists examples).
    #[error("{lost} jobs lost and {duplicated} duplicated")]
    Unclean { lost: u64, duplicated: u64 },
}
