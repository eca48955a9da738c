//! One run's steps in order: enqueue alone, the cycle (with the leader killer), drain
//! alone, then the audit of the ledger.

use super::kill::{failover, kill_leaders};
use super::produce::produce_all;
use super::report::{Failover, Phase, Quantiles, Report};
use super::tally::Tally;
use super::work::{join_workers, spawn_workers};
use super::{now_nanos, LoadConfig};
use crate::cluster::{statuses, Agent};
use crate::BenchError;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What every step of one run shares.
pub(super) struct Run<'a> {
    pub(super) config: &'a LoadConfig,
    pub(super) endpoints: &'a [String],
    /// Sequence numbers `0..jobs` are the enqueue phase's, `jobs..2 * jobs` the cycle's.
    pub(super) tally: Arc<Tally>,
    /// The job type of the enqueue and drain phases, unique to this run.
    pub(super) fill_type: String,
    /// The job type of the cycle phase, unique to this run.
    pub(super) cycle_type: String,
}

/// Runs the steps the settings ask for, in order, and fills the report.
pub(super) async fn phases(
    config: &LoadConfig,
    endpoints: &[String],
    agents: Arc<Mutex<Vec<Agent>>>,
) -> Result<Report, BenchError> {
    let run_id = format!("{:x}", std::process::id() as u64 ^ now_nanos());
    let run = Run {
        config,
        endpoints,
        tally: Arc::new(Tally::new(2 * config.jobs, config.timeout)),
        fill_type: format!("bench-{run_id}-fill"),
        cycle_type: format!("bench-{run_id}-cycle"),
    };
    let mut report = Report::settings(config, endpoints.len());
    let term_before = max_term(endpoints).await;
    if config.enqueue_phase {
        report.enqueue = Some(run.enqueue().await?);
    }
    (report.cycle, report.failover) = run.cycle(agents).await?;
    if config.enqueue_phase {
        report.drain = Some(run.drain().await?);
    }
    report.elections = max_term(endpoints).await.saturating_sub(term_before);
    let audit = run.audit().await?;
    report.lost = audit.lost;
    report.duplicated = audit.duplicated;
    report.errors = run.tally.errors.load(Ordering::Relaxed);
    report.error_examples = run.tally.error_examples();
    Ok(report)
}

impl Run<'_> {
    /// Phase 1: producers alone enqueue the fill jobs; nobody leases them yet.
    async fn enqueue(&self) -> Result<Phase, BenchError> {
        let n = self.config.jobs;
        let started = Instant::now();
        let calls = produce_all(
            self.config,
            self.endpoints,
            &self.fill_type,
            0..n,
            None,
            &self.tally,
        )
        .await?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(Phase {
            enqueue_call: Some(Quantiles::of(&calls)),
            ..Phase::timed(n, seconds)
        })
    }

    /// Phase 2: producers (at `rate`), workers and, when asked, the leader killer at once;
    /// returns the phase and what each kill cost.
    async fn cycle(
        &self,
        agents: Arc<Mutex<Vec<Agent>>>,
    ) -> Result<(Phase, Option<Failover>), BenchError> {
        let (config, n) = (self.config, self.config.jobs);
        self.tally.completed.store(0, Ordering::SeqCst);
        let started = Instant::now();
        let workers = spawn_workers(
            config,
            self.endpoints,
            &self.cycle_type,
            n,
            true,
            &self.tally,
        )?;
        let killer = (config.kill_leader > 0).then(|| {
            tokio::spawn(kill_leaders(
                config.clone(),
                self.endpoints.to_vec(),
                agents,
                self.tally.clone(),
                n,
            ))
        });
        let calls = produce_all(
            config,
            self.endpoints,
            &self.cycle_type,
            n..2 * n,
            config.rate,
            &self.tally,
        )
        .await?;
        let done = join_workers(workers).await?;
        let seconds = started.elapsed().as_secs_f64();
        let phase = Phase {
            latency: Some(Quantiles::of(&done.latency)),
            lease: Some(Quantiles::of(&done.lease)),
            lease_granted: Some(Quantiles::of(&done.lease_granted)),
            enqueue_call: Some(Quantiles::of(&calls)),
            ..Phase::timed(n, seconds)
        };
        let Some(killer) = killer else {
            return Ok((phase, None));
        };
        let kills = killer.await.map_err(|source| BenchError::Task {
            task: "leader killer",
            source,
        })??;
        let failover = failover(&kills, &done.completions_us, config.kill_every);
        Ok((phase, Some(failover)))
    }

    /// Phase 3: workers alone lease and complete the fill jobs of phase 1.
    async fn drain(&self) -> Result<Phase, BenchError> {
        let n = self.config.jobs;
        self.tally.completed.store(0, Ordering::SeqCst);
        let started = Instant::now();
        let workers = spawn_workers(
            self.config,
            self.endpoints,
            &self.fill_type,
            n,
            false,
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

/// The highest term any node reports.
async fn max_term(addrs: &[String]) -> u64 {
    statuses(addrs, false)
        .await
        .iter()
        .map(|s| s.term)
        .max()
        .unwrap_or(0)
}
