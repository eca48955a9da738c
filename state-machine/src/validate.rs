//! What makes a command invalid whatever the ledger holds: the checks `apply` runs on a
//! command's own fields, gathered in one call so that a node can run them before it
//! proposes (an invalid request never reaches the log). `apply` runs the same functions
//! again as the second line, so a command judged here is judged the same on every replica.
//! What depends on the ledger (a job that exists, a live lease, a schedule's next firing)
//! is left to `apply`.

use crate::access::check_tenants;
use crate::batch::check_len;
use crate::command::{Command, CompleteItem, Completion};
use crate::error::SchedulerError;
use crate::leasing::{check_lease, check_outputs};
use crate::operate::{check_breaker, check_rate, check_scope};
use crate::retention::check_retention;
use crate::submit::{check_name, check_plan, check_spec, check_stamp, check_text};

impl Command {
    /// Refuses the command if `apply` would refuse it on any state; a batch is refused
    /// whole, its field naming the item (`specs[3].payload`).
    pub fn check(&self) -> Result<(), SchedulerError> {
        match self {
            Command::Tick | Command::Heartbeat { .. } => Ok(()),
            Command::Enqueue { spec } => check_spec(spec),
            Command::EnqueueBatch { specs } => {
                check_len("jobs", specs.len())?;
                for (i, spec) in specs.iter().enumerate() {
                    check_spec(spec).map_err(|e| e.in_item(&format!("specs[{i}]")))?;
                }
                Ok(())
            }
            Command::SubmitPlan { steps, backfill } => check_plan(steps, backfill),
            Command::Lease {
                worker,
                job_types,
                max,
                ttl_ms,
            } => check_lease(worker, job_types, *max, *ttl_ms),
            Command::Complete { completion, .. } => check_completion(completion),
            Command::CompleteBatch { items } => {
                check_len("items", items.len())?;
                for (i, CompleteItem { completion, .. }) in items.iter().enumerate() {
                    check_completion(completion).map_err(|e| e.in_item(&format!("items[{i}]")))?;
                }
                Ok(())
            }
            Command::Cancel { stamp, .. }
            | Command::Replay { stamp, .. }
            | Command::SetMaintenance { stamp, .. } => check_stamp(stamp),
            Command::SetQuota {
                tenant,
                job_type,
                max_per_hour,
                burst,
                stamp,
                ..
            } => {
                check_stamp(stamp)?;
                check_scope(&crate::governance::Scope {
                    tenant: Some(tenant.clone()),
                    job_type: job_type.clone(),
                })?;
                check_rate(*max_per_hour, *burst)
            }
            Command::Throttle { scope, stamp, .. }
            | Command::PauseSource { scope, stamp }
            | Command::ResumeSource { scope, stamp } => {
                check_stamp(stamp)?;
                check_scope(scope)
            }
            Command::ConfigureBreaker {
                job_type,
                config,
                stamp,
            } => {
                check_stamp(stamp)?;
                check_name("job_type", job_type.as_str())?;
                config.as_ref().map_or(Ok(()), check_breaker)
            }
            Command::ResetBreaker { job_type, stamp } => {
                check_stamp(stamp)?;
                check_name("job_type", job_type.as_str())
            }
            Command::CreateSchedule {
                id,
                template,
                stamp,
                ..
            } => {
                check_stamp(stamp)?;
                check_name("schedule", id.as_str())?;
                check_spec(template)
            }
            Command::PauseSchedule { stamp, .. } | Command::DeleteSchedule { stamp, .. } => {
                check_stamp(stamp)
            }
            Command::SetRetention { change, stamp } => {
                check_stamp(stamp)?;
                check_retention(change)
            }
            Command::CreateToken { spec, stamp, .. } => {
                check_stamp(stamp)?;
                spec.check()
            }
            Command::RevokeToken { name, stamp } => {
                check_stamp(stamp)?;
                crate::access::check_token_name(name)
            }
            Command::LeaseWithin {
                worker,
                job_types,
                max,
                ttl_ms,
                tenants,
            } => {
                check_lease(worker, job_types, *max, *ttl_ms)?;
                check_tenants(tenants)
            }
            Command::Traced {
                traceparents,
                command,
            } => crate::trace::check_traced(traceparents, command),
            Command::Backfill {
                schedule,
                fire_times,
                stamp,
            } => {
                check_stamp(stamp)?;
                check_name("schedule", schedule.as_str())?;
                if fire_times.is_empty() || fire_times.len() > crate::submit::MAX_BACKFILL {
                    return Err(SchedulerError::invalid(
                        "fire_times",
                        format!("give 1 to {} fire times", crate::submit::MAX_BACKFILL),
                    ));
                }
                Ok(())
            }
            Command::CancelPlan { stamp, .. }
            | Command::AcknowledgeIncident { stamp, .. }
            | Command::ResolveIncident { stamp, .. } => check_stamp(stamp),
            Command::NameCluster { id } => crate::ledger::check_cluster_id(id),
            Command::NoteMembership { change, stamp } => {
                check_stamp(stamp)?;
                check_membership(change)
            }
            Command::ReleaseLease { stamp, .. } => check_stamp(stamp),
            Command::BlockTenant { tenant, stamp, .. } => {
                check_stamp(stamp)?;
                check_name("tenant", tenant.as_str())
            }
        }
    }
}

