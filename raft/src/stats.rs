//! What this node's storage did since it started, for its metrics: counters only, kept with
//! relaxed atomics (a reader wants totals, not an order between them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Running totals of the log and snapshot work of one node.
#[derive(Debug, Default)]
pub struct Stats {
    log_appends: AtomicU64,
    log_entries: AtomicU64,
    log_bytes: AtomicU64,
    snapshots_built: AtomicU64,
    snapshot_build_micros: AtomicU64,
    last_snapshot_bytes: AtomicU64,
    snapshots_installed: AtomicU64,
}

/// A copy of the totals at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Synced appends to the log.
    pub log_appends: u64,
    /// Entries appended.
    pub log_entries: u64,
    /// Bytes of the entries appended, as encoded in the log.
    pub log_bytes: u64,
    /// Snapshots this node built.
    pub snapshots_built: u64,
    /// Time spent building them.
    pub snapshot_build_time: Duration,
    /// Size of the latest snapshot built or installed, in bytes.
    pub last_snapshot_bytes: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
}

impl Stats {
    /// One synced append of `entries` entries, `bytes` long in all.
    pub fn appended(&self, entries: u64, bytes: u64) {
        self.log_appends.fetch_add(1, Ordering::Relaxed);
        self.log_entries.fetch_add(entries, Ordering::Relaxed);
        self.log_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A snapshot of `bytes` bytes was built in `took`.
    pub fn built(&self, bytes: u64, took: Duration) {
        self.snapshots_built.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.snapshot_build_micros
            .fetch_add(micros, Ordering::Relaxed);
        self.last_snapshot_bytes.store(bytes, Ordering::Relaxed);
    }

    /// A snapshot of `bytes` bytes was installed.
    pub fn installed(&self, bytes: u64) {
        self.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        self.last_snapshot_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The totals now.
    pub fn read(&self) -> StatsSnapshot {
        StatsSnapshot {
            log_appends: self.log_appends.load(Ordering::Relaxed),
            log_entries: self.log_entries.load(Ordering::Relaxed),
            log_bytes: self.log_bytes.load(Ordering::Relaxed),
            snapshots_built: self.snapshots_built.load(Ordering::Relaxed),
            snapshot_build_time: Duration::from_micros(
                self.snapshot_build_micros.load(Ordering::Relaxed),
            ),
            last_snapshot_bytes: self.last_snapshot_bytes.load(Ordering::Relaxed),
            snapshots_installed: self.snapshots_installed.load(Ordering::Relaxed),
        }
    }
}
