//! How long finished work stays in memory, and how long the archive keeps it after that.
//! Windows count log time, are cluster-wide, and change only through the log
//! (`Command::SetRetention`), so every replica evicts the same things at the same index.

use crate::command::{Reply, Response};
use crate::error::SchedulerError;
use crate::governance::{GovernanceChange, Stamp};
use crate::ledger::{At, State};
use crate::submit::check_stamp;
use serde::{Deserialize, Serialize};

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;

/// The longest any window may be: ten years of log time.
pub const MAX_RETENTION_MS: u64 = 3_650 * DAY_MS;

/// Retention windows, in milliseconds of log time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// A succeeded job stays in memory this long after it succeeded (default 1 hour).
    pub succeeded_ms: u64,
    /// A canceled job stays in memory this long after it was canceled (default 1 day).
    pub canceled_ms: u64,
    /// A dead-lettered job stays in memory this long after it was quarantined (default
    /// 7 days), where `replay` can still reach it.
    pub dead_lettered_ms: u64,
    /// A resolved incident and a governance event stay in memory this long after they
    /// were resolved or made (default 7 days).
    pub history_ms: u64,
    /// Anything archived stays in the archive this long after it was archived, then is
    /// gone for good (default 30 days).
    pub archive_ms: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            succeeded_ms: HOUR_MS,
            canceled_ms: DAY_MS,
            dead_lettered_ms: 7 * DAY_MS,
            history_ms: 7 * DAY_MS,
            archive_ms: 30 * DAY_MS,
        }
    }
}

/// A change of retention windows: those given are set, the others keep the value in force
/// (the defaults, when no window was ever set). Merged by `apply`, so two changes made at
/// once never undo each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionChange {
    /// See `Retention::succeeded_ms`.
    pub succeeded_ms: Option<u64>,
    /// See `Retention::canceled_ms`.
    pub canceled_ms: Option<u64>,
    /// See `Retention::dead_lettered_ms`.
    pub dead_lettered_ms: Option<u64>,
    /// See `Retention::history_ms`.
    pub history_ms: Option<u64>,
    /// See `Retention::archive_ms`.
    pub archive_ms: Option<u64>,
}

impl RetentionChange {
    /// The windows after this change to `base`.
    pub fn applied_to(&self, base: Retention) -> Retention {
        Retention {
            succeeded_ms: self.succeeded_ms.unwrap_or(base.succeeded_ms),
            canceled_ms: self.canceled_ms.unwrap_or(base.canceled_ms),
            dead_lettered_ms: self.dead_lettered_ms.unwrap_or(base.dead_lettered_ms),
            history_ms: self.history_ms.unwrap_or(base.history_ms),
            archive_ms: self.archive_ms.unwrap_or(base.archive_ms),
        }
    }
}

/// Refuses a window longer than `MAX_RETENTION_MS`. A zero window is allowed: the work
/// leaves memory (or the archive) at the next command.
pub(crate) fn check_retention(change: &RetentionChange) -> Result<(), SchedulerError> {
    let given = [
        ("succeeded_ms", change.succeeded_ms),
        ("canceled_ms", change.canceled_ms),
        ("dead_lettered_ms", change.dead_lettered_ms),
        ("history_ms", change.history_ms),
        ("archive_ms", change.archive_ms),
    ];
    for (field, window) in given.into_iter().filter_map(|(f, w)| Some((f, w?))) {
        if window > MAX_RETENTION_MS {
            return Err(SchedulerError::invalid(
                field,
                format!("{window} ms is longer than the longest window, {MAX_RETENTION_MS} ms (ten years)"),
            ));
        }
    }
    Ok(())
}

impl State {
    pub(crate) fn set_retention(
        &mut self,
        change: RetentionChange,
        stamp: Stamp,
        at: At,
    ) -> Response {
        check_stamp(&stamp)?;
        check_retention(&change)?;
        let base = self.ledger.retained.retention.unwrap_or_default();
        let retention = change.applied_to(base);
        self.ledger.retained.retention = Some(retention);
        self.govern(
            Some(stamp),
            GovernanceChange::RetentionSet { retention },
            at,
        );
        Ok(Reply::Done)
    }

    /// The retention windows in force; `None` until a `SetRetention` was applied, and
    /// until then nothing leaves memory. Retention starts with the log, never by itself: a
    /// node proposes the defaults when it leads a cluster that has none, so replicas that
    /// restore snapshots of different ages (or none) still evict at the same index.
    pub fn retention(&self) -> Option<&Retention> {
        self.ledger.retained.retention.as_ref()
    }
}
