//! `JobService`: the producer's calls (enqueue, plans, cancel, replay) and the job reads.

use super::{forward_unless_here, forwarded, page_limit, stale, tenant_of, Api, Route};
use crate::audit::dsse;
use crate::auth::principal_of;
use crate::convert::{self, ScheduleAction, ScheduleChange};
use crate::status;
use prost::Message;
use rota_client::job_service;
use rota_client::proto as pb;
use rota_client::proto::job_service_server::JobService;
use rota_raft::Applied;
use rota_state_machine::{
    ArchiveKey, ArchiveKind, Archived, ArchivedItem, JobFilter, JobId, JobPage, JobType,
    LineageScope, PlanId, PlanStatus, ScheduleId, SchedulerError, State, TenantId,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The producer's service.
pub struct Jobs(pub Arc<Api>);

/// The most fire times one backfill runs.
const MAX_BACKFILL: usize = rota_state_machine::MAX_BACKFILL;

/// The most steps `GetLineage` walks beyond the artifact, and the most links it answers.
const MAX_LINEAGE_DEPTH: u32 = 20;
const MAX_LINEAGE_LINKS: usize = 1_000;

/// Next fire times `GetSchedule` lists unless asked, and the most it lists.
const DEFAULT_UPCOMING: usize = 5;
const MAX_UPCOMING: usize = 100;

impl Jobs {
    async fn change_schedule(
        &self,
        request: Request<pb::ScheduleRequest>,
        action: ScheduleAction,
    ) -> Result<Response<pb::ScheduleResponse>, Status> {
        let principal = principal_of(&request)?;
        let request = request.into_inner();
        let bytes = request.encoded_len();
        self.0
            .serve_sized(&principal, ScheduleChange { request, action }, bytes)
            .await
    }
}

/// A page as the wire carries it, closed early (naming where the next starts) before it
/// would pass `max_bytes`; the first job always fits.
fn job_page(
    state: &State,
    page: JobPage<'_>,
    summary: bool,
    max_bytes: usize,
) -> pb::ListJobsResponse {
    let mut jobs = Vec::new();
    let mut bytes = 0;
    for job in &page.jobs {
        let out = convert::live_job_out(state, job, summary);
        // The job's own bytes, and its field's tag and length prefix in the page.
        let len = out.encoded_len() + 16;
        if !jobs.is_empty() && bytes + len > max_bytes {
            let last = jobs.last().map(|j: &pb::Job| j.id);
            return pb::ListJobsResponse {
                jobs,
                next_after: last,
            };
        }
        bytes += len;
        jobs.push(out);
    }
    pb::ListJobsResponse {
        jobs,
        next_after: page.next_after.map(|id| id.0),
    }
}

/// The most archived jobs one page of `ListJobs` examines, so a narrow filter over a large
/// archive answers in bounded time, holding the state's read lock (and so apply) only
/// briefly; `next_after` is set to page on.
const MAX_ARCHIVED_EXAMINED: usize = 2_000;

/// A job in memory, or else in the archive.
fn find_job(applied: &Applied, id: JobId) -> Result<Option<pb::Job>, Status> {
    if let Some(job) = applied.state.job(id) {
        return Ok(Some(convert::live_job_out(&applied.state, job, false)));
    }
    let archived = applied
        .archived(ArchiveKey::job(id))
        .map_err(|e| status::archive(&e))?;
    Ok(match archived {
        Some(Archived {
            archived_ms,
            item: ArchivedItem::Job(job),
        }) => Some(convert::archived_job_out(&job, archived_ms, false)),
        _ => None,
    })
}

/// A page of archived jobs: as `job_page`, read from the archive in id order.
fn archived_page(
    applied: &Applied,
    filter: &JobFilter,
    after: Option<JobId>,
    limit: usize,
    summary: bool,
    max_bytes: usize,
) -> Result<pb::ListJobsResponse, Status> {
    let from = after.map_or(0, |id| id.0.saturating_add(1));
    let mut jobs: Vec<pb::Job> = Vec::new();
    let (mut bytes, mut examined) = (0, 0);
    // The last id dealt with (listed or filtered out), and whether any is left after it.
    let (mut done, mut more) = (None, false);
    applied
        .scan_archived(ArchiveKind::Job, from, |key, archived| {
            if jobs.len() == limit || examined == MAX_ARCHIVED_EXAMINED {
                more = true;
                return false;
            }
            examined += 1;
            if let Some(Archived {
                archived_ms,
                item: ArchivedItem::Job(job),
            }) = &archived
            {
                if filter.matches(job) {
                    let out = convert::archived_job_out(job, *archived_ms, summary);
                    let len = out.encoded_len() + 16;
                    if !jobs.is_empty() && bytes + len > max_bytes {
                        more = true;
                        return false;
                    }
                    bytes += len;
                    jobs.push(out);
                }
            }
            done = Some(key.id);
            true
        })
        .map_err(|e| status::archive(&e))?;
    Ok(pb::ListJobsResponse {
        jobs,
        next_after: if more { done } else { None },
    })
}

/// A plan in memory, or else in the archive.
fn find_plan(applied: &Applied, id: PlanId) -> Result<Option<pb::GetPlanResponse>, Status> {
    let state = &applied.state;
    let step_out = |key: &str, job: JobId, status| pb::PlanStepState {
        key: key.to_owned(),
        job_id: job.0,
        status: convert::status_out(status) as i32,
    };
    if let Some(view) = state.plan(id) {
        return Ok(Some(pb::GetPlanResponse {
            plan_id: view.plan.id.0,
            status: convert::plan_status_out(view.status) as i32,
            created_ms: view.plan.created_ms,
            steps: view
                .steps
                .iter()
                .map(|(key, job, status)| step_out(key, *job, *status))
                .collect(),
            archived: false,
        }));
    }
    let archived = applied
        .archived(ArchiveKey::plan(id))
        .map_err(|e| status::archive(&e))?;
    let Some(Archived {
        item: ArchivedItem::Plan(plan),
        ..
    }) = archived
    else {
        return Ok(None);
    };
    let steps: Vec<_> = plan
        .steps
        .iter()
        .filter_map(|(key, job)| Some((key.as_str(), *job, state.job_status(*job)?)))
        .collect();
    Ok(Some(pb::GetPlanResponse {
        plan_id: plan.id.0,
        status: convert::plan_status_out(PlanStatus::derive(steps.iter().map(|s| s.2))) as i32,
        created_ms: plan.created_ms,
        steps: steps
            .into_iter()
            .map(|(key, job, status)| step_out(key, job, status))
            .collect(),
        archived: true,
    }))
}

#[tonic::async_trait]
impl JobService for Jobs {
    async fn enqueue(
        &self,
        request: Request<pb::EnqueueRequest>,
    ) -> Result<Response<pb::EnqueueResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, enqueue);
        self.0.serve_write(request).await
    }

    async fn enqueue_batch(
        &self,
        request: Request<pb::EnqueueBatchRequest>,
    ) -> Result<Response<pb::EnqueueBatchResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, enqueue_batch);
        self.0.serve_write(request).await
    }

    async fn submit_plan(
        &self,
        request: Request<pb::SubmitPlanRequest>,
    ) -> Result<Response<pb::SubmitPlanResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, submit_plan);
        self.0.serve_write(request).await
    }

    async fn get_plan(
        &self,
        request: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::GetPlanResponse>, Status> {
        let is_stale = stale(&request.get_ref().read);
        forward_unless_here!(self.0, request, is_stale, job_service, get_plan);
        let principal = principal_of(&request)?;
        let id = PlanId(request.get_ref().plan_id);
        let plan = self
            .0
            .read_applied(is_stale, |applied| {
                let plan = find_plan(applied, id)?;
                // A bound principal sees a plan only if every step's job is its tenants'
                // (a step whose job is gone from the archive too hides the plan from it).
                let theirs = plan.as_ref().is_some_and(|plan| {
                    principal.tenants.is_none()
                        || plan.steps.iter().all(|step| {
                            tenant_of(applied, JobId(step.job_id))
                                .is_some_and(|tenant| principal.allows(&tenant))
                        })
                });
                Ok::<_, Status>(plan.filter(|_| theirs))
            })
            .await??;
        plan.map(Response::new)
            .ok_or_else(|| status::plan_not_found(id))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::GetJobResponse>, Status> {
        let is_stale = stale(&request.get_ref().read);
        forward_unless_here!(self.0, request, is_stale, job_service, get_job);
        let principal = principal_of(&request)?;
        let id = JobId(request.get_ref().job_id);
        let key = match request.get_ref().signed {
            true => Some(self.0.audit_key()?),
            false => None,
        };
        let (job, statement) = self
            .0
            .read_applied(is_stale, |applied| {
                let job = find_job(applied, id)?;
                let statement = match key {
                    Some(_) => crate::audit::job_statement(applied, id)?,
                    None => None,
                };
                Ok::<_, Status>((job, statement))
            })
            .await??;
        // A job of a tenant the principal may not reach is one it cannot find.
        let job = job.filter(|job| {
            job.spec
                .as_ref()
                .is_some_and(|s| principal.allows(&TenantId::from(s.tenant.as_str())))
        });
        let Some(job) = job else {
            return Err(status::scheduler(&SchedulerError::JobNotFound(id)));
        };
        let signed = match (key, statement) {
            (Some(key), Some(payload)) => {
                let envelope = dsse::sign(&key, dsse::JOB_PAYLOAD_TYPE, &payload);
                let json = serde_json::to_vec(&envelope)
                    .map_err(|e| status::internal(format!("encoding the envelope: {e}")))?;
                Some(json)
            }
            _ => None,
        };
        Ok(Response::new(pb::GetJobResponse {
            job: Some(job),
            signed,
        }))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let is_stale = stale(&request.get_ref().read);
        forward_unless_here!(self.0, request, is_stale, job_service, list_jobs);
        let principal = principal_of(&request)?;
        let request = request.into_inner();
        let tenant = match (request.tenant.map(TenantId::from), &principal.tenants) {
            (Some(tenant), _) => {
                principal.reach(&tenant)?;
                Some(tenant)
            }
            (None, None) => None,
            (None, Some(only)) if only.len() == 1 => only.first().cloned(),
            (None, Some(_)) => {
                return Err(status::other_tenant(format!(
                    "{} is bound to several tenants: name one in `tenant`",
                    principal.display()
                )))
            }
        };
        let filter = JobFilter {
            status: convert::status_filter(request.status)?,
            tenant,
            job_type: request.job_type.map(JobType::from),
            since_ms: request.since_ms,
            until_ms: request.until_ms,
        };
        let limit = page_limit(request.limit);
        let after = request.after.map(JobId);
        let max_bytes = self.0.limits.max_page_bytes;
        let summary = request.summary;
        let page = self
            .0
            .read_applied(is_stale, |applied| match request.archived {
                true => archived_page(applied, &filter, after, limit, summary, max_bytes),
                false => Ok(job_page(
                    &applied.state,
                    applied.state.list_jobs(&filter, after, limit),
                    summary,
                    max_bytes,
                )),
            })
            .await??;
        Ok(Response::new(page))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, cancel_job);
        self.0.serve_write(request).await
    }

    async fn replay_job(
        &self,
        request: Request<pb::ReplayJobRequest>,
    ) -> Result<Response<pb::ReplayJobResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, replay_job);
        self.0.serve_write(request).await
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let is_stale = stale(&request.get_ref().read);
        forward_unless_here!(self.0, request, is_stale, job_service, list_dead_letters);
        let principal = principal_of(&request)?;
        let request = request.into_inner();
        let limit = page_limit(request.limit);
        let after = request.after.map(JobId);
        let max_bytes = self.0.limits.max_page_bytes;
        let mut page = self
            .0
            .read(is_stale, |state| {
                job_page(state, state.dead_letters(after, limit), false, max_bytes)
            })
            .await?;
        // A bound principal's page holds its tenants' dead letters only (it may be short;
        // `next_after` still pages on through the rest).
        page.jobs.retain(|job| {
            job.spec
                .as_ref()
                .is_some_and(|s| principal.allows(&TenantId::from(s.tenant.as_str())))
        });
        Ok(Response::new(page))
    }

    async fn get_lineage(
        &self,
        request: Request<pb::GetLineageRequest>,
    ) -> Result<Response<pb::GetLineageResponse>, Status> {
        let is_stale = stale(&request.get_ref().read);
        forward_unless_here!(self.0, request, is_stale, job_service, get_lineage);
        let principal = principal_of(&request)?;
        let wanted = request.into_inner();
        if wanted.artifact.is_empty() {
            return Err(status::invalid(
                "artifact",
                "name an artifact: its name, URI or digest",
            ));
        }
        if wanted.depth > MAX_LINEAGE_DEPTH {
            return Err(status::invalid(
                "depth",
                format!("at most {MAX_LINEAGE_DEPTH} steps"),
            ));
        }
        let direction = pb::LineageDirection::try_from(wanted.direction).map_err(|_| {
            status::invalid(
                "direction",
                format!("unknown direction {}", wanted.direction),
            )
        })?;
        let scope = LineageScope {
            up: direction != pb::LineageDirection::Down,
            down: direction != pb::LineageDirection::Up,
            depth: wanted.depth,
            max_links: MAX_LINEAGE_LINKS,
        };
        let answer = self
            .0
            .read_applied(is_stale, |applied| {
                let (links, truncated) = applied.state.lineage_of(&wanted.artifact, scope);
                let links = links
                    .iter()
                    .filter(|l| principal.allows(&l.job.spec.tenant))
                    .map(|l| pb::LineageLink {
                        job_id: l.job.id.0,
                        tenant: l.job.spec.tenant.to_string(),
                        job_type: l.job.spec.job_type.to_string(),
                        status: convert::status_out(l.job.status()).into(),
                        wrote: l.wrote,
                        artifact: Some(convert::artifact_out(l.artifact)),
                        depth: l.depth,
                    })
                    .collect();
                pb::GetLineageResponse { links, truncated }
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn backfill_schedule(
        &self,
        request: Request<pb::BackfillScheduleRequest>,
    ) -> Result<Response<pb::SubmitPlanResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, backfill_schedule);
        let principal = principal_of(&request)?;
        let mut wanted = request.into_inner();
        match (
            wanted.since_ms,
            wanted.until_ms,
            wanted.fire_times.is_empty(),
        ) {
            (Some(since), Some(until), true) => {
                // This node leads: its replica has the schedule as the log has it now.
                let id = ScheduleId::new(wanted.schedule_id.clone());
                // The cadence copied out: its fire times are worked out without the lock.
                let cadence = self.0.raft.read_local(|applied| {
                    let schedule = applied.state.schedule(&id)?;
                    Some((schedule.cadence.clone(), schedule.anchor_ms))
                });
                let Some((cadence, anchor_ms)) = cadence else {
                    return Err(status::scheduler(&SchedulerError::ScheduleNotFound(id)));
                };
                let mut times = Vec::new();
                let mut t = Some(since.saturating_sub(1));
                while let Some(after) = t {
                    match cadence.next_after(anchor_ms, after) {
                        Some(next) if next < until && times.len() <= MAX_BACKFILL => {
                            times.push(next);
                            t = Some(next);
                        }
                        _ => break,
                    }
                }
                if times.is_empty() || times.len() > MAX_BACKFILL {
                    return Err(status::invalid(
                        "since_ms",
                        format!(
                            "the window holds {} fire times; a backfill runs 1 to {MAX_BACKFILL}",
                            if times.len() > MAX_BACKFILL {
                                "more than 1,000".to_owned()
                            } else {
                                "no".to_owned()
                            }
                        ),
                    ));
                }
                wanted.fire_times = times;
            }
            (None, None, false) => {}
            _ => {
                return Err(status::invalid(
                    "fire_times",
                    "give a window (since_ms and until_ms) or the fire times, not both",
                ))
            }
        }
        let bytes = wanted.encoded_len();
        self.0.serve_sized(&principal, wanted, bytes).await
    }

    async fn cancel_plan(
        &self,
        request: Request<pb::CancelPlanRequest>,
    ) -> Result<Response<pb::CancelPlanResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, cancel_plan);
        self.0.serve_write(request).await
    }

    async fn create_schedule(
        &self,
        request: Request<pb::CreateScheduleRequest>,
    ) -> Result<Response<pb::ScheduleResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, create_schedule);
        self.0.serve_write(request).await
    }

    async fn get_schedule(
        &self,
        request: Request<pb::GetScheduleRequest>,
    ) -> Result<Response<pb::GetScheduleResponse>, Status> {
        let is_stale = stale(&request.get_ref().read);
        forward_unless_here!(self.0, request, is_stale, job_service, get_schedule);
        let principal = principal_of(&request)?;
        let wanted = request.into_inner();
        let upcoming = match wanted.upcoming {
            0 => DEFAULT_UPCOMING,
            n => (n as usize).min(MAX_UPCOMING),
        };
        let id = ScheduleId::new(wanted.id);
        let schedule = self
            .0
            .read_applied(is_stale, |applied| {
                applied
                    .state
                    .schedule(&id)
                    .filter(|s| principal.allows(&s.template.tenant))
                    .map(|s| convert::schedule_out(s, upcoming))
            })
            .await?;
        let schedule =
            schedule.ok_or_else(|| status::scheduler(&SchedulerError::ScheduleNotFound(id)))?;
        Ok(Response::new(pb::GetScheduleResponse {
            schedule: Some(schedule),
        }))
    }

    async fn list_schedules(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let is_stale = stale(&request.get_ref().read);
        forward_unless_here!(self.0, request, is_stale, job_service, list_schedules);
        let principal = principal_of(&request)?;
        let schedules = self
            .0
            .read_applied(is_stale, |applied| {
                applied
                    .state
                    .schedules()
                    .filter(|s| principal.allows(&s.template.tenant))
                    .map(|s| convert::schedule_out(s, 1))
                    .collect()
            })
            .await?;
        Ok(Response::new(pb::ListSchedulesResponse { schedules }))
    }

    async fn pause_schedule(
        &self,
        request: Request<pb::ScheduleRequest>,
    ) -> Result<Response<pb::ScheduleResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, pause_schedule);
        self.change_schedule(request, ScheduleAction::Pause).await
    }

    async fn resume_schedule(
        &self,
        request: Request<pb::ScheduleRequest>,
    ) -> Result<Response<pb::ScheduleResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, resume_schedule);
        self.change_schedule(request, ScheduleAction::Resume).await
    }

    async fn delete_schedule(
        &self,
        request: Request<pb::ScheduleRequest>,
    ) -> Result<Response<pb::ScheduleResponse>, Status> {
        forward_unless_here!(self.0, request, false, job_service, delete_schedule);
        self.change_schedule(request, ScheduleAction::Delete).await
    }
}
