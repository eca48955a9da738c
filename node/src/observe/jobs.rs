//! Job counters and latencies, counted from every entry this node applies (the event hub's
//! tap), so that no event is missed however far a watcher falls behind. One lock per entry;
//! no allocation once a (tenant, job type) pair has been seen.

use super::labels::{pair, MAX_PAIRS, OTHER};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use rota_raft::{Event, EventBody};
use rota_state_machine::{AttemptOutcome, GovernanceChange, JobEventKind, JobType, Note, TenantId};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What is counted per (tenant, job type), by position in `Tally::counts`.
#[derive(Clone, Copy)]
enum Count {
    Enqueued,
    LeasesGranted,
    LeaseExtensions,
    LeasesExpired,
    Failures,
    Retries,
    Succeeded,
    DeadLetters,
    Canceled,
    Replayed,
}

/// Each count's metric name (`_total` is added) and help, in `Count` order.
const COUNTS: [(&str, &str); 10] = [
    ("job_enqueued", "Jobs enqueued"),
    ("lease_granted", "Leases granted (attempts started)"),
    ("lease_extensions", "Leases a heartbeat extended"),
    ("lease_expired", "Leases that expired without a completion"),
    ("job_failures", "Attempts a worker reported failed"),
    (
        "job_retry",
        "Failed attempts that will be retried after a backoff",
    ),
    ("job_succeeded", "Jobs that succeeded"),
    (
        "job_dead_letters",
        "Jobs quarantined in the dead-letter queue",
    ),
    ("job_canceled", "Jobs canceled"),
    ("job_replayed", "Jobs an operator replayed"),
];

/// Upper bounds, in seconds, of the latency buckets: 5 ms to about an hour, ×4 each.
const BUCKETS: [f64; 10] = [
    0.005, 0.02, 0.08, 0.32, 1.28, 5.12, 20.48, 81.92, 327.68, 1310.72,
];

/// A latency histogram over `BUCKETS`, in log time.
#[derive(Clone, Debug, Default)]
struct Latency {
    /// Per bucket, not cumulative; the last counts what is over every bound.
    buckets: [u64; BUCKETS.len() + 1],
    sum_ms: u64,
    count: u64,
}

impl Latency {
    fn observe(&mut self, ms: u64) {
        let seconds = ms as f64 / 1000.0;
        let bucket = BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket] += 1;
        self.sum_ms += ms;
        self.count += 1;
    }

    fn encode(&self, encoder: &mut prometheus_client::encoding::MetricEncoder) -> std::fmt::Result {
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.buckets)
            .collect();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum_ms as f64 / 1000.0,
            self.count,
            &buckets,
            None,
        )
    }
}

#[derive(Clone, Debug, Default)]
struct Tally {
    counts: [u64; COUNTS.len()],
    /// Enqueue to the first lease.
    queued: Latency,
    /// Lease to the attempt's end, for attempts a worker completed.
    run: Latency,
}

#[derive(Debug, Default)]
struct Book {
    /// Tenant, then job type.
    pairs: BTreeMap<TenantId, BTreeMap<JobType, Tally>>,
    kept: usize,
    /// The pairs past `MAX_PAIRS`, together.
    other: Tally,
    /// Breaker trips per job type (capped as pairs are).
    trips: BTreeMap<String, u64>,
    trips_other: u64,
    /// Governance changes by kind.
    changes: BTreeMap<&'static str, u64>,
}

impl Book {
    /// The pair's tally; its names are shared with the note's (a reference count each).
    fn tally(&mut self, tenant: &TenantId, job_type: &JobType) -> &mut Tally {
        let known = self
            .pairs
            .get(tenant)
            .is_some_and(|types| types.contains_key(job_type));
        if !known {
            if self.kept >= MAX_PAIRS {
                return &mut self.other;
            }
            self.kept += 1;
        }
        self.pairs
            .entry(tenant.clone())
            .or_default()
            .entry(job_type.clone())
            .or_default()
    }
}

/// The counters, fed by the hub's tap and read at each scrape.
#[derive(Debug, Default)]
pub struct Tallies {
    book: Mutex<Book>,
}

