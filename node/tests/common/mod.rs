//! Helpers for the node's tests: `rota agent` child processes on 127.0.0.1 and waiting on
//! the cluster's view of itself.
#![allow(dead_code)]

use rota_node::{NodeSettings, RunningNode};
use std::time::Duration;

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    rota_benches::cluster::free_port().expect("a free port on 127.0.0.1")
}

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
