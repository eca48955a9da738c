//! The tick loop: log time moves only with entries, so while this node leads it proposes a
//! `Tick` whenever something waits on time (a lease to expire, a backoff to end, a schedule
//! to fire) that has come. An idle cluster's log stays still. It also proposes the default
//! retention windows when the cluster has none, and a name (`NameCluster`) when it has none.

use crate::clock::LogClock;
use crate::commit::Committer;
use rota_raft::{RaftNode, Write};
use rota_state_machine::{Command, RetentionChange, Stamp};
use std::sync::Arc;
use std::time::Duration;

/// Retention starts with the log: a leader whose cluster never set its windows proposes
/// the defaults (a new cluster at once; one whose log began before retention existed, at
/// its first leader that knows of it).
async fn propose_default_retention(committer: &Committer) {
    let command = Command::SetRetention {
        change: RetentionChange::default(),
        stamp: Stamp::new(
            "rota",
            "default retention windows: the cluster had none set",
        ),
    };
    if let Err(e) = committer
        .submit(Write::Command(command), ADMIN_COMMAND_BYTES)
        .await
    {
        tracing::debug!(error = %e, "default retention not committed");
    }
}

/// A cluster without a name gets one from its first leader that knows of names: 128 bits of
/// the system's randomness, in hex. The state keeps the first name committed, so two leaders
/// racing (or a retry) change nothing.
async fn propose_cluster_id(committer: &Committer) {
    let mut bits = [0u8; 16];
    if let Err(e) = getrandom::fill(&mut bits) {
        tracing::warn!(error = %e, "no randomness for the cluster's id; trying again later");
        return;
    }
    let command = Command::NameCluster {
        id: hex::encode(bits),
    };
    if let Err(e) = committer
        .submit(Write::Command(command), ADMIN_COMMAND_BYTES)
        .await
    {
        tracing::debug!(error = %e, "cluster id not committed");
    }
}

/// About what the default-retention and cluster-name commands take in an entry.
const ADMIN_COMMAND_BYTES: usize = 256;

/// A tick this late says the async runtime was stalled (logged).
const LATE_RUNTIME: Duration = Duration::from_millis(100);

/// Checks every `every` whether a tick is due, while this node leads.
pub async fn run(raft: Arc<RaftNode>, committer: Committer, every: Duration, clock: LogClock) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let scheduled = interval.tick().await;
        let late = scheduled.elapsed();
        if late >= LATE_RUNTIME {
            // Heartbeats and votes run on the same runtime: a stall this long is how a busy
            // machine costs a node its leader.
            tracing::warn!(?late, "the runtime woke this node's tick late");
        }
        if !raft.is_leader() {
            continue;
        }
        let (due, no_retention, no_name) = clock.read(|state, now_ms| {
            let due = state.next_due_ms().is_some_and(|due| due <= now_ms);
            (
                due,
                state.retention().is_none(),
                state.cluster_id().is_none(),
            )
        });
        if no_retention {
            propose_default_retention(&committer).await;
            continue;
        }
        if no_name {
            propose_cluster_id(&committer).await;
        }
        if !due {
            continue;
        }
        if let Err(e) = committer.tick().await {
            tracing::debug!(error = %e, "tick not committed");
        }
    }
}
