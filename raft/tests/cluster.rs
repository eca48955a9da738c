//! Three Raft nodes in one process over real gRPC on 127.0.0.1, RocksDB in temporary
//! directories: replication, leader failover, catch-up through the log and through a
//! snapshot install, and equal state digests at the end.

use rota_raft::{
    default_raft_config, Batch, ClusterError, GrpcNetwork, NodeConfig, NodeId, RaftNode, Storage,
};
use rota_state_machine::{Command, JobSpec, Reply};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(20);
const BATCH: usize = 100;

fn config(id: NodeId, listen: SocketAddr, dir: &Path) -> NodeConfig {
    let mut raft = default_raft_config();
    // Keep no log behind a snapshot, so a purge forces followers onto snapshot install.
    raft.max_in_snapshot_log_to_keep = 0;
    NodeConfig {
        id,
        listen,
        storage: Storage::Disk(dir.to_path_buf()),
        raft,
    }
}

async fn start(id: NodeId, listen: SocketAddr, dir: &Path) -> RaftNode {
    start_with(id, listen, dir, GrpcNetwork::default()).await
}

async fn start_with(id: NodeId, listen: SocketAddr, dir: &Path, network: GrpcNetwork) -> RaftNode {
    RaftNode::start_with_network(config(id, listen, dir), network)
        .await
        .expect("node starts")
}

/// Three nodes, each in its directory of `dirs`, reaching their peers through `network`,
/// founded as one cluster.
async fn founded(dirs: &[TempDir], network: &GrpcNetwork) -> Vec<Option<RaftNode>> {
    let any_port: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let node = start_with(id, any_port, &dir_of(dirs, id), network.clone()).await;
        nodes.push(Some(node));
    }
    let members = nodes.iter().flatten().map(|n| (n.id(), n.node())).collect();
    nodes[0]
        .as_ref()
        .expect("node 1")
        .initialize(members)
        .await
        .expect("initialize");
    nodes
}

/// Shuts down a node that does not lead; returns its id.
async fn stop_a_follower(nodes: &mut [Option<RaftNode>]) -> NodeId {
    let leader = leader_of(nodes).await.id();
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let stopped = nodes[(follower - 1) as usize]
        .take()
        .expect("follower running");
    stopped.shutdown().await.expect("clean shutdown");
    follower
}

fn addrs_of(nodes: &[Option<RaftNode>]) -> BTreeMap<NodeId, SocketAddr> {
    nodes.iter().flatten().map(|n| (n.id(), n.addr())).collect()
}

fn enqueue(i: usize) -> Command {
    let mut spec = JobSpec::new(
        format!("tenant-{}", i % 7),
        "email",
        format!("job {i}").into_bytes(),
    );
    spec.idempotency_key = Some(format!("key-{i}"));
    Command::Enqueue { spec }
}

/// Proposes `range` as batches through whichever node leads, retrying on a leader change.
async fn propose_all(nodes: &[Option<RaftNode>], range: std::ops::Range<usize>, clock: &mut u64) {
    let mut next = range.start;
    while next < range.end {
        let end = (next + BATCH).min(range.end);
        *clock += 10;
        let batch = Batch::new(*clock, (next..end).map(enqueue));
        let leader = leader_of(nodes).await;
        match leader.propose(batch).await {
            Ok(reply) => {
                assert_eq!(reply.responses.len(), end - next);
                for response in &reply.responses {
                    assert!(
                        matches!(response, Ok(Reply::Enqueued { .. })),
                        "{response:?}"
                    );
                }
                next = end;
            }
            Err(ClusterError::NotLeader { .. }) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("propose failed: {e}"),
        }
    }
}

