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
    prompt_elections: AtomicU64,
    /// Per stage of the write path: how often it ran and the time it took in all.
    stages: [StageTotals; Stage::ALL.len()],
}

/// A step a write goes through, timed for the write path's breakdown (docs/replication.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// A client write waiting in the committer until its entry is proposed (per write).
    Queued,
    /// An entry from its proposal until openraft answers it: committed and applied (per
    /// entry, leader only).
    Committed,
    /// A synced write to the log: an append, a truncation, a purge or a vote (per write).
    LogSync,
    /// Entries read back from the log, for replication or apply (per read).
    LogRead,
    /// An AppendEntries that carried entries, from the leader's send to its answer (per
    /// request).
    Replicated,
    /// An AppendEntries that carried entries, served by a follower: decode, append and sync
    /// (per request).
    AppendServed,
    /// Entries applied to the state machine (per apply call).
    Applied,
}

impl Stage {
    /// Every stage, in the order a write meets them.
    pub const ALL: [Stage; 7] = [
        Stage::Queued,
        Stage::Committed,
        Stage::LogSync,
        Stage::LogRead,
        Stage::Replicated,
        Stage::AppendServed,
        Stage::Applied,
    ];

    /// The stage's label in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Committed => "committed",
            Stage::LogSync => "log_sync",
            Stage::LogRead => "log_read",
            Stage::Replicated => "replicated",
            Stage::AppendServed => "append_served",
            Stage::Applied => "applied",
        }
    }
}

#[derive(Debug, Default)]
struct StageTotals {
    count: AtomicU64,
    micros: AtomicU64,
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
    /// Campaigns this node started because it heard no leader for the lease (see
    /// `election.rs`), besides openraft's own.
    pub prompt_elections: u64,
    /// Per stage (in `Stage::ALL`'s order): how often it ran and the time it took in all.
    pub stages: [(u64, Duration); Stage::ALL.len()],
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

    /// This node campaigned, having heard no leader for the lease.
    pub fn campaigned(&self) {
        self.prompt_elections.fetch_add(1, Ordering::Relaxed);
    }

    /// `stage` ran `times` times (a write waited, an entry committed, ...) and took
    /// `took` in all.
    pub fn timed(&self, stage: Stage, times: u64, took: Duration) {
        let totals = &self.stages[stage as usize];
        totals.count.fetch_add(times, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        totals.micros.fetch_add(micros, Ordering::Relaxed);
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
            prompt_elections: self.prompt_elections.load(Ordering::Relaxed),
            stages: std::array::from_fn(|i| {
                let totals = &self.stages[i];
                (
                    totals.count.load(Ordering::Relaxed),
                    Duration::from_micros(totals.micros.load(Ordering::Relaxed)),
                )
            }),
        }
    }
}
