//! Operator commands: quotas, throttles, pauses, breakers, maintenance and schedules.

use crate::command::{Reply, Response};
use crate::error::SchedulerError;
use crate::governance::{
    Breaker, BreakerConfig, GovernanceChange, Quota, Scope, Stamp, TokenBucket,
};
use crate::ids::{IncidentId, JobType, ScheduleId, TenantId};
use crate::job::{JobSpec, Origin};
use crate::ledger::{At, State};
use crate::schedule::{Cadence, CatchUp, Schedule};
use crate::submit::{check_name, check_spec, check_stamp};
use std::collections::BTreeMap;

/// A quota's rate: at least one an hour (pausing is how to stop a source), a burst only
/// with a rate, and at least one.
pub(crate) fn check_rate(
    max_per_hour: Option<u32>,
    burst: Option<u32>,
) -> Result<(), SchedulerError> {
    if max_per_hour == Some(0) {
        return Err(SchedulerError::invalid(
            "max_per_hour",
            "must be at least 1 (pause the source to stop it)",
        ));
    }
    if burst.is_some() && max_per_hour.is_none() {
        return Err(SchedulerError::invalid("burst", "needs max_per_hour"));
    }
    if burst == Some(0) {
        return Err(SchedulerError::invalid("burst", "must be at least 1"));
    }
    Ok(())
}

/// A breaker's settings: a threshold in percent, a window of a second or more, at least
/// one attempt before it may trip.
pub(crate) fn check_breaker(c: &BreakerConfig) -> Result<(), SchedulerError> {
    if !(1..=100).contains(&c.failure_threshold_percent) {
        return Err(SchedulerError::invalid(
            "failure_threshold_percent",
            "must be between 1 and 100",
        ));
    }
    if c.window_ms < 1_000 {
        return Err(SchedulerError::invalid(
            "window_ms",
            "must be at least 1000",
        ));
    }
    if c.min_attempts == 0 {
        return Err(SchedulerError::invalid(
            "min_attempts",
            "must be at least 1",
        ));
    }
    Ok(())
}

pub(crate) fn check_scope(scope: &Scope) -> Result<(), SchedulerError> {
    if scope.tenant.is_none() && scope.job_type.is_none() {
        return Err(SchedulerError::invalid(
            "scope",
            "name a tenant, a job type or both (maintenance mode stops everything)",
        ));
    }
    if let Some(t) = &scope.tenant {
        check_name("tenant", t.as_str())?;
    }
    if let Some(jt) = &scope.job_type {
        check_name("job_type", jt.as_str())?;
    }
    Ok(())
}

/// The most schedules the cluster keeps.
pub const MAX_SCHEDULES: usize = 10_000;

/// The latest start or end a schedule may have: the last millisecond of the year 9999.
const MAX_SCHEDULE_TIME_MS: u64 = 253_402_300_799_999;

/// A schedule as `CreateSchedule` asks for it.
pub(crate) struct NewSchedule {
    pub id: ScheduleId,
    pub template: JobSpec,
    pub cadence: Cadence,
    pub catch_up: CatchUp,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
}

impl State {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set_quota(
        &mut self,
        tenant: TenantId,
        job_type: Option<JobType>,
        max_active: Option<u32>,
        max_per_hour: Option<u32>,
        burst: Option<u32>,
        stamp: Stamp,
        at: At,
    ) -> Response {
        check_stamp(&stamp)?;
        let scope = Scope {
            tenant: Some(tenant),
            job_type,
        };
        check_scope(&scope)?;
        check_rate(max_per_hour, burst)?;
        let rate = max_per_hour.map(|per_hour| {
            let burst = burst.unwrap_or(per_hour);
            match self.ledger.quotas.get(&scope).and_then(|q| q.rate.clone()) {
                // Keep the tokens already spent when only the limits change.
                Some(mut bucket) => {
                    bucket.units = bucket
                        .units
                        .min(u64::from(burst) * crate::governance::TOKEN);
                    bucket.max_per_hour = per_hour;
                    bucket.burst = burst;
                    bucket
                }
                None => TokenBucket::new(per_hour, burst, at.now_ms),
            }
        });
        if max_active.is_none() && rate.is_none() {
            self.ledger.quotas.remove(&scope);
        } else {
            self.ledger
                .quotas
                .insert(scope.clone(), Quota { max_active, rate });
        }
        let change = GovernanceChange::QuotaSet {
            scope,
            max_active,
            max_per_hour,
            burst,
        };
        self.govern(Some(stamp), change, at);
        Ok(Reply::Done)
    }

