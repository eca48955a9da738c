//! Raft over gRPC: the client side openraft calls to reach peers, and the service that
//! answers them. Requests and responses are openraft's own types encoded with postcard
//! inside a `bytes` field; snapshots go as openraft's chunks (at most
//! `snapshot_max_chunk_size` each), so no message ever holds a whole snapshot.

use crate::proto::raft_transport_client::RaftTransportClient;
use crate::proto::raft_transport_server::RaftTransport;
use crate::proto::RaftMessage;
use crate::state_store::StateStore;
use crate::types::{LogId, NodeId, Raft, RotaNode, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

/// Largest gRPC message either side accepts: room for a full append batch or a chunk.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

fn decode<T: DeserializeOwned>(message: &RaftMessage) -> Result<T, postcard::Error> {
    postcard::from_bytes(&message.payload)
}

/// Opens a (lazy) gRPC channel to `host:port`. The default dials TCP; a simulation passes
/// one that dials its simulated network.
pub type Dial = Arc<dyn Fn(&str) -> Result<Channel, String> + Send + Sync>;

/// Default byte budget of one AppendEntries: the default log entry budget, so that a
/// request replicates within the heartbeat that is openraft's deadline for it.
pub const DEFAULT_MAX_APPEND_BYTES: usize = 4 * 1024 * 1024;

/// Makes a connection per peer; openraft asks for one per replication stream.
#[derive(Clone)]
pub struct GrpcNetwork {
    dial: Option<Dial>,
    max_append_bytes: usize,
}

impl Default for GrpcNetwork {
    fn default() -> Self {
        Self {
            dial: None,
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
        }
    }
}

impl GrpcNetwork {
    /// Peers reached through `dial` instead of TCP.
    pub fn with_dial(dial: Dial) -> Self {
        Self {
            dial: Some(dial),
            ..Self::default()
        }
    }

    /// Bounds each AppendEntries to `bytes` of encoded request (one entry always goes, however
    /// large). openraft 0.9 bounds a request by its count of entries only
    /// (`max_payload_entries`); a leader sends what is over the budget in the next request.
    pub fn with_max_append_bytes(mut self, bytes: usize) -> Self {
        self.max_append_bytes = bytes.max(1);
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcConnection;

    async fn new_client(&mut self, target: NodeId, node: &RotaNode) -> GrpcConnection {
        GrpcConnection {
            target,
            addr: node.addr.clone(),
            dial: self.dial.clone(),
            client: None,
            max_append_bytes: self.max_append_bytes,
        }
    }
}

/// One peer, connected on first use and again after a transport failure.
pub struct GrpcConnection {
    target: NodeId,
    addr: String,
    dial: Option<Dial>,
    client: Option<RaftTransportClient<Channel>>,
    max_append_bytes: usize,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, RotaNode, RaftError<NodeId, E>>>;

impl GrpcConnection {
    async fn client<E: std::error::Error>(&mut self) -> RpcResult<RaftTransportClient<Channel>, E> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let channel = match &self.dial {
            Some(dial) => dial(&self.addr)
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e))))?,
            None => Endpoint::from_shared(format!("http://{}", self.addr))
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?,
        };
        let client = RaftTransportClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Sends one request; a transport failure drops the connection and reports the peer
    /// unreachable, so openraft backs off instead of spinning.
    async fn call<Req, Resp, E>(
        &mut self,
        kind: Rpc,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.send(kind, payload, option).await
    }

    /// Sends an encoded request.
    async fn send<Resp, E>(
        &mut self,
        kind: Rpc,
        payload: Vec<u8>,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut client = self.client().await?;
        let mut request = Request::new(RaftMessage { payload });
        request.set_timeout(option.hard_ttl());
        let reply = match kind {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
        };
        let reply = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status)
                if matches!(
                    status.code(),
                    Code::Unavailable | Code::Unknown | Code::Cancelled
                ) =>
            {
                self.client = None;
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
            Err(status) => return Err(RPCError::Network(NetworkError::new(&status))),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// Encodes `rpc` within `budget` bytes: when it is over and carries several entries, only the
/// longest prefix within the budget (at least one entry) is encoded, and the last log id
/// sent is returned so the answer can say how far the follower got.
fn encode_within(
    mut rpc: AppendEntriesRequest<TypeConfig>,
    budget: usize,
) -> Result<(Vec<u8>, Option<LogId>), postcard::Error> {
    let payload = encode(&rpc)?;
    if payload.len() <= budget || rpc.entries.len() <= 1 {
        return Ok((payload, None));
    }
    let header = AppendEntriesRequest::<TypeConfig> {
        vote: rpc.vote,
        prev_log_id: rpc.prev_log_id,
        entries: Vec::new(),
        leader_commit: rpc.leader_commit,
    };
    // The header, and room for the entry count's varint to grow.
    let mut used = serialized_size(&header)? + 9;
    let mut keep = 0;
    for entry in &rpc.entries {
        used += serialized_size(entry)?;
        if keep > 0 && used > budget {
            break;
        }
        keep += 1;
    }
    rpc.entries.truncate(keep);
    let last = rpc.entries.last().map(|entry| entry.log_id);
    Ok((encode(&rpc)?, last))
}

fn serialized_size<T: Serialize>(value: &T) -> Result<usize, postcard::Error> {
    postcard::serialize_with_flavor::<_, _, usize>(value, postcard::ser_flavors::Size::default())
}

/// A follower's answer to a request cut short by the byte budget: it accepted what was sent,
/// which is part of what openraft asked for.
fn partial(
    response: AppendEntriesResponse<NodeId>,
    sent_up_to: Option<LogId>,
) -> AppendEntriesResponse<NodeId> {
    match (response, sent_up_to) {
        (AppendEntriesResponse::Success, Some(last)) => {
            AppendEntriesResponse::PartialSuccess(Some(last))
        }
        (response, _) => response,
    }
}

/// Why a peer's snapshot could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The peer could not be reached or the transfer broke off.
    #[error("{0}")]
    Transport(String),
    /// The peer answered, but has nothing of use (yet).
    #[error("{0}")]
    Refused(String),
    /// What the peer sent is larger than the asker takes.
    #[error("the snapshot passed {0} bytes")]
    TooLarge(usize),
}

