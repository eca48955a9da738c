//! A running rota node: storage, Raft, the group committer, the tick loop and one gRPC
//! server that carries the public services, the Raft transport and the health service.

use crate::api::{Admin, Api, ApiSettings, Jobs, Workers};
use crate::clock::{system_clock, Clock, LogClock};
use crate::commit::{CommitSettings, Committer};
use crate::convert::Limits;
use rota_client::proto::admin_service_server::AdminServiceServer;
use rota_client::proto::job_service_server::JobServiceServer;
use rota_client::proto::worker_service_server::WorkerServiceServer;
use rota_client::MAX_MESSAGE_BYTES;
use rota_raft::{
    default_raft_config, ClusterError, Dial, GrpcNetwork, NodeConfig, NodeId, RaftConfig, RaftNode,
    RotaNode, Storage,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tonic::transport::server::{Connected, Router};

/// Everything a node needs to start.
#[derive(Clone)]
pub struct NodeSettings {
    /// This node's id, unique in the cluster.
    pub id: NodeId,
    /// Where the gRPC server listens; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The address peers and clients are told; defaults to the bound listen address.
    pub advertise: Option<String>,
    /// The other founding members, by id; used by `rota cluster init` without arguments.
    pub peers: BTreeMap<NodeId, String>,
    /// What this node accepts beyond the scheduler's own checks.
    pub limits: Limits,
    /// How often the leader proposes a tick so that log time moves when nothing else does.
    pub tick_interval: Duration,
    /// How client writes share log entries.
    pub commit: CommitSettings,
    /// openraft's settings: heartbeat, election timeout, snapshot policy (see
    /// `rota_raft::default_raft_config` for the defaults and why).
    pub raft: RaftConfig,
    /// Where the log and snapshots live: a data directory, or memory for simulations.
    pub storage: Storage,
    /// How this node reaches its peers and the leader; `None` dials TCP.
    pub dial: Option<Dial>,
    /// The clock the leader stamps log time from.
    pub clock: Clock,
}

impl NodeSettings {
    /// Defaults for node `id` on `listen` with data under `data_dir`.
    pub fn new(id: NodeId, listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            id,
            listen,
            advertise: None,
            peers: BTreeMap::new(),
            limits: Limits::default(),
            tick_interval: Duration::from_millis(250),
            commit: CommitSettings::default(),
            raft: default_raft_config(),
            storage: Storage::Disk(data_dir),
            dial: None,
            clock: system_clock(),
        }
    }

    /// The data directory, when the node keeps its data on disk.
    pub fn data_dir(&self) -> Option<&Path> {
        match &self.storage {
            Storage::Disk(dir) => Some(dir),
            Storage::Memory { .. } => None,
        }
    }
}

impl std::fmt::Debug for NodeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSettings")
            .field("id", &self.id)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("data_dir", &self.data_dir())
            .field("peers", &self.peers)
            .field("limits", &self.limits)
            .field("tick_interval", &self.tick_interval)
            .finish_non_exhaustive()
    }
}

/// A node serving until `shutdown`.
pub struct RunningNode {
    addr: SocketAddr,
    raft: Arc<RaftNode>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    ticker: JoinHandle<()>,
    committer: JoinHandle<()>,
}

impl RunningNode {
    /// Opens storage, starts Raft and serves on TCP. The data directory is created if missing.
    pub async fn start(settings: NodeSettings) -> Result<Self, ClusterError> {
        let listener = TcpListener::bind(settings.listen).await?;
        let bound = listener.local_addr()?;
        Self::start_with_incoming(settings, bound, rota_raft::nodelay_incoming(listener)).await
    }

