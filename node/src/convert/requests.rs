//! Every write request of the wire as the command it asks the scheduler for, and the
//! scheduler's reply as the wire's answer. One write path (`Api::serve_write`) serves them
//! all: convert, propose under the request's session, convert back.

use super::out::{grant_out, hold_out};
use super::{completion, item_outcome, plan_steps, scope, spec, stamp, status_out, traced, Limits};
use crate::status::{self, invalid};
use rota_client::proto as pb;
use rota_state_machine::{
    BreakerConfig, Cadence, CatchUp, Command, CompleteItem, JobId, JobType, LeaseId, Reply,
    Response, RetentionChange, ScheduleId, TenantId, WorkerId,
};
use tonic::Status;

/// A write request as the wire carries it. The conversion takes the node's limits, which
/// `TryFrom` could not: the node checks what only it knows (its payload limit, field ranges,
/// required messages) before anything is proposed; the scheduler checks the rest in `apply`.
pub trait WireWrite: Sized {
    /// The wire's answer to the request.
    type Answer;
    /// The session the request runs under (if any) and the command it asks for.
    fn command(self, limits: &Limits) -> Result<(Option<pb::Session>, Command), Status>;
    /// The wire's answer to the scheduler's reply.
    fn answer(reply: Reply) -> Result<Self::Answer, Status>;
}

impl WireWrite for pb::EnqueueRequest {
    type Answer = pb::EnqueueResponse;
    fn command(mut self, limits: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
        let traceparent = self.spec.as_mut().and_then(|s| s.traceparent.take());
        let spec = spec(self.spec, limits)?;
        let command = traced(vec![traceparent], Command::Enqueue { spec })?;
        Ok((self.session, command))
    }
    fn answer(reply: Reply) -> Result<Self::Answer, Status> {
        match reply {
            Reply::Enqueued { job_id, created } => Ok(pb::EnqueueResponse {
                job_id: job_id.0,
                created,
            }),
            other => Err(status::unexpected(&other)),
        }
    }
}

