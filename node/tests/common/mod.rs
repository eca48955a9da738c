//! Helpers for the node's tests: `rota agent` child processes on 127.0.0.1 and waiting on
//! the cluster's view of itself.
#![allow(dead_code)]

use rota_client::proto as pb;
use rota_client::{Client, ClientConfig};
use rota_node::{NodeSettings, RunningNode};
use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (bound and released; the agent binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// One `rota agent` process; killed when dropped.
pub struct Agent {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    peers: String,
    child: Option<Child>,
}

impl Agent {
    pub fn new(id: u64, addr: String, dir: PathBuf, peers: String) -> Self {
        Self {
            id,
            addr,
            dir,
            peers,
            child: None,
        }
    }

    /// Starts (or restarts) the process with the same data directory.
    pub fn start(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .expect("agent log file");
        let child = Command::new(env!("CARGO_BIN_EXE_rota"))
            .args([
                "agent",
                "--id",
                &self.id.to_string(),
                "--listen",
                &self.addr,
            ])
            .args(["--peers", &self.peers, "--data-dir"])
            .arg(&self.dir)
            .env("ROTA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("rota agent starts");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no flush beyond what was synced.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last lines of the agent's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client of one node that gives up quickly, for status polls.
pub fn node_client(addr: &str) -> Client {
    Client::with_config(ClientConfig {
        retry_for: Duration::from_millis(500),
        call_timeout: Duration::from_secs(2),
        ..ClientConfig::new([addr.to_owned()])
    })
    .expect("client")
}

/// Each reachable node's status.
pub async fn statuses(addrs: &[String]) -> Vec<pb::ClusterStatusResponse> {
    let mut out = Vec::new();
    for addr in addrs {
        if let Ok(status) = node_client(addr)
            .cluster_status(pb::ClusterStatusRequest {})
            .await
        {
            out.push(status);
        }
    }
    out
}

/// Waits until every node in `addrs` answers and all agree on one leader among `voters`.
pub async fn wait_for_agreed_leader(addrs: &[String], voters: usize, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let seen = statuses(addrs).await;
        let leaders: Vec<Option<u64>> = seen.iter().map(|s| s.leader_id).collect();
        if seen.len() == addrs.len()
            && leaders.iter().all(|l| l.is_some() && *l == leaders[0])
            && seen
                .iter()
                .all(|s| s.members.iter().filter(|m| m.voter).count() == voters)
        {
            return leaders[0].unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader within {within:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every node has applied the same index, and returns their digests there.
pub async fn settled_digests(
    addrs: &[String],
    within: Duration,
) -> Vec<(u64, Option<u64>, String)> {
    let deadline = Instant::now() + within;
    loop {
        let seen = statuses(addrs).await;
        let indexes: Vec<Option<u64>> = seen.iter().map(|s| s.applied_index).collect();
        if seen.len() == addrs.len() && indexes.iter().all(|i| *i == indexes[0]) {
            return seen
                .into_iter()
                .map(|s| (s.node_id, s.applied_index, s.state_digest))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not settle on one applied index within {within:?}: {indexes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
