//! The cluster load generator behind `rota bench`: it starts three `rota agent` processes
//! (or uses a cluster it is pointed at) and moves jobs through them the way producers and
//! workers would, then checks that every job ran exactly once.
//!
//! A run has up to three phases, each over `jobs` jobs of ~`payload_bytes`:
//! 1. **enqueue**: producers alone add jobs in batches (nobody leases them yet);
//! 2. **cycle**: producers and workers together; workers lease in batches and complete each
//!    job in one batch call. With `kill_leader`, the leader is SIGKILLed every `kill_every`
//!    and restarted a second later;
//! 3. **drain**: workers alone lease and complete the jobs of phase 1.
//!
//! Every payload carries its job's sequence number and the time its enqueue was sent, so a
//! completion tells the job's latency and which job it was; at the end the ledger is read
//! back and each sequence number must name exactly one job, succeeded, completed once.

mod audit;
mod kill;
mod local;
mod phases;
mod produce;
mod report;
mod tally;
mod work;

pub(crate) use local::{rss_mib, start_cluster};
pub(crate) use produce::produce_all;
pub use report::{table, Failover, Phase, Quantiles, Report};
pub(crate) use tally::Tally;

use crate::BenchError;
use local::Local;
use rota_client::{Client, ClientConfig};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The tenant every bench job is enqueued under.
const TENANT: &str = "bench";

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// A running cluster to use; empty starts `nodes` local agents of `rota_bin`.
    pub endpoints: Vec<String>,
    pub rota_bin: PathBuf,
    pub nodes: usize,
    /// Flags added to every `rota agent` started.
    pub agent_args: Vec<String>,
    /// Where started agents keep their data (a temporary directory under it).
    pub data_root: Option<PathBuf>,
    /// Jobs per phase.
    pub jobs: u64,
    pub producers: usize,
    /// Jobs per enqueue call.
    pub enqueue_batch: usize,
    pub workers: usize,
    /// Most jobs per lease call.
    pub lease_batch: u32,
    pub payload_bytes: usize,
    /// Enqueue at most this many jobs per second in the cycle phase (all producers).
    pub rate: Option<u64>,
    /// Run phase 1 (and so phase 3).
    pub enqueue_phase: bool,
    /// How many times to SIGKILL the leader during the cycle phase (local cluster only).
    pub kill_leader: u32,
    pub kill_every: Duration,
    /// Gives up (and reports what is missing) after this long.
    pub timeout: Duration,
}

impl LoadConfig {
    /// The defaults: three local agents, 200,000 jobs, 4 producers, 16 workers.
    pub fn new(rota_bin: PathBuf) -> Self {
        Self {
            endpoints: Vec::new(),
            rota_bin,
            nodes: 3,
            agent_args: Vec::new(),
            data_root: None,
            jobs: 200_000,
            producers: 4,
            enqueue_batch: 500,
            workers: 16,
            lease_batch: 256,
            payload_bytes: 100,
            rate: None,
            enqueue_phase: true,
            kill_leader: 0,
            kill_every: Duration::from_secs(3),
            timeout: Duration::from_secs(600),
        }
    }

    /// A few seconds' smoke run: small N, one leader kill.
    pub fn quick(rota_bin: PathBuf) -> Self {
        Self {
            jobs: 3_000,
            producers: 2,
            enqueue_batch: 100,
            workers: 4,
            lease_batch: 64,
            rate: Some(1_000),
            kill_leader: 1,
            kill_every: Duration::from_millis(1_500),
            timeout: Duration::from_secs(120),
            ..Self::new(rota_bin)
        }
    }

    /// Refuses settings no run can use, before anything is started.
    pub(crate) fn check(&self) -> Result<(), BenchError> {
        if self.jobs == 0 || self.producers == 0 || self.workers == 0 {
            return Err(BenchError::Settings(
                "jobs, producers and workers must be at least 1",
            ));
        }
        if !(1..=rota_state_machine::MAX_BATCH).contains(&self.enqueue_batch) {
            return Err(BenchError::BatchSize {
                which: "enqueue",
                max: rota_state_machine::MAX_BATCH,
            });
        }
        if self.lease_batch == 0 || self.lease_batch > rota_state_machine::MAX_LEASE_BATCH {
            return Err(BenchError::BatchSize {
                which: "lease",
                max: rota_state_machine::MAX_LEASE_BATCH as usize,
            });
        }
        if self.kill_leader > 0 && !self.endpoints.is_empty() {
            return Err(BenchError::Settings(
                "--kill-leader needs the cluster the bench starts itself",
            ));
        }
        if self.rate == Some(0) {
            return Err(BenchError::Settings("rate must be at least 1 job/s"));
        }
        Ok(())
    }
}

/// Starts the local cluster when asked to, runs the phases, checks the ledger.
pub async fn run(config: LoadConfig) -> Result<Report, BenchError> {
    config.check()?;
    let (endpoints, local) = start_cluster(&config).await?;
    let Local { agents, _dir } = local;
    let agents = Arc::new(Mutex::new(agents));
    let result = tokio::time::timeout(
        config.timeout + Duration::from_secs(120),
        phases::phases(&config, &endpoints, agents.clone()),
    )
    .await;
    let mut report = match result {
        Ok(report) => report?,
        Err(_) => return Err(BenchError::RunTimeout(config.timeout)),
    };
    if let Ok(agents) = agents.lock() {
        report.rss_mib = rss_mib(&agents);
    }
    Ok(report)
}

/// Each client starts at a different node, as a fleet of producers and workers would.
pub(crate) fn client_for(endpoints: &[String], i: usize) -> Result<Client, BenchError> {
    let mut rotated = endpoints.to_vec();
    rotated.rotate_left(i % endpoints.len());
    Client::with_config(ClientConfig {
        call_timeout: Duration::from_secs(10),
        retry_for: Duration::from_secs(60),
        ..ClientConfig::new(rotated)
    })
    .map_err(BenchError::Client)
}

/// Wall-clock nanoseconds, to make job types unique to a run.
pub(crate) fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused() {
        let base = LoadConfig::quick(PathBuf::from("rota"));
        let cases = [
            LoadConfig {
                jobs: 0,
                ..base.clone()
            },
            LoadConfig {
                enqueue_batch: 0,
                ..base.clone()
            },
            LoadConfig {
                enqueue_batch: 5_000,
                ..base.clone()
            },
            LoadConfig {
                lease_batch: 0,
                ..base.clone()
            },
            LoadConfig {
                rate: Some(0),
                ..base.clone()
            },
            LoadConfig {
                endpoints: vec!["127.0.0.1:1".into()],
                ..base.clone()
            },
        ];
        for case in cases {
            assert!(case.check().is_err(), "{case:?}");
        }
        assert!(base.check().is_ok());
    }
}
