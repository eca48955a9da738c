//! The cluster load generator behind `rota bench`: it starts three `rota agent` processes
//! (or uses a cluster it is pointed at) and moves jobs through them the way producers and
//! workers would, then checks that every job ran exactly once.
//!
//! A run has up to three phases, each over `jobs` jobs of ~`payload_bytes`:
//! 1. **enqueue**: producers alone add jobs in batches (nobody leases them yet);
//! 2. **cycle**: producers and workers together; workers lease in batches and complete each
//!    job in one batch call. With `kill_leader`, the leader is SIGKILLed every `kill_every`
//!    and restarted a second later. With `duration`, the producers hold `rate` for that
//!    long instead of sending `jobs`, and each node's resident memory is sampled
//!    (`memory`) to tell whether it holds steady;
//! 3. **drain**: workers alone lease and complete the jobs of phase 1.
//!
//! Every payload carries its job's sequence number and the time its enqueue was due (at a
//! fixed rate, when the rate says its batch should go, so a stalled producer cannot hide
//! latency; else when it was sent), so a lease tells how long the job waited to start and a
//! completion its latency and which job it was; at the end the ledger is read
//! back and each sequence number must name exactly one job, succeeded, completed once.

mod audit;
mod kill;
pub use kill::Restart;
mod local;
mod memory;
mod phases;
mod produce;
mod report;
mod scrape;
mod tally;
mod work;

pub(crate) use local::{cpu_secs, rss_mib, start_cluster, Target};
pub use memory::{Memory, NodeMemory, RssSample, Verdict};
pub(crate) use produce::{produce_all, Pace};
pub use report::{table, Failover, Phase, Quantiles, Report};
pub(crate) use tally::Tally;

use crate::cluster::Access;
use crate::BenchError;
use local::Local;
use rota_client::{Client, ClientConfig};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The tenant every bench job is enqueued under.
const TENANT: &str = "bench";

/// Most sequence numbers one run may tally: about 10 bytes each in the bench process (the
/// producers' and workers' tallies, the audit's count), all allocated when the run starts.
pub const MAX_RUN_JOBS: u64 = 100_000_000;

/// Most memory samples one duration run may keep in its report.
pub const MAX_MEMORY_SAMPLES: u64 = 10_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// A running cluster to use; empty starts `nodes` local agents of `rota_bin`.
    pub endpoints: Vec<String>,
    /// How every part of the run reaches the cluster at `endpoints`.
    pub access: Access,
    /// Start the local agents with TLS (and so auth): a CA and certificates written in
    /// their data directory, the run's setup and watching done with the operator's client
    /// certificate, producers and workers with tokens of their own (the workers' bound to
    /// the bench's tenant), as a secured deployment runs.
    pub tls: bool,
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
    /// Jobs each producer keeps in flight: it sends a batch while earlier ones are still
    /// unanswered, up to this many jobs (rounded up to whole batches); one batch at a time
    /// when unset.
    pub in_flight: Option<usize>,
    pub workers: usize,
    /// Most jobs per lease call.
    pub lease_batch: u32,
    /// How long a worker's lease call waits for a job (a long poll); 0 answers at once and
    /// the worker polls.
    pub lease_wait_ms: u32,
    pub payload_bytes: usize,
    /// Enqueue at most this many jobs per second in the cycle phase (all producers).
    pub rate: Option<u64>,
    /// Run the cycle phase for this long at `rate` (which it needs) instead of over `jobs`.
    pub duration: Option<Duration>,
    /// Time between memory samples of a `duration` run.
    pub sample_every: Duration,
    /// Run phase 1 (and so phase 3).
    pub enqueue_phase: bool,
    /// How many times to SIGKILL the leader during the cycle phase (local cluster only);
    /// with `restart`, how many planned restarts.
    pub kill_leader: u32,
    /// How those stops are made: SIGKILL, SIGTERM of the leader, or a rolling restart.
    pub restart: Restart,
    pub kill_every: Duration,
    /// Gives up (and reports what is missing) after this long.
    pub timeout: Duration,
    /// Sets how long finished jobs stay in memory (all three final states) before the run.
    pub retain: Option<Duration>,
    /// Sets how long archived jobs stay in the archive before the run.
    pub archive_for: Option<Duration>,
    /// Scrape every started agent's `/metrics` this often during the run, as a Prometheus
    /// server would (to measure what watching costs).
    pub scrape_every: Option<Duration>,
}

