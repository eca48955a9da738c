//! A running rota node: storage, Raft, the group committer, the tick loop and one gRPC
//! server that carries the public services, the Raft transport and the health service.

use crate::api::{Admin, Api, Jobs, Workers};
use crate::commit::{CommitSettings, Committer};
use crate::convert::Limits;
use rota_client::proto::admin_service_server::AdminServiceServer;
use rota_client::proto::job_service_server::JobServiceServer;
use rota_client::proto::worker_service_server::WorkerServiceServer;
use rota_client::MAX_MESSAGE_BYTES;
use rota_raft::{
    default_raft_config, ClusterError, Dial, GrpcNetwork, MemLogStore, NodeConfig, NodeId,
    RaftNode, RotaNode, SnapshotPolicy, StateStore, Storage, Write,
};
use rota_state_machine::Command;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tonic::transport::server::Connected;

/// Where a node's clock comes from: milliseconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The machine's clock.
pub fn system_clock() -> Clock {
    Arc::new(crate::commit::wall_ms)
}

/// Where a node keeps its log and snapshots.
#[derive(Clone)]
pub enum NodeStorage {
    /// RocksDB and snapshot files under the data directory.
    Disk,
    /// In memory, for simulations: keep the stores to restart the node with what it had.
    Memory { log: MemLogStore, state: StateStore },
}

/// Everything a node needs to start.
#[derive(Clone)]
pub struct NodeSettings {
    pub id: NodeId,
    /// Where the gRPC server listens; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The address peers and clients are told; defaults to the bound listen address.
    pub advertise: Option<String>,
    pub data_dir: PathBuf,
    /// The other founding members, by id; used by `rota cluster init` without arguments.
    pub peers: BTreeMap<NodeId, String>,
    pub limits: Limits,
    /// How often the leader proposes a tick so that log time moves when nothing else does.
    pub tick_interval: Duration,
    pub commit: CommitSettings,
    /// Raft heartbeat and election timing, in milliseconds.
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    /// A snapshot is built after this many log entries since the last one.
    pub snapshot_every: u64,
    pub storage: NodeStorage,
    /// How this node reaches its peers and the leader; `None` dials TCP.
    pub dial: Option<Dial>,
    /// The clock the leader stamps log time from.
    pub clock: Clock,
}

impl NodeSettings {
    /// Defaults for node `id` on `listen` with data under `data_dir`.
    pub fn new(id: NodeId, listen: SocketAddr, data_dir: PathBuf) -> Self {
        let raft = default_raft_config();
        Self {
            id,
            listen,
            advertise: None,
            data_dir,
            peers: BTreeMap::new(),
            limits: Limits {
                max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            },
            tick_interval: Duration::from_millis(250),
            commit: CommitSettings::default(),
            heartbeat_ms: raft.heartbeat_interval,
            election_timeout_ms: (raft.election_timeout_min, raft.election_timeout_max),
            snapshot_every: match raft.snapshot_policy {
                SnapshotPolicy::LogsSinceLast(n) => n,
                _ => 10_000,
            },
            storage: NodeStorage::Disk,
            dial: None,
            clock: system_clock(),
        }
    }
}

/// Default largest payload: 1 MiB. The scheduler's own ceiling is 4 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

impl std::fmt::Debug for NodeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSettings")
            .field("id", &self.id)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("data_dir", &self.data_dir)
            .field("peers", &self.peers)
            .field("limits", &self.limits)
            .field("tick_interval", &self.tick_interval)
            .field(
                "in_memory",
                &matches!(self.storage, NodeStorage::Memory { .. }),
            )
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
        let advertise_addr: SocketAddr = advertise.parse().unwrap_or(bound);
        let mut raft_config = default_raft_config();
        raft_config.heartbeat_interval = settings.heartbeat_ms;
        raft_config.election_timeout_min = settings.election_timeout_ms.0;
        raft_config.election_timeout_max = settings.election_timeout_ms.1;
        raft_config.snapshot_policy = SnapshotPolicy::LogsSinceLast(settings.snapshot_every);
        let storage = match settings.storage.clone() {
            NodeStorage::Disk => {
                std::fs::create_dir_all(&settings.data_dir)?;
                Storage::Disk(settings.data_dir.clone())
            }
            NodeStorage::Memory { log, state } => Storage::Memory { log, state },
        };
        let config = NodeConfig {
            id: settings.id,
            listen: bound,
            storage,
            raft: raft_config,
        };
        let network = match &settings.dial {
            Some(dial) => GrpcNetwork::with_dial(dial.clone()),
            None => GrpcNetwork::default(),
        };
        let raft = RaftNode::open_with_network(config, advertise_addr, network).await?;
        let raft = Arc::new(raft);
        let (committer, committer_task) =
            Committer::start(raft.clone(), settings.commit, settings.clock.clone());
        let mut peers = settings.peers.clone();
        peers.insert(settings.id, advertise.clone());
        let api = Api::new(
            raft.clone(),
            committer.clone(),
            settings.limits.clone(),
            peers,
            settings.dial.clone(),
        );

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<JobServiceServer<Jobs>>().await;
        health.set_serving::<WorkerServiceServer<Workers>>().await;
        health.set_serving::<AdminServiceServer<Admin>>().await;

        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
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
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            });
        let server = tokio::spawn(server);
        let ticker = tokio::spawn(tick(
            raft.clone(),
            committer,
            settings.tick_interval,
            settings.clock.clone(),
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
        let stopped = self.raft.raft().shutdown().await;
        stopped.map_err(|e| ClusterError::Raft(e.to_string()))
    }
}

/// While this node leads, checks every `every` whether anything waits on time (a lease to
/// expire, a backoff to end, a schedule to fire) that has come, and if so proposes a tick.
/// An idle cluster's log stays still.
async fn tick(raft: Arc<RaftNode>, committer: Committer, every: Duration, clock: Clock) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if !raft.is_leader() {
            continue;
        }
        let due = raft.read_local(|applied| applied.state.next_due_ms());
        if due.is_none_or(|due| due > clock()) {
            continue;
        }
        if let Err(e) = committer.submit(Write::Command(Command::Tick)).await {
            tracing::debug!(error = %e, "tick not committed");
        }
    }
}