/// The running node that leads in the highest term (a deposed leader may not know yet).
async fn leader_of(nodes: &[Option<RaftNode>]) -> &RaftNode {
    let any = nodes.iter().flatten().next().expect("a running node");
    any.wait_for_leader(WAIT).await.expect("a leader");
    for _ in 0..200 {
        let leader = nodes
            .iter()
            .flatten()
            .filter(|n| n.is_leader())
            .max_by_key(|n| n.metrics().borrow().current_term);
        if let Some(leader) = leader {
            return leader;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no running node leads");
}

/// With writes stopped, waits until every running node reports the same applied log id,
/// then checks they report the same state digest there.
async fn assert_replicas_agree(nodes: &[Option<RaftNode>]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let digests: Vec<_> = nodes
            .iter()
            .flatten()
            .map(|n| (n.id(), n.digest()))
            .collect();
        let (first_id, (first_applied, first_digest)) = &digests[0];
        let same_index = digests
            .iter()
            .all(|(_, (applied, _))| applied == first_applied);
        if same_index {
            for (id, (_, digest)) in &digests {
                assert_eq!(
                    digest, first_digest,
                    "node {id} disagrees with node {first_id} at {first_applied:?}"
                );
            }
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replicas never reached the same index: {digests:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn dir_of(dirs: &[TempDir], id: NodeId) -> PathBuf {
    dirs[(id - 1) as usize].path().to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_fail_over_and_catch_up() {
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().expect("temp dir")).collect();
    let mut nodes = founded(&dirs, &GrpcNetwork::default()).await;
    let addrs = addrs_of(&nodes);
    let mut clock = 1_700_000_000_000;

    propose_all(&nodes, 0..10_000, &mut clock).await;
    assert_replicas_agree(&nodes).await;

    // Stop the leader: the other two elect a new one and writes go on.
    let old = leader_of(&nodes).await.id();
    let stopped = nodes[(old - 1) as usize].take().expect("leader running");
    stopped.shutdown().await.expect("clean shutdown");
    propose_all(&nodes, 10_000..11_000, &mut clock).await;
    let new = leader_of(&nodes).await.id();
    assert_ne!(new, old, "a new leader took over");

    // The old leader comes back from its directory and catches up through the log.
    nodes[(old - 1) as usize] = Some(start(old, addrs[&old], &dir_of(&dirs, old)).await);
    assert_replicas_agree(&nodes).await;
    let restarted = nodes[(old - 1) as usize].as_ref().expect("restarted");
    assert!(
        restarted.metrics().borrow().snapshot.is_none(),
        "caught up through the log alone"
    );

    // A follower misses writes that the leader then snapshots and purges: it must catch up
    // through a snapshot install.
    let follower = stop_a_follower(&mut nodes).await;
    propose_all(&nodes, 11_000..13_000, &mut clock).await;
    let leader_node = leader_of(&nodes).await;
    let snapshot = leader_node.snapshot_now(WAIT).await.expect("snapshot");
    leader_node.purge_log(snapshot.index).await.expect("purge");
    let purged_to = snapshot.index;
    leader_node
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.purged.map(|p| p.index) >= Some(purged_to),
            "log purged",
        )
        .await
        .expect("the leader purges its log");
    nodes[(follower - 1) as usize] =
        Some(start(follower, addrs[&follower], &dir_of(&dirs, follower)).await);
    assert_replicas_agree(&nodes).await;
    let caught_up = nodes[(follower - 1) as usize].as_ref().expect("follower");
    let installed = caught_up.metrics().borrow().snapshot;
    assert!(
        installed.map(|s| s.index) >= Some(purged_to),
        "installed the leader's snapshot: {installed:?}"
    );

    let jobs = leader_of(&nodes)
        .await
        .read_linearizable(|a| a.state.job_count())
        .await
        .expect("read");
    assert_eq!(jobs, 13_000);
    for node in nodes.into_iter().flatten() {
        node.shutdown().await.expect("shutdown");
    }
}

/// openraft bounds an AppendEntries by its count of entries only; the network cuts it to its
/// byte budget and answers for the part sent. With a budget below one entry, a follower that
/// missed a hundred entries catches up one entry per request, and ends equal to the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_through_appends_cut_to_their_byte_budget() {
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().expect("temp dir")).collect();
    let small = GrpcNetwork::default().with_max_append_bytes(1_024);
    let mut nodes = founded(&dirs, &small).await;
    let addrs = addrs_of(&nodes);
    let mut clock = 1_700_000_000_000;
    propose_all(&nodes, 0..1_000, &mut clock).await;

    let follower = stop_a_follower(&mut nodes).await;
    // A hundred entries of a hundred jobs (several KiB each) behind.
    propose_all(&nodes, 1_000..11_000, &mut clock).await;
    let restarted = start_with(follower, addrs[&follower], &dir_of(&dirs, follower), small).await;
    nodes[(follower - 1) as usize] = Some(restarted);
    assert_replicas_agree(&nodes).await;
    let caught_up = nodes[(follower - 1) as usize].as_ref().expect("follower");
    assert!(
        caught_up.metrics().borrow().snapshot.is_none(),
        "caught up through the log, not a snapshot"
    );
    assert_eq!(caught_up.read_local(|a| a.state.job_count()), 11_000);
}

/// One forged AppendEntries with a term at the top of its range used to be persisted, spread
/// to every node and make each Raft core panic at its next election. Now each node refuses
/// such requests before openraft sees them: terms stay, and an election after still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_terms_from_the_wire_are_refused_and_elections_go_on() {
    use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
    use openraft::{CommittedLeaderId, LogId, SnapshotMeta, Vote};
    use rota_raft::proto::raft_transport_client::RaftTransportClient;
    use rota_raft::proto::RaftMessage;
    use rota_raft::TypeConfig;

    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().expect("temp dir")).collect();
    let mut nodes = founded(&dirs, &GrpcNetwork::default()).await;
    let mut clock = 1_700_000_000_000;
    propose_all(&nodes, 0..100, &mut clock).await;
    let term = leader_of(&nodes).await.metrics().borrow().current_term;

    let top = u64::MAX;
    let forged_append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(top, 99),
        prev_log_id: None,
        entries: vec![],
        leader_commit: Some(LogId::new(CommittedLeaderId::new(top, 99), top)),
    };
    let forged_vote = VoteRequest::<NodeId> {
        vote: Vote::new(top, 99),
        last_log_id: None,
    };
    let forged_install = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(top, 99),
        meta: SnapshotMeta::default(),
        offset: top,
        data: vec![1, 2, 3],
        done: true,
    };
    let message = |bytes: Vec<u8>| tonic::Request::new(RaftMessage { payload: bytes });
    for node in nodes.iter().flatten() {
        let mut client = RaftTransportClient::connect(format!("http://{}", node.addr()))
            .await
            .expect("connect");
        let refusals = [
            client
                .append_entries(message(postcard::to_stdvec(&forged_append).expect("enc")))
                .await
                .expect_err("forged append refused"),
            client
                .vote(message(postcard::to_stdvec(&forged_vote).expect("enc")))
                .await
                .expect_err("forged vote refused"),
            client
                .install_snapshot(message(postcard::to_stdvec(&forged_install).expect("enc")))
                .await
                .expect_err("forged snapshot chunk refused"),
        ];
        for refusal in refusals {
            assert_eq!(refusal.code(), tonic::Code::InvalidArgument, "{refusal}");
            assert!(refusal.message().contains("refused"), "{refusal}");
        }
        let metrics = node.metrics().borrow().clone();
        assert_eq!(
            metrics.current_term,
            term,
            "node {} kept its term",
            node.id()
        );
        assert!(metrics.running_state.is_ok(), "node {} runs", node.id());
    }

    // The leader stops: the other two elect one (where the old bug panicked) and go on.
    let old = leader_of(&nodes).await.id();
    let stopped = nodes[(old - 1) as usize].take().expect("leader running");
    stopped.shutdown().await.expect("clean shutdown");
    propose_all(&nodes, 100..200, &mut clock).await;
    let new_leader = leader_of(&nodes).await;
    assert_ne!(new_leader.id(), old);
    assert!(new_leader.metrics().borrow().current_term > term);
    assert!(new_leader.metrics().borrow().current_term < 1 << 48);
}

