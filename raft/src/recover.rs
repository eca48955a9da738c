//! A node whose snapshot cannot be used (corrupt, truncated, records that disagree with their
//! book, or missing while its log was purged behind it) rebuilds it from a peer's before its
//! Raft starts, instead of stopping; and the other side: what a node sends when asked.
//!
//! Why this is safe: a peer's snapshot holds only applied, so committed, entries. It is of
//! use when it covers the log at least up to where this node's log was purged (otherwise a
//! hole would stay between them). This node's own log then keeps what follows: if its entry
//! at the snapshot's last index is another (from a term that lost), everything from there on
//! was never committed and is dropped, as openraft does when it installs a snapshot; should
//! that entry lie at or below what this node recorded as committed, its log is damaged too
//! and it stops instead. The vote is never touched, so the node cannot vote twice in a term.

use crate::log_store::RocksLogStore;
use crate::network::{encode, GrpcNetwork};
use crate::node::ClusterError;
use crate::proto::RaftMessage;
use crate::state_store::{adopt_snapshot, set_aside, vet_snapshot, StateStore, UnusableSnapshot};
use crate::types::{LogId, NodeId, Raft, RotaNode, StorageError};
use openraft::network::RaftNetworkFactory;
use openraft::storage::RaftLogStorage;
use openraft::RaftLogReader;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Status};

/// How long a node keeps asking its peers before it gives up and stops, naming the file;
/// each transfer ends by then too.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);
/// Pause between rounds of asking (a peer may be building a newer snapshot).
const ROUND_PAUSE: Duration = Duration::from_secs(1);
/// Largest snapshot a node takes from a peer. It is held in memory while it is checked, as an
/// installed snapshot is (see docs/replication.md).
const MAX_FETCH_BYTES: usize = 8 * 1024 * 1024 * 1024;
/// How much of a snapshot file goes in one message of `FetchSnapshot`.
const FETCH_CHUNK_BYTES: usize = 1024 * 1024;
/// Snapshots a node sends at once; more askers are told to come back.
const MAX_SENDS: usize = 2;

/// What a node asks a peer for when its own snapshot cannot be used.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct SnapshotAsk {
    /// The lowest last-log index of use: the asker's log was purged up to it.
    pub at_least: u64,
}

/// The answering side of `FetchSnapshot`: the snapshot this node keeps, streamed from its
/// file, a bounded number at a time.
#[derive(Clone)]
pub struct SnapshotSource {
    raft: Raft,
    state: StateStore,
    sends: Arc<Semaphore>,
}

impl SnapshotSource {
    pub(crate) fn new(raft: Raft, state: StateStore) -> Self {
        Self {
            raft,
            state,
            sends: Arc::new(Semaphore::new(MAX_SENDS)),
        }
    }

    /// The kept snapshot's bytes if it covers the log up to `ask.at_least`; otherwise
    /// `FAILED_PRECONDITION`, and a newer snapshot is built if this node has applied that far.
    pub(crate) async fn serve(
        &self,
        ask: SnapshotAsk,
    ) -> Result<ReceiverStream<Result<RaftMessage, Status>>, Status> {
        let kept = self.state.kept_snapshot().map_or(0, |id| id.index);
        if kept < ask.at_least {
            let applied = self.state.read().last_applied.map_or(0, |id| id.index);
            if applied >= ask.at_least {
                let _ = self.raft.trigger().snapshot().await;
            }
            return Err(Status::failed_precondition(format!(
                "this node's snapshot covers the log up to {kept} and {} is asked for; it has applied up to {applied}: ask again",
                ask.at_least
            )));
        }
        let Ok(permit) = self.sends.clone().try_acquire_owned() else {
            return Err(Status::resource_exhausted(
                "this node is sending as many snapshots as it will at once: ask again",
            ));
        };
        let file = self
            .state
            .snapshot_file()
            .map_err(|e| Status::internal(format!("snapshot: {e}")))?
            .ok_or_else(|| Status::failed_precondition("this node keeps no snapshot"))?;
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        tokio::task::spawn_blocking(move || {
            send_file(file, &sender);
            drop(permit);
        });
        Ok(ReceiverStream::new(receiver))
    }
}

