//! Group commit: client writes arriving together share one Raft entry. Durability is not
//! traded for it: every write in a batch is answered only once the batch is committed by a
//! quorum (synced to disk on each) and applied. A few batches may be in flight at once, so
//! a new batch gathers while the previous one replicates.

use crate::clock::LogClock;
use crate::observe::Metrics;
use crate::status;
use rota_raft::{Batch, ClusterError, RaftNode, Stage, Write};
use rota_state_machine::Response;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;
use tonic::Status;

/// How writes are grouped.
#[derive(Clone, Copy, Debug)]
pub struct CommitSettings {
    /// Most writes in one entry.
    pub max_batch: usize,
    /// Most entries proposed and not yet answered.
    pub max_in_flight: usize,
    /// Largest entry, in bytes of the requests it carries: an entry closes before it would
    /// pass this, and a single write over it is refused at the edge. openraft sends each
    /// AppendEntries within the heartbeat, so an entry must replicate well inside it.
    pub max_entry_bytes: usize,
    /// Bytes at which an entry closes to further writes (a single larger write still gets
    /// an entry of its own, up to `max_entry_bytes`); also the most an AppendEntries
    /// carries beside one entry. What piles up while no leader is elected then goes out as
    /// many entries that each replicate well inside the heartbeat (openraft's deadline for
    /// an AppendEntries), not as a few that miss it and stall replication.
    pub entry_target_bytes: usize,
}

/// Default `entry_target_bytes`: 256 KiB, about a thousand small jobs.
pub const DEFAULT_ENTRY_TARGET_BYTES: usize = 256 * 1024;

/// Default largest log entry: 4 MiB, four of the largest default payloads.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 4 * 1024 * 1024;

impl Default for CommitSettings {
    fn default() -> Self {
        Self {
            max_batch: 1_024,
            max_in_flight: 4,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            entry_target_bytes: DEFAULT_ENTRY_TARGET_BYTES,
        }
    }
}

/// How long a write proposed by a leader that has since stopped leading may still wait for
/// openraft's answer (its entry applied or truncated by the next leader) before it is
/// answered "outcome unknown": several of the default election timeouts (150–300 ms).
const DEPOSED_GRACE: Duration = Duration::from_secs(2);

/// The bytes a tick is counted as.
const TICK_BYTES: usize = 16;

struct Pending {
    write: Write,
    /// When it was submitted.
    queued_at: std::time::Instant,
    /// The size of the request it came from, as the wire carried it.
    bytes: usize,
    answer: oneshot::Sender<Result<Response, Status>>,
}

/// The way into the log for this node's writes.
#[derive(Clone)]
pub struct Committer {
    queue: mpsc::Sender<Pending>,
    max_entry_bytes: usize,
    /// While true, nothing new is proposed (leadership is being handed away).
    hold: Arc<watch::Sender<bool>>,
    /// Entries proposed and not yet answered take a permit each.
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

/// Proposals held (see `Committer::hold`) until this drops; it keeps the in-flight slots it
/// drained, so nothing is proposed past it even by a batch that passed the hold's check.
pub struct Held {
    hold: Arc<watch::Sender<bool>>,
    _slots: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.hold.send_replace(false);
    }
}

impl Committer {
    /// Starts the batching task for `raft`.
    pub fn start(
        raft: Arc<RaftNode>,
        settings: CommitSettings,
        clock: LogClock,
        metrics: Arc<Metrics>,
    ) -> (Self, JoinHandle<()>) {
        let (queue, incoming) = mpsc::channel(settings.max_batch.max(1) * 4);
        let max_in_flight = settings.max_in_flight.max(1);
        let in_flight = Arc::new(Semaphore::new(max_in_flight));
        let (hold, held) = watch::channel(false);
        let task = tokio::spawn(run(
            raft,
            settings,
            (clock, metrics),
            incoming,
            (in_flight.clone(), held),
        ));
        let max_entry_bytes = settings.max_entry_bytes;
        (
            Self {
                queue,
                max_entry_bytes,
                hold: Arc::new(hold),
                in_flight,
                max_in_flight,
            },
            task,
        )
    }

    /// Stops proposing (writes queue up, and are proposed once the returned guard drops) and
    /// waits, at most `within`, until every entry already proposed is answered; the guard
    /// then keeps every in-flight slot.
    pub async fn hold(&self, within: Duration) -> Held {
        self.hold.send_replace(true);
        let drained = tokio::time::timeout(
            within,
            self.in_flight
                .clone()
                .acquire_many_owned(self.max_in_flight as u32),
        )
        .await;
        Held {
            hold: self.hold.clone(),
            _slots: drained.ok().and_then(Result::ok),
        }
    }

    /// Largest write (and entry) this committer takes, in bytes.
    pub fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    /// Proposes a tick in the next batch.
    pub async fn tick(&self) -> Result<Response, Status> {
        self.submit(
            Write::Command(rota_state_machine::Command::Tick),
            TICK_BYTES,
        )
        .await
    }

    /// Proposes `write`, `bytes` large as its request came, in the next batch and waits for
    /// its response. The caller has checked `bytes` against `max_entry_bytes`.
    pub async fn submit(&self, write: Write, bytes: usize) -> Result<Response, Status> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Pending {
                write,
                queued_at: std::time::Instant::now(),
                bytes,
                answer,
            })
            .await
            .map_err(|_| status::shutting_down("the node is shutting down"))?;
        answered
            .await
            .map_err(|_| status::shutting_down("the node stopped before the write was answered"))?
    }
}

