//! One run's steps in order: enqueue alone, the cycle (with the leader killer and, for a
//! duration run, the memory sampler), drain alone, then the audit of the ledger.

use super::kill::{failover, kill_leaders};
use super::memory::{self, Memory};
use super::produce::{produce_all, Pace};
use super::report::{Failover, Phase, Quantiles, Report};
use super::tally::Tally;
use super::work::{join_workers, spawn_workers, Measure};
use super::{client_for, now_nanos, LoadConfig, Target};
use crate::cluster::{statuses, Agent};
use crate::BenchError;
use rota_client::proto as pb;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// What every step of one run shares.
pub(super) struct Run<'a> {
    pub(super) config: &'a LoadConfig,
    pub(super) target: &'a Target,
    /// The sequence numbers of the enqueue (and drain) phase; empty when it does not run.
    pub(super) fill: Range<u64>,
    /// The sequence numbers the cycle may send, right after `fill`.
    pub(super) cycle: Range<u64>,
    /// Per sequence number of `fill` and `cycle`.
    pub(super) tally: Arc<Tally>,
    /// The job type of the enqueue and drain phases, unique to this run.
    pub(super) fill_type: String,
    /// The job type of the cycle phase, unique to this run.
    pub(super) cycle_type: String,
}

/// What the cycle phase measured, and which of its sequence numbers it sent.
pub(super) struct Cycle {
    pub(super) phase: Phase,
    pub(super) failover: Option<Failover>,
    pub(super) memory: Option<Memory>,
    /// Within `Run::cycle`, one range per producer, in order; a duration run stops
    /// sending at its end even when producers are behind.
    pub(super) sent: Vec<Range<u64>>,
}

/// Runs the steps the settings ask for, in order, and fills the report.
/// Sets the retention windows the run asks for (`--retain`, `--archive-for`), if any.
async fn set_retention(config: &LoadConfig, target: &Target) -> Result<(), BenchError> {
    if config.retain.is_none() && config.archive_for.is_none() {
        return Ok(());
    }
    let ms = |d: Option<Duration>| d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let retain = ms(config.retain);
    client_for(&target.ops, &target.endpoints, 0)?
        .set_retention(pb::SetRetentionRequest {
            session: None,
            retention: Some(pb::Retention {
                succeeded_ms: retain,
                canceled_ms: retain,
                dead_lettered_ms: retain,
                history_ms: None,
                archive_ms: ms(config.archive_for),
            }),
            stamp: Some(pb::Stamp {
                actor: "rota bench".to_owned(),
                reason: "retention windows of the run".to_owned(),
                ticket: None,
            }),
        })
        .await
        .map_err(|source| BenchError::Call {
            call: "setting the retention windows",
            source,
        })?;
    Ok(())
}

pub(super) async fn phases(
    config: &LoadConfig,
    target: &Target,
    agents: Arc<Mutex<Vec<Agent>>>,
) -> Result<Report, BenchError> {
    set_retention(config, target).await?;
    let run_id = format!("{:x}", std::process::id() as u64 ^ now_nanos());
    let fill = 0..config.fill_jobs();
    let cycle = fill.end..fill.end + config.cycle_jobs();
    let run = Run {
        config,
        target,
        tally: Arc::new(Tally::new(cycle.end, config.give_up_after())),
        fill,
        cycle,
        fill_type: format!("bench-{run_id}-fill"),
        cycle_type: format!("bench-{run_id}-cycle"),
    };
    let mut report = Report::settings(config, target.endpoints.len());
    let term_before = max_term(target).await;
    if config.enqueue_phase {
        report.enqueue = Some(run.enqueue().await?);
    }
    let cycle = run.cycle(agents).await?;
    (report.cycle, report.failover, report.memory) = (cycle.phase, cycle.failover, cycle.memory);
    if config.enqueue_phase {
        report.drain = Some(run.drain().await?);
    }
    report.elections = max_term(target).await.saturating_sub(term_before);
    let audit = run.audit(&cycle.sent).await?;
    report.lost = audit.lost;
    report.duplicated = audit.duplicated;
    report.errors = run.tally.errors.load(Ordering::Relaxed);
    report.error_examples = run.tally.error_examples();
    Ok(report)
}

