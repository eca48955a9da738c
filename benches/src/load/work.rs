//! Workers: lease batches of one job type, complete each batch in one call, and record
//! every acknowledged success (with its latency in the timed phase).

use super::tally::{histogram, read_payload, Tally};
use super::LoadConfig;
use super::{client_for, Target};
use crate::BenchError;
use hdrhistogram::Histogram;
use rota_client::proto as pb;
use rota_client::{Client, ClientError};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// What one worker saw.
pub(super) struct WorkerTally {
    /// Due to completion acknowledged.
    pub(super) latency: Histogram<u64>,
    /// Due to leased: how long a job waited to start.
    pub(super) to_start: Histogram<u64>,
    /// Leased to completion acknowledged (the bench's "work" is none: this is the
    /// completion call).
    pub(super) to_done: Histogram<u64>,
    pub(super) lease: Histogram<u64>,
    /// Lease calls that granted at least one job (they went through the log).
    pub(super) lease_granted: Histogram<u64>,
    /// When each completion was acknowledged (µs since the epoch), under
    /// `Measure::LatencyAndTimes` only; sorted once joined.
    pub(super) completions_us: Vec<u64>,
}

impl WorkerTally {
    fn new() -> Self {
        Self {
            latency: histogram(),
            to_start: histogram(),
            to_done: histogram(),
            lease: histogram(),
            lease_granted: histogram(),
            completions_us: Vec::new(),
        }
    }
}

/// What a worker measures of each job it completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Measure {
    /// Nothing (the drain phase).
    Nothing,
    /// Each job's latency since its enqueue was due.
    Latency,
    /// The latency, and when each completion was acknowledged (8 bytes a job, kept for the
    /// failover figures).
    LatencyAndTimes,
}

/// Starts `config.workers` workers on `job_type` until the tally's phase is done.
pub(super) fn spawn_workers(
    config: &LoadConfig,
    target: &Target,
    job_type: &str,
    measure: Measure,
    tally: &Arc<Tally>,
) -> Result<JoinSet<WorkerTally>, BenchError> {
    let mut workers = JoinSet::new();
    for i in 0..config.workers {
        let worker = Worker {
            client: client_for(&target.workers, &target.endpoints, i)?,
            name: format!("bench-w{i}"),
            job_type: job_type.to_owned(),
            max: config.lease_batch,
            wait_ms: config.lease_wait_ms,
            measure,
            tally: tally.clone(),
        };
        workers.spawn(worker.run());
    }
    Ok(workers)
}

/// Waits for every worker; returns what they saw together.
pub(super) async fn join_workers(
    mut workers: JoinSet<WorkerTally>,
) -> Result<WorkerTally, BenchError> {
    let mut all = WorkerTally::new();
    while let Some(done) = workers.join_next().await {
        let one = done.map_err(|source| BenchError::Task {
            task: "worker",
            source,
        })?;
        all.latency.add(&one.latency)?;
        all.to_start.add(&one.to_start)?;
        all.to_done.add(&one.to_done)?;
        all.lease.add(&one.lease)?;
        all.lease_granted.add(&one.lease_granted)?;
        all.completions_us.extend(one.completions_us);
    }
    all.completions_us.sort_unstable();
    Ok(all)
}

/// One worker on one job type.
struct Worker {
    client: Client,
    name: String,
    job_type: String,
    /// Most jobs per lease call.
    max: u32,
    /// How long a lease call waits for a job.
    wait_ms: u32,
    measure: Measure,
    tally: Arc<Tally>,
}