impl LoadConfig {
    /// The defaults: three local agents, 200,000 jobs, 4 producers, 16 workers.
    pub fn new(rota_bin: PathBuf) -> Self {
        Self {
            endpoints: Vec::new(),
            access: Access::default(),
            tls: false,
            rota_bin,
            nodes: 3,
            agent_args: Vec::new(),
            data_root: None,
            jobs: 200_000,
            producers: 4,
            enqueue_batch: 500,
            in_flight: None,
            workers: 16,
            lease_batch: 256,
            lease_wait_ms: 1_000,
            payload_bytes: 100,
            rate: None,
            duration: None,
            sample_every: Duration::from_secs(10),
            enqueue_phase: true,
            kill_leader: 0,
            restart: Restart::Kill,
            kill_every: Duration::from_secs(3),
            timeout: Duration::from_secs(600),
            retain: None,
            archive_for: None,
            scrape_every: None,
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
        if self.tls && !self.endpoints.is_empty() {
            return Err(BenchError::Settings(
                "--tls makes the cluster the bench starts secure; to reach a cluster of your own over TLS give --tls-ca (and --token or --tls-cert and --tls-key)",
            ));
        }
        if self.kill_leader > 0 && !self.endpoints.is_empty() {
            return Err(BenchError::Settings(
                "--kill-leader needs the cluster the bench starts itself",
            ));
        }
        if self.scrape_every.is_some() && (self.tls || !self.endpoints.is_empty()) {
            return Err(BenchError::Settings(
                "--scrape-metrics scrapes the plaintext agents the bench starts itself",
            ));
        }
        if self.scrape_every.is_some_and(|every| every.is_zero()) {
            return Err(BenchError::Settings("--scrape-metrics must be positive"));
        }
        if self.in_flight == Some(0) {
            return Err(BenchError::Settings("--in-flight must be at least 1 job"));
        }
        if self.lease_wait_ms > rota_client::MAX_LEASE_WAIT_MS {
            return Err(BenchError::Settings(
                "--lease-wait-ms is at most 30000 (the longest a node lets a lease wait)",
            ));
        }
        if self.rate == Some(0) {
            return Err(BenchError::Settings("rate must be at least 1 job/s"));
        }
        self.check_duration()?;
        if self.fill_jobs().saturating_add(self.cycle_jobs()) > MAX_RUN_JOBS {
            return Err(BenchError::Settings(
                "a run tallies at most 100,000,000 jobs: lower --jobs, --rate or --duration",
            ));
        }
        Ok(())
    }

    /// A duration run needs a rate to hold and room for at least three memory samples.
    fn check_duration(&self) -> Result<(), BenchError> {
        let Some(duration) = self.duration else {
            return Ok(());
        };
        if self.rate.is_none() {
            return Err(BenchError::Settings(
                "--duration needs --rate: the jobs per second to hold for that long",
            ));
        }
        if self.sample_every.is_zero() || duration < 2 * self.sample_every {
            return Err(BenchError::Settings(
                "--duration must be at least twice --sample-every (three memory samples)",
            ));
        }
        if duration.as_secs_f64() / self.sample_every.as_secs_f64() >= MAX_MEMORY_SAMPLES as f64 {
            return Err(BenchError::Settings(
                "a run keeps at most 10,000 memory samples: raise --sample-every",
            ));
        }
        Ok(())
    }

    /// Jobs of the enqueue phase (and so of the drain phase).
    pub(crate) fn fill_jobs(&self) -> u64 {
        if self.enqueue_phase {
            self.jobs
        } else {
            0
        }
    }

    /// Jobs the cycle phase enqueues if its producers keep up: `rate` × `duration` for a
    /// duration run, else `jobs`.
    pub(crate) fn cycle_jobs(&self) -> u64 {
        match (self.duration, self.rate) {
            (Some(duration), Some(rate)) => (rate as f64 * duration.as_secs_f64()).ceil() as u64,
            _ => self.jobs,
        }
    }

    /// How long workers go on and the run waits before giving up: `timeout`, after the
    /// `duration` of a duration run.
    pub(crate) fn give_up_after(&self) -> Duration {
        self.timeout + self.duration.unwrap_or_default()
    }
}

/// Starts the local cluster when asked to, runs the phases, checks the ledger.
pub async fn run(config: LoadConfig) -> Result<Report, BenchError> {
    config.check()?;
    let (target, local) = start_cluster(&config).await?;
    let Local { agents, _dir } = local;
    let scraper = config.scrape_every.map(|every| {
        let urls = agents
            .iter()
            .map(|agent| format!("http://{}/metrics", agent.http_addr))
            .collect();
        scrape::start(urls, every)
    });
    let agents = Arc::new(Mutex::new(agents));
    let result = tokio::time::timeout(
        config.give_up_after() + Duration::from_secs(120),
        phases::phases(&config, &target, agents.clone()),
    )
    .await;
    let scrapes = scraper.map(scrape::Scraper::stop);
    let mut report = match result {
        Ok(report) => report?,
        Err(_) => return Err(BenchError::RunTimeout(config.give_up_after())),
    };
    if let Ok(agents) = agents.lock() {
        report.rss_mib = rss_mib(&agents);
        report.cpu_secs = cpu_secs(&agents);
    }
    report.scrapes = scrapes;
    Ok(report)
}

/// Client `i` of `endpoints` with `access`: each starts at a different node, as a fleet of
/// producers and workers would.
pub(crate) fn client_for(
    access: &Access,
    endpoints: &[String],
    i: usize,
) -> Result<Client, BenchError> {
    let mut rotated = endpoints.to_vec();
    rotated.rotate_left(i % endpoints.len());
    Client::with_config(ClientConfig {
        call_timeout: Duration::from_secs(10),
        retry_for: Duration::from_secs(60),
        ..access.config(rotated)
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
            LoadConfig {
                endpoints: vec!["127.0.0.1:1".into()],
                kill_leader: 0,
                tls: true,
                ..base.clone()
            },
            LoadConfig {
                duration: Some(Duration::from_secs(60)),
                rate: None,
                ..base.clone()
            },
            LoadConfig {
                duration: Some(Duration::from_secs(15)),
                ..base.clone()
            },
            LoadConfig {
                duration: Some(Duration::from_secs(24 * 3600)),
                sample_every: Duration::from_secs(1),
                ..base.clone()
            },
            LoadConfig {
                duration: Some(Duration::from_secs(3600)),
                rate: Some(100_000),
                ..base.clone()
            },
        ];
        for case in cases {
            assert!(case.check().is_err(), "{case:?}");
        }
        assert!(base.check().is_ok());
    }

    #[test]
    fn a_duration_run_sizes_its_cycle_by_rate_and_time() {
        let soak = LoadConfig {
            duration: Some(Duration::from_secs(20)),
            rate: Some(500),
            sample_every: Duration::from_secs(2),
            enqueue_phase: false,
            ..LoadConfig::new(PathBuf::from("rota"))
        };
        assert!(soak.check().is_ok());
        assert_eq!(soak.fill_jobs(), 0);
        assert_eq!(soak.cycle_jobs(), 10_000);
        assert_eq!(soak.give_up_after(), Duration::from_secs(620));
    }
}