/// One entry's writes: `first` and whatever waits behind it, up to `max_batch` writes and
/// `entry_target_bytes` (or `max_entry_bytes`, if lower); a write that would pass that is
/// handed back for the next.
fn gather(
    first: Pending,
    incoming: &mut mpsc::Receiver<Pending>,
    settings: &CommitSettings,
) -> (Vec<Pending>, Option<Pending>) {
    let budget = settings.entry_target_bytes.min(settings.max_entry_bytes);
    let mut bytes = first.bytes;
    let mut pending = vec![first];
    while pending.len() < settings.max_batch {
        let Ok(next) = incoming.try_recv() else {
            break;
        };
        if bytes + next.bytes > budget {
            return (pending, Some(next));
        }
        bytes += next.bytes;
        pending.push(next);
    }
    (pending, None)
}

async fn run(
    raft: Arc<RaftNode>,
    settings: CommitSettings,
    (clock, metrics): (LogClock, Arc<Metrics>),
    mut incoming: mpsc::Receiver<Pending>,
    (in_flight, mut held): (Arc<Semaphore>, watch::Receiver<bool>),
) {
    // A write that would have pushed the last entry past its byte budget opens the next.
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => match incoming.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        // While leadership is handed away nothing is proposed. What waited is proposed once
        // the hold ends: on a node that no longer leads, openraft refuses it at once and the
        // writer is told the new leader, to retry there.
        if held.wait_for(|held| !*held).await.is_err() {
            return;
        }
        // Waiting for a free slot first lets the batch grow while earlier ones replicate.
        let Ok(slot) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (pending, over) = gather(first, &mut incoming, &settings);
        carried = over;
        let now_ms = clock.stamp();
        let bytes = pending.iter().map(|p| p.bytes).sum();
        metrics.commit.proposed(pending.len(), bytes);
        let proposed_at = std::time::Instant::now();
        let stats = raft.stats();
        let waited = pending
            .iter()
            .map(|p| proposed_at.saturating_duration_since(p.queued_at))
            .sum();
        stats.timed(Stage::Queued, pending.len() as u64, waited);
        let (writes, answers): (Vec<Write>, Vec<_>) =
            pending.into_iter().map(|p| (p.write, p.answer)).unzip();
        let raft = raft.clone();
        tokio::spawn(async move {
            let term = raft.metrics().borrow().current_term;
            let proposal = raft.propose(Batch { now_ms, writes });
            tokio::pin!(proposal);
            // openraft answers a write when its entry is applied or truncated; an entry that a
            // snapshot install skips over (this node was isolated while it led) is neither,
            // and its answer never comes (openraft keeps its answer channel until the node
            // stops: small, and rare). So once the leadership that took the proposal ends,
            // the slot is freed at once and the answer awaited a grace period, then "outcome
            // unknown"; without this the slots ran out for good and, once this node led
            // again, nothing was ever proposed. A node that does not lead is answered at once
            // by openraft (forward to the leader).
            let result = tokio::select! {
                result = &mut proposal => {
                    drop(slot);
                    // Only an entry committed and applied: a refusal (not the leader) is
                    // answered at once and would pull the figure down.
                    if result.is_ok() {
                        stats.timed(Stage::Committed, 1, proposed_at.elapsed());
                    }
                    result
                }
                () = raft.stopped_leading(term) => {
                    drop(slot);
                    tokio::time::timeout(DEPOSED_GRACE, proposal)
                        .await
                        .unwrap_or(Err(ClusterError::Deposed(term)))
                }
            };
            match result {
                Ok(reply) if reply.responses.len() == answers.len() => {
                    for (answer, response) in answers.into_iter().zip(reply.responses) {
                        let _ = answer.send(Ok(response));
                    }
                }
                Ok(reply) => {
                    let error = status::unexpected(&format!(
                        "{} responses to {} writes",
                        reply.responses.len(),
                        answers.len()
                    ));
                    for answer in answers {
                        let _ = answer.send(Err(error.clone()));
                    }
                }
                Err(e) => {
                    let error = status::cluster(&e);
                    for answer in answers {
                        let _ = answer.send(Err(error.clone()));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(bytes: usize) -> Pending {
        Pending {
            write: Write::Command(rota_state_machine::Command::Tick),
            queued_at: std::time::Instant::now(),
            bytes,
            answer: oneshot::channel().0,
        }
    }

    #[test]
    fn an_entry_closes_at_the_target_and_a_larger_write_goes_alone() {
        let settings = CommitSettings {
            max_batch: 100,
            max_in_flight: 1,
            max_entry_bytes: 4_000,
            entry_target_bytes: 1_000,
        };
        let (queue, mut incoming) = mpsc::channel(16);
        for bytes in [400, 400, 400, 2_500, 100] {
            queue.try_send(pending(bytes)).expect("room in the queue");
        }
        let first = incoming.try_recv().expect("a write");
        let (entry, over) = gather(first, &mut incoming, &settings);
        assert_eq!(
            entry.len(),
            2,
            "a third 400-byte write would pass 1,000 bytes"
        );
        let over = over.expect("the write that did not fit opens the next entry");
        assert_eq!(over.bytes, 400);
        let (entry, over) = gather(over, &mut incoming, &settings);
        assert_eq!(entry.len(), 1);
        let big = over.expect("the large write is handed back");
        let (entry, over) = gather(big, &mut incoming, &settings);
        assert_eq!(
            entry.iter().map(|p| p.bytes).collect::<Vec<_>>(),
            [2_500],
            "a write over the target still has an entry of its own"
        );
        assert_eq!(over.map(|p| p.bytes), Some(100));
    }
}
