//! rota's replication: the scheduler's commands go through openraft, the log and votes into
//! RocksDB (synced before an append is reported flushed), snapshots into files streamed to
//! followers in chunks, and Raft messages over gRPC.

// openraft's `StorageError` is large, and it is what openraft's storage traits return; our
// helpers return it too rather than box it only to unbox it at every trait method.
#![allow(clippy::result_large_err)]
#![warn(missing_docs)]

mod archive;
pub mod backup;
mod election;
mod events;
pub mod guard;
mod log_store;
mod network;
mod node;
mod recover;
mod state_store;
mod stats;
mod transfer;
mod types;

/// Generated gRPC types of the Raft transport (documented in `proto/rota/raft/v1/`).
#[allow(missing_docs)]
pub mod proto {
    tonic::include_proto!("rota.raft.v1");
}

pub use archive::Archive;
pub use election::{PreVoteAnswer, PreVoteAsk};
pub use events::{Event, EventBody, EventHub, Gone, Position, Tap, EVENT_BACKLOG, EVENT_RING};
pub use log_store::{
    open_db, MemLogStore, RocksLogStore, SimDisk, DEFAULT_MAX_APPEND_BYTES, LOG_FORMAT,
};
pub use network::{
    admit_peer, nodelay_incoming, Dial, GrpcConnection, GrpcNetwork, PeerNode, RaftService,
    MAX_MESSAGE_BYTES,
};
pub use node::{
    default_raft_config, ClusterError, InitializeError, NodeConfig, RaftNode, ReadError, Storage,
    WriteError,
};
pub use openraft::Config as RaftConfig;
pub use openraft::SnapshotPolicy;
pub use stats::{Stage, Stats, StatsSnapshot};
pub use transfer::ElectAsk;
/// What openraft reports of a node: role, term, indexes, membership, and whether it runs.
pub type RaftMetrics = openraft::RaftMetrics<NodeId, RotaNode>;
pub use state_store::{
    inspect_snapshot, Applied, ArchiveReadError, SnapshotSummary, StateStore, UnusableSnapshot,
};
pub use types::{
    Batch, BatchReply, Entry, LogId, NodeId, Raft, RotaNode, SnapshotData, StorageError,
    TypeConfig, Write,
};
