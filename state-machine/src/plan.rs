//! Plans: DAGs of jobs submitted in one command, checked whole before anything is created.

use crate::command::PlanStep;
use crate::error::SchedulerError;
use crate::ids::{JobId, PlanId};
use crate::job::{Backfill, Status};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A submitted plan: its steps' keys and the jobs they became.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The plan's id, assigned in submission order.
    pub id: PlanId,
    /// Log time of the submission.
    pub created_ms: u64,
    /// Step key to job, in submission order.
    pub steps: Vec<(String, JobId)>,
    /// Set when the whole plan was submitted as a backfill.
    pub backfill: Option<Backfill>,
}

/// A plan's run status, derived from its steps' states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlanStatus {
    /// No step has started.
    Pending,
    /// Some step has started and none has failed for good.
    Running,
    /// A step was dead-lettered or canceled; the rest is still finishing.
    Failing,
    /// Every step succeeded.
    Succeeded,
    /// Every step is terminal and at least one did not succeed.
    Failed,
}

impl PlanStatus {
    /// Derives the status from the steps' statuses.
    pub fn derive(statuses: impl IntoIterator<Item = Status>) -> PlanStatus {
        let (mut all_terminal, mut any_lost, mut any_started, mut all_ok) =
            (true, false, false, true);
        for status in statuses {
            all_terminal &= status.is_terminal();
            any_lost |= matches!(status, Status::DeadLettered | Status::Canceled);
            any_started |= !matches!(status, Status::Pending | Status::Ready);
            all_ok &= status == Status::Succeeded;
        }
        match (all_terminal, any_lost) {
            (true, _) if all_ok => PlanStatus::Succeeded,
            (true, _) => PlanStatus::Failed,
            (false, true) => PlanStatus::Failing,
            (false, false) if any_started => PlanStatus::Running,
            (false, false) => PlanStatus::Pending,
        }
    }
}

/// Checks a plan's shape and returns its steps' indexes in an order where every step comes
/// after the steps it depends on (ties broken by submission order).
pub fn topological_order(steps: &[PlanStep]) -> Result<Vec<usize>, SchedulerError> {
    if steps.is_empty() {
        return Err(SchedulerError::invalid(
            "steps",
            "a plan needs at least one step",
        ));
    }
    let mut index_of = BTreeMap::new();
    for (i, step) in steps.iter().enumerate() {
        if step.key.is_empty() {
            return Err(SchedulerError::invalid("steps.key", "must not be empty"));
        }
        if index_of.insert(step.key.as_str(), i).is_some() {
            return Err(SchedulerError::DuplicatePlanStep(step.key.clone()));
        }
    }
    let mut waiting_on = vec![0usize; steps.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for (i, step) in steps.iter().enumerate() {
        let unique: BTreeSet<&str> = step.depends_on.iter().map(String::as_str).collect();
        for key in unique {
            let Some(&dep) = index_of.get(key) else {
                return Err(SchedulerError::UnknownPlanStep {
                    step: step.key.clone(),
                    missing: key.to_owned(),
                });
            };
            waiting_on[i] += 1;
            dependents[dep].push(i);
        }
    }
    let mut free: BTreeSet<usize> = (0..steps.len()).filter(|&i| waiting_on[i] == 0).collect();
    let mut order = Vec::with_capacity(steps.len());
    while let Some(i) = free.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            waiting_on[d] -= 1;
            if waiting_on[d] == 0 {
                free.insert(d);
            }
        }
    }
    if order.len() < steps.len() {
        let steps = (0..steps.len())
            .filter(|&i| waiting_on[i] > 0)
            .map(|i| steps[i].key.clone())
            .collect();
        return Err(SchedulerError::PlanCycle { steps });
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobSpec;

    fn step(key: &str, deps: &[&str]) -> PlanStep {
        PlanStep {
            key: key.to_owned(),
            spec: JobSpec::new("t", "etl", b"x".to_vec()),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn order_puts_dependencies_first() {
        let steps = [
            step("load", &["extract", "clean"]),
            step("extract", &[]),
            step("clean", &["extract"]),
        ];
        assert_eq!(topological_order(&steps).unwrap(), vec![1, 2, 0]);
    }

    #[test]
    fn cycle_names_the_steps_in_it() {
        let steps = [
            step("a", &["c"]),
            step("b", &["a"]),
            step("c", &["b"]),
            step("d", &[]),
        ];
        let err = topological_order(&steps).unwrap_err();
        assert_eq!(
            err,
            SchedulerError::PlanCycle {
                steps: vec!["a".into(), "b".into(), "c".into()]
            }
        );
    }

    #[test]
    fn plan_status_is_derived_from_steps() {
        use Status::*;
        assert_eq!(PlanStatus::derive([Pending, Ready]), PlanStatus::Pending);
        assert_eq!(
            PlanStatus::derive([Succeeded, Pending]),
            PlanStatus::Running
        );
        assert_eq!(
            PlanStatus::derive([DeadLettered, Leased]),
            PlanStatus::Failing
        );
        assert_eq!(
            PlanStatus::derive([Succeeded, Succeeded]),
            PlanStatus::Succeeded
        );
        assert_eq!(
            PlanStatus::derive([Succeeded, Canceled]),
            PlanStatus::Failed
        );
    }
}
