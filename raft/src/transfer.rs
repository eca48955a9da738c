//! Leader transfer. openraft 0.9 has none built in (0.10, still alpha, adds one); what it
//! offers is a triggered election on any voter, and vote handling that makes one safe:
//!
//! - A voter grants a vote only to a candidate whose last log id is at least its own, and,
//!   while its vote is committed, only once its leader lease (`election_timeout_max` after
//!   it last heard from a leader; a leader counts from when it was elected) has passed.
//! - A leader that grants a higher vote steps down.
//!
//! So when the leader's log stops growing and the target holds all of it, a target asked
//! to elect gets the leader's vote (and its own): a majority in a three-voter cluster, at
//! once, with no election timeout waited. The other followers refuse it (their lease
//! holds) and then follow the new leader's first AppendEntries. With more voters, the
//! leader first stops its heartbeats for one lease, so every follower's lease ends before
//! the target asks; they would call an election themselves only an election timeout later.
//!
//! A target asked when it is not fully caught up would be refused by the leader, and its
//! higher term would then depose the leader: an ordinary election follows, the very gap a
//! transfer is for. Hence the guards: the leader asks only once its replication metrics show
//! the target holding its last log id, and the target elects only if it still follows that
//! leader in that term with that last index. The caller stops new writes first (the node
//! holds its proposals while it hands leadership away).

use crate::network::{encode, GrpcNetwork};
use crate::node::{ClusterError, RaftNode};
use crate::proto::RaftMessage;
use crate::types::{LogId, NodeId, Raft, RotaNode};
use openraft::network::RaftNetworkFactory;
use openraft::ServerState;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;
use tonic::{Request, Status};

/// What a leader asks the voter it hands leadership to: elect yourself, if you still follow
/// `leader` in `term` and hold its log up to `last_log`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct ElectAsk {
    /// The leader asking.
    pub leader: NodeId,
    /// Its term.
    pub term: u64,
    /// Its last log id, which the target must hold.
    pub last_log: LogId,
}

/// How often a transfer looks at the metrics while it waits.
const POLL: Duration = Duration::from_millis(2);

/// This leader's heartbeats, stopped until dropped (however the transfer ends).
struct Heartbeats(Raft);

impl Heartbeats {
    fn pause(raft: &Raft) -> Self {
        raft.runtime_config().heartbeat(false);
        Self(raft.clone())
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.0.runtime_config().heartbeat(true);
    }
}

/// The target's side: elects if `ask` still describes this node's view.
pub(crate) async fn answer(raft: &Raft, ask: ElectAsk) -> Result<(), Status> {
    let refuse = |why: String| Err(Status::failed_precondition(why));
    {
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        if metrics.state != ServerState::Follower {
            return refuse(format!("this node is {:?}, not a follower", metrics.state));
        }
        if metrics.current_leader != Some(ask.leader) || metrics.current_term != ask.term {
            return refuse(format!(
                "this node follows {:?} in term {}, not node {} in term {}",
                metrics.current_leader, metrics.current_term, ask.leader, ask.term
            ));
        }
        if metrics.last_log_index != Some(ask.last_log.index) {
            return refuse(format!(
                "this node's log ends at {:?}, the leader's at {}",
                metrics.last_log_index, ask.last_log.index
            ));
        }
        if !metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == metrics.id)
        {
            return refuse("this node is not a voter".to_owned());
        }
    }
    tracing::info!(
        from = ask.leader,
        term = ask.term,
        "electing: the leader hands over"
    );
    raft.trigger()
        .elect()
        .await
        .map_err(|e| Status::unavailable(format!("raft stopped: {e}")))
}