impl Run<'_> {
    /// Phase 1: producers alone enqueue the fill jobs; nobody leases them yet.
    async fn enqueue(&self) -> Result<Phase, BenchError> {
        let started = Instant::now();
        let produced = produce_all(
            self.config,
            self.target,
            &self.fill_type,
            self.fill.clone(),
            Pace::default(),
            &self.tally,
        )
        .await?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(Phase {
            enqueue_call: Some(Quantiles::of(&produced.calls)),
            ..Phase::timed(self.fill.end - self.fill.start, seconds)
        })
    }

    /// Phase 2: producers (at `rate`, for `duration` when set), workers and, when asked,
    /// the leader killer and the memory sampler at once.
    async fn cycle(&self, agents: Arc<Mutex<Vec<Agent>>>) -> Result<Cycle, BenchError> {
        let config = self.config;
        let planned = self.cycle.end - self.cycle.start;
        self.tally.start_phase(planned);
        let started = Instant::now();
        let measure = if config.kill_leader > 0 {
            Measure::LatencyAndTimes
        } else {
            Measure::Latency
        };
        let workers = spawn_workers(config, self.target, &self.cycle_type, measure, &self.tally)?;
        let killer = (config.kill_leader > 0).then(|| {
            let (target, tally) = (self.target.clone(), self.tally.clone());
            tokio::spawn(kill_leaders(config.clone(), target, agents.clone(), tally))
        });
        let sampler = self.spawn_sampler(&agents)?;
        let pace = Pace {
            rate: config.rate,
            until: config.duration.map(|d| started + d),
        };
        let produced = produce_all(
            config,
            self.target,
            &self.cycle_type,
            self.cycle.clone(),
            pace,
            &self.tally,
        )
        .await?;
        let sent = produced.sent_jobs();
        // Workers stop waiting for jobs the deadline kept from being sent.
        self.tally
            .target
            .fetch_sub(planned - sent, Ordering::SeqCst);
        self.tally.end_phase_if_done();
        let done = join_workers(workers).await?;
        let phase = Phase {
            latency: Some(Quantiles::of(&done.latency)),
            to_start: Some(Quantiles::of(&done.to_start)),
            to_done: Some(Quantiles::of(&done.to_done)),
            lease: Some(Quantiles::of(&done.lease)),
            lease_granted: Some(Quantiles::of(&done.lease_granted)),
            enqueue_call: Some(Quantiles::of(&produced.calls)),
            ..Phase::timed(sent, started.elapsed().as_secs_f64())
        };
        let kills = joined(killer, "leader killer").await?;
        let failover = kills.map(|k| Failover {
            restart: config.restart,
            ..failover(&k, &done.completions_us, config.kill_every)
        });
        Ok(Cycle {
            phase,
            failover,
            memory: joined(sampler, "memory sampler").await?,
            sent: produced.sent,
        })
    }

    /// The memory sampler of a duration run on agents the bench started; none otherwise.
    fn spawn_sampler(
        &self,
        agents: &Arc<Mutex<Vec<Agent>>>,
    ) -> Result<Option<Task<Memory>>, BenchError> {
        let Some(duration) = self.config.duration else {
            return Ok(None);
        };
        let started_here = agents
            .lock()
            .map_err(|_| BenchError::AgentsLockPoisoned)?
            .len();
        if started_here == 0 {
            return Ok(None);
        }
        let sample = memory::sample(
            self.target.ops.clone(),
            agents.clone(),
            self.config.sample_every,
            duration,
        );
        Ok(Some(tokio::spawn(sample)))
    }

    /// Phase 3: workers alone lease and complete the fill jobs of phase 1.
    async fn drain(&self) -> Result<Phase, BenchError> {
        let n = self.fill.end - self.fill.start;
        self.tally.start_phase(n);
        let started = Instant::now();
        let workers = spawn_workers(
            self.config,
            self.target,
            &self.fill_type,
            Measure::Nothing,
            &self.tally,
        )?;
        let done = join_workers(workers).await?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(Phase {
            lease: Some(Quantiles::of(&done.lease)),
            ..Phase::timed(n, seconds)
        })
    }
}

/// A task that ends with a result or a `BenchError`.
type Task<T> = JoinHandle<Result<T, BenchError>>;

/// The result of `task`, if there is one; `name` names it if it panicked.
async fn joined<T>(task: Option<Task<T>>, name: &'static str) -> Result<Option<T>, BenchError> {
    let Some(task) = task else {
        return Ok(None);
    };
    let result = task
        .await
        .map_err(|source| BenchError::Task { task: name, source })?;
    result.map(Some)
}

/// The highest term any node reports.
async fn max_term(target: &Target) -> u64 {
    statuses(&target.ops, &target.endpoints, false)
        .await
        .iter()
        .map(|s| s.term)
        .max()
        .unwrap_or(0)
}
