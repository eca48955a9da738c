//! A running Raft node: storage, openraft, and the gRPC server its peers reach it on.
//! The `rota` node (and tests) drive the cluster through this handle.

use crate::log_store::{open_db, MemLogStore, RocksLogStore};
use crate::network::{GrpcNetwork, RaftService};
use crate::proto::raft_transport_server::RaftTransportServer;
use crate::state_store::{Applied, StateStore, UnusableSnapshot};
use crate::types::{Batch, BatchReply, LogId, NodeId, Raft, RotaNode, TypeConfig};
use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, Fatal, RaftError,
};
use openraft::{ChangeMembers, Config, RaftMetrics, ServerState, SnapshotPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// A write through openraft that failed, as openraft reports it.
pub type WriteError = RaftError<NodeId, ClientWriteError<NodeId, RotaNode>>;
/// A cluster founding that failed, as openraft reports it.
pub type InitializeError = RaftError<NodeId, openraft::error::InitializeError<NodeId, RotaNode>>;
/// A leadership check for a linearizable read that failed, as openraft reports it.
pub type ReadError = RaftError<NodeId, CheckIsLeaderError<NodeId, RotaNode>>;

/// Why a cluster operation failed. openraft's own errors are kept whole, so a caller can
/// tell a stopped node from a lost quorum or a refused membership change.
#[derive(Debug, Error)]
pub enum ClusterError {
    // The next three say their cause in their own message (a client's status carries only
    // that), so it is not also their `source`: printed as a chain, the cause would read twice.
    /// RocksDB refused an operation on the log.
    #[error("storage: {0}")]
    Storage(rocksdb::Error),
    /// The data directory or a socket failed.
    #[error("io: {0}")]
    Io(std::io::Error),
    /// The openraft settings are inconsistent (e.g. election timeout below the heartbeat).
    #[error("raft config: {0}")]
    Config(openraft::ConfigError),
    /// This node does not lead; the leader, if known, is named.
    #[error("this node is not the leader; the leader is {leader:?}")]
    NotLeader {
        /// The leader's id and address, if this node knows them.
        leader: Option<(NodeId, RotaNode)>,
    },
    /// openraft has stopped on this node (shut down, a storage failure, or a panic).
    #[error("raft stopped: {0}")]
    Fatal(#[from] Fatal<NodeId>),
    /// A write or membership change failed for a reason other than leadership.
    #[error("raft write: {0}")]
    Write(Box<WriteError>),
    /// Founding the cluster failed (already founded, or this node is not in the members).
    #[error("raft initialize: {0}")]
    Initialize(Box<InitializeError>),
    /// Leadership could not be confirmed for a linearizable read.
    #[error("raft read: {0}")]
    Read(Box<ReadError>),
    /// openraft's core task failed while stopping.
    #[error("raft stopped badly: {0}")]
    Shutdown(#[from] tokio::task::JoinError),
    /// A leader transfer could not be done; says why. Leadership stays where it was, or an
    /// ordinary election follows.
    #[error("leader transfer: {0}")]
    Transfer(String),
    /// A wait ran out of time; names what was awaited.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// This node stopped leading before a write it proposed in term `0` was answered, and no
    /// answer came within a grace period after: the write may or may not be committed.
    #[error("this node stopped leading after a write was proposed (term {0}) and before it was answered; it may or may not have been committed (a write under a session is safe to retry)")]
    Deposed(u64),
    /// The snapshot this node would start from cannot be used, and no peer had one to
    /// rebuild it from.
    #[error("{file}: {why}; no peer had a snapshot to rebuild it from: {tried}")]
    UnusableSnapshot {
        /// Which file.
        file: String,
        /// Why it cannot be used.
        why: String,
        /// Each peer asked, and its answer.
        tried: String,
    },
}

impl From<rocksdb::Error> for ClusterError {
    fn from(e: rocksdb::Error) -> Self {
        Self::Storage(e)
    }
}

impl From<std::io::Error> for ClusterError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<openraft::ConfigError> for ClusterError {
    fn from(e: openraft::ConfigError) -> Self {
        Self::Config(e)
    }
}

impl ClusterError {
    /// openraft on this node is stopping or has stopped: ask another node.
    pub fn is_stopping(&self) -> bool {
        matches!(
            self,
            ClusterError::Fatal(Fatal::Stopped) | ClusterError::Shutdown(_)
        )
    }

    /// A membership change the cluster refuses as asked (no voter would be left, or the
    /// node is not a learner); retrying the same change cannot help. Another change still
    /// in progress is not this: that one passes.
    pub fn is_refused_membership(&self) -> bool {
        matches!(
            self,
            ClusterError::Write(e) if matches!(
                **e,
                RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::EmptyMembership(_)
                        | ChangeMembershipError::LearnerNotFound(_)
                ))
            )
        )
    }

    /// Founding a cluster on a node that already belongs to one.
    pub fn is_already_initialized(&self) -> bool {
        matches!(
            self,
            ClusterError::Initialize(e) if matches!(
                **e,
                RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))
            )
        )
    }
}

