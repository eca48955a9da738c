//! Recurring schedules: a job template fired on a cron expression or a fixed interval,
//! evaluated on log time only.

use crate::error::SchedulerError;
use crate::governance::Stamp;
use crate::ids::ScheduleId;
use crate::job::JobSpec;
use chrono::{DateTime, Utc};
use croner::Cron;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// A firing this close to its fire time counts as on time; older ones count as missed.
pub const ON_TIME_GRACE_MS: u64 = 60_000;

/// When a schedule fires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cadence {
    /// A cron expression in UTC: five fields, or six with seconds first (`@hourly` works too).
    Cron {
        /// The expression, e.g. `*/5 * * * *`.
        expression: String,
    },
    /// Every `interval_ms`, counted from the schedule's creation.
    Every {
        /// The period, at least 1000.
        interval_ms: u64,
    },
}

/// What a schedule does about firings missed while the cluster was down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatchUp {
    /// Missed firings are dropped; the schedule waits for its next fire time.
    Skip,
    /// Missed firings are made up by a single run, for the latest of them.
    RunOnce,
}

/// A recurring job template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// The schedule's operator-chosen name.
    pub id: ScheduleId,
    /// The job each firing enqueues, under the firing's own idempotency key.
    pub template: JobSpec,
    /// When it fires.
    pub cadence: Cadence,
    /// What it does about firings missed while the cluster was down.
    pub catch_up: CatchUp,
    /// Interval schedules count from here.
    pub anchor_ms: u64,
    /// A paused schedule does not fire; firings due meanwhile are not made up.
    pub paused: bool,
    /// The next fire time; `None` when the cadence has no future firing.
    pub next_fire_ms: Option<u64>,
    /// The fire time of the latest firing, if it ever fired.
    pub last_fired_ms: Option<u64>,
    /// Who created it, why, and under which ticket.
    pub created_by: Stamp,
}

const INTERVAL_MIN_MS: u64 = 1_000;

impl Cadence {
    /// Checks the cadence can fire at all from `now_ms`.
    pub fn validate(&self, now_ms: u64) -> Result<(), SchedulerError> {
        match self {
            Cadence::Every { interval_ms } if *interval_ms < INTERVAL_MIN_MS => Err(
                SchedulerError::invalid("interval_ms", "must be at least 1000"),
            ),
            Cadence::Every { .. } => Ok(()),
            Cadence::Cron { expression } => {
                let cron = parse_cron(expression)?;
                match next_cron(&cron, now_ms) {
                    Some(_) => Ok(()),
                    None => Err(SchedulerError::InvalidCron {
                        expression: expression.clone(),
                        message: "it has no future firing".to_owned(),
                    }),
                }
            }
        }
    }

    /// The first fire time strictly after `t_ms`.
    pub fn next_after(&self, anchor_ms: u64, t_ms: u64) -> Option<u64> {
        match self {
            Cadence::Every { interval_ms } => {
                let k = t_ms.saturating_sub(anchor_ms) / interval_ms + 1;
                anchor_ms.checked_add(k.checked_mul(*interval_ms)?)
            }
            Cadence::Cron { expression } => next_cron(&parse_cron(expression).ok()?, t_ms),
        }
    }

    /// The latest fire time at or before `t_ms`.
    pub fn latest_at_or_before(&self, anchor_ms: u64, t_ms: u64) -> Option<u64> {
        match self {
            Cadence::Every { interval_ms } => {
                let k = t_ms.checked_sub(anchor_ms)? / interval_ms;
                (k > 0).then(|| anchor_ms + k * interval_ms)
            }
            Cadence::Cron { expression } => {
                let cron = parse_cron(expression).ok()?;
                let at = to_datetime(t_ms)?;
                let previous = cron.find_previous_occurrence(&at, true).ok()?;
                u64::try_from(previous.timestamp_millis()).ok()
            }
        }
    }
}

impl Schedule {
    /// The fire time to enqueue at `now_ms`, if any, and the schedule's next fire time.
    ///
    /// However many firings fell due since the last evaluation, at most one job is
    /// enqueued: the latest due one if it is on time, or (with `RunOnce`) even if late.
    pub fn due(&self, now_ms: u64) -> (Option<u64>, Option<u64>) {
        let next = self.cadence.next_after(self.anchor_ms, now_ms);
        let Some(latest) = self.cadence.latest_at_or_before(self.anchor_ms, now_ms) else {
            return (None, next);
        };
        let on_time = now_ms - latest <= ON_TIME_GRACE_MS;
        let fire = on_time || self.catch_up == CatchUp::RunOnce;
        (fire.then_some(latest), next)
    }

    /// The idempotency key of the firing at `fire_ms`, so a firing is never doubled.
    pub fn firing_key(&self, fire_ms: u64) -> String {
        format!("schedule:{}:{}", self.id, fire_ms)
    }
}

fn parse_cron(expression: &str) -> Result<Cron, SchedulerError> {
    Cron::from_str(expression).map_err(|e| SchedulerError::InvalidCron {
        expression: expression.to_owned(),
        message: e.to_string(),
    })
}

fn to_datetime(t_ms: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(i64::try_from(t_ms).ok()?)
}

fn next_cron(cron: &Cron, t_ms: u64) -> Option<u64> {
    let at = to_datetime(t_ms)?;
    let next = cron.find_next_occurrence(&at, false).ok()?;
    u64::try_from(next.timestamp_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;

    #[test]
    fn interval_fire_times_count_from_the_anchor() {
        let every = Cadence::Every { interval_ms: 5_000 };
        assert_eq!(every.next_after(1_000, 1_000), Some(6_000));
        assert_eq!(every.next_after(1_000, 6_000), Some(11_000));
        assert_eq!(every.latest_at_or_before(1_000, 5_999), None);
        assert_eq!(every.latest_at_or_before(1_000, 12_000), Some(11_000));
    }

    #[test]
    fn cron_fire_times_follow_the_expression() {
        let cron = Cadence::Cron {
            expression: "*/5 * * * *".to_owned(),
        };
        // 2026-01-01T00:00:00Z
        let base = 1_767_225_600_000;
        assert_eq!(cron.next_after(0, base), Some(base + 5 * MINUTE));
        assert_eq!(
            cron.latest_at_or_before(0, base + 7 * MINUTE),
            Some(base + 5 * MINUTE)
        );
    }

    #[test]
    fn bad_cron_is_rejected_with_its_expression() {
        let bad = Cadence::Cron {
            expression: "every tuesday".to_owned(),
        };
        let err = bad.validate(0).unwrap_err();
        assert!(
            matches!(err, SchedulerError::InvalidCron { ref expression, .. } if expression == "every tuesday")
        );
    }
}
