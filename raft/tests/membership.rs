//! Growing a cluster: one node, then two learners that become voters, then the first node
//! leaves and the other two carry on.

use rota_raft::{default_raft_config, Batch, NodeConfig, RaftNode, Storage};
use rota_state_machine::{Command, JobSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

async fn start(id: u64, dir: &std::path::Path) -> RaftNode {
    let config = NodeConfig {
        id,
        listen: "127.0.0.1:0".parse().expect("address"),
        storage: Storage::Disk(dir.to_path_buf()),
        raft: default_raft_config(),
    };
    RaftNode::start(config).await.expect("node starts")
}

fn batch(n: u64) -> Batch {
    let spec = JobSpec::new("acme", "email", n.to_be_bytes().to_vec());
    Batch::new(1_700_000_000_000 + n, [Command::Enqueue { spec }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learners_join_become_voters_and_survive_the_founder_leaving() {
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::TempDir::new().expect("temp dir"))
        .collect();
    let first = start(1, dirs[0].path()).await;
    first
        .initialize(BTreeMap::from([(1, first.node())]))
        .await
        .expect("initialize");
    first.wait_for_leader(WAIT).await.expect("leader");
    for n in 0..50 {
        first.propose(batch(n)).await.expect("write");
    }
    let second = start(2, dirs[1].path()).await;
    let third = start(3, dirs[2].path()).await;
    first
        .add_learner(2, second.node())
        .await
        .expect("learner 2");
    first.add_learner(3, third.node()).await.expect("learner 3");
    first
        .change_membership(BTreeSet::from([1, 2, 3]))
        .await
        .expect("voters");
    let voters: BTreeSet<u64> = first
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    assert_eq!(voters, BTreeSet::from([1, 2, 3]));
    for n in 50..60 {
        first.propose(batch(n)).await.expect("write");
    }

    // The founder steps out: it leaves the membership and stops; 2 and 3 carry on.
    first
        .change_membership(BTreeSet::from([2, 3]))
        .await
        .expect("remove 1");
    first.shutdown().await.expect("shutdown");
    let deadline = tokio::time::Instant::now() + WAIT;
    let leader_node = loop {
        if let Some(node) = [&second, &third].into_iter().find(|n| n.is_leader()) {
            break node;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader among 2 and 3"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    leader_node
        .propose(batch(60))
        .await
        .expect("write after the founder left");
    let jobs = leader_node
        .read_linearizable(|a| a.state.job_count())
        .await
        .expect("read");
    assert_eq!(jobs, 61);
    second.shutdown().await.expect("shutdown");
    third.shutdown().await.expect("shutdown");
}