    pub(crate) fn throttle(
        &mut self,
        scope: Scope,
        max_concurrent: Option<u32>,
        stamp: Stamp,
        at: At,
    ) -> Response {
        check_stamp(&stamp)?;
        check_scope(&scope)?;
        match max_concurrent {
            Some(cap) => self.ledger.throttles.insert(scope.clone(), cap),
            None => self.ledger.throttles.remove(&scope),
        };
        let change = GovernanceChange::Throttled {
            scope,
            max_concurrent,
        };
        self.govern(Some(stamp), change, at);
        Ok(Reply::Done)
    }

    pub(crate) fn pause_source(&mut self, scope: Scope, stamp: Stamp, at: At) -> Response {
        check_stamp(&stamp)?;
        check_scope(&scope)?;
        self.ledger.paused.insert(scope.clone(), stamp.clone());
        self.govern(Some(stamp), GovernanceChange::SourcePaused { scope }, at);
        Ok(Reply::Done)
    }

    pub(crate) fn resume_source(&mut self, scope: Scope, stamp: Stamp, at: At) -> Response {
        check_stamp(&stamp)?;
        check_scope(&scope)?;
        self.ledger.paused.remove(&scope);
        self.govern(Some(stamp), GovernanceChange::SourceResumed { scope }, at);
        Ok(Reply::Done)
    }

    pub(crate) fn configure_breaker(
        &mut self,
        job_type: JobType,
        config: Option<BreakerConfig>,
        stamp: Stamp,
        at: At,
    ) -> Response {
        check_stamp(&stamp)?;
        check_name("job_type", job_type.as_str())?;
        if let Some(c) = &config {
            check_breaker(c)?;
        }
        match config.clone() {
            Some(config) => {
                let breaker = self
                    .ledger
                    .breakers
                    .entry(job_type.clone())
                    .or_insert(Breaker {
                        config: config.clone(),
                        buckets: BTreeMap::new(),
                        open_incident: None,
                    });
                breaker.config = config;
            }
            None => {
                if let Some(open) = self
                    .ledger
                    .breakers
                    .remove(&job_type)
                    .and_then(|b| b.open_incident)
                {
                    if let Some(incident) = self.ledger.incidents.get_mut(&open) {
                        incident.resolved = Some((at.now_ms, stamp.clone()));
                    }
                }
            }
        }
        let change = GovernanceChange::BreakerConfigured { job_type, config };
        self.govern(Some(stamp), change, at);
        Ok(Reply::Done)
    }

    pub(crate) fn reset_breaker(&mut self, job_type: JobType, stamp: Stamp, at: At) -> Response {
        check_stamp(&stamp)?;
        let open = self
            .ledger
            .breakers
            .get_mut(&job_type)
            .and_then(|b| b.open_incident.take().map(|open| (b, open)));
        let Some((breaker, incident)) = open else {
            return Err(SchedulerError::BreakerNotOpen(job_type.0.to_string()));
        };
        breaker.buckets.clear();
        if let Some(incident) = self.ledger.incidents.get_mut(&incident) {
            incident.resolved = Some((at.now_ms, stamp.clone()));
        }
        self.govern(Some(stamp), GovernanceChange::BreakerReset { job_type }, at);
        Ok(Reply::Done)
    }

    pub(crate) fn acknowledge_incident(
        &mut self,
        incident: IncidentId,
        stamp: Stamp,
        at: At,
    ) -> Response {
        check_stamp(&stamp)?;
        let open = self.ledger.incidents.get(&incident);
        if open.is_none_or(|i| i.resolved.is_some()) {
            return Err(SchedulerError::IncidentNotOpen(incident));
        }
        self.ledger
            .incident_acks
            .insert(incident, (at.now_ms, stamp.clone()));
        let change = GovernanceChange::IncidentAcknowledged { incident };
        self.govern(Some(stamp), change, at);
        Ok(Reply::Done)
    }

