//! Handing leadership away: for `TransferLeader`, and for a leader told to stop (SIGTERM).
//! While it runs, calls that reach this node wait before they are routed (then go to the
//! new leader), and the group committer proposes nothing, so the log stops growing and the
//! target can hold all of it (see `rota_raft`'s `transfer` module for why that matters).

use super::Api;
use rota_raft::{ClusterError, NodeId};
use std::sync::Arc;
use std::time::Duration;

/// Longest a call waits for a hand-off in progress before it is routed anyway.
const ROUTE_WAIT: Duration = Duration::from_secs(3);
/// Longest the committer waits for the entries in flight to be answered.
const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// Sets `handing_off` back to false when dropped, however the hand-off ends.
struct Routing<'a>(&'a tokio::sync::watch::Sender<bool>);

impl Drop for Routing<'_> {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

impl Api {
    /// As `hand_off`, in a task of its own: a caller that goes away (a client's deadline, a
    /// reset stream) does not cut a hand-off short halfway.
    pub async fn hand_off_detached(
        self: &Arc<Self>,
        to: Option<NodeId>,
        within: Duration,
    ) -> Result<NodeId, ClusterError> {
        let api = self.clone();
        tokio::spawn(async move { api.hand_off(to, within).await })
            .await
            .map_err(ClusterError::Shutdown)?
    }

    /// Hands leadership to `to` (or the best placed voter) within `within`, holding writes
    /// meanwhile; returns the new leader (`to` itself when it already leads). One hand-off
    /// runs at a time.
    pub async fn hand_off(
        &self,
        to: Option<NodeId>,
        within: Duration,
    ) -> Result<NodeId, ClusterError> {
        let _one = self.handoff.lock().await;
        // Asked again after a hand-off whose answer was lost: it is done.
        let leader = self.raft.metrics().borrow().current_leader;
        if let (Some(to), Some(leader)) = (to, leader) {
            if to == leader {
                return Ok(to);
            }
        }
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
        let routing = Routing(&self.handing_off);
        let held = self.committer.hold(DRAIN_WAIT.min(within)).await;
        tracing::debug!(drained = ?started.elapsed(), "proposals held for a hand-off");
        let left = within.saturating_sub(started.elapsed());
        let moved = self.raft.transfer_leader(to, left).await;
        drop(routing);
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
