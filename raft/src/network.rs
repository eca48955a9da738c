//! Raft over gRPC: the client side openraft calls to reach peers, and the service that
//! answers them. Requests and responses are openraft's own types encoded with postcard
//! inside a `bytes` field; snapshots go as openraft's chunks (at most
//! `snapshot_max_chunk_size` each), so no message ever holds a whole snapshot.

use crate::proto::raft_transport_client::RaftTransportClient;
use crate::proto::raft_transport_server::RaftTransport;
use crate::proto::RaftMessage;
use crate::state_store::StateStore;
use crate::types::{NodeId, Raft, RotaNode, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

/// Largest gRPC message either side accepts: room for a full append batch or a chunk.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

pub(crate) fn decode<T: DeserializeOwned>(message: &RaftMessage) -> Result<T, postcard::Error> {
    postcard::from_bytes(&message.payload)
}

/// Opens a (lazy) gRPC channel to `host:port`. The default dials TCP; a simulation passes
/// one that dials its simulated network.
pub type Dial = Arc<dyn Fn(&str) -> Result<Channel, String> + Send + Sync>;

/// When each peer last answered this node (any answer, even a refusal): what tells a live
/// member from one that only looks caught up because nothing was written since it left.
#[derive(Clone, Default)]
pub struct Contacts(Arc<std::sync::Mutex<std::collections::BTreeMap<NodeId, Instant>>>);

impl Contacts {
    fn heard(&self, peer: NodeId) {
        if let Ok(mut heard) = self.0.lock() {
            heard.insert(peer, Instant::now());
        }
    }

    /// How long ago `peer` last answered; `None` if it never has.
    pub fn since(&self, peer: NodeId) -> Option<Duration> {
        let heard = self.0.lock().ok()?;
        heard.get(&peer).map(|at| at.elapsed())
    }
}

/// Makes a connection per peer; openraft asks for one per replication stream.
#[derive(Clone)]
pub struct GrpcNetwork {
    dial: Option<Dial>,
    max_append_bytes: usize,
    contacts: Contacts,
    /// Where replication's round trips are timed.
    stats: Arc<crate::Stats>,
}

impl Default for GrpcNetwork {
    fn default() -> Self {
        Self {
            dial: None,
            max_append_bytes: crate::log_store::DEFAULT_MAX_APPEND_BYTES,
            contacts: Contacts::default(),
            stats: Arc::default(),
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

    /// Bounds the entries of each AppendEntries to `bytes`, encoded (one entry always goes,
    /// however large): the node's log reader hands openraft no more per request (see
    /// `RocksLogStore::with_append_budget`).
    pub fn with_max_append_bytes(mut self, bytes: usize) -> Self {
        self.max_append_bytes = bytes.max(1);
        self
    }

    /// Times its connections' AppendEntries round trips into `stats`.
    pub(crate) fn with_stats(mut self, stats: Arc<crate::Stats>) -> Self {
        self.stats = stats;
        self
    }

    /// The byte budget of one AppendEntries' entries.
    pub fn max_append_bytes(&self) -> usize {
        self.max_append_bytes
    }

    /// When each peer last answered the connections this factory made.
    pub fn contacts(&self) -> Contacts {
        self.contacts.clone()
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
            silent_since: None,
            contacts: self.contacts.clone(),
            stats: self.stats.clone(),
        }
    }
}

/// One peer, connected on first use and again after a transport failure.
pub struct GrpcConnection {
    target: NodeId,
    addr: String,
    dial: Option<Dial>,
    client: Option<RaftTransportClient<Channel>>,
    /// When the oldest call still without an answer on this connection was sent.
    silent_since: Option<Instant>,
    /// Where an answer is noted.
    contacts: Contacts,
    /// Where AppendEntries round trips are timed.
    stats: Arc<crate::Stats>,
}

/// How long a connection may go without any answer while calls are sent on it before it is
/// dropped and dialled again. openraft gives up on each call at its own deadline, which
/// resets only that call's stream; a connection whose peer went away without a word (a
/// partition, a host gone) would otherwise be kept for good and every later call would time
/// out on it too.
const REDIAL_AFTER_SILENCE: Duration = Duration::from_secs(1);

type RpcResult<T, E> = Result<T, RPCError<NodeId, RotaNode, RaftError<NodeId, E>>>;

impl GrpcConnection {
    pub(crate) async fn client<E: std::error::Error>(
        &mut self,
    ) -> RpcResult<RaftTransportClient<Channel>, E> {
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
    ///
    /// The request carries no deadline of its own: openraft times every call it makes
    /// (AppendEntries at the heartbeat interval) and drops the future when that passes,
    /// which resets the one stream and keeps the connection. A gRPC deadline here raced
    /// openraft's, and when it won, a single slow answer read as an unreachable peer: the
    /// connection was dropped and openraft stopped replicating to that follower for its
    /// 500 ms backoff, longer than the follower waits before it calls an election. Under a
    /// steady 5,000 jobs/s that cost a few elections every half hour (see
    /// docs/replication.md). A connection silent for `REDIAL_AFTER_SILENCE` is dialled again.
    async fn call<Req, Resp, E>(&mut self, kind: Rpc, request: &Req) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let now = Instant::now();
        match self.silent_since {
            Some(since) if now.duration_since(since) >= REDIAL_AFTER_SILENCE => {
                self.client = None;
                self.silent_since = Some(now);
            }
            Some(_) => {}
            None => self.silent_since = Some(now),
        }
        let mut client = self.client().await?;
        let request = Request::new(RaftMessage { payload });
        let reply = match kind {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
        };
        // An answer, even a failure, is a connection that works.
        self.silent_since = None;
        let reply = match reply {
            Ok(reply) => {
                self.contacts.heard(self.target);
                reply.into_inner()
            }
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
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        if rpc.entries.is_empty() {
            return self.call(Rpc::AppendEntries, &rpc).await;
        }
        let started = Instant::now();
        let answer = self.call(Rpc::AppendEntries, &rpc).await;
        self.stats
            .timed(crate::Stage::Replicated, 1, started.elapsed());
        answer
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Rpc::InstallSnapshot, &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(Rpc::Vote, &rpc).await
    }
}

/// The gRPC service a node runs so peers can reach its Raft.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
    /// What `FetchSnapshot` sends from, and how many are sent at once.
    snapshots: crate::recover::SnapshotSource,
    /// When a leader or a candidate last reached this node (its prompt elections).
    contact: Option<Arc<crate::election::Contact>>,
    /// Where serving AppendEntries is timed.
    stats: Arc<crate::Stats>,
}

impl RaftService {
    /// Serves `raft`, whose state machine is `state`, to its peers.
    pub fn new(raft: Raft, state: StateStore) -> Self {
        let stats = state.stats();
        let snapshots = crate::recover::SnapshotSource::new(raft.clone(), state);
        Self {
            raft,
            snapshots,
            contact: None,
            stats,
        }
    }

    /// Tells `contact` when a leader or a candidate reaches this node, and which candidates
    /// it refused (its elections, `election.rs`).
    pub(crate) fn with_contact(mut self, contact: Arc<crate::election::Contact>) -> Self {
        self.contact = Some(contact);
        self
    }

    /// Notes a leader in `term` reaching this node, unless that term is behind its own (a
    /// deposed leader's message keeps no one from campaigning).
    fn leader_reached(&self, term: u64) {
        if let Some(contact) = &self.contact {
            if term >= self.raft.metrics().borrow().current_term {
                contact.leader_heard();
            }
        }
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

/// A peer's request that no honest member sends: refused, and logged, before openraft sees it.
fn refused(why: crate::guard::Refused) -> Status {
    tracing::warn!(%why, "refused a raft request");
    Status::invalid_argument(format!("refused raft request: {why}"))
}

/// The node a peer's TLS certificate names. The peer listener's check puts it in every
/// request's extensions; the service then holds what the request claims to it. Without it
/// (a listener without TLS, a simulation) nothing is checked: anyone who reaches the port
/// is a peer, which is what `rota agent --insecure` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerNode(pub NodeId);

/// A request whose sender claims to be `claimed` (the leader of an AppendEntries or
/// InstallSnapshot, the candidate of a Vote) must come from that node's certificate: one
/// member cannot speak for another.
fn sent_by<T>(request: &Request<T>, claimed: Option<NodeId>) -> Result<(), Status> {
    match request.extensions().get::<PeerNode>() {
        Some(PeerNode(peer)) if claimed != Some(*peer) => {
            tracing::warn!(
                peer,
                ?claimed,
                "refused a raft request sent in another node's name"
            );
            Err(Status::permission_denied(format!(
                "node {peer}'s certificate cannot send a request in the name of node {}",
                claimed.map_or_else(|| "(none)".to_owned(), |id| id.to_string())
            )))
        }
        _ => Ok(()),
    }
}

impl RaftService {
    /// The sender's certificate must name a node of this node's membership: the latest
    /// configuration it has in its log, learners (a node being added) included. A node
    /// that belongs to no cluster yet (it is being added, or waits for `cluster init`)
    /// hears any node of the CA. A removed node whose certificate is still valid can no
    /// longer move a term. The price: a follower that missed the change adding the node
    /// that now leads cannot hear that leader (docs/security.md says what to do).
    fn check_member<T>(&self, request: &Request<T>) -> Result<(), Status> {
        match request.extensions().get::<PeerNode>() {
            Some(PeerNode(peer)) => admit_peer(&self.raft.metrics().borrow(), *peer),
            None => Ok(()),
        }
    }
}

/// Whether node `peer` may call this node as a peer: it is in the membership `metrics`
/// shows (the latest configuration in the log, learners included), or this node is in no
/// cluster yet. See `RaftService::check_member`.
pub fn admit_peer(
    metrics: &openraft::RaftMetrics<NodeId, RotaNode>,
    peer: NodeId,
) -> Result<(), Status> {
    let membership = metrics.membership_config.membership();
    if membership.get_node(&peer).is_some() || membership.nodes().next().is_none() {
        return Ok(());
    }
    tracing::warn!(peer, "refused a call from a node that is not a member");
    Err(Status::permission_denied(format!(
        "node {peer} is not a member of this cluster"
    )))
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
        let started = Instant::now();
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode(request.get_ref()).map_err(bad_request)?;
        sent_by(&request, rpc.vote.leader_id().voted_for())?;
        self.check_member(&request)?;
        crate::guard::append(&rpc).map_err(refused)?;
        let carried = !rpc.entries.is_empty();
        let term = rpc.vote.leader_id().term;
        self.leader_reached(term);
        let answer = self.raft.append_entries(rpc).await;
        if carried {
            self.stats
                .timed(crate::Stage::AppendServed, 1, started.elapsed());
        }
        if let Ok(answer) = &answer {
            if !matches!(answer, AppendEntriesResponse::HigherVote(_)) {
                self.leader_reached(term);
            }
        }
        reply(&answer)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<NodeId> = decode(request.get_ref()).map_err(bad_request)?;
        sent_by(&request, rpc.vote.leader_id().voted_for())?;
        self.check_member(&request)?;
        crate::guard::vote_request(&rpc).map_err(refused)?;
        let (term, last_log) = (rpc.vote.leader_id().term, rpc.last_log_id);
        let answer = self.raft.vote(rpc).await;
        if let (Some(contact), Ok(answer)) = (&self.contact, &answer) {
            if answer.vote_granted {
                contact.vote_granted();
            } else {
                contact.vote_refused(term, answer.last_log_id > last_log);
            }
        }
        reply(&answer)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> =
            decode(request.get_ref()).map_err(bad_request)?;
        sent_by(&request, rpc.vote.leader_id().voted_for())?;
        self.check_member(&request)?;
        crate::guard::install(&rpc).map_err(refused)?;
        self.leader_reached(rpc.vote.leader_id().term);
        reply(&self.raft.install_snapshot(rpc).await)
    }

    type FetchSnapshotStream = ReceiverStream<Result<RaftMessage, Status>>;

    async fn fetch_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<Self::FetchSnapshotStream>, Status> {
        self.check_member(&request)?;
        let ask = decode(request.get_ref()).map_err(bad_request)?;
        Ok(Response::new(self.snapshots.serve(ask).await?))
    }

    async fn elect(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let ask: crate::transfer::ElectAsk = decode(request.get_ref()).map_err(bad_request)?;
        sent_by(&request, Some(ask.leader))?;
        self.check_member(&request)?;
        crate::transfer::answer(&self.raft, ask).await?;
        reply(&())
    }

    async fn pre_vote(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let ask: crate::election::PreVoteAsk = decode(request.get_ref()).map_err(bad_request)?;
        sent_by(&request, Some(ask.candidate))?;
        self.check_member(&request)?;
        let Some(contact) = &self.contact else {
            return Err(Status::unavailable(
                "this node takes no part in elections yet",
            ));
        };
        reply(&crate::election::answer_pre_vote(&self.raft, contact, ask).await)
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
    use crate::proto::raft_transport_server::RaftTransportServer;
    use openraft::Vote;

    /// A peer that answers every AppendEntries with success, `delay` late.
    struct SlowPeer {
        delay: Duration,
    }

    #[tonic::async_trait]
    impl RaftTransport for SlowPeer {
        async fn append_entries(
            &self,
            _request: Request<RaftMessage>,
        ) -> Result<Response<RaftMessage>, Status> {
            tokio::time::sleep(self.delay).await;
            let answer: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
                Ok(AppendEntriesResponse::Success);
            reply(&answer)
        }

        async fn vote(&self, _: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn install_snapshot(
            &self,
            _: Request<RaftMessage>,
        ) -> Result<Response<RaftMessage>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        type FetchSnapshotStream = ReceiverStream<Result<RaftMessage, Status>>;

        async fn fetch_snapshot(
            &self,
            _: Request<RaftMessage>,
        ) -> Result<Response<Self::FetchSnapshotStream>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn elect(&self, _: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn pre_vote(&self, _: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
    }

    fn heartbeat() -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            leader_commit: None,
            entries: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_slow_answer_is_not_taken_for_an_unreachable_peer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let peer = SlowPeer {
            delay: Duration::from_millis(300),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RaftTransportServer::new(peer))
                .serve_with_incoming(nodelay_incoming(listener)),
        );
        let mut network = GrpcNetwork::default();
        let mut peer = network.new_client(2, &RotaNode { addr }).await;

        // openraft gives the call 50 ms; the answer takes 300. The call itself waits for it
        // (openraft's own timer is what gives up, as below), instead of failing as a lost
        // peer at 50 ms.
        let option = RPCOption::new(Duration::from_millis(50));
        let answer = peer.append_entries(heartbeat(), option.clone()).await;
        assert!(
            matches!(answer, Ok(AppendEntriesResponse::Success)),
            "{answer:?}"
        );

        // Given up by openraft's timer: the connection stays, and the next call uses it.
        let given_up = tokio::time::timeout(
            option.hard_ttl(),
            peer.append_entries(heartbeat(), option.clone()),
        )
        .await;
        assert!(given_up.is_err(), "the slow answer came within 50 ms");
        assert!(
            peer.client.is_some(),
            "a timed-out call dropped the connection"
        );
        let answer = peer.append_entries(heartbeat(), option).await;
        assert!(
            matches!(answer, Ok(AppendEntriesResponse::Success)),
            "{answer:?}"
        );
    }
}
