//! What producers and workers tell each other and the audit: per job, what its enqueue
//! answered and how many completions succeeded; and the payload that names each job.

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shared tallies of a run.
pub(crate) struct Tally {
    epoch: Instant,
    /// Per sequence number: the job id its enqueue returned, plus one (0: none yet).
    pub(crate) enqueued: Vec<AtomicU64>,
    /// Per sequence number: successful completions acknowledged.
    pub(super) succeeded: Vec<AtomicU8>,
    /// Jobs completed in the current phase.
    pub(super) completed: AtomicU64,
    /// Jobs the current phase needs completed; lowered when producers stop at a deadline
    /// before sending them all.
    pub(super) target: AtomicU64,
    /// Told when the phase has all its completions: workers waiting in a long poll stop.
    pub(super) phase_over: tokio::sync::Notify,
    /// Workers stop here even if jobs are missing; the ledger check then reports them.
    pub(super) give_up_at: Instant,
    pub(super) duplicate_enqueues: AtomicU64,
    pub(crate) errors: AtomicU64,
    error_examples: Mutex<Vec<String>>,
}

impl Tally {
    /// Tallies for sequence numbers `0..total`; workers give up after `timeout`.
    pub(crate) fn new(total: u64, timeout: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            give_up_at: Instant::now() + timeout,
            enqueued: (0..total).map(|_| AtomicU64::new(0)).collect(),
            succeeded: (0..total).map(|_| AtomicU8::new(0)).collect(),
            completed: AtomicU64::new(0),
            target: AtomicU64::new(0),
            phase_over: tokio::sync::Notify::new(),
            duplicate_enqueues: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            error_examples: Mutex::new(Vec::new()),
        }
    }

    /// Starts a phase that needs `target` jobs completed.
    pub(super) fn start_phase(&self, target: u64) {
        self.completed.store(0, Ordering::SeqCst);
        self.target.store(target, Ordering::SeqCst);
    }

    /// Tells workers waiting in a long poll to stop if the phase has all it needs.
    pub(super) fn end_phase_if_done(&self) {
        if self.phase_done() {
            self.phase_over.notify_waiters();
        }
    }

    /// Whether the current phase has all the completions it needs.
    pub(super) fn phase_done(&self) -> bool {
        self.completed.load(Ordering::Relaxed) >= self.target.load(Ordering::Relaxed)
    }

    /// Microseconds since the run began; the clock payloads carry.
    pub(super) fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// `at` on the same clock (0 before the run began).
    pub(super) fn us_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Counts a call that failed for good or an item refused, keeping the first few.
    pub(super) fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut examples) = self.error_examples.lock() {
            if examples.len() < 10 {
                examples.push(what);
            }
        }
    }

    /// The examples kept so far.
    pub(crate) fn error_examples(&self) -> Vec<String> {
        self.error_examples
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }
}

/// A payload of `len` bytes (at least 16) naming its job and when it was due.
pub(super) fn payload(seq: u64, sent_us: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len.max(16));
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&sent_us.to_le_bytes());
    out.resize(len.max(16), b'.');
    out
}

/// The (sequence, due time) a payload carries, if it is one of ours.
pub(super) fn read_payload(payload: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
    let sent = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((seq, sent))
}

/// An empty histogram of microseconds.
pub(super) fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant figures; constant bounds, cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_pad() {
        let p = payload(42, 7, 100);
        assert_eq!(p.len(), 100);
        assert_eq!(read_payload(&p), Some((42, 7)));
        assert_eq!(payload(1, 2, 3).len(), 16);
        assert_eq!(read_payload(b"short"), None);
    }
}