impl Command {
    /// The command's stamp (who and why), if it carries one: a node puts the
    /// authenticated principal in it.
    pub fn stamp_mut(&mut self) -> Option<&mut crate::governance::Stamp> {
        match self {
            Command::Cancel { stamp, .. }
            | Command::Replay { stamp, .. }
            | Command::SetQuota { stamp, .. }
            | Command::Throttle { stamp, .. }
            | Command::PauseSource { stamp, .. }
            | Command::ResumeSource { stamp, .. }
            | Command::ConfigureBreaker { stamp, .. }
            | Command::ResetBreaker { stamp, .. }
            | Command::SetMaintenance { stamp, .. }
            | Command::CreateSchedule { stamp, .. }
            | Command::PauseSchedule { stamp, .. }
            | Command::DeleteSchedule { stamp, .. }
            | Command::SetRetention { stamp, .. }
            | Command::CreateToken { stamp, .. }
            | Command::RevokeToken { stamp, .. }
            | Command::Backfill { stamp, .. }
            | Command::CancelPlan { stamp, .. }
            | Command::AcknowledgeIncident { stamp, .. }
            | Command::ResolveIncident { stamp, .. }
            | Command::NoteMembership { stamp, .. }
            | Command::ReleaseLease { stamp, .. }
            | Command::BlockTenant { stamp, .. } => Some(stamp),
            Command::Traced { command, .. } => command.stamp_mut(),
            Command::Tick
            | Command::Enqueue { .. }
            | Command::SubmitPlan { .. }
            | Command::Lease { .. }
            | Command::LeaseWithin { .. }
            | Command::Heartbeat { .. }
            | Command::Complete { .. }
            | Command::EnqueueBatch { .. }
            | Command::CompleteBatch { .. }
            | Command::NameCluster { .. } => None,
        }
    }
}

/// A reported outcome's own fields: outputs named and located, a give-up's reason given.
fn check_completion(completion: &Completion) -> Result<(), SchedulerError> {
    match completion {
        Completion::Succeeded { outputs } => check_outputs(outputs),
        // The error text is clipped to its limit, never refused.
        Completion::Failed { .. } | Completion::TimedOut { .. } => Ok(()),
        Completion::Canceled { reason } => check_text("reason", reason),
    }
}

/// A membership record's address: a peer address as a node is given one.
pub(crate) fn check_membership(
    change: &crate::governance::MembershipChange,
) -> Result<(), SchedulerError> {
    if let crate::governance::MembershipChange::LearnerAdded { addr, .. } = change {
        if addr.is_empty()
            || addr.len() > crate::governance::MAX_ADDR_LEN
            || addr.chars().any(char::is_control)
        {
            return Err(SchedulerError::invalid(
                "addr",
                format!(
                    "must be 1 to {} bytes with no control characters",
                    crate::governance::MAX_ADDR_LEN
                ),
            ));
        }
    }
    Ok(())
}