impl From<InitializeError> for ClusterError {
    fn from(e: InitializeError) -> Self {
        match e {
            RaftError::Fatal(fatal) => ClusterError::Fatal(fatal),
            other => ClusterError::Initialize(Box::new(other)),
        }
    }
}

/// Where a node keeps its log and snapshots.
#[derive(Clone)]
pub enum Storage {
    /// RocksDB under `dir/raft-log`, snapshots under `dir/snapshots`, the archive
    /// (RocksDB) under `dir/archive`.
    Disk(PathBuf),
    /// In memory; keep the stores to "restart" the node with what it had.
    Memory {
        /// The log, shared with whoever keeps it across a simulated restart.
        log: MemLogStore,
        /// The state machine and its last snapshot.
        state: StateStore,
    },
}

/// How to start a node.
pub struct NodeConfig {
    /// This node's id, unique in the cluster.
    pub id: NodeId,
    /// Address to listen on for peers; port 0 picks a free one. `open` ignores it.
    pub listen: SocketAddr,
    /// Where the log and snapshots live.
    pub storage: Storage,
    /// openraft's timing and snapshot policy (`default_raft_config` and why).
    pub raft: Config,
}

/// openraft settings for a cluster on one network.
///
/// Failover time is mostly how long followers wait before electing: no voter grants a vote
/// within the leader lease (`election_timeout_max`, 300 ms here) of hearing a leader, and
/// `election.rs` campaigns just after it (openraft's own timer, which would wait an election
/// timeout more, is off).
///
/// The heartbeat interval is also openraft's deadline for every AppendEntries and the
/// election timeout its deadline for a vote. A 50 ms heartbeat failed here: three nodes
/// replaying a million-job log at once on two cores missed it, and elections followed one
/// another for minutes. 100 ms, with at most 64 entries per AppendEntries, keeps each
/// request well inside its deadline, and the election timeout stays above two heartbeats
/// (plus the lease), so a busy leader is not voted out. `rota bench --kill-leader` and
/// `rota bench --capacity` measure the result; see the README.
pub fn default_raft_config() -> Config {
    Config {
        cluster_name: "rota".to_owned(),
        heartbeat_interval: 100,
        election_timeout_min: 150,
        election_timeout_max: 300,
        max_payload_entries: 64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(10_000),
        max_in_snapshot_log_to_keep: 1_000,
        // Chunks well under the gRPC message limit.
        snapshot_max_chunk_size: 4 * 1024 * 1024,
        ..Config::default()
    }
}