    pub(crate) fn resolve_incident(
        &mut self,
        incident: IncidentId,
        stamp: Stamp,
        at: At,
    ) -> Response {
        check_stamp(&stamp)?;
        let Some(found) = self
            .ledger
            .incidents
            .get_mut(&incident)
            .filter(|i| i.resolved.is_none())
        else {
            return Err(SchedulerError::IncidentNotOpen(incident));
        };
        found.resolved = Some((at.now_ms, stamp.clone()));
        if let Some(breaker) = self.ledger.breakers.get_mut(&found.job_type) {
            if breaker.open_incident == Some(incident) {
                breaker.open_incident = None;
                breaker.buckets.clear();
            }
        }
        let change = GovernanceChange::IncidentResolved { incident };
        self.govern(Some(stamp), change, at);
        Ok(Reply::Done)
    }

    pub(crate) fn block_tenant(
        &mut self,
        tenant: TenantId,
        blocked: bool,
        stamp: Stamp,
        at: At,
    ) -> Response {
        check_stamp(&stamp)?;
        check_name("tenant", tenant.as_str())?;
        match blocked {
            true => self.ledger.blocked.insert(tenant.clone(), stamp.clone()),
            false => self.ledger.blocked.remove(&tenant),
        };
        let change = GovernanceChange::TenantBlocked { tenant, blocked };
        self.govern(Some(stamp), change, at);
        Ok(Reply::Done)
    }

