//! A running rota node: storage, Raft, the group committer, the tick loop and its gRPC
//! servers: the client port (the public services and health) and the peer port (the Raft
//! transport, and the public services for calls other nodes forward). Without a peer port
//! (`peer_listen` unset: simulations, tests) the client port carries the Raft transport too.

use crate::api::{Admin, Api, ApiSettings, Jobs, Workers};
use crate::auth::{Gate, Guarded, Port};
use crate::clock::{system_clock, Clock, LogClock};
use crate::commit::{CommitSettings, Committer};
use crate::convert::Limits;
use crate::observe::{IncidentSettings, JobLog, Metrics};
use crate::tls::{Identity, NodeTls};
use rota_client::proto::admin_service_server::AdminServiceServer;
use rota_client::proto::job_service_server::JobServiceServer;
use rota_client::proto::worker_service_server::WorkerServiceServer;
use rota_client::MAX_MESSAGE_BYTES;
use rota_raft::{
    default_raft_config, ClusterError, Dial, GrpcNetwork, NodeConfig, NodeId, PeerNode, RaftConfig,
    RaftNode, RotaNode, Storage,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::server::{Connected, Router};
use tonic::transport::{Endpoint, Server, ServerTlsConfig};
use tonic::{Request, Status};

/// Everything a node needs to start.
#[derive(Clone)]
pub struct NodeSettings {
    /// This node's id, unique in the cluster.
    pub id: NodeId,
    /// Where the gRPC server listens; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The client port's address as clients are told it; defaults to the bound address.
    pub advertise: Option<String>,
    /// Where the peer port listens (Raft, forwarded calls); port 0 picks a free one. `None`:
    /// no peer port, the client port carries Raft (and `advertise` is the peer address).
    pub peer_listen: Option<SocketAddr>,
    /// The peer port's address as the other members are told it (their membership records
    /// it); defaults to the bound peer address.
    pub advertise_peer: Option<String>,
    /// Where the HTTP face (REST, OpenAPI, `/livez`, `/readyz`) listens; port 0 picks a free
    /// one. `None`: no HTTP.
    pub http_listen: Option<SocketAddr>,
    /// The other founding members' peer addresses, by id; used by `rota cluster init`
    /// without arguments and to recover a damaged snapshot.
    pub peers: BTreeMap<NodeId, String>,
    /// The cluster CA and this node's certificate: mutual TLS on the peer port (and for the
    /// connections this node dials to its peers), TLS on the client port. `None`: plain
    /// TCP, anyone who reaches a port is trusted (`rota agent --insecure`, `rota dev`).
    pub tls: Option<NodeTls>,
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
    /// Which applied entries this node writes to the job log.
    pub job_log: JobLog,
    /// When incidents are raised and where they are pushed.
    pub incidents: IncidentSettings,
    /// The ed25519 key this node signs audit bundles with (`--audit-key`); without one,
    /// `ExportAudit` is refused.
    pub audit_key: Option<Arc<ed25519_dalek::SigningKey>>,
}

impl NodeSettings {
    /// Defaults for node `id` on `listen` with data under `data_dir`.
    pub fn new(id: NodeId, listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            id,
            listen,
            advertise: None,
            peer_listen: None,
            advertise_peer: None,
            http_listen: None,
            peers: BTreeMap::new(),
            tls: None,
            limits: Limits::default(),
            tick_interval: Duration::from_millis(250),
            commit: CommitSettings::default(),
            raft: default_raft_config(),
            storage: Storage::Disk(data_dir),
            dial: None,
            clock: system_clock(),
            job_log: JobLog::default(),
            incidents: IncidentSettings::default(),
            audit_key: None,
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
            .field("peer_listen", &self.peer_listen)
            .field("advertise_peer", &self.advertise_peer)
            .field("http_listen", &self.http_listen)
            .field("tls", &self.tls)
            .field("data_dir", &self.data_dir())
            .field("peers", &self.peers)
            .field("limits", &self.limits)
            .field("tick_interval", &self.tick_interval)
            .field("job_log", &self.job_log)
            .field("incidents", &self.incidents)
            .finish_non_exhaustive()
    }
}

type Serving = JoinHandle<Result<(), tonic::transport::Error>>;

/// Largest HTTP request body: a 4 MiB write request (the log entry's budget) with room for
/// JSON's and base64's overhead.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// A node serving until `shutdown`.
pub struct RunningNode {
    addr: SocketAddr,
    peer_addr: Option<SocketAddr>,
    raft: Arc<RaftNode>,
    stop: watch::Sender<bool>,
    servers: Vec<Serving>,
    http_addr: Option<SocketAddr>,
    http: Option<JoinHandle<()>>,
    ticker: JoinHandle<()>,
    committer: JoinHandle<()>,
    api: Arc<Api>,
}

/// Resolves once `stop` says so (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A listener on `addr` in its `role` (client, peer, HTTP); a failure names both.
async fn listen(role: &str, addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("the {role} listener on {addr}: {e}")))
}