impl GrpcConnection {
    /// The snapshot file `addr` keeps, if it covers the log up to `ask.at_least`; at most
    /// `limit` bytes.
    pub async fn fetch_snapshot(
        &mut self,
        ask: SnapshotAsk,
        limit: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, FetchError> {
        let payload = encode(&ask).map_err(|e| FetchError::Transport(e.to_string()))?;
        let mut client = self
            .client::<openraft::error::Infallible>()
            .await
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        let mut request = Request::new(RaftMessage { payload });
        request.set_timeout(timeout);
        let mut stream = match client.fetch_snapshot(request).await {
            Ok(stream) => stream.into_inner(),
            Err(status) if status.code() == Code::FailedPrecondition => {
                return Err(FetchError::Refused(status.message().to_owned()))
            }
            Err(status) => {
                self.client = None;
                return Err(FetchError::Transport(status.to_string()));
            }
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|status| FetchError::Transport(status.to_string()))?
        {
            bytes.extend_from_slice(&chunk.payload);
            if bytes.len() > limit {
                return Err(FetchError::TooLarge(limit));
            }
        }
        Ok(bytes)
    }
}

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftNetwork<TypeConfig> for GrpcConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        let (payload, sent_up_to) = encode_within(rpc, self.max_append_bytes)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let response = self.send(Rpc::AppendEntries, payload, &option).await?;
        Ok(partial(response, sent_up_to))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Rpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}

/// What a node asks a peer for when its own snapshot cannot be used.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct SnapshotAsk {
    /// The lowest last-log index of use: the asker's log was purged up to it.
    pub at_least: u64,
}

/// How much of a snapshot file goes in one message of `FetchSnapshot`.
const FETCH_CHUNK_BYTES: usize = 1024 * 1024;

/// The gRPC service a node runs so peers can reach its Raft.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
    state: StateStore,
}

impl RaftService {
    /// Serves `raft`, whose state machine is `state`, to its peers.
    pub fn new(raft: Raft, state: StateStore) -> Self {
        Self { raft, state }
    }

