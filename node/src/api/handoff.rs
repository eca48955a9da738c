//! Handing leadership away: for `TransferLeader`, and for a leader told to stop (SIGTERM).
//! While it runs, calls that reach this node wait before they are routed (then go to the
//! new leader), and the group committer proposes nothing, so the log stops growing and the
//! target can hold all of it (see `rota_raft`'s `transfer` module for why that matters).

use super::Api;
use rota_raft::{ClusterError, NodeId};
use std::time::Duration;

/// Longest a call waits for a hand-off in progress before it is routed anyway.
const ROUTE_WAIT: Duration = Duration::from_secs(3);
/// Longest the committer waits for the entries in flight to be answered.
const DRAIN_WAIT: Duration = Duration::from_secs(1);

impl Api {
    /// Hands leadership to `to` (or the best placed voter) within `within`, holding writes
    /// meanwhile; returns the new leader. One hand-off runs at a time.
    pub async fn hand_off(
        &self,
        to: Option<NodeId>,
        within: Duration,
    ) -> Result<NodeId, ClusterError> {
        let _one = self.handoff.lock().await;
        if !self.raft.is_leader() {
            return Err(ClusterError::NotLeader { leader: None });
        }
        let to = match to.or_else(|| self.raft.successor()) {
            Some(to) => to,
            None => {
                return Err(ClusterError::Transfer(
                    "no other voter answers this node: nobody to hand leadership to".to_owned(),
                ))
            }
        };
        let started = tokio::time::Instant::now();
        self.handing_off.send_replace(true);
        let (held, _drained) = self.committer.hold(DRAIN_WAIT.min(within)).await;
        let moved = self.raft.transfer_leader(to, within).await;
        self.handing_off.send_replace(false);
        drop(held);
        match &moved {
            Ok(()) => tracing::info!(to, took = ?started.elapsed(), "leadership handed over"),
            Err(error) => tracing::warn!(to, %error, "leadership not handed over"),
        }
        moved.map(|()| to)
    }

    /// Waits (bounded) while this node hands leadership away, so a call is routed to
    /// whoever leads after.
    pub(super) async fn settle_handoff(&self) {
        let mut handing_off = self.handing_off.subscribe();
        if *handing_off.borrow() {
            let _ = tokio::time::timeout(ROUTE_WAIT, handing_off.wait_for(|h| !*h)).await;
        }
    }
}