    /// Refuses what would add work for a blocked tenant.
    pub(crate) fn check_not_blocked(&self, tenant: &TenantId) -> Result<(), SchedulerError> {
        match self.ledger.blocked.get(tenant) {
            Some(stamp) => Err(SchedulerError::TenantBlocked {
                tenant: tenant.clone(),
                reason: stamp.reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Blocked tenants, by name, with who blocked each and why.
    pub fn blocked_tenants(&self) -> impl Iterator<Item = (&TenantId, &Stamp)> {
        self.ledger.blocked.iter()
    }

    pub(crate) fn set_maintenance(&mut self, enabled: bool, stamp: Stamp, at: At) -> Response {
        check_stamp(&stamp)?;
        self.ledger.maintenance = enabled.then(|| stamp.clone());
        self.govern(Some(stamp), GovernanceChange::Maintenance { enabled }, at);
        Ok(Reply::Done)
    }

    pub(crate) fn create_schedule(&mut self, new: NewSchedule, stamp: Stamp, at: At) -> Response {
        check_stamp(&stamp)?;
        let NewSchedule {
            id,
            template,
            cadence,
            catch_up,
            start_ms,
            end_ms,
        } = new;
        check_name("schedule", id.as_str())?;
        check_spec(&template)?;
        if !template.depends_on.is_empty() || template.idempotency_key.is_some() {
            return Err(SchedulerError::invalid(
                "template",
                "a schedule's template has no dependencies and no idempotency key (each firing gets its own)",
            ));
        }
        if template.backfill.is_some() {
            return Err(SchedulerError::invalid(
                "template",
                "a schedule's firings are not backfills (a backfill is its own operation)",
            ));
        }
        cadence.validate(at.now_ms)?;
        catch_up.validate()?;
        if self.ledger.schedules.len() >= MAX_SCHEDULES && !self.ledger.schedules.contains_key(&id)
        {
            return Err(SchedulerError::invalid(
                "id",
                format!("the cluster holds {MAX_SCHEDULES} schedules, the most it keeps: delete some first"),
            ));
        }
        for (field, time) in [("start_ms", start_ms), ("end_ms", end_ms)] {
            if time.is_some_and(|t| t == 0 || t > MAX_SCHEDULE_TIME_MS) {
                return Err(SchedulerError::invalid(
                    field,
                    "must be a time after 1970 and before the year 10000",
                ));
            }
        }
        if let Some(end) = end_ms {
            if end <= at.now_ms || start_ms.is_some_and(|start| end <= start) {
                return Err(SchedulerError::invalid(
                    "end_ms",
                    "must be after the start and in the future",
                ));
            }
        }
        if self.ledger.schedules.contains_key(&id) {
            return Err(SchedulerError::ScheduleExists(id));
        }
        // An interval schedule fires at its start and every interval after; without a
        // start, one interval after its creation.
        let anchor_ms = match (&cadence, start_ms) {
            (Cadence::Every { interval_ms }, Some(start)) => {
                start.checked_sub(*interval_ms).ok_or_else(|| {
                    SchedulerError::invalid(
                        "start_ms",
                        "an interval schedule's start must be at least one interval after 1970",
                    )
                })?
            }
            _ => at.now_ms,
        };
        let mut schedule = Schedule {
            id: id.clone(),
            next_fire_ms: None,
            template,
            cadence,
            catch_up,
            anchor_ms,
            start_ms,
            end_ms,
            paused: false,
            last_fired_ms: None,
            created_by: stamp.clone(),
        };
        // A start in the past counts its firings since then as missed, as after an outage.
        schedule.next_fire_ms = schedule.first_from(start_ms.unwrap_or(at.now_ms + 1));
        if schedule.next_fire_ms.is_none() {
            let field = if end_ms.is_some() {
                "end_ms"
            } else {
                "start_ms"
            };
            return Err(SchedulerError::invalid(
                field,
                "the schedule would never fire between its start and its end",
            ));
        }
        self.idx.add_schedule(&schedule);
        self.ledger.schedules.insert(id.clone(), schedule);
        self.govern(
            Some(stamp),
            GovernanceChange::ScheduleCreated { schedule: id },
            at,
        );
        Ok(Reply::Done)
    }

    pub(crate) fn pause_schedule(
        &mut self,
        id: ScheduleId,
        paused: bool,
        stamp: Stamp,
        at: At,
    ) -> Response {
        check_stamp(&stamp)?;
        let Some(schedule) = self.ledger.schedules.get_mut(&id) else {
            return Err(SchedulerError::ScheduleNotFound(id));
        };
        self.idx.remove_schedule(schedule);
        if schedule.paused && !paused {
            // Firings that fell due while paused are not made up.
            schedule.next_fire_ms = schedule.first_from(at.now_ms + 1);
        }
        schedule.paused = paused;
        self.idx.add_schedule(schedule);
        let change = GovernanceChange::SchedulePaused {
            schedule: id,
            paused,
        };
        self.govern(Some(stamp), change, at);
        Ok(Reply::Done)
    }

    pub(crate) fn delete_schedule(&mut self, id: ScheduleId, stamp: Stamp, at: At) -> Response {
        check_stamp(&stamp)?;
        let Some(schedule) = self.ledger.schedules.remove(&id) else {
            return Err(SchedulerError::ScheduleNotFound(id));
        };
        self.idx.remove_schedule(&schedule);
        self.govern(
            Some(stamp),
            GovernanceChange::ScheduleDeleted { schedule: id },
            at,
        );
        Ok(Reply::Done)
    }

    /// Enqueues the schedule's due firings, if any, each under its firing key, and moves
    /// it on. `id` comes from the due-schedule index, so the schedule exists; were it
    /// missing, returning would leave the index entry in place and `advance_time` would
    /// loop on it.
    pub(crate) fn fire_schedule(&mut self, id: &ScheduleId, at: At) {
        let schedule = self
            .ledger
            .schedules
            .get(id)
            .expect("a schedule in the due index is in the ledger");
        let (fire, next) = schedule.due(at.now_ms);
        let firings: Vec<(u64, JobSpec)> = fire
            .iter()
            .map(|&fire_ms| {
                let mut spec = schedule.template.clone();
                spec.idempotency_key = Some(schedule.firing_key(fire_ms));
                spec.not_before_ms = None;
                (fire_ms, spec)
            })
            .collect();
        for (fire_ms, spec) in firings {
            // A blocked tenant's firings are missed, as a paused schedule's are.
            if self
                .idempotent_match(&spec.tenant, &spec.idempotency_key)
                .is_none()
                && !self.ledger.blocked.contains_key(&spec.tenant)
            {
                let origin = Origin {
                    schedule: Some((id.clone(), fire_ms)),
                    ..Origin::default()
                };
                self.create_job(spec, origin, at);
            }
        }
        let schedule = self
            .ledger
            .schedules
            .get_mut(id)
            .expect("enqueueing a firing removes no schedule");
        self.idx.remove_schedule(schedule);
        if let Some(&latest) = fire.last() {
            schedule.last_fired_ms = Some(latest);
        }
        schedule.next_fire_ms = next;
        self.idx.add_schedule(schedule);
    }
}