/// Elections are this crate's (pre-vote, then a campaign), openraft's own timer being off:
/// a follower that hears the leader refuses a pre-vote, even from a voter whose log is ahead;
/// once the leader stops, the two others elect one of themselves, and the winner counts the
/// campaign it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_votes_are_refused_while_the_leader_is_heard_and_a_stopped_leader_is_replaced() {
    use rota_raft::proto::raft_transport_client::RaftTransportClient;
    use rota_raft::proto::RaftMessage;
    use rota_raft::{LogId, PreVoteAnswer, PreVoteAsk};

    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().expect("temp dir")).collect();
    let mut nodes = founded(&dirs, &GrpcNetwork::default()).await;
    let mut clock = 1_700_000_000_000;
    propose_all(&nodes, 0..100, &mut clock).await;
    let (old, term) = {
        let leader = leader_of(&nodes).await;
        (leader.id(), leader.metrics().borrow().current_term)
    };
    let follower = (1..=3).find(|&id| id != old).expect("a follower");
    let other = (1..=3)
        .find(|&id| id != old && id != follower)
        .expect("another");
    let addr = nodes[(follower - 1) as usize]
        .as_ref()
        .expect("follower running")
        .addr();
    let mut client = RaftTransportClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to the follower");
    let ask = PreVoteAsk {
        candidate: other,
        last_log: Some(LogId::new(
            openraft::CommittedLeaderId::new(term + 5, other),
            1_000_000,
        )),
    };
    let payload = postcard::to_allocvec(&ask).expect("encode");
    let reply = client
        .pre_vote(RaftMessage { payload })
        .await
        .expect("answered");
    let answer: PreVoteAnswer = postcard::from_bytes(&reply.get_ref().payload).expect("decode");
    assert!(
        !answer.granted,
        "a follower that hears its leader would not vote"
    );
    assert_eq!(answer.term, term);

    let stopped = nodes[(old - 1) as usize].take().expect("leader running");
    stopped.shutdown().await.expect("clean shutdown");
    propose_all(&nodes, 100..200, &mut clock).await;
    let new = leader_of(&nodes).await;
    assert_ne!(new.id(), old, "a new leader took over");
    assert!(new.metrics().borrow().current_term > term);
    assert!(
        new.stats().read().prompt_elections >= 1,
        "the new leader won a campaign this crate started"
    );
    for node in nodes.into_iter().flatten() {
        node.shutdown().await.expect("shutdown");
    }
}