    /// As `start`, serving the connections `incoming` yields (a simulated network's, say);
    /// `bound` is the address they arrive at.
    pub async fn start_with_incoming<I, IO, IE>(
        settings: NodeSettings,
        bound: SocketAddr,
        incoming: I,
    ) -> Result<Self, ClusterError>
    where
        I: Stream<Item = Result<IO, IE>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let advertise = settings
            .advertise
            .clone()
            .unwrap_or_else(|| bound.to_string());
        let raft = Arc::new(open_raft(&settings, bound, &advertise).await?);
        let clock = LogClock::new(settings.clock.clone(), raft.clone());
        let (committer, committer_task) =
            Committer::start(raft.clone(), settings.commit, clock.clone());
        let mut peers = settings.peers.clone();
        peers.insert(settings.id, advertise);
        let api = Api::new(
            raft.clone(),
            ApiSettings {
                committer: committer.clone(),
                clock: clock.clone(),
                limits: settings.limits.clone(),
                peers,
                dial: settings.dial.clone(),
            },
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let server = services(&raft, api)
            .await
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            });
        let server = tokio::spawn(server);
        let ticker = tokio::spawn(crate::tick::run(
            raft.clone(),
            committer,
            settings.tick_interval,
            clock,
        ));
        Ok(Self {
            addr: bound,
            raft,
            stop: Some(stop),
            server,
            ticker,
            committer: committer_task,
        })
    }

    /// Where the node listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Raft node, for status and tests.
    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }

    /// Founds a one-node cluster if this node has never been part of one (`rota dev`).
    pub async fn initialize_alone(&self) -> Result<bool, ClusterError> {
        if self.raft.raft().is_initialized().await? {
            return Ok(false);
        }
        let me = RotaNode {
            addr: self.raft.addr().to_string(),
        };
        self.raft
            .initialize(BTreeMap::from([(self.raft.id(), me)]))
            .await?;
        // The new leader's tick loop proposes the default retention windows; the cluster is
        // ready once they are in, so nothing a caller writes next races them into the log.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.raft.read_local(|a| a.state.retention().is_none()) {
            if tokio::time::Instant::now() > deadline {
                return Err(ClusterError::Timeout("the default retention windows"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(true)
    }

    /// Stops taking calls, lets calls in progress finish, stops Raft and closes storage.
    pub async fn shutdown(mut self) -> Result<(), ClusterError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.ticker.abort();
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.server).await;
        self.server.abort();
        self.committer.abort();
        self.raft.raft().shutdown().await?;
        Ok(())
    }
}

/// Opens the node's storage (creating its data directory) and starts openraft; peers are
/// told `advertise`.
async fn open_raft(
    settings: &NodeSettings,
    bound: SocketAddr,
    advertise: &str,
) -> Result<RaftNode, ClusterError> {
    let advertise_addr: SocketAddr = advertise.parse().unwrap_or(bound);
    if let Some(dir) = settings.data_dir() {
        std::fs::create_dir_all(dir)?;
    }
    let config = NodeConfig {
        id: settings.id,
        listen: bound,
        storage: settings.storage.clone(),
        raft: settings.raft.clone(),
    };
    // An AppendEntries carries at most one entry's budget of bytes, the size that must
    // replicate within the heartbeat.
    let network = match &settings.dial {
        Some(dial) => GrpcNetwork::with_dial(dial.clone()),
        None => GrpcNetwork::default(),
    }
    .with_max_append_bytes(settings.commit.max_entry_bytes);
    let peers: Vec<String> = settings.peers.values().cloned().collect();
    RaftNode::open_with_peers(config, advertise_addr, network, &peers).await
}

/// Turns the node's gRPC health to NOT_SERVING once its Raft core stops on an error (a
/// storage failure, a panic): it takes no part in the cluster any more, and a probe or a
/// load balancer must not see it as healthy. Ends when the node stops.
async fn report_stopped_raft(
    mut metrics: tokio::sync::watch::Receiver<rota_raft::RaftMetrics>,
    health: tonic_health::server::HealthReporter,
) {
    loop {
        let stopped = metrics
            .borrow_and_update()
            .running_state
            .as_ref()
            .err()
            .map(|e| e.to_string());
        if let Some(error) = stopped {
            tracing::error!(%error, "raft stopped on this node; reporting it not serving");
            health.set_not_serving::<JobServiceServer<Jobs>>().await;
            health
                .set_not_serving::<WorkerServiceServer<Workers>>()
                .await;
            health.set_not_serving::<AdminServiceServer<Admin>>().await;
            return;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Everything the node's one port serves: health, the Raft transport, the public services.
async fn services(raft: &RaftNode, api: Arc<Api>) -> Router {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<JobServiceServer<Jobs>>().await;
    health.set_serving::<WorkerServiceServer<Workers>>().await;
    health.set_serving::<AdminServiceServer<Admin>>().await;
    tokio::spawn(report_stopped_raft(raft.metrics(), health));
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(raft.transport())
        .add_service(
            JobServiceServer::new(Jobs(api.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            WorkerServiceServer::new(Workers(api.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            AdminServiceServer::new(Admin(api))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
}