impl Tallies {
    /// Counts one entry's events.
    pub fn count(&self, events: &[Arc<Event>]) {
        let Ok(mut book) = self.book.lock() else {
            return;
        };
        for event in events {
            let EventBody::Note(note) = &event.body else {
                continue;
            };
            match note {
                Note::Job {
                    tenant,
                    job_type,
                    event,
                    attempts,
                    created_ms,
                    started_ms,
                    at_ms,
                    ..
                } => {
                    let tally = book.tally(tenant, job_type);
                    let count = match event {
                        JobEventKind::Enqueued => Some(Count::Enqueued),
                        JobEventKind::Leased { .. } => {
                            if *attempts == 1 {
                                tally.queued.observe(at_ms.saturating_sub(*created_ms));
                            }
                            Some(Count::LeasesGranted)
                        }
                        JobEventKind::AttemptEnded { outcome, .. } => {
                            if let (
                                AttemptOutcome::Succeeded | AttemptOutcome::Failed { .. },
                                Some(started),
                            ) = (outcome, started_ms)
                            {
                                tally.run.observe(at_ms.saturating_sub(*started));
                            }
                            match outcome {
                                AttemptOutcome::Failed { .. } => Some(Count::Failures),
                                AttemptOutcome::TimedOut => Some(Count::LeasesExpired),
                                _ => None,
                            }
                        }
                        JobEventKind::RetryScheduled { .. } => Some(Count::Retries),
                        JobEventKind::Succeeded => Some(Count::Succeeded),
                        JobEventKind::DeadLettered { .. } => Some(Count::DeadLetters),
                        JobEventKind::Canceled { .. } => Some(Count::Canceled),
                        JobEventKind::Replayed { .. } => Some(Count::Replayed),
                        JobEventKind::Ready => None,
                    };
                    if let Some(count) = count {
                        tally.counts[count as usize] += 1;
                    }
                }
                Note::LeaseExtended {
                    tenant, job_type, ..
                } => {
                    book.tally(tenant, job_type).counts[Count::LeaseExtensions as usize] += 1;
                }
                Note::Governance { change, .. } => {
                    *book.changes.entry(change.kind()).or_default() += 1;
                    if let GovernanceChange::BreakerTripped { job_type, .. } = change {
                        if book.trips.contains_key(job_type.as_str())
                            || book.trips.len() < MAX_PAIRS
                        {
                            *book.trips.entry(job_type.to_string()).or_default() += 1;
                        } else {
                            book.trips_other += 1;
                        }
                    }
                }
            }
        }
    }
}

impl Collector for Tallies {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        // Copied out under the lock, encoded after it: apply never waits for a scrape's
        // formatting.
        let book = match self.book.lock() {
            Ok(book) => Book {
                pairs: book.pairs.clone(),
                kept: book.kept,
                other: book.other.clone(),
                trips: book.trips.clone(),
                trips_other: book.trips_other,
                changes: book.changes.clone(),
            },
            Err(_) => return Ok(()),
        };
        let mut series: Vec<(&str, &str, &Tally)> = book
            .pairs
            .iter()
            .flat_map(|(tenant, types)| {
                types
                    .iter()
                    .map(move |(job_type, tally)| (tenant.as_str(), job_type.as_str(), tally))
            })
            .collect();
        if book.other.counts.iter().any(|&n| n > 0) || book.other.queued.count > 0 {
            series.push((OTHER, OTHER, &book.other));
        }
        for (index, (name, help)) in COUNTS.iter().enumerate() {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (tenant, job_type, tally) in &series {
                let labels = pair(tenant, job_type, &[]);
                ConstCounter::new(tally.counts[index]).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "job_latency_seconds",
            "Log time from enqueue to the first lease (phase=queued), and from a lease to the worker's completion (phase=run)",
            None,
            MetricType::Histogram,
        )?;
        for (tenant, job_type, tally) in &series {
            for (phase, latency) in [("queued", &tally.queued), ("run", &tally.run)] {
                let labels = pair(tenant, job_type, &[("phase", phase)]);
                latency.encode(&mut family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "breaker_trips",
            "Times a job type's circuit breaker tripped",
            None,
            MetricType::Counter,
        )?;
        let other = (book.trips_other > 0).then_some((OTHER, book.trips_other));
        for (job_type, trips) in book
            .trips
            .iter()
            .map(|(t, n)| (t.as_str(), *n))
            .chain(other)
        {
            ConstCounter::new(trips).encode(family.encode_family(&[("jobType", job_type)])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "governance_changes",
            "Governance changes applied, by kind",
            None,
            MetricType::Counter,
        )?;
        for (kind, n) in &book.changes {
            ConstCounter::new(*n).encode(family.encode_family(&[("kind", *kind)])?)?;
        }
        Ok(())
    }
}
