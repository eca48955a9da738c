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

impl Retention {
    /// Each window with its wire name, for checks and displays.
    pub fn windows(&self) -> [(&'static str, u64); 5] {
        [
            ("succeeded_ms", self.succeeded_ms),
            ("canceled_ms", self.canceled_ms),
            ("dead_lettered_ms", self.dead_lettered_ms),
            ("history_ms", self.history_ms),
            ("archive_ms", self.archive_ms),
        ]
    }
}

/// Refuses a window longer than `MAX_RETENTION_MS`. A zero window is allowed: the work
/// leaves memory (or the archive) at the next command.
pub(crate) fn check_retention(retention: &Retention) -> Result<(), SchedulerError> {
    for (field, window) in retention.windows() {
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
    pub(crate) fn set_retention(&mut self, retention: Retention, stamp: Stamp, at: At) -> Response {
        check_stamp(&stamp)?;
        check_retention(&retention)?;
        self.ledger.retained.retention = retention;
        self.govern(
            Some(stamp),
            GovernanceChange::RetentionSet { retention },
            at,
        );
        Ok(Reply::Done)
    }

    /// The retention windows in force.
    pub fn retention(&self) -> &Retention {
        &self.ledger.retained.retention
    }
}