impl Worker {
    /// Leases and completes until the phase's target is done (or the run gives up).
    async fn run(self) -> WorkerTally {
        let mut mine = WorkerTally::new();
        let mut idle = Duration::from_millis(1);
        loop {
            // Registered before the look, so a phase that ends during a long poll ends it.
            let over = self.tally.phase_over.notified();
            tokio::pin!(over);
            over.as_mut().enable();
            if self.tally.phase_done() || Instant::now() >= self.tally.give_up_at {
                break;
            }
            // A long poll is dropped when the phase is over: nothing is left to lease.
            let asked = Instant::now();
            let leased = tokio::select! {
                leased = self.lease(&mut mine) => leased,
                () = over => break,
            };
            let jobs = match leased {
                Ok(jobs) => jobs,
                Err(e) => {
                    self.tally.error(format!("{} lease: {e}", self.name));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if jobs.is_empty() {
                // Polling, or a long poll answered early (another worker took the jobs).
                let early = asked.elapsed() < Duration::from_millis(u64::from(self.wait_ms / 2));
                if self.wait_ms == 0 || early {
                    tokio::time::sleep(idle).await;
                    idle = (idle * 2).min(Duration::from_millis(20));
                }
                continue;
            }
            idle = Duration::from_millis(1);
            let leased_us = self.tally.now_us();
            if self.measure != Measure::Nothing {
                for job in &jobs {
                    if let Some((_, due_us)) = read_payload(&job.payload) {
                        let _ = mine
                            .to_start
                            .record(leased_us.saturating_sub(due_us).max(1));
                    }
                }
            }
            self.complete(&jobs, leased_us, &mut mine).await;
        }
        mine
    }

    /// One lease call, its latency recorded; the jobs it granted.
    async fn lease(&self, mine: &mut WorkerTally) -> Result<Vec<pb::LeasedJob>, ClientError> {
        let t0 = Instant::now();
        let leased = self
            .client
            .lease(pb::LeaseRequest {
                session: None,
                worker: self.name.clone(),
                job_types: vec![self.job_type.clone()],
                max: self.max,
                ttl_ms: Some(30_000),
                wait_ms: (self.wait_ms > 0).then_some(self.wait_ms),
            })
            .await;
        let took_us = (t0.elapsed().as_micros() as u64).max(1);
        let _ = mine.lease.record(took_us);
        let jobs = leased?.jobs;
        if !jobs.is_empty() {
            let _ = mine.lease_granted.record(took_us);
        }
        Ok(jobs)
    }

    /// Completes `jobs`, leased at `leased_us`, as succeeded in one call and records what
    /// it answered.
    async fn complete(&self, jobs: &[pb::LeasedJob], leased_us: u64, mine: &mut WorkerTally) {
        let items = jobs
            .iter()
            .map(|job| pb::CompleteItem {
                job_id: job.job_id,
                lease_id: job.lease_id,
                outcome: Some(pb::complete_item::Outcome::Succeeded(pb::Succeeded {
                    outputs: vec![],
                })),
            })
            .collect();
        let completed = self
            .client
            .complete_batch(pb::CompleteBatchRequest {
                session: None,
                items,
            })
            .await;
        match completed {
            Ok(response) => {
                record_completions(&self.tally, mine, jobs, response, self.measure);
                if self.measure != Measure::Nothing {
                    let took = self.tally.now_us().saturating_sub(leased_us).max(1);
                    let _ = mine.to_done.record_n(took, jobs.len() as u64);
                }
            }
            // The leases run out and the jobs are leased again; the ledger check tells.
            Err(e) => self.tally.error(format!(
                "{} complete of {} jobs: {e}",
                self.name,
                jobs.len()
            )),
        }
    }
}

/// Counts each acknowledged success against its sequence number, and measures it as asked.
fn record_completions(
    tally: &Tally,
    mine: &mut WorkerTally,
    jobs: &[pb::LeasedJob],
    response: pb::CompleteBatchResponse,
    measure: Measure,
) {
    use pb::complete_result::Result as R;
    let now_us = tally.now_us();
    for (job, result) in jobs.iter().zip(response.results) {
        match result.result {
            Some(R::Completed(c)) if c.status == pb::JobStatus::Succeeded as i32 => {
                let Some((seq, due_us)) = read_payload(&job.payload) else {
                    tally.error(format!("job {} has a payload that is not ours", job.job_id));
                    continue;
                };
                if let Some(count) = tally.succeeded.get(seq as usize) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                tally.completed.fetch_add(1, Ordering::Relaxed);
                tally.end_phase_if_done();
                if measure != Measure::Nothing {
                    let _ = mine.latency.record(now_us.saturating_sub(due_us).max(1));
                }
                if measure == Measure::LatencyAndTimes {
                    mine.completions_us.push(now_us);
                }
            }
            Some(R::Completed(c)) => {
                tally.error(format!("job {} completed as {}", job.job_id, c.status))
            }
            Some(R::Error(e)) => tally.error(format!("job {}: {}", job.job_id, e.message)),
            None => tally.error(format!("job {}: an empty result", job.job_id)),
        }
    }
}
