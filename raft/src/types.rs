//! The openraft type configuration: what a log entry carries and what applying it answers.

use rota_state_machine::{ClientRequest, Command, Response};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A cluster member's id.
pub type NodeId = u64;

/// What the cluster knows of a member: where its Raft transport listens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotaNode {
    /// `host:port` of the node's gRPC server.
    pub addr: String,
}

impl fmt::Display for RotaNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

/// One write in a batch: a command of the node's own (a tick), or a client's command with
/// its session, which the state machine answers once however often it is retried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Write {
    /// A command without a session: the node's own (a tick), or a client's that gave none.
    Command(Command),
    /// A client's command under its session (client id and sequence).
    Request(ClientRequest),
}

impl From<Command> for Write {
    fn from(command: Command) -> Self {
        Write::Command(command)
    }
}

impl From<ClientRequest> for Write {
    fn from(request: ClientRequest) -> Self {
        Write::Request(request)
    }
}

/// One log entry's application data: writes stamped with the leader's clock.
/// Many client writes share an entry (group commit); each gets its own response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The leader's wall clock when it proposed the batch, clamped to never go backwards.
    pub now_ms: u64,
    /// The client writes, applied in order.
    pub writes: Vec<Write>,
}

impl Batch {
    /// A batch of `writes` at log time `now_ms`.
    pub fn new<W: Into<Write>>(now_ms: u64, writes: impl IntoIterator<Item = W>) -> Self {
        Self {
            now_ms,
            writes: writes.into_iter().map(Into::into).collect(),
        }
    }
}

/// The responses to a batch's commands, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReply {
    /// One response per write, in the batch's order.
    pub responses: Vec<Response>,
}

/// A snapshot as openraft streams it to and from the store: a file on a node's disk, or
/// bytes in memory for the in-memory store (the simulations'), because a file's reads and
/// writes run on tokio's blocking threads, whose timing no seed can replay.
#[derive(Debug)]
pub enum SnapshotData {
    /// A snapshot file.
    File(tokio::fs::File),
    /// A snapshot's bytes.
    Memory(std::io::Cursor<Vec<u8>>),
}

impl tokio::io::AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SnapshotData::File(file) => Pin::new(file).poll_read(cx, buf),
            SnapshotData::Memory(bytes) => Pin::new(bytes).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for SnapshotData {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            SnapshotData::File(file) => Pin::new(file).poll_write(cx, buf),
            SnapshotData::Memory(bytes) => Pin::new(bytes).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SnapshotData::File(file) => Pin::new(file).poll_flush(cx),
            SnapshotData::Memory(bytes) => Pin::new(bytes).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SnapshotData::File(file) => Pin::new(file).poll_shutdown(cx),
            SnapshotData::Memory(bytes) => Pin::new(bytes).poll_shutdown(cx),
        }
    }
}

impl tokio::io::AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: std::io::SeekFrom) -> std::io::Result<()> {
        match self.get_mut() {
            SnapshotData::File(file) => Pin::new(file).start_seek(position),
            SnapshotData::Memory(bytes) => Pin::new(bytes).start_seek(position),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        match self.get_mut() {
            SnapshotData::File(file) => Pin::new(file).poll_complete(cx),
            SnapshotData::Memory(bytes) => Pin::new(bytes).poll_complete(cx),
        }
    }
}

openraft::declare_raft_types!(
    /// rota's Raft types: batches of scheduler commands; snapshots are files (or bytes, in
    /// memory).
    pub TypeConfig:
        D = Batch,
        R = BatchReply,
        NodeId = NodeId,
        Node = RotaNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotData,
);

/// openraft's Raft handle for rota.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id in rota's type config.
pub type LogId = openraft::LogId<NodeId>;
/// A storage error in rota's type config.
pub type StorageError = openraft::StorageError<NodeId>;
/// A log entry in rota's type config.
pub type Entry = openraft::Entry<TypeConfig>;