impl RaftNode {
    /// The voter best placed to take over: answered within a second, and furthest
    /// replicated (ties to the lowest id). `None` if this node does not lead or has no
    /// such peer.
    pub fn successor(&self) -> Option<NodeId> {
        let metrics = self.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            return None;
        }
        let replication = metrics.replication.as_ref()?;
        metrics
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != self.id())
            .filter(|id| {
                self.heard_from(*id)
                    .is_some_and(|t| t < Duration::from_secs(1))
            })
            .max_by_key(|id| {
                let matched = replication.get(id).copied().flatten();
                (matched.map(|l| l.index), std::cmp::Reverse(*id))
            })
    }

    /// Hands leadership to voter `to`, and returns once this node sees `to` lead. The caller
    /// has stopped proposing (see the module above): the transfer waits until `to` holds
    /// this node's last log id, asks it to elect, and waits for it to lead, all within
    /// `within`.
    pub async fn transfer_leader(&self, to: NodeId, within: Duration) -> Result<(), ClusterError> {
        let started = Instant::now();
        let deadline = started + within;
        let failed = |why: String| ClusterError::Transfer(why);
        let (term, voters, node) = {
            let metrics = self.metrics().borrow().clone();
            if metrics.state != ServerState::Leader {
                return Err(ClusterError::NotLeader { leader: None });
            }
            let membership = metrics.membership_config.membership();
            if to == self.id() {
                return Err(failed(format!("node {to} already leads")));
            }
            if !membership.voter_ids().any(|v| v == to) {
                return Err(failed(format!("node {to} is not a voter of this cluster")));
            }
            let node = membership
                .get_node(&to)
                .cloned()
                .ok_or_else(|| failed(format!("node {to} has no address")))?;
            (metrics.current_term, membership.voter_ids().count(), node)
        };
        // This node grants the target its vote only once its own lease has passed.
        let lease = Duration::from_millis(self.raft().config().election_timeout_max);
        let leading = self.leading_for(term);
        if leading < lease {
            tokio::time::sleep(lease - leading + POLL).await;
        }
        let last_log = self.caught_up(to, term, deadline).await?;
        let _paused = (voters > 3).then(|| Heartbeats::pause(self.raft()));
        if _paused.is_some() {
            // Every follower's lease must end before the target asks; they call an election
            // of their own only an election timeout after that.
            tokio::time::sleep(lease + POLL).await;
        }
        let caught_up = started.elapsed();
        tokio::time::timeout_at(deadline, self.ask_to_elect(to, &node, term, last_log))
            .await
            .map_err(|_| ClusterError::Transfer(format!("node {to} did not answer in time")))??;
        let asked = started.elapsed();
        self.wait_led_by(to, deadline).await?;
        tracing::debug!(
            to,
            ?caught_up,
            ?asked,
            led = ?started.elapsed(),
            "leadership transferred"
        );
        Ok(())
    }

    /// Waits until `to` holds this node's last log id (still leading in `term`); returns it.
    async fn caught_up(
        &self,
        to: NodeId,
        term: u64,
        deadline: Instant,
    ) -> Result<LogId, ClusterError> {
        let mut metrics = self.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.state != ServerState::Leader || m.current_term != term {
                    return Err(ClusterError::NotLeader { leader: None });
                }
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&to).copied().flatten());
                // What the target matched comes from this node's log: at its last index, it
                // is its last log id.
                if let Some(matched) = matched.filter(|l| Some(l.index) == m.last_log_index) {
                    return Ok(matched);
                }
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Transfer(format!(
                    "node {to} did not catch up with this node's log in time"
                )));
            }
            let _ = tokio::time::timeout(POLL * 5, metrics.changed()).await;
        }
    }

    async fn ask_to_elect(
        &self,
        to: NodeId,
        node: &RotaNode,
        term: u64,
        last_log: LogId,
    ) -> Result<(), ClusterError> {
        let ask = ElectAsk {
            leader: self.id(),
            term,
            last_log,
        };
        let failed = |why: String| ClusterError::Transfer(format!("asking node {to}: {why}"));
        let mut network: GrpcNetwork = self.network();
        let mut peer = network.new_client(to, node).await;
        let mut client = peer
            .client::<openraft::error::Infallible>()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let payload = encode(&ask).map_err(|e| failed(e.to_string()))?;
        client
            .elect(Request::new(RaftMessage { payload }))
            .await
            .map_err(|status| failed(status.message().to_owned()))?;
        Ok(())
    }

    async fn wait_led_by(&self, to: NodeId, deadline: Instant) -> Result<(), ClusterError> {
        let mut metrics = self.metrics();
        loop {
            if metrics.borrow_and_update().current_leader == Some(to) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClusterError::Transfer(format!(
                    "node {to} was asked to elect but does not lead yet"
                )));
            }
            let _ = tokio::time::timeout(left, metrics.changed()).await;
        }
    }
}