impl WireWrite for pb::EnqueueBatchRequest {
    type Answer = pb::EnqueueBatchResponse;
    fn command(mut self, limits: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
        let traceparents = self
            .specs
            .iter_mut()
            .map(|s| s.traceparent.take())
            .collect();
        let specs = self
            .specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                spec(Some(s), limits).map_err(|e| invalid(&format!("specs[{i}]"), e.message()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let command = traced(traceparents, Command::EnqueueBatch { specs })?;
        Ok((self.session, command))
    }
    fn answer(reply: Reply) -> Result<Self::Answer, Status> {
        use pb::enqueue_result::Result as R;
        let results = batch_items(reply, |item| {
            Ok(pb::EnqueueResult {
                result: Some(match item {
                    Ok(reply) => R::Enqueued(pb::EnqueueRequest::answer(reply)?),
                    Err(e) => R::Error(status::item_error(&e)),
                }),
            })
        })?;
        Ok(pb::EnqueueBatchResponse { results })
    }
}

impl WireWrite for pb::SubmitPlanRequest {
    type Answer = pb::SubmitPlanResponse;
    fn command(mut self, limits: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
        let traceparents = self
            .steps
            .iter_mut()
            .map(|step| step.spec.as_mut().and_then(|s| s.traceparent.take()))
            .collect();
        let command = Command::SubmitPlan {
            steps: plan_steps(self.steps, limits)?,
            backfill: self.backfill.map(super::backfill),
        };
        Ok((self.session, traced(traceparents, command)?))
    }
    fn answer(reply: Reply) -> Result<Self::Answer, Status> {
        match reply {
            Reply::PlanSubmitted { plan_id, jobs } => Ok(pb::SubmitPlanResponse {
                plan_id: plan_id.0,
                jobs: jobs
                    .into_iter()
                    .map(|(key, id)| pb::PlanJob { key, job_id: id.0 })
                    .collect(),
            }),
            other => Err(status::unexpected(&other)),
        }
    }
}

impl WireWrite for pb::CancelJobRequest {
    type Answer = pb::CancelJobResponse;
    fn command(self, _: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
        let command = Command::Cancel {
            job_id: JobId(self.job_id),
            stamp: stamp(self.stamp)?,
        };
        Ok((self.session, command))
    }
    fn answer(reply: Reply) -> Result<Self::Answer, Status> {
        match reply {
            Reply::Canceled { job_id } => Ok(pb::CancelJobResponse { job_id: job_id.0 }),
            other => Err(status::unexpected(&other)),
        }
    }
}

impl WireWrite for pb::ReplayJobRequest {
    type Answer = pb::ReplayJobResponse;
    fn command(self, _: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
        let command = Command::Replay {
            job_id: JobId(self.job_id),
            stamp: stamp(self.stamp)?,
        };
        Ok((self.session, command))
    }
    fn answer(reply: Reply) -> Result<Self::Answer, Status> {
        match reply {
            Reply::Replayed { job_id } => Ok(pb::ReplayJobResponse { job_id: job_id.0 }),
            other => Err(status::unexpected(&other)),
        }
    }
}

impl WireWrite for pb::LeaseRequest {
    type Answer = pb::LeaseResponse;
    fn command(self, _: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
        let command = Command::Lease {
            worker: WorkerId::from(self.worker),
            job_types: self.job_types.into_iter().map(JobType::from).collect(),
            max: self.max,
            ttl_ms: self.ttl_ms,
        };
        Ok((self.session, command))
    }
    fn answer(reply: Reply) -> Result<Self::Answer, Status> {
        match reply {
            Reply::Leased { grants, held } => Ok(pb::LeaseResponse {
                jobs: grants.into_iter().map(grant_out).collect(),
                held: hold_out(held) as i32,
            }),
            other => Err(status::unexpected(&other)),
        }
    }
}

impl WireWrite for pb::HeartbeatRequest {
    type Answer = pb::HeartbeatResponse;
    fn command(self, _: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
        let command = Command::Heartbeat {
            job_id: JobId(self.job_id),
            lease_id: LeaseId(self.lease_id),
        };
        Ok((self.session, command))
    }
    fn answer(reply: Reply) -> Result<Self::Answer, Status> {
        match reply {
            Reply::HeartbeatAck {
                lease_until_ms,
                canceled,
            } => Ok(pb::HeartbeatResponse {
                lease_until_ms,
                canceled,
            }),
            other => Err(status::unexpected(&other)),
        }
    }
}

impl WireWrite for pb::CompleteRequest {
    type Answer = pb::CompleteResponse;
    fn command(self, _: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
        let command = Command::Complete {
            job_id: JobId(self.job_id),
            lease_id: LeaseId(self.lease_id),
            completion: completion(self.outcome)?,
        };
        Ok((self.session, command))
    }
    fn answer(reply: Reply) -> Result<Self::Answer, Status> {
        match reply {
            Reply::Completed { job_id, status } => Ok(pb::CompleteResponse {
                job_id: job_id.0,
                status: status_out(status) as i32,
            }),
            other => Err(status::unexpected(&other)),
        }
    }
}

impl WireWrite for pb::CompleteBatchRequest {
    type Answer = pb::CompleteBatchResponse;
    fn command(self, _: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
        let items = self
            .items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let completion = completion(item_outcome(item.outcome))
                    .map_err(|e| invalid(&format!("items[{i}]"), e.message()))?;
                Ok(CompleteItem {
                    job_id: JobId(item.job_id),
                    lease_id: LeaseId(item.lease_id),
                    completion,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        Ok((self.session, Command::CompleteBatch { items }))
    }
    fn answer(reply: Reply) -> Result<Self::Answer, Status> {
        use pb::complete_result::Result as R;
        let results = batch_items(reply, |item| {
            Ok(pb::CompleteResult {
                result: Some(match item {
                    Ok(reply) => R::Completed(pb::CompleteRequest::answer(reply)?),
                    Err(e) => R::Error(status::item_error(&e)),
                }),
            })
        })?;
        Ok(pb::CompleteBatchResponse { results })
    }
}

/// Each item's answer of a batch command, in order.
fn batch_items<T>(
    reply: Reply,
    item: impl Fn(Response) -> Result<T, Status>,
) -> Result<Vec<T>, Status> {
    match reply {
        Reply::Batch { replies } => replies.into_iter().map(item).collect(),
        other => Err(status::unexpected(&other)),
    }
}

/// Governance requests all answer `Done` with an empty `AdminResponse`.
macro_rules! governance {
    ($($request:ty => |$r:ident| $command:expr;)*) => {$(
        impl WireWrite for $request {
            type Answer = pb::AdminResponse;
            fn command(self, _: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
                let $r = self;
                let session = $r.session;
                Ok((session, $command))
            }
            fn answer(reply: Reply) -> Result<Self::Answer, Status> {
                match reply {
                    Reply::Done => Ok(pb::AdminResponse {}),
                    other => Err(status::unexpected(&other)),
                }
            }
        }
    )*};
}

governance! {
    pb::SetQuotaRequest => |r| Command::SetQuota {
        tenant: TenantId::from(r.tenant),
        job_type: r.job_type.map(JobType::from),
        max_active: r.max_active,
        max_per_hour: r.max_per_hour,
        burst: r.burst,
        stamp: stamp(r.stamp)?,
    };
    pb::ThrottleRequest => |r| Command::Throttle {
        scope: scope(r.scope)?,
        max_concurrent: r.max_concurrent,
        stamp: stamp(r.stamp)?,
    };
    pb::SetMaintenanceRequest => |r| Command::SetMaintenance {
        enabled: r.enabled,
        stamp: stamp(r.stamp)?,
    };
    pb::ConfigureBreakerRequest => |r| Command::ConfigureBreaker {
        job_type: JobType::from(r.job_type),
        config: r.config.map(breaker_config).transpose()?,
        stamp: stamp(r.stamp)?,
    };
    pb::SetRetentionRequest => |r| {
        let wire = r.retention.unwrap_or_default();
        Command::SetRetention {
            change: RetentionChange {
                succeeded_ms: wire.succeeded_ms,
                canceled_ms: wire.canceled_ms,
                dead_lettered_ms: wire.dead_lettered_ms,
                history_ms: wire.history_ms,
                archive_ms: wire.archive_ms,
            },
            stamp: stamp(r.stamp)?,
        }
    };
    pb::ResetBreakerRequest => |r| Command::ResetBreaker {
        job_type: JobType::from(r.job_type),
        stamp: stamp(r.stamp)?,
    };
    pb::ReleaseLeaseRequest => |r| Command::ReleaseLease {
        job_id: JobId(r.job_id),
        lease_id: r.lease_id.map(LeaseId),
        stamp: stamp(r.stamp)?,
    };
    pb::BlockTenantRequest => |r| Command::BlockTenant {
        tenant: TenantId::from(r.tenant),
        blocked: r.blocked,
        stamp: stamp(r.stamp)?,
    };
}

/// `PauseSource` and `ResumeSource` share one request message; which command it asks for
/// depends on the call it came with.
pub struct SourceChange {
    /// The wire request.
    pub request: pb::SourceRequest,
    /// Pause (true) or resume (false).
    pub pause: bool,
}

impl WireWrite for SourceChange {
    type Answer = pb::AdminResponse;
    fn command(self, _: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
        let r = self.request;
        let scope = scope(r.scope)?;
        let stamp = stamp(r.stamp)?;
        let command = match self.pause {
            true => Command::PauseSource { scope, stamp },
            false => Command::ResumeSource { scope, stamp },
        };
        Ok((r.session, command))
    }
    fn answer(reply: Reply) -> Result<Self::Answer, Status> {
        pb::SetMaintenanceRequest::answer(reply)
    }
}

fn breaker_config(c: pb::BreakerConfig) -> Result<BreakerConfig, Status> {
    Ok(BreakerConfig {
        failure_threshold_percent: u8::try_from(c.failure_threshold_percent)
            .map_err(|_| invalid("failure_threshold_percent", "must be 1..=100"))?,
        window_ms: c.window_ms,
        min_attempts: c.min_attempts,
    })
}

/// A schedule call's answer: `Done`.
fn schedule_done(reply: Reply) -> Result<pb::ScheduleResponse, Status> {
    match reply {
        Reply::Done => Ok(pb::ScheduleResponse {}),
        other => Err(status::unexpected(&other)),
    }
}

impl WireWrite for pb::CreateScheduleRequest {
    type Answer = pb::ScheduleResponse;
    fn command(self, limits: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
        let cadence = match self.cadence {
            Some(pb::create_schedule_request::Cadence::Cron(expression)) => {
                Cadence::Cron { expression }
            }
            Some(pb::create_schedule_request::Cadence::IntervalMs(interval_ms)) => {
                Cadence::Every { interval_ms }
            }
            None => return Err(invalid("cadence", "give a cron expression or an interval")),
        };
        let catch_up = catch_up(self.catch_up, self.catch_up_max)?;
        let command = Command::CreateSchedule {
            id: ScheduleId::new(self.id),
            template: spec(self.template, limits)?,
            cadence,
            catch_up,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            stamp: stamp(self.stamp)?,
        };
        Ok((self.session, command))
    }
    fn answer(reply: Reply) -> Result<Self::Answer, Status> {
        schedule_done(reply)
    }
}

/// The catch-up policy of the wire's enum and bound.
fn catch_up(policy: i32, max: u32) -> Result<CatchUp, Status> {
    let policy = pb::CatchUp::try_from(policy)
        .map_err(|_| invalid("catch_up", format!("unknown policy {policy}")))?;
    let bound_unused = |name: &str| match max {
        0 => Ok(()),
        _ => Err(invalid(
            "catch_up_max",
            format!("is for CATCH_UP_RUN_EACH, not {name}"),
        )),
    };
    Ok(match policy {
        pb::CatchUp::Unspecified | pb::CatchUp::Skip => {
            bound_unused("skip")?;
            CatchUp::Skip
        }
        pb::CatchUp::RunOnce => {
            bound_unused("run-once")?;
            CatchUp::RunOnce
        }
        pb::CatchUp::RunEach => CatchUp::RunEach { max },
    })
}

/// What a `ScheduleRequest` asks of its schedule.
#[derive(Clone, Copy, Debug)]
pub enum ScheduleAction {
    /// Stop firing.
    Pause,
    /// Fire again from the next fire time.
    Resume,
    /// Remove it.
    Delete,
}

/// `PauseSchedule`, `ResumeSchedule` and `DeleteSchedule` share one request message; the
/// call it came with says which command it asks for.
pub struct ScheduleChange {
    /// The wire request.
    pub request: pb::ScheduleRequest,
    /// What to do.
    pub action: ScheduleAction,
}

impl WireWrite for ScheduleChange {
    type Answer = pb::ScheduleResponse;
    fn command(self, _: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
        let r = self.request;
        let id = ScheduleId::new(r.id);
        let stamp = stamp(r.stamp)?;
        let command = match self.action {
            ScheduleAction::Pause => Command::PauseSchedule {
                id,
                paused: true,
                stamp,
            },
            ScheduleAction::Resume => Command::PauseSchedule {
                id,
                paused: false,
                stamp,
            },
            ScheduleAction::Delete => Command::DeleteSchedule { id, stamp },
        };
        Ok((r.session, command))
    }
    fn answer(reply: Reply) -> Result<Self::Answer, Status> {
        schedule_done(reply)
    }
}

impl WireWrite for pb::BackfillScheduleRequest {
    type Answer = pb::SubmitPlanResponse;
    /// The fire times must be given (the node expands a window before this).
    fn command(self, _: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
        let command = Command::Backfill {
            schedule: ScheduleId::new(self.schedule_id),
            fire_times: self.fire_times,
            stamp: stamp(self.stamp)?,
        };
        Ok((self.session, command))
    }
    fn answer(reply: Reply) -> Result<Self::Answer, Status> {
        pb::SubmitPlanRequest::answer(reply)
    }
}

impl WireWrite for pb::CancelPlanRequest {
    type Answer = pb::CancelPlanResponse;
    fn command(self, _: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
        let command = Command::CancelPlan {
            plan_id: rota_state_machine::PlanId(self.plan_id),
            stamp: stamp(self.stamp)?,
        };
        Ok((self.session, command))
    }
    fn answer(reply: Reply) -> Result<Self::Answer, Status> {
        match reply {
            Reply::PlanCanceled { canceled, .. } => Ok(pb::CancelPlanResponse {
                canceled: canceled.into_iter().map(|id| id.0).collect(),
            }),
            other => Err(status::unexpected(&other)),
        }
    }
}

/// `AcknowledgeIncident` and `ResolveIncident` share one request message; the call it came
/// with says which command it asks for.
pub struct IncidentChange {
    /// The wire request.
    pub request: pb::IncidentRequest,
    /// Resolve (true) or acknowledge (false).
    pub resolve: bool,
}

impl WireWrite for IncidentChange {
    type Answer = pb::AdminResponse;
    fn command(self, _: &Limits) -> Result<(Option<pb::Session>, Command), Status> {
        let r = self.request;
        let incident = rota_state_machine::IncidentId(r.incident_id);
        let stamp = stamp(r.stamp)?;
        let command = match self.resolve {
            true => Command::ResolveIncident { incident, stamp },
            false => Command::AcknowledgeIncident { incident, stamp },
        };
        Ok((r.session, command))
    }
    fn answer(reply: Reply) -> Result<Self::Answer, Status> {
        pb::SetMaintenanceRequest::answer(reply)
    }
}