fn tls_error(e: tonic::transport::Error) -> ClusterError {
    ClusterError::Io(std::io::Error::other(format!("TLS settings: {e}")))
}

impl RunningNode {
    /// Opens storage, starts Raft and serves on TCP: the client port, and the peer port if
    /// `peer_listen` is set. The data directory is created if missing.
    pub async fn start(settings: NodeSettings) -> Result<Self, ClusterError> {
        let listener = listen("client", settings.listen).await?;
        let bound = listener.local_addr()?;
        let peer = match settings.peer_listen {
            Some(addr) => Some(listen("peer", addr).await?),
            None => None,
        };
        let http = match settings.http_listen {
            Some(addr) => Some(listen("HTTP", addr).await?),
            None => None,
        };
        let incoming = rota_raft::nodelay_incoming(listener);
        Self::serve(settings, bound, incoming, (peer, http)).await
    }

    /// As `start` without a peer port or HTTP (`peer_listen` and `http_listen` are not
    /// used), serving the connections `incoming` yields (a simulated network's, say);
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
        Self::serve(settings, bound, incoming, (None, None)).await
    }

    async fn serve<I, IO, IE>(
        mut settings: NodeSettings,
        bound: SocketAddr,
        incoming: I,
        (peer_listener, http_listener): (Option<TcpListener>, Option<TcpListener>),
    ) -> Result<Self, ClusterError>
    where
        I: Stream<Item = Result<IO, IE>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        if let Some(tls) = &settings.tls {
            crate::tls::install_crypto();
            // A peer is known by the certificate tonic reads off a TCP connection it
            // accepted, and dialled with this node's; other transports would check nothing.
            if peer_listener.is_none() || settings.dial.is_some() {
                return Err(ClusterError::Io(std::io::Error::other(
                    "TLS needs a peer port (peer_listen) and TCP: no custom transport or dial",
                )));
            }
            if tls.id() != settings.id {
                return Err(ClusterError::Io(std::io::Error::other(format!(
                    "the node certificate names node {}, but this is node {}",
                    tls.id(),
                    settings.id
                ))));
            }
            settings.dial = Some(tls_dial(tls).map_err(tls_error)?);
        }
        // Bad TLS files show here, before storage opens and Raft starts.
        let client_server =
            server(settings.tls.as_ref().map(NodeTls::client_server)).map_err(tls_error)?;
        let peer_server = match &peer_listener {
            Some(_) => {
                Some(server(settings.tls.as_ref().map(NodeTls::peer_server)).map_err(tls_error)?)
            }
            None => None,
        };
        let http_tls = match (&settings.tls, &http_listener) {
            (Some(tls), Some(_)) => Some(tls.http_server().map_err(std::io::Error::other)?),
            _ => None,
        };
        let peer_bound = match &peer_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        // What the other members record and dial: the peer port, or the one port there is.
        let peer_advertise = match peer_bound {
            Some(peer_bound) => settings
                .advertise_peer
                .clone()
                .unwrap_or_else(|| peer_bound.to_string()),
            None => settings
                .advertise
                .clone()
                .unwrap_or_else(|| bound.to_string()),
        };
        let raft =
            Arc::new(open_raft(&settings, peer_bound.unwrap_or(bound), &peer_advertise).await?);
        let (stop, stop_rx) = watch::channel(false);
        let metrics = Metrics::start(raft.clone());
        crate::observe::joblog::start(
            &raft,
            settings.job_log,
            settings.incidents.clone(),
            stop_rx.clone(),
        );
        let clock = LogClock::new(settings.clock.clone(), raft.clone());
        let (committer, committer_task) = Committer::start(
            raft.clone(),
            settings.commit,
            clock.clone(),
            metrics.clone(),
        );
        let mut peers = settings.peers.clone();
        peers.insert(settings.id, peer_advertise);
        let api = Api::new(
            raft.clone(),
            ApiSettings {
                committer: committer.clone(),
                clock: clock.clone(),
                limits: settings.limits.clone(),
                peers,
                dial: settings.dial.clone(),
                audit_key: settings.audit_key.clone(),
                stopping: stop_rx.clone(),
            },
        );
        let mut servers = Vec::new();
        let carries_raft = peer_listener.is_none();
        let secure = settings.tls.is_some();
        // Auth comes with TLS: without it a token would cross the network in the clear,
        // and the peer port could not tell a node forwarding a call from anyone else.
        let gate = Gate::new(secure, clock.clone(), raft.clone());
        let http_addr = match &http_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        let http = http_listener.map(|listener| {
            let app = crate::http::router(
                api.clone(),
                gate.clone(),
                raft.clone(),
                metrics.clone(),
                MAX_BODY_BYTES,
            );
            tokio::spawn(crate::http::serve(listener, http_tls, app, stop_rx.clone()))
        });
        let client = client_port(
            client_server,
            &raft,
            (api.clone(), &gate, &metrics),
            carries_raft,
        )
        .await;
        servers.push(tokio::spawn(
            client.serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone())),
        ));
        if let (Some(listener), Some(peer_server)) = (peer_listener, peer_server) {
            let peer = peer_port(peer_server, &raft, (api.clone(), &gate, &metrics), secure);
            servers.push(tokio::spawn(peer.serve_with_incoming_shutdown(
                rota_raft::nodelay_incoming(listener),
                stopped(stop_rx),
            )));
        }
        let ticker = tokio::spawn(crate::tick::run(
            raft.clone(),
            committer,
            settings.tick_interval,
            clock,
        ));
        Ok(Self {
            addr: bound,
            peer_addr: peer_bound,
            raft,
            stop,
            servers,
            http_addr,
            http,
            ticker,
            committer: committer_task,
            api,
        })
    }

    /// Where the node listens for clients.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the HTTP face listens, if it has one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Where the node listens for its peers, if it has a peer port.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
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

    /// Before a planned stop: if this node leads, hands leadership to the voter best placed
    /// to take it (writes wait meanwhile, then go there), within `within`. Returns the new
    /// leader; `None` when this node does not lead or no other voter answers it.
    pub async fn hand_off(&self, within: Duration) -> Result<Option<NodeId>, ClusterError> {
        if !self.raft.is_leader() || self.raft.successor().is_none() {
            return Ok(None);
        }
        self.api.hand_off(None, within).await.map(Some)
    }

    /// Stops taking calls, lets calls in progress finish, stops Raft and closes storage.
    pub async fn shutdown(mut self) -> Result<(), ClusterError> {
        let _ = self.stop.send(true);
        self.ticker.abort();
        let servers = futures_util::future::join_all(self.servers.iter_mut());
        let http = async {
            if let Some(http) = self.http.as_mut() {
                let _ = http.await;
            }
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::future::join(servers, http),
        )
        .await;
        for server in &self.servers {
            server.abort();
        }
        if let Some(http) = &self.http {
            http.abort();
        }
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
    // An AppendEntries carries one entry, or entries up to the entry target in all: the
    // size that must replicate within the heartbeat.
    let network = match &settings.dial {
        Some(dial) => GrpcNetwork::with_dial(dial.clone()),
        None => GrpcNetwork::default(),
    }
    .with_max_append_bytes(
        settings
            .commit
            .entry_target_bytes
            .min(settings.commit.max_entry_bytes),
    );
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

/// The three public services, each behind a guard.
type PublicServices = (
    Guarded<JobServiceServer<Jobs>>,
    Guarded<WorkerServiceServer<Workers>>,
    Guarded<AdminServiceServer<Admin>>,
);

/// What the public services share: the API, the gate and the metrics.
type Shared<'a> = (Arc<Api>, &'a Arc<Gate>, &'a Arc<Metrics>);

/// The public services, with their message limits, each behind the gate for `port`.
fn public_services((api, gate, metrics): Shared<'_>, port: Port) -> PublicServices {
    (
        Guarded::new(
            JobServiceServer::new(Jobs(api.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            gate.clone(),
            port,
            metrics.clone(),
        ),
        Guarded::new(
            WorkerServiceServer::new(Workers(api.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            gate.clone(),
            port,
            metrics.clone(),
        ),
        Guarded::new(
            AdminServiceServer::new(Admin(api))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            gate.clone(),
            port,
            metrics.clone(),
        ),
    )
}

/// The peer port's check. With TLS, the caller's certificate (which the CA signed: the
/// handshake saw to that) must name a node of this node's membership (`admit_peer`), whose
/// id goes into the request for the Raft service's own checks (`rota_raft::PeerNode`). A
/// client's certificate, or a removed node's, never gets past it. Without TLS, everyone is
/// let through.
fn nodes_only(
    secure: bool,
    metrics: watch::Receiver<rota_raft::RaftMetrics>,
) -> impl Interceptor + Clone {
    move |mut request: Request<()>| {
        if !secure {
            return Ok(request);
        }
        match crate::tls::caller(&request)? {
            Some(Identity::Node(id)) => {
                rota_raft::admit_peer(&metrics.borrow(), id)?;
                request.extensions_mut().insert(PeerNode(id));
                Ok(request)
            }
            Some(other) => {
                tracing::warn!(caller = %other, "refused a call on the peer port");
                Err(Status::permission_denied(format!(
                    "the peer port takes node certificates only, not {other}'s"
                )))
            }
            None => Err(Status::unauthenticated(
                "the peer port needs a node certificate of this cluster",
            )),
        }
    }
}

/// A gRPC server, with TLS if `tls` is given.
fn server(tls: Option<ServerTlsConfig>) -> Result<Server, tonic::transport::Error> {
    let server = Server::builder();
    match tls {
        Some(tls) => server.tls_config(tls),
        None => Ok(server),
    }
}

/// What the client port serves: health and the public services, and the Raft transport
/// when there is no peer port (never with TLS, which needs one).
async fn client_port(
    mut server: Server,
    raft: &RaftNode,
    shared: Shared<'_>,
    carries_raft: bool,
) -> Router {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<JobServiceServer<Jobs>>().await;
    health.set_serving::<WorkerServiceServer<Workers>>().await;
    health.set_serving::<AdminServiceServer<Admin>>().await;
    tokio::spawn(report_stopped_raft(raft.metrics(), health));
    let (jobs, workers, admin) = public_services(shared, Port::Client);
    let transport = carries_raft.then(|| raft.transport());
    server
        .add_service(health_service)
        .add_optional_service(transport)
        .add_service(jobs)
        .add_service(workers)
        .add_service(admin)
}

/// What the peer port serves, to nodes only: the Raft transport, and the public services
/// for the calls a follower forwards to its leader.
fn peer_port(mut server: Server, raft: &RaftNode, shared: Shared<'_>, secure: bool) -> Router {
    let check = nodes_only(secure, raft.metrics());
    let (jobs, workers, admin) = public_services(shared, Port::Peer);
    server
        .add_service(InterceptedService::new(raft.transport(), check.clone()))
        .add_service(InterceptedService::new(jobs, check.clone()))
        .add_service(InterceptedService::new(workers, check.clone()))
        .add_service(InterceptedService::new(admin, check))
}

/// Dials peers (and the leader, to forward) over TLS with this node's certificate,
/// trusting the cluster CA only. The settings are tried once here, so that a bad
/// certificate or key stops the node at start rather than failing every dial.
fn tls_dial(tls: &NodeTls) -> Result<Dial, tonic::transport::Error> {
    let config = tls.dialer();
    let endpoint = move |addr: &str| {
        Endpoint::from_shared(format!("https://{addr}"))
            .and_then(|endpoint| endpoint.tls_config(config.clone()))
    };
    endpoint("127.0.0.1:1")?;
    Ok(Arc::new(move |addr: &str| {
        endpoint(addr)
            .map(|endpoint| {
                endpoint
                    .connect_timeout(Duration::from_secs(1))
                    .tcp_nodelay(true)
                    .connect_lazy()
            })
            .map_err(|e| e.to_string())
    }))
}
