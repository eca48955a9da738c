//! Group commit: client writes arriving together share one Raft entry. Durability is not
//! traded for it: every write in a batch is answered only once the batch is committed by a
//! quorum (synced to disk on each) and applied. A few batches may be in flight at once, so
//! a new batch gathers while the previous one replicates.

use crate::clock::LogClock;
use crate::status;
use rota_raft::{Batch, RaftNode, Write};
use rota_state_machine::Response;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tonic::Status;

/// How writes are grouped.
#[derive(Clone, Copy, Debug)]
pub struct CommitSettings {
    /// Most writes in one entry.
    pub max_batch: usize,
    /// Most entries proposed and not yet answered.
    pub max_in_flight: usize,
}

impl Default for CommitSettings {
    fn default() -> Self {
        Self {
            max_batch: 1_024,
            max_in_flight: 4,
        }
    }
}

struct Pending {
    write: Write,
    answer: oneshot::Sender<Result<Response, Status>>,
}

/// The way into the log for this node's writes.
#[derive(Clone)]
pub struct Committer {
    queue: mpsc::Sender<Pending>,
}

impl Committer {
    /// Starts the batching task for `raft`.
    pub fn start(
        raft: Arc<RaftNode>,
        settings: CommitSettings,
        clock: LogClock,
    ) -> (Self, JoinHandle<()>) {
        let (queue, incoming) = mpsc::channel(settings.max_batch.max(1) * 4);
        let task = tokio::spawn(run(raft, settings, clock, incoming));
        (Self { queue }, task)
    }

    /// Proposes `write` in the next batch and waits for its response.
    pub async fn submit(&self, write: Write) -> Result<Response, Status> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Pending { write, answer })
            .await
            .map_err(|_| status::shutting_down("the node is shutting down"))?;
        answered
            .await
            .map_err(|_| status::shutting_down("the node stopped before the write was answered"))?
    }
}

async fn run(
    raft: Arc<RaftNode>,
    settings: CommitSettings,
    clock: LogClock,
    mut incoming: mpsc::Receiver<Pending>,
) {
    let in_flight = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
    while let Some(first) = incoming.recv().await {
        // Waiting for a free slot first lets the batch grow while earlier ones replicate.
        let Ok(slot) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut pending = vec![first];
        while pending.len() < settings.max_batch {
            match incoming.try_recv() {
                Ok(next) => pending.push(next),
                Err(_) => break,
            }
        }
        let now_ms = clock.stamp();
        let (writes, answers): (Vec<Write>, Vec<_>) =
            pending.into_iter().map(|p| (p.write, p.answer)).unzip();
        let raft = raft.clone();
        tokio::spawn(async move {
            let result = raft.propose(Batch { now_ms, writes }).await;
            drop(slot);
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
