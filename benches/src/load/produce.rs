//! Producers: enqueue a range of sequence numbers in batches, at most at a given rate and
//! until a given time, and record which job each enqueue answered.

use super::tally::{histogram, payload, Tally};
use super::{client_for, LoadConfig, Target, TENANT};
use crate::BenchError;
use hdrhistogram::Histogram;
use rota_client::proto as pb;
use rota_client::Client;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How fast producers send, and until when.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pace {
    /// At most this many jobs per second, all producers together.
    pub(crate) rate: Option<u64>,
    /// No batch is sent at or after this time, even if sequence numbers are left.
    pub(crate) until: Option<Instant>,
}

/// What the producers sent.
pub(crate) struct Produced {
    /// Enqueue call latencies.
    pub(crate) calls: Histogram<u64>,
    /// The sequence numbers sent (answered or not), one range per producer, in order; the
    /// rest of `seqs` was never sent because `Pace::until` came first.
    pub(crate) sent: Vec<Range<u64>>,
}

impl Produced {
    /// How many sequence numbers were sent.
    pub(crate) fn sent_jobs(&self) -> u64 {
        self.sent.iter().map(|r| r.end - r.start).sum()
    }
}

/// Enqueues `seqs` from `config.producers` producers at `pace`.
pub(crate) async fn produce_all(
    config: &LoadConfig,
    target: &Target,
    job_type: &str,
    seqs: Range<u64>,
    pace: Pace,
    tally: &Arc<Tally>,
) -> Result<Produced, BenchError> {
    let mut producers = JoinSet::new();
    let p = config.producers as u64;
    let span = seqs.end - seqs.start;
    let batch = config.enqueue_batch as u64;
    let lanes = config
        .in_flight
        .map_or(1, |jobs| jobs.div_ceil(config.enqueue_batch).max(1));
    for i in 0..p {
        // Producers take turns at a rate, so batches go out evenly, not p at a time.
        let turn = pace.rate.map_or(Duration::ZERO, |r| {
            Duration::from_secs_f64((i * batch) as f64 / r as f64)
        });
        let producer = Producer {
            client: client_for(&target.producers, &target.endpoints, i as usize)?,
            job_type: job_type.to_owned(),
            seqs: seqs.start + span * i / p..seqs.start + span * (i + 1) / p,
            batch,
            lanes,
            payload_bytes: config.payload_bytes,
            rate: pace.rate.map(|r| r as f64 / p as f64),
            turn,
            until: pace.until,
            tally: tally.clone(),
        };
        producers.spawn(producer.run());
    }
    let mut all = Produced {
        calls: histogram(),
        sent: Vec::new(),
    };
    while let Some(done) = producers.join_next().await {
        let (calls, sent) = done.map_err(|source| BenchError::Task {
            task: "producer",
            source,
        })?;
        all.calls.add(&calls)?;
        all.sent.push(sent);
    }
    all.sent.sort_unstable_by_key(|r| r.start);
    Ok(all)
}

/// One producer's share of the sequence numbers, and how to send them.
struct Producer {
    client: Client,
    job_type: String,
    seqs: Range<u64>,
    /// Jobs per enqueue call.
    batch: u64,
    /// Calls it keeps in flight at once.
    lanes: usize,
    payload_bytes: usize,
    /// This producer's share of the rate, in jobs per second.
    rate: Option<f64>,
    /// When its first batch is due, after the producer started.
    turn: Duration,
    /// Sends no batch due from this time on.
    until: Option<Instant>,
    tally: Arc<Tally>,
}

impl Producer {
    /// Enqueues every batch from `lanes` calls at once, waiting when ahead of the rate,
    /// until its share is sent or `until` comes; returns the call latencies and the
    /// sequence numbers sent.
    async fn run(self) -> (Histogram<u64>, Range<u64>) {
        let started = Instant::now();
        let next = Arc::new(AtomicU64::new(self.seqs.start));
        let first = self.seqs.start;
        let this = Arc::new(self);
        let mut lanes = JoinSet::new();
        for _ in 0..this.lanes {
            lanes.spawn(this.clone().lane(started, next.clone()));
        }
        let mut calls = histogram();
        let mut sent_to = first;
        while let Some(lane) = lanes.join_next().await {
            if let Ok((lane_calls, lane_sent_to)) = lane {
                let _ = calls.add(&lane_calls);
                sent_to = sent_to.max(lane_sent_to);
            }
        }
        (calls, first..sent_to)
    }

    /// One call at a time: takes the next batch, waits until it is due and sends it; stops
    /// once `until` has come or the next batch falls due after it. The clock is read before
    /// a batch is taken, batches are taken in order and fall due in that order, so a batch
    /// taken is sent unless none after it is: the batches sent are the first ones. Returns
    /// the end of the last one this lane sent.
    async fn lane(
        self: Arc<Self>,
        started: Instant,
        next: Arc<AtomicU64>,
    ) -> (Histogram<u64>, u64) {
        let mut calls = histogram();
        let mut sent_to = self.seqs.start;
        loop {
            if self.until.is_some_and(|until| Instant::now() >= until) {
                break;
            }
            let start = next.fetch_add(self.batch, Ordering::Relaxed);
            if start >= self.seqs.end {
                break;
            }
            let due = started + self.due(start - self.seqs.start);
            if self.until.is_some_and(|until| due >= until) {
                break;
            }
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            // A job's clock starts when its batch was due, not when a late producer sent it.
            let due_us = match self.rate {
                Some(_) => self.tally.us_at(due),
                None => self.tally.now_us(),
            };
            let end = (start + self.batch).min(self.seqs.end);
            self.enqueue(start..end, due_us, &mut calls).await;
            sent_to = sent_to.max(end);
        }
        (calls, sent_to)
    }

    /// When, after the producer started, the batch after `sent` jobs is due at its rate.
    fn due(&self, sent: u64) -> Duration {
        self.rate.map_or(Duration::ZERO, |rate| {
            self.turn + Duration::from_secs_f64(sent as f64 / rate)
        })
    }

    /// Enqueues `seqs` in one call, each payload stamped `due_us`; the call's latency into
    /// `calls` and its answer into the tally.
    async fn enqueue(&self, seqs: Range<u64>, due_us: u64, calls: &mut Histogram<u64>) {
        let specs = seqs
            .clone()
            .map(|seq| pb::JobSpec {
                tenant: TENANT.to_owned(),
                job_type: self.job_type.clone(),
                payload: payload(seq, due_us, self.payload_bytes),
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
