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

/// What a schedule does about firings missed while the cluster was down (a firing is
/// missed when the log's time passes it by more than [`ON_TIME_GRACE_MS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatchUp {
    /// Missed firings are dropped; the schedule waits for its next fire time (what cron
    /// does; the default).
    #[default]
    Skip,
    /// Missed firings are made up by a single run, for the latest of them.
    RunOnce,
    /// Each missed firing runs, the latest `max` of them (1 to [`MAX_CATCH_UP`]), oldest
    /// first.
    RunEach {
        /// The most missed firings made up.
        max: u32,
    },
}

/// The most missed firings `CatchUp::RunEach` makes up after one outage.
pub const MAX_CATCH_UP: u32 = 100;

impl CatchUp {
    /// Checks the bound of `RunEach`.
    pub fn validate(self) -> Result<(), SchedulerError> {
        match self {
            CatchUp::RunEach { max } if max == 0 || max > MAX_CATCH_UP => Err(
                SchedulerError::invalid("catch_up", "run-each makes up 1 to 100 missed firings"),
            ),
            _ => Ok(()),
        }
    }
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
    /// Interval schedules fire at `anchor_ms` plus whole intervals (the creation time, or
    /// one interval before the start time given).
    pub anchor_ms: u64,
    /// No firing before this log time.
    pub start_ms: Option<u64>,
    /// No firing after this log time; past it the schedule stays, with no next fire time.
    pub end_ms: Option<u64>,
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
    /// The fire times to enqueue at `now_ms`, oldest first, and the schedule's next fire
    /// time after them. Called once log time reaches `next_fire_ms`; every fire time from
    /// there up to `now_ms` (and the end) is due: the latest fires if it is on time, and the
    /// catch-up policy says what happens to the rest (and to a late latest one).
    pub fn due(&self, now_ms: u64) -> (Vec<u64>, Option<u64>) {
        let horizon = self.end_ms.map_or(now_ms, |end| end.min(now_ms));
        let next = self
            .cadence
            .next_after(self.anchor_ms, now_ms)
            .filter(|&next| self.within(next));
        let first = self.next_fire_ms.unwrap_or(0);
        let Some(latest) = self
            .cadence
            .latest_at_or_before(self.anchor_ms, horizon)
            .filter(|&latest| latest >= first && self.within(latest))
        else {
            return (Vec::new(), next);
        };
        let on_time = now_ms - latest <= ON_TIME_GRACE_MS;
        let fire = match self.catch_up {
            CatchUp::Skip if on_time => vec![latest],
            CatchUp::Skip => Vec::new(),
            CatchUp::RunOnce => vec![latest],
            CatchUp::RunEach { max } => {
                let mut times = vec![latest];
                while times.len() < max as usize {
                    let before = times[times.len() - 1] - 1;
                    match self.cadence.latest_at_or_before(self.anchor_ms, before) {
                        Some(t) if t >= first && self.within(t) => times.push(t),
                        _ => break,
                    }
                }
                times.reverse();
                times
            }
        };
        (fire, next)
    }

    /// Whether `t_ms` falls between the schedule's start and end.
    fn within(&self, t_ms: u64) -> bool {
        self.start_ms.is_none_or(|start| t_ms >= start) && self.end_ms.is_none_or(|end| t_ms <= end)
    }

    /// The first fire time at or after `from_ms`, within the start and end.
    pub fn first_from(&self, from_ms: u64) -> Option<u64> {
        let from = self.start_ms.map_or(from_ms, |start| start.max(from_ms));
        self.cadence
            .next_after(self.anchor_ms, from.checked_sub(1)?)
            .filter(|&t| self.within(t))
    }

    /// Up to `count` fire times from the next one on (none while paused).
    pub fn upcoming(&self, count: usize) -> Vec<u64> {
        let mut times = Vec::new();
        let mut next = if self.paused { None } else { self.next_fire_ms };
        while let Some(t) = next {
            if times.len() == count {
                break;
            }
            times.push(t);
            next = self
                .cadence
                .next_after(self.anchor_ms, t)
                .filter(|&t| self.within(t));
        }
        times
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

/// `t_ms` as a time, down to its whole second: cron fire times are whole seconds, and
/// croner keeps the fraction of the time it starts from.
fn to_datetime(t_ms: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(i64::try_from(t_ms - t_ms % 1_000).ok()?)
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
        // From a time with a fraction of a second, fire times are still whole.
        assert_eq!(cron.next_after(0, base + 753), Some(base + 5 * MINUTE));
        assert_eq!(
            cron.latest_at_or_before(0, base + 7 * MINUTE + 999),
            Some(base + 5 * MINUTE)
        );
        assert_eq!(
            cron.latest_at_or_before(0, base + 5 * MINUTE + 1),
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