/// Sends `file` in chunks until its end, the receiver leaves, or a read fails (sent last).
fn send_file(
    mut file: std::fs::File,
    sender: &tokio::sync::mpsc::Sender<Result<RaftMessage, Status>>,
) {
    use std::io::Read;
    loop {
        let mut chunk = vec![0u8; FETCH_CHUNK_BYTES];
        let read = match file.read(&mut chunk) {
            Ok(0) => return,
            Ok(read) => read,
            Err(e) => {
                let _ = sender.blocking_send(Err(Status::internal(format!("snapshot: {e}"))));
                return;
            }
        };
        chunk.truncate(read);
        if sender
            .blocking_send(Ok(RaftMessage { payload: chunk }))
            .is_err()
        {
            return;
        }
    }
}

/// Why a peer's snapshot could not be had.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    /// The peer could not be reached, or the transfer broke off or ran out of time.
    #[error("unreachable: {0}")]
    Transport(String),
    /// The peer answered, but has nothing of use (yet).
    #[error("{0}")]
    Refused(String),
    /// What the peer sent is larger than a node takes.
    #[error("its snapshot passed {MAX_FETCH_BYTES} bytes")]
    TooLarge,
}

/// The snapshot the node at `addr` keeps, whole, by `deadline`.
async fn fetch(
    network: &mut GrpcNetwork,
    addr: &str,
    ask: SnapshotAsk,
    deadline: Instant,
) -> Result<Vec<u8>, FetchError> {
    let transfer = async {
        let node = RotaNode {
            addr: addr.to_owned(),
        };
        let mut peer = network.new_client(0, &node).await;
        let mut client = peer
            .client::<openraft::error::Infallible>()
            .await
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        let payload = encode(&ask).map_err(|e| FetchError::Transport(e.to_string()))?;
        let mut stream = match client
            .fetch_snapshot(Request::new(RaftMessage { payload }))
            .await
        {
            Ok(stream) => stream.into_inner(),
            Err(status)
                if matches!(
                    status.code(),
                    Code::FailedPrecondition | Code::ResourceExhausted
                ) =>
            {
                return Err(FetchError::Refused(status.message().to_owned()))
            }
            Err(status) => return Err(FetchError::Transport(status.to_string())),
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|status| FetchError::Transport(status.to_string()))?
        {
            if bytes.len() + chunk.payload.len() > MAX_FETCH_BYTES {
                return Err(FetchError::TooLarge);
            }
            bytes.extend_from_slice(&chunk.payload);
        }
        Ok(bytes)
    };
    tokio::time::timeout_at(deadline, transfer)
        .await
        .unwrap_or_else(|_| Err(FetchError::Transport("ran out of time".to_owned())))
}

