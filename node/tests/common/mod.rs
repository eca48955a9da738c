//! Helpers for the node's tests: one-node clusters in the test's own process.
#![allow(dead_code)]

pub mod rest;
pub mod secure;

use rota_node::{Clock, NodeSettings, RunningNode};
use rota_raft::RotaNode;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Starts `settings` as a one-node cluster and waits until it leads itself.
pub async fn one_node(settings: NodeSettings) -> RunningNode {
    let node = RunningNode::start(settings).await.expect("node starts");
    node.initialize_alone().await.expect("one-node cluster");
    node.raft()
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("the node elects itself");
    node
}

/// Default settings for node 1 on a free loopback port with data in `dir`.
pub fn settings(dir: &std::path::Path) -> NodeSettings {
    NodeSettings::new(1, "127.0.0.1:0".parse().expect("addr"), dir.to_owned())
}

/// As `settings`, with log time from `clock` and a tick every 20 ms, so that what falls
/// due when the test moves the clock happens at once.
pub fn clocked(dir: &std::path::Path, clock: &ManualClock) -> NodeSettings {
    let mut settings = settings(dir);
    settings.clock = clock.clock();
    settings.tick_interval = Duration::from_millis(20);
    settings
}

/// A clock the test moves by hand, so that a lease expires when the test says so rather
/// than after a sleep.
#[derive(Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock standing at `ms` since the Unix epoch.
    pub fn at(ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(ms)))
    }

    /// The clock a node reads.
    pub fn clock(&self) -> Clock {
        let now = self.0.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    }

    /// Moves the clock `ms` forward.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Moves the clock forward to `ms`, if it is not there yet.
    pub fn advance_to(&self, ms: u64) {
        self.0.fetch_max(ms, Ordering::SeqCst);
    }
}

/// Three nodes with peer and HTTP ports, founded; returns them once all know the leader.
pub async fn cluster(dir: &std::path::Path) -> Vec<RunningNode> {
    cluster_with(dir, |_| {}).await
}

/// As `cluster`, each node's settings changed by `adjust` before it starts.
pub async fn cluster_with(
    dir: &std::path::Path,
    adjust: impl Fn(&mut NodeSettings),
) -> Vec<RunningNode> {
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let mut settings = NodeSettings::new(
            id,
            "127.0.0.1:0".parse().expect("addr"),
            dir.join(id.to_string()),
        );
        settings.peer_listen = Some("127.0.0.1:0".parse().expect("addr"));
        settings.http_listen = Some("127.0.0.1:0".parse().expect("addr"));
        adjust(&mut settings);
        nodes.push(RunningNode::start(settings).await.expect("node starts"));
    }
    let members: BTreeMap<u64, RotaNode> = nodes
        .iter()
        .map(|n| {
            let addr = n.peer_addr().expect("peer port").to_string();
            (n.raft().id(), RotaNode { addr })
        })
        .collect();
    nodes[0]
        .raft()
        .initialize(members)
        .await
        .expect("cluster founded");
    for node in &nodes {
        node.raft()
            .wait_for_leader(Duration::from_secs(20))
            .await
            .expect("a leader");
    }
    nodes
}

/// A node that does not lead.
pub fn follower(nodes: &[RunningNode]) -> &RunningNode {
    nodes
        .iter()
        .find(|n| !n.raft().is_leader())
        .expect("a follower")
}
