//! Producers: enqueue a range of sequence numbers in batches, at most at a given rate, and
//! record which job each enqueue answered.

use super::tally::{histogram, payload, Tally};
use super::{client_for, LoadConfig, TENANT};
use crate::BenchError;
use hdrhistogram::Histogram;
use rota_client::proto as pb;
use rota_client::Client;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Enqueues `seqs` from `config.producers` producers; returns the enqueue call latencies.
pub(crate) async fn produce_all(
    config: &LoadConfig,
    endpoints: &[String],
    job_type: &str,
    seqs: Range<u64>,
    rate: Option<u64>,
    tally: &Arc<Tally>,
) -> Result<Histogram<u64>, BenchError> {
    let mut producers = JoinSet::new();
    let p = config.producers as u64;
    let span = seqs.end - seqs.start;
    for i in 0..p {
        let producer = Producer {
            client: client_for(endpoints, i as usize)?,
            job_type: job_type.to_owned(),
            seqs: seqs.start + span * i / p..seqs.start + span * (i + 1) / p,
            batch: config.enqueue_batch as u64,
            payload_bytes: config.payload_bytes,
            rate: rate.map(|r| r as f64 / p as f64),
            tally: tally.clone(),
        };
        producers.spawn(producer.run());
    }
    let mut all = histogram();
    while let Some(done) = producers.join_next().await {
        let calls = done.map_err(|source| BenchError::Task {
            task: "producer",
            source,
        })?;
        all.add(&calls)?;
    }
    Ok(all)
}

/// One producer's share of the sequence numbers, and how to send them.
struct Producer {
    client: Client,
    job_type: String,
    seqs: Range<u64>,
    /// Jobs per enqueue call.
    batch: u64,
    payload_bytes: usize,
    /// This producer's share of the rate, in jobs per second.
    rate: Option<f64>,
    tally: Arc<Tally>,
}

impl Producer {
    /// Enqueues every batch, waiting when ahead of the rate; returns the call latencies.
    async fn run(self) -> Histogram<u64> {
        let mut calls = histogram();
        let started = Instant::now();
        let mut sent = 0u64;
        let mut start = self.seqs.start;
        while start < self.seqs.end {
            let end = (start + self.batch).min(self.seqs.end);
            if let Some(rate) = self.rate {
                let due = Duration::from_secs_f64(sent as f64 / rate);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            self.enqueue(start..end, &mut calls).await;
            sent += end - start;
            start = end;
        }
        calls
    }

    /// Enqueues `seqs` in one call, its latency into `calls` and its answer into the tally.
    async fn enqueue(&self, seqs: Range<u64>, calls: &mut Histogram<u64>) {
        let sent_us = self.tally.now_us();
        let specs = seqs
            .clone()
            .map(|seq| pb::JobSpec {
                tenant: TENANT.to_owned(),
                job_type: self.job_type.clone(),
                payload: payload(seq, sent_us, self.payload_bytes),
                ..pb::JobSpec::default()
            })
            .collect();
        let t0 = Instant::now();
        let answer = self
            .client
            .enqueue_batch(pb::EnqueueBatchRequest {
                session: None,
                specs,
            })
            .await;
        let _ = calls.record((t0.elapsed().as_micros() as u64).max(1));
        match answer {
            Ok(response) => record_enqueues(&self.tally, seqs.start, response),
            Err(e) => self
                .tally
                .error(format!("enqueue of jobs {}..{}: {e}", seqs.start, seqs.end)),
        }
    }
}

/// Marks each answered job as enqueued; a sequence number answered with two different job
/// ids was enqueued twice.
fn record_enqueues(tally: &Tally, first: u64, response: pb::EnqueueBatchResponse) {
    use pb::enqueue_result::Result as R;
    for (i, result) in response.results.into_iter().enumerate() {
        let seq = first + i as u64;
        match result.result {
            Some(R::Enqueued(e)) => {
                // Stored plus one: job ids start at 0, and 0 means "not yet".
                let mark = e.job_id + 1;
                let before = tally.enqueued[seq as usize].swap(mark, Ordering::Relaxed);
                if before != 0 && before != mark {
                    tally.duplicate_enqueues.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(R::Error(e)) => tally.error(format!("job {seq} refused: {}", e.message)),
            None => tally.error(format!("job {seq}: an empty result")),
        }
    }
}
