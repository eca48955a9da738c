//! The tick loop: log time moves only with entries, so while this node leads it proposes a
//! `Tick` whenever something waits on time (a lease to expire, a backoff to end, a schedule
//! to fire) that has come. An idle cluster's log stays still.

use crate::clock::LogClock;
use crate::commit::Committer;
use rota_raft::RaftNode;
use std::sync::Arc;
use std::time::Duration;

/// Checks every `every` whether a tick is due, while this node leads.
pub async fn run(raft: Arc<RaftNode>, committer: Committer, every: Duration, clock: LogClock) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if !raft.is_leader() {
            continue;
        }
        let due = clock.read(|state, now_ms| state.next_due_ms().is_some_and(|due| due <= now_ms));
        if !due {
            continue;
        }
        if let Err(e) = committer.tick().await {
            tracing::debug!(error = %e, "tick not committed");
        }
    }
}
