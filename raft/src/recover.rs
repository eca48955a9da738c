//! A node whose snapshot cannot be used (corrupt, truncated, records that disagree with their
//! book) rebuilds it from a peer's before its Raft starts, instead of stopping.
//!
//! Why this is safe: a peer's snapshot holds only applied, so committed, entries. It is of
//! use when it covers the log at least up to where this node's log was purged (otherwise a
//! hole would stay between them). This node's own log then keeps what follows: if its entry
//! at the snapshot's last index is another (from a term that lost), everything from there on
//! was never committed and is dropped, as openraft does when it installs a snapshot. The vote
//! is never touched, so the node cannot vote twice in a term.

use crate::log_store::RocksLogStore;
use crate::network::{FetchError, GrpcNetwork, SnapshotAsk};
use crate::node::ClusterError;
use crate::state_store::{adopt_snapshot, set_aside, vet_snapshot, UnusableSnapshot};
use crate::types::{LogId, NodeId, RotaNode};
use openraft::network::RaftNetworkFactory;
use openraft::storage::RaftLogStorage;
use openraft::RaftLogReader;
use std::path::Path;
use std::time::Duration;

/// How long a node keeps asking its peers before it gives up and stops, naming the file.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);
/// Pause between rounds of asking (a peer may be building a newer snapshot).
const ROUND_PAUSE: Duration = Duration::from_secs(1);
/// Time for one peer's whole transfer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest snapshot a node takes from a peer.
const MAX_FETCH_BYTES: usize = 16 * 1024 * 1024 * 1024;

/// Replaces the unusable snapshot in `snapshots` with one fetched from `peers` (and the
/// members the damaged file still names), and makes `log` agree with it. Returns the
/// address of the peer it came from.
pub(crate) async fn from_peers(
    id: NodeId,
    snapshots: &Path,
    log: &mut RocksLogStore,
    unusable: &UnusableSnapshot,
    peers: &[String],
    network: &mut GrpcNetwork,
) -> Result<String, ClusterError> {
    let mut addrs: Vec<String> = peers.to_vec();
    for (member, addr) in &unusable.members {
        if *member != id && !addrs.contains(addr) {
            addrs.push(addr.clone());
        }
    }
    let purged = log
        .get_log_state()
        .await
        .map_err(storage)?
        .last_purged_log_id;
    let Some(purged) = purged else {
        // The log still holds every entry: it alone rebuilds the state.
        let aside = set_aside(snapshots)?;
        tracing::warn!(
            file = %unusable.file,
            why = %unusable.why,
            kept_aside = %aside.display(),
            "set an unusable snapshot aside; the log rebuilds the state"
        );
        return Ok("this node's own log".to_owned());
    };
    let ask = SnapshotAsk {
        at_least: purged.index,
    };
    let deadline = tokio::time::Instant::now() + RECOVERY_DEADLINE;
    let mut tried = Vec::new();
    loop {
        tried.clear();
        for addr in &addrs {
            let node = RotaNode { addr: addr.clone() };
            let mut peer = network.new_client(0, &node).await;
            let answer = match peer
                .fetch_snapshot(ask, MAX_FETCH_BYTES, FETCH_TIMEOUT)
                .await
            {
                Ok(bytes) => usable(&bytes, ask).map(|last| (bytes, last)),
                Err(e @ (FetchError::Refused(_) | FetchError::TooLarge(_))) => Err(e.to_string()),
                Err(FetchError::Transport(e)) => Err(format!("unreachable: {e}")),
            };
            match answer {
                Ok((bytes, last)) => {
                    agree_log(log, last).await?;
                    let aside = adopt_snapshot(snapshots, &bytes)?;
                    if let Some(last) = last {
                        log.purge(last).await.map_err(storage)?;
                    }
                    tracing::warn!(
                        file = %unusable.file,
                        why = %unusable.why,
                        peer = %addr,
                        kept_aside = %aside.display(),
                        "replaced an unusable snapshot with a peer's"
                    );
                    return Ok(addr.clone());
                }
                Err(why) => tried.push(format!("{addr}: {why}")),
            }
        }
        if tokio::time::Instant::now() + ROUND_PAUSE > deadline {
            return Err(ClusterError::UnusableSnapshot {
                file: unusable.file.clone(),
                why: unusable.why.clone(),
                tried: match tried.is_empty() {
                    true => "no peer is known (give --peers)".to_owned(),
                    false => tried.join("; "),
                },
            });
        }
        tokio::time::sleep(ROUND_PAUSE).await;
    }
}

/// A fetched snapshot's last log id, if it passes every check a snapshot file does and
/// covers the log up to `ask.at_least`.
fn usable(bytes: &[u8], ask: SnapshotAsk) -> Result<Option<LogId>, String> {
    let last = vet_snapshot(bytes).map_err(|e| format!("sent an unusable snapshot: {e}"))?;
    if last.map_or(0, |id| id.index) < ask.at_least {
        return Err(format!(
            "its snapshot ends at {}, before this node's log begins ({})",
            last.map_or(0, |id| id.index),
            ask.at_least
        ));
    }
    Ok(last)
}

/// Drops this node's entries from `last`'s index on when the entry there is not `last`
/// (they are from a term that lost and were never committed).
async fn agree_log(log: &mut RocksLogStore, last: Option<LogId>) -> Result<(), ClusterError> {
    let Some(last) = last else {
        return Ok(());
    };
    let local = log
        .try_get_log_entries(last.index..=last.index)
        .await
        .map_err(storage)?;
    if let Some(entry) = local.first() {
        if entry.log_id != last {
            log.truncate(entry.log_id).await.map_err(storage)?;
        }
    }
    Ok(())
}

fn storage(e: crate::types::StorageError) -> ClusterError {
    ClusterError::Io(std::io::Error::other(e.to_string()))
}