/// Replaces the unusable snapshot in `snapshots` with one fetched from `peers` (and the
/// members the damaged file still names), and makes `log` agree with it.
pub(crate) async fn from_peers(
    id: NodeId,
    snapshots: &Path,
    log: &mut RocksLogStore,
    unusable: &UnusableSnapshot,
    peers: &[String],
    network: &mut GrpcNetwork,
) -> Result<(), ClusterError> {
    let gave_up = |tried: String| ClusterError::UnusableSnapshot {
        file: unusable.file.clone(),
        why: unusable.why.clone(),
        tried,
    };
    let state = log
        .get_log_state()
        .await
        .map_err(|e| storage("reading the log's state", e))?;
    let Some(purged) = state.last_purged_log_id else {
        // The log still holds every entry: it alone rebuilds the state.
        let aside = set_aside(snapshots)?;
        tracing::warn!(
            file = %unusable.file,
            why = %unusable.why,
            kept_aside = %aside.display(),
            "set an unusable snapshot aside; the log rebuilds the state"
        );
        return Ok(());
    };
    let mut addrs: Vec<String> = peers.to_vec();
    for (member, addr) in &unusable.members {
        if *member != id && !addrs.contains(addr) {
            addrs.push(addr.clone());
        }
    }
    if addrs.is_empty() {
        return Err(gave_up(
            "no peer is known to ask (give the node --peers)".to_owned(),
        ));
    }
    let ask = SnapshotAsk {
        at_least: purged.index,
    };
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    let mut tried = Vec::new();
    while Instant::now() < deadline {
        tried.clear();
        for addr in &addrs {
            let answer = match fetch(network, addr, ask, deadline).await {
                Ok(bytes) => usable(&bytes, ask).map(|last| (bytes, last)),
                Err(e) => Err(e.to_string()),
            };
            match answer {
                Ok((bytes, last)) => {
                    agree_log(log, last).await?;
                    let aside = adopt_snapshot(snapshots, &bytes)?;
                    if let Some(last) = last {
                        log.purge(last)
                            .await
                            .map_err(|e| storage("purging the log behind the snapshot", e))?;
                    }
                    tracing::warn!(
                        file = %unusable.file,
                        why = %unusable.why,
                        peer = %addr,
                        kept_aside = %aside.display(),
                        "replaced an unusable snapshot with a peer's"
                    );
                    return Ok(());
                }
                Err(why) => tried.push(format!("{addr}: {why}")),
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        tokio::time::sleep_until((Instant::now() + ROUND_PAUSE).min(deadline)).await;
    }
    Err(gave_up(tried.join("; ")))
}

/// A fetched snapshot's last log id, if it passes every check a snapshot file does and
/// covers the log up to `ask.at_least`.
fn usable(bytes: &[u8], ask: SnapshotAsk) -> Result<Option<LogId>, String> {
    let last = vet_snapshot(bytes).map_err(|e| format!("sent an unusable snapshot: {e}"))?;
    let index = last.map_or(0, |id| id.index);
    if index < ask.at_least {
        return Err(format!(
            "its snapshot ends at {index}, before this node's log begins ({})",
            ask.at_least
        ));
    }
    Ok(last)
}

/// Drops this node's entries from `last`'s index on when the entry there is not `last`
/// (they are from a term that lost and were never committed); refuses if this node had
/// recorded that entry as committed, since then its log is damaged as well.
async fn agree_log(log: &mut RocksLogStore, last: Option<LogId>) -> Result<(), ClusterError> {
    let Some(last) = last else {
        return Ok(());
    };
    let local = log
        .try_get_log_entries(last.index..=last.index)
        .await
        .map_err(|e| storage("reading the log", e))?;
    let Some(entry) = local.first() else {
        return Ok(());
    };
    if entry.log_id == last {
        return Ok(());
    }
    let committed = log
        .read_committed()
        .await
        .map_err(|e| storage("reading the commit marker", e))?;
    if committed.is_some_and(|committed| committed.index >= last.index) {
        return Err(ClusterError::Io(std::io::Error::other(format!(
            "this node's log holds {} at index {}, which it recorded as committed, but the cluster's snapshot has {last} there: the log is damaged too; remove this node's data and add it again",
            entry.log_id, last.index
        ))));
    }
    log.truncate(entry.log_id)
        .await
        .map_err(|e| storage("dropping entries of a term that lost", e))
}

fn storage(step: &str, e: StorageError) -> ClusterError {
    ClusterError::Io(std::io::Error::other(format!("{step}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Batch, Entry};
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};
    use rota_state_machine::{Command, JobSpec};
    use std::io::Read;

    /// The bytes of a snapshot at index 2, from a store that applied two entries.
    async fn snapshot_bytes() -> Vec<u8> {
        let mut store = StateStore::in_memory();
        let entries = (1..=2).map(|index| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Batch::new(
                1_000 + index,
                [Command::Enqueue {
                    spec: JobSpec::new("acme", "email", vec![index as u8]),
                }],
            )),
        });
        store.apply(entries).await.expect("apply");
        store.build_snapshot().await.expect("build");
        let mut bytes = Vec::new();
        store
            .snapshot_file()
            .expect("read")
            .expect("a snapshot")
            .read_to_end(&mut bytes)
            .expect("read");
        bytes
    }

    #[tokio::test]
    async fn a_peer_snapshot_is_taken_only_whole_and_reaching_the_log() {
        let bytes = snapshot_bytes().await;
        let last = usable(&bytes, SnapshotAsk { at_least: 2 }).expect("usable");
        assert_eq!(last.map(|id| id.index), Some(2));

        let short = usable(&bytes, SnapshotAsk { at_least: 3 }).expect_err("a hole");
        assert!(
            short.contains("before this node's log begins (3)"),
            "{short}"
        );

        let mut damaged = bytes.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 1;
        let refused = usable(&damaged, SnapshotAsk { at_least: 0 }).expect_err("damaged");
        assert!(refused.contains("checksum"), "{refused}");
        let truncated = usable(&bytes[..bytes.len() - 1], SnapshotAsk { at_least: 0 });
        assert!(truncated.is_err());
    }

    #[tokio::test]
    async fn an_adopted_snapshot_keeps_the_damaged_one_aside() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        std::fs::write(dir.path().join("current.snapshot"), b"damaged").expect("write");
        let bytes = snapshot_bytes().await;
        let aside = adopt_snapshot(dir.path(), &bytes).expect("adopt");
        assert_eq!(std::fs::read(aside).expect("aside"), b"damaged");
        assert_eq!(
            std::fs::read(dir.path().join("current.snapshot")).expect("current"),
            bytes
        );
    }
}