/// A snapshot missing while the log was purged behind where it was: the state between
/// is gone from this node, so it is as unusable as a damaged file.
async fn missing_snapshot(
    state: &StateStore,
    log: &mut RocksLogStore,
    snapshots: &std::path::Path,
) -> Result<Option<UnusableSnapshot>, ClusterError> {
    use openraft::storage::RaftLogStorage;
    if state.kept_snapshot().is_some() {
        return Ok(None);
    }
    let purged = log
        .get_log_state()
        .await
        .map_err(|e| ClusterError::Io(std::io::Error::other(e.to_string())))?
        .last_purged_log_id;
    Ok(purged.map(|purged| UnusableSnapshot {
        file: snapshots.join("current.snapshot").display().to_string(),
        why: format!(
            "missing, and the log was purged up to {}: the state before it is nowhere on this node",
            purged.index
        ),
        members: Vec::new(),
    }))
}

/// Notes the term this node leads in and since when, until its Raft stops.
async fn watch_leadership(
    mut metrics: watch::Receiver<RaftMetrics<NodeId, RotaNode>>,
    led_since: LedSince,
) {
    loop {
        {
            let m = metrics.borrow_and_update();
            if m.state == ServerState::Leader {
                if let Ok(mut led) = led_since.lock() {
                    if led.map(|(term, _)| term) != Some(m.current_term) {
                        *led = Some((m.current_term, tokio::time::Instant::now()));
                    }
                }
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// The term this node last led in, and since when.
type LedSince = Arc<std::sync::Mutex<Option<(u64, tokio::time::Instant)>>>;

/// The transport server's stop signal and task.
type Server = (
    oneshot::Sender<()>,
    JoinHandle<Result<(), tonic::transport::Error>>,
);

/// A running node.
pub struct RaftNode {
    id: NodeId,
    addr: SocketAddr,
    raft: Raft,
    state: StateStore,
    /// The last index in the log when the node opened it: entries up to it are replayed
    /// as it starts, and were reported (logged, counted) by the process before.
    boot_index: u64,
    server: Option<Server>,
    /// When each peer last answered this node.
    contacts: crate::network::Contacts,
    /// How this node dials a peer outside openraft's own connections (a leader transfer).
    network: GrpcNetwork,
    /// The term this node last led in, and since when.
    led_since: LedSince,
    /// When a leader or a candidate last reached this node: its elections (`election.rs`)
    /// count the silence since.
    contact: Arc<crate::election::Contact>,
}

/// The last index in `log`, 0 when empty.
async fn last_index<L: openraft::storage::RaftLogStorage<TypeConfig>>(
    log: &mut L,
) -> Result<u64, ClusterError> {
    let state = log
        .get_log_state()
        .await
        .map_err(|e| ClusterError::Io(std::io::Error::other(e.to_string())))?;
    Ok(state.last_log_id.map_or(0, |id| id.index))
}

impl RaftNode {
    /// Opens the node's storage, starts openraft, and serves the Raft transport.
    pub async fn start(config: NodeConfig) -> Result<Self, ClusterError> {
        Self::start_with_network(config, GrpcNetwork::default()).await
    }

    /// As `start`, reaching peers through `network`.
    pub async fn start_with_network(
        config: NodeConfig,
        network: GrpcNetwork,
    ) -> Result<Self, ClusterError> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let mut node = Self::open_with_network(config, addr, network).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(node.transport())
                .serve_with_incoming_shutdown(crate::nodelay_incoming(listener), async {
                    let _ = stopped.await;
                }),
        );
        node.server = Some((stop, server));
        Ok(node)
    }

    /// Opens the node's storage and starts openraft without serving anything: the caller
    /// serves `transport()` at `addr` (the address peers are told), beside its own services.
    pub async fn open(config: NodeConfig, addr: SocketAddr) -> Result<Self, ClusterError> {
        Self::open_with_network(config, addr, GrpcNetwork::default()).await
    }

    /// As `open`, reaching peers through `network` (a simulation's, say).
    pub async fn open_with_network(
        config: NodeConfig,
        addr: SocketAddr,
        network: GrpcNetwork,
    ) -> Result<Self, ClusterError> {
        Self::open_with_peers(config, addr, network, &[]).await
    }

    /// As `open_with_network`; should the snapshot on disk be unusable, the node asks
    /// `peers` (addresses), and the members the damaged file still names, for theirs
    /// before it starts (see `recover.rs`), and stops, naming the file, if none has one.
    pub async fn open_with_peers(
        config: NodeConfig,
        addr: SocketAddr,
        mut network: GrpcNetwork,
        peers: &[String],
    ) -> Result<Self, ClusterError> {
        let raft_config = Arc::new(config.raft.validate()?);
        let contacts = network.contacts();
        let dialer = network.clone();
        let (raft, state, boot_index) = match config.storage {
            Storage::Disk(dir) => {
                let mut log = RocksLogStore::new(open_db(&dir.join("raft-log"))?)
                    .with_append_budget(network.max_append_bytes());
                let (snapshots, archive) = (dir.join("snapshots"), dir.join("archive"));
                // An unusable snapshot is rebuilt from a peer's; the store that opened it
                // (and its archive database) is closed before the store opens again.
                let opened = match StateStore::open(&snapshots, &archive) {
                    Ok(state) => match missing_snapshot(&state, &mut log, &snapshots).await? {
                        None => Ok(state),
                        Some(missing) => Err(missing),
                    },
                    Err(e) => match UnusableSnapshot::within(&e) {
                        Some(unusable) => Err(unusable.clone()),
                        None => return Err(e.into()),
                    },
                };
                let state = match opened {
                    Ok(state) => state,
                    Err(unusable) => {
                        crate::recover::from_peers(
                            config.id,
                            &snapshots,
                            &mut log,
                            &unusable,
                            peers,
                            &mut network,
                        )
                        .await?;
                        StateStore::open(&snapshots, &archive)?
                    }
                };
                let mut log = log.with_stats(state.stats());
                let boot_index = last_index(&mut log).await?;
                let network = network.with_stats(state.stats());
                let raft = Raft::new(config.id, raft_config, network, log, state.clone()).await?;
                (raft, state, boot_index)
            }
            Storage::Memory { log, state } => {
                let mut log = log.with_append_budget(network.max_append_bytes());
                let boot_index = last_index(&mut log).await?;
                let network = network.with_stats(state.stats());
                let raft = Raft::new(config.id, raft_config, network, log, state.clone()).await?;
                (raft, state, boot_index)
            }
        };
        let led_since = Arc::new(std::sync::Mutex::new(None));
        tokio::spawn(watch_leadership(raft.metrics(), led_since.clone()));
        // openraft's election timer stays off until `elections` sees a one-voter cluster:
        // before its first tick, a restarted node would campaign at once.
        raft.runtime_config().elect(false);
        let contact = Arc::new(crate::election::Contact::new());
        tokio::spawn(crate::election::elections(
            raft.clone(),
            contact.clone(),
            dialer.clone(),
            state.stats(),
        ));
        Ok(Self {
            id: config.id,
            addr,
            raft,
            state,
            boot_index,
            server: None,
            contacts,
            network: dialer,
            led_since,
            contact,
        })
    }

    /// The gRPC service peers reach this node's Raft through.
    pub fn transport(&self) -> RaftTransportServer<RaftService> {
        RaftService::new(self.raft.clone(), self.state.clone())
            .with_contact(self.contact.clone())
            .into_server()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Where peers reach this node.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the cluster should record for this node.
    pub fn node(&self) -> RotaNode {
        RotaNode {
            addr: self.addr.to_string(),
        }
    }

    /// The openraft handle, for what this type does not wrap.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Returns once this node, having led in some term from `term` on, leads no more in that
    /// term (another began, it became a follower, or it stopped); pends for as long as it
    /// does not lead. Metrics lag the Raft core, so a proposal's caller passes the term it
    /// saw before proposing, and the leadership that took the proposal is recognised when
    /// the metrics show it, whichever way they lagged.
    pub async fn stopped_leading(&self, term: u64) {
        let mut metrics = self.raft.metrics();
        let mut led: Option<u64> = None;
        loop {
            {
                let now = metrics.borrow_and_update();
                let leading = now.state == ServerState::Leader && now.running_state.is_ok();
                match led {
                    Some(t) if !leading || now.current_term != t => return,
                    None if leading && now.current_term >= term => led = Some(now.current_term),
                    _ => {}
                }
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// Makes a new cluster of `members`; call on one node of a fresh cluster.
    pub async fn initialize(
        &self,
        members: BTreeMap<NodeId, RotaNode>,
    ) -> Result<(), ClusterError> {
        self.raft.initialize(members).await?;
        Ok(())
    }

    /// Adds a non-voting member (a learner): returns once the membership that has it is
    /// committed, without waiting for it to catch up (it does so in the background; see
    /// `matched`).
    pub async fn add_learner(&self, id: NodeId, node: RotaNode) -> Result<(), ClusterError> {
        self.raft
            .add_learner(id, node, false)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    /// Makes the learner `id` a voter (openraft refuses an id that is not a learner).
    pub async fn promote(&self, id: NodeId) -> Result<(), ClusterError> {
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    /// Removes the member `id`: a voter's vote and its place (`voter`), or a learner.
    pub async fn remove_member(&self, id: NodeId, voter: bool) -> Result<(), ClusterError> {
        let change = match voter {
            true => ChangeMembers::RemoveVoters(BTreeSet::from([id])),
            false => ChangeMembers::RemoveNodes(BTreeSet::from([id])),
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    /// Makes `voters` the voting members.
    pub async fn change_membership(&self, voters: BTreeSet<NodeId>) -> Result<(), ClusterError> {
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    /// The last log index the leader knows `id` holds: only on the leader, only for a member.
    pub fn matched(&self, id: NodeId) -> Option<u64> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let replication = metrics.replication.as_ref()?;
        replication.get(&id).copied().flatten().map(|log| log.index)
    }

    /// How long ago the peer `id` last answered this node; `None` if it never has (or is
    /// this node).
    pub fn heard_from(&self, id: NodeId) -> Option<Duration> {
        self.contacts.since(id)
    }

    /// A dialer for peers, as openraft's connections dial them.
    pub(crate) fn network(&self) -> GrpcNetwork {
        self.network.clone()
    }

    /// How long this node has led in `term`; zero if it does not (or only just began).
    pub(crate) fn leading_for(&self, term: u64) -> Duration {
        self.led_since
            .lock()
            .ok()
            .and_then(|led| *led)
            .filter(|(t, _)| *t == term)
            .map_or(Duration::ZERO, |(_, since)| since.elapsed())
    }

    /// Replicates `batch` and returns each command's response once a quorum has it on disk
    /// and it is applied here. On a follower this fails with `NotLeader`, naming the leader.
    pub async fn propose(&self, batch: Batch) -> Result<BatchReply, ClusterError> {
        let written = self.raft.client_write(batch).await.map_err(write_error)?;
        Ok(written.data)
    }

    /// Reads the applied state after confirming leadership with a quorum and waiting until
    /// everything committed before the read is applied.
    pub async fn read_linearizable<R>(
        &self,
        read: impl FnOnce(&Applied) -> R,
    ) -> Result<R, ClusterError> {
        self.raft.ensure_linearizable().await.map_err(|e| match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
                ClusterError::NotLeader {
                    leader: f.leader_id.zip(f.leader_node),
                }
            }
            RaftError::Fatal(fatal) => ClusterError::Fatal(fatal),
            other => ClusterError::Read(Box::new(other)),
        })?;
        Ok(read(&self.state.read()))
    }

    /// The stream of what each entry this replica applies changed (`/api/events`).
    pub fn events(&self) -> Arc<crate::EventHub> {
        self.state.events()
    }

    /// The last index in the log when this node opened it (0: empty): what it replays as
    /// it starts, which the process before it already reported.
    pub fn boot_index(&self) -> u64 {
        self.boot_index
    }

    /// What this node's log and snapshots did since it started.
    pub fn stats(&self) -> Arc<crate::Stats> {
        self.state.stats()
    }

    /// Reads this replica's applied state as it is (a stale read).
    pub fn read_local<R>(&self, read: impl FnOnce(&Applied) -> R) -> R {
        read(&self.state.read())
    }

    /// The applied log id and the state digest, taken together.
    pub fn digest(&self) -> (Option<LogId>, String) {
        self.read_local(|applied| {
            let digest = applied
                .state
                .digest()
                .unwrap_or_else(|e| format!("unavailable: {e}"));
            (applied.last_applied, digest)
        })
    }

    /// Raft metrics as they change: term, leader, log and apply indexes, replication.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, RotaNode>> {
        self.raft.metrics()
    }

    /// Waits until some node leads, and returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, ClusterError> {
        let mut metrics = self.metrics();
        let found = tokio::time::timeout(timeout, async {
            loop {
                if let Some(leader) = metrics.borrow().current_leader {
                    return Ok(leader);
                }
                if metrics.changed().await.is_err() {
                    return Err(ClusterError::Fatal(Fatal::Stopped));
                }
            }
        });
        found.await.map_err(|_| ClusterError::Timeout("a leader"))?
    }

    /// Waits until this node has applied up to `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), ClusterError> {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "applied")
            .await
            .map_err(|_| ClusterError::Timeout("the log to be applied"))?;
        Ok(())
    }

    /// Whether this node leads right now (by its own metrics).
    pub fn is_leader(&self) -> bool {
        self.metrics().borrow().state == ServerState::Leader
    }

    /// Builds a snapshot now and waits for it; the log behind it is purged by policy.
    pub async fn snapshot_now(&self, timeout: Duration) -> Result<LogId, ClusterError> {
        let applied = self.read_local(|a| a.last_applied);
        let target = applied.map(|id| id.index);
        self.raft.trigger().snapshot().await?;
        self.raft
            .wait(Some(timeout))
            .metrics(
                |m| m.snapshot.map(|s| s.index) >= target,
                "snapshot to be built",
            )
            .await
            .map_err(|_| ClusterError::Timeout("a snapshot"))?;
        let snapshot = self.metrics().borrow().snapshot;
        snapshot.ok_or(ClusterError::Timeout("a snapshot"))
    }

    /// The snapshot this node keeps, as a file positioned at its start, and the last log id
    /// it covers; `None` before the first.
    pub fn open_snapshot(&self) -> Result<Option<(std::fs::File, Option<LogId>)>, ClusterError> {
        Ok(self.state.open_snapshot()?)
    }

    /// Purges the log up to `index` (never past the latest snapshot).
    pub async fn purge_log(&self, index: u64) -> Result<(), ClusterError> {
        self.raft
            .trigger()
            .purge_log(index)
            .await
            .map_err(ClusterError::from)
    }

    /// Stops openraft and the server; storage is closed when the last handle drops.
    pub async fn shutdown(mut self) -> Result<(), ClusterError> {
        let stopped = self.raft.shutdown().await.map_err(ClusterError::from);
        if let Some((stop, server)) = self.server.take() {
            let _ = stop.send(());
            let _ = server.await;
        }
        stopped
    }
}

fn write_error(e: WriteError) -> ClusterError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ClusterError::NotLeader {
            leader: f.leader_id.zip(f.leader_node),
        },
        RaftError::Fatal(fatal) => ClusterError::Fatal(fatal),
        other => ClusterError::Write(Box::new(other)),
    }
}

impl Drop for RaftNode {
    fn drop(&mut self) {
        if let Some((stop, server)) = self.server.take() {
            let _ = stop.send(());
            server.abort();
        }
    }
}