    /// The tonic server wrapper, with message limits set.
    pub fn into_server(self) -> crate::proto::raft_transport_server::RaftTransportServer<Self> {
        crate::proto::raft_transport_server::RaftTransportServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

fn bad_request(e: postcard::Error) -> Status {
    Status::invalid_argument(format!("undecodable raft message: {e}"))
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    let payload =
        encode(result).map_err(|e| Status::internal(format!("unencodable raft reply: {e}")))?;
    Ok(Response::new(RaftMessage { payload }))
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode(request.get_ref()).map_err(bad_request)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<NodeId> = decode(request.get_ref()).map_err(bad_request)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> =
            decode(request.get_ref()).map_err(bad_request)?;
        reply(&self.raft.install_snapshot(rpc).await)
    }

    type FetchSnapshotStream = ReceiverStream<Result<RaftMessage, Status>>;

    async fn fetch_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<Self::FetchSnapshotStream>, Status> {
        let ask: SnapshotAsk = decode(request.get_ref()).map_err(bad_request)?;
        let kept = self.state.kept_snapshot();
        if kept.map(|id| id.index) < Some(ask.at_least) {
            // Asked to build a newer one; the asker tries again shortly.
            let _ = self.raft.trigger().snapshot().await;
            return Err(Status::failed_precondition(format!(
                "this node's snapshot covers the log up to {}, and {} is asked for: building a newer one, ask again",
                kept.map_or(0, |id| id.index),
                ask.at_least
            )));
        }
        let file = self
            .state
            .snapshot_file()
            .map_err(|e| Status::internal(format!("snapshot: {e}")))?
            .ok_or_else(|| Status::failed_precondition("this node keeps no snapshot"))?;
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        tokio::task::spawn_blocking(move || send_file(file, &sender));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

/// Sends `file` in chunks until its end, the receiver leaves, or a read fails (sent last).
fn send_file(
    mut file: std::fs::File,
    sender: &tokio::sync::mpsc::Sender<Result<RaftMessage, Status>>,
) {
    use std::io::Read;
    loop {
        let mut chunk = vec![0u8; FETCH_CHUNK_BYTES];
        let read = match file.read(&mut chunk) {
            Ok(0) => return,
            Ok(read) => read,
            Err(e) => {
                let _ = sender.blocking_send(Err(Status::internal(format!("snapshot: {e}"))));
                return;
            }
        };
        chunk.truncate(read);
        if sender
            .blocking_send(Ok(RaftMessage { payload: chunk }))
            .is_err()
        {
            return;
        }
    }
}

/// Accepted connections from `listener` with Nagle's algorithm off. A listener tonic did not
/// bind leaves it on, and a small response then waits for the peer's delayed ACK (~40 ms).
pub fn nodelay_incoming(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Batch;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, Vote};
    use rota_state_machine::Command;

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// An AppendEntries of `entries` entries, each a batch of `ticks` one-byte commands.
    fn request(entries: u64, ticks: usize) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(0)),
            entries: (1..=entries)
                .map(|index| Entry::<TypeConfig> {
                    log_id: log_id(index),
                    payload: EntryPayload::Normal(Batch::new(
                        0,
                        std::iter::repeat_n(Command::Tick, ticks),
                    )),
                })
                .collect(),
            leader_commit: Some(log_id(0)),
        }
    }

    #[test]
    fn a_request_within_its_budget_goes_whole() {
        let rpc = request(8, 100);
        let whole = encode(&rpc).expect("encodes");
        let (payload, cut) = encode_within(rpc, whole.len()).expect("encodes");
        assert_eq!(payload, whole);
        assert_eq!(cut, None);
    }

    #[test]
    fn a_request_over_its_budget_carries_the_prefix_that_fits() {
        let rpc = request(8, 1_000);
        let entry = serialized_size(&rpc.entries[0]).expect("sized");
        let budget = 3 * entry + 100;
        let (payload, cut) = encode_within(rpc, budget).expect("encodes");
        assert!(payload.len() <= budget, "{} bytes", payload.len());
        let sent: AppendEntriesRequest<TypeConfig> =
            postcard::from_bytes(&payload).expect("decodes");
        assert_eq!(sent.entries.len(), 3);
        assert_eq!(cut, Some(log_id(3)));
        assert_eq!(sent.prev_log_id, Some(log_id(0)));
    }

    #[test]
    fn one_entry_over_the_budget_still_goes() {
        let (payload, cut) = encode_within(request(4, 10_000), 1_000).expect("encodes");
        let sent: AppendEntriesRequest<TypeConfig> =
            postcard::from_bytes(&payload).expect("decodes");
        assert_eq!(sent.entries.len(), 1);
        assert_eq!(cut, Some(log_id(1)));
    }

    #[test]
    fn a_cut_request_that_succeeds_is_a_partial_success() {
        assert_eq!(
            partial(AppendEntriesResponse::Success, Some(log_id(3))),
            AppendEntriesResponse::PartialSuccess(Some(log_id(3)))
        );
        assert_eq!(
            partial(AppendEntriesResponse::Success, None),
            AppendEntriesResponse::Success
        );
        assert_eq!(
            partial(AppendEntriesResponse::Conflict, Some(log_id(3))),
            AppendEntriesResponse::Conflict
        );
    }
}
