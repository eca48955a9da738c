//! Restoring a backup: a new node's data directory seeded from a snapshot file that
//! `SaveSnapshot` streamed (as `etcdctl snapshot restore` does). The node then starts from
//! the snapshot with an empty log, its membership the one given here, and a vote in the
//! snapshot's term (for itself, not committed: it leads nothing until it wins), so that its
//! first election is in a later term than every entry the snapshot covers: openraft orders
//! log ids by term, and a leader of an earlier term would append entries that sort below the
//! snapshot's.

use crate::log_store::{open_db, RocksLogStore};
use crate::node::ClusterError;
use crate::state_store::{seed_snapshot, SnapshotSummary, StateStore};
use crate::types::NodeId;
use openraft::storage::RaftLogStorage;
use openraft::Vote;
use std::collections::BTreeMap;
use std::path::Path;

/// Seeds `data_dir` (which must hold no node's data) for node `id` from snapshot `bytes`,
/// the cluster's voters being `voters` (id → peer address, `id` among them). Every node of
/// the new cluster is seeded from the same file with the same voters. Returns what the
/// snapshot holds, once a state store opened on the directory reports the same digest.
pub async fn restore(
    bytes: &[u8],
    data_dir: &Path,
    id: NodeId,
    voters: &BTreeMap<NodeId, String>,
) -> Result<SnapshotSummary, ClusterError> {
    let refused = |why: String| ClusterError::Io(std::io::Error::other(why));
    if !voters.contains_key(&id) {
        return Err(refused(format!("node {id} is not among the voters given")));
    }
    let (log_dir, snapshots, archive) = (
        data_dir.join("raft-log"),
        data_dir.join("snapshots"),
        data_dir.join("archive"),
    );
    for held in [&log_dir, &snapshots, &archive] {
        if held.exists() {
            return Err(refused(format!(
                "{} exists: a restore seeds a new node, so the data directory must hold none",
                held.display()
            )));
        }
    }
    let summary = seed_snapshot(&snapshots, bytes, voters)?;
    let term = summary.last_log_id.map_or(0, |id| id.leader_id.term);
    let mut log = RocksLogStore::new(open_db(&log_dir)?);
    log.save_vote(&Vote::new(term, id))
        .await
        .map_err(|e| refused(format!("saving the vote: {e}")))?;
    drop(log);
    // What the node will start from: the same state, or the restore failed.
    let state = StateStore::open(&snapshots, &archive)?;
    let (applied, digest) = {
        let applied = state.read();
        let digest = applied
            .state
            .digest()
            .map_err(|e| refused(format!("digest of the restored state: {e}")))?;
        (applied.last_applied, digest)
    };
    if applied != summary.last_log_id || digest != summary.digest {
        return Err(refused(format!(
            "the restored node would start at {applied:?} with digest {digest}, not at {:?} with {}",
            summary.last_log_id, summary.digest
        )));
    }
    Ok(summary)
}
