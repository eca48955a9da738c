//! `rota bench`: the cluster load generator (`rota_benches::load`) from the command line.

use anyhow::{Context, Result};
use clap::Args;
use rota_benches::capacity;
use rota_benches::cluster::Access;
use rota_benches::load::{self, LoadConfig, Restart};
use rota_client::ClientConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Starts three local agents (or uses --endpoints with --connect) and runs the job cycle.
#[derive(Args, Debug, Default)]
pub struct BenchArgs {
    /// A few seconds' smoke run (3,000 jobs, one leader kill); fails if a job is lost or
    /// duplicated. Other flags override its settings.
    #[arg(long)]
    pub quick: bool,
    /// Use the cluster at --endpoints instead of starting one (over TLS with --tls-ca, as
    /// the principal of --token or --tls-cert; producers, workers and the audit alike).
    #[arg(long)]
    pub connect: bool,
    /// Start the agents with TLS and auth, as a secured cluster runs: certificates in the
    /// data directory, producers and workers with tokens of their own (the workers' bound
    /// to the bench's tenant). Compare a run with it to one without to see what security
    /// costs.
    #[arg(long, conflicts_with = "connect")]
    pub tls: bool,
    /// Agents to start.
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Jobs per phase [default: 200000].
    #[arg(long)]
    pub jobs: Option<u64>,
    /// Producer tasks [default: 4].
    #[arg(long)]
    pub producers: Option<usize>,
    /// Jobs per enqueue call [default: 500].
    #[arg(long)]
    pub enqueue_batch: Option<usize>,
    /// Jobs each producer keeps in flight, sending a batch while earlier ones are still
    /// unanswered (e.g. --producers 1 --in-flight 2000) [default: one batch at a time].
    #[arg(long)]
    pub in_flight: Option<usize>,
    /// How long a worker's lease call waits for a job, in ms: a long poll, answered the
    /// moment a job is ready; 0 answers at once and the worker polls [default: 1000].
    #[arg(long)]
    pub lease_wait_ms: Option<u32>,
    /// Worker tasks [default: 16].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Most jobs per lease call [default: 256].
    #[arg(long)]
    pub lease_batch: Option<u32>,
    /// Payload size in bytes [default: 100].
    #[arg(long)]
    pub payload_bytes: Option<usize>,
    /// Cap on enqueued jobs per second during the cycle, all producers together.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Hold --rate (required) in the cycle for this long instead of enqueuing --jobs, e.g.
    /// 90s, 30m, 1h30m; samples each node's memory and tells whether it held steady.
    #[arg(long, value_parser = humantime::parse_duration, requires = "rate", conflicts_with = "capacity")]
    pub duration: Option<Duration>,
    /// Time between memory samples of a --duration run, e.g. 10s, 1m [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration, requires = "duration")]
    pub sample_every: Option<Duration>,
    /// Before the run, set how long finished jobs stay in memory, e.g. 30s, 5m (all three
    /// final states). The audit then judges from the clients' tallies, not the ledger.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub retain: Option<Duration>,
    /// Before the run, set how long archived jobs stay in the archive, e.g. 2m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub archive_for: Option<Duration>,
    /// Skip the enqueue-alone and drain phases.
    #[arg(long)]
    pub cycle_only: bool,
    /// SIGKILL the leader this many times during the cycle (restarted 1 s later).
    #[arg(long)]
    pub kill_leader: Option<u32>,
    /// Planned restarts instead: SIGTERM the leader this many times during the cycle (it
    /// hands leadership away, then stops; started again at once).
    #[arg(long, conflicts_with_all = ["kill_leader", "rolling_restart"])]
    pub restart_leader: Option<u32>,
    /// A rolling restart during the cycle: SIGTERM each node in turn, followers first and
    /// the leader last, each started again and caught up before the next.
    #[arg(long, conflicts_with = "kill_leader")]
    pub rolling_restart: bool,
    /// Time between leader kills, in ms [default: 3000].
    #[arg(long)]
    pub kill_every_ms: Option<u64>,
    /// A flag for every started `rota agent` (repeatable), e.g. --agent-arg=--tick-interval-ms=100.
    #[arg(long = "agent-arg", allow_hyphen_values = true)]
    pub agent_args: Vec<String>,
    /// Where started agents keep their data [default: the system's temp directory].
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Instead of the job cycle: hold this many ready jobs, report each node's memory, then
    /// SIGKILL every node and time the restart to serving.
    #[arg(long)]
    pub capacity: Option<u64>,
    /// Give up after this many seconds (after the --duration) [default: 600].
    #[arg(long)]
    pub timeout_secs: Option<u64>,
    /// Scrape every agent's /metrics this often during the run (e.g. 1s), as Prometheus
    /// would: to see what watching costs (plaintext agents the bench starts only).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub scrape_metrics: Option<Duration>,
}

/// Runs the bench and prints its report; an error when a job was lost or duplicated.
/// `client` names the cluster to use with --connect, and how to reach it.
pub async fn bench(args: BenchArgs, client: ClientConfig, json: bool) -> Result<()> {
    let bin = std::env::current_exe().context("finding the rota executable")?;
    let mut config = if args.quick {
        LoadConfig::quick(bin)
    } else {
        LoadConfig::new(bin)
    };
    if args.connect {
        config.endpoints = client.endpoints;
        config.access = Access {
            tls: client.tls,
            token: client.token,
        };
    }
    config.tls = args.tls;
    macro_rules! set {
        ($($field:ident),*) => { $(if let Some(v) = args.$field { config.$field = v; })* };
    }
    set!(
        nodes,
        jobs,
        producers,
        enqueue_batch,
        workers,
        lease_batch,
        payload_bytes,
        kill_leader,
        lease_wait_ms
    );
    if args.in_flight.is_some() {
        config.in_flight = args.in_flight;
    }
    if let Some(n) = args.restart_leader {
        config.kill_leader = n;
        config.restart = Restart::Term;
    }
    if args.rolling_restart {
        config.kill_leader = config.nodes as u32;
        config.restart = Restart::Rolling;
    }
    if args.rate.is_some() {
        config.rate = args.rate;
    }
    config.duration = args.duration;
    config.retain = args.retain;
    config.archive_for = args.archive_for;
    if let Some(every) = args.sample_every {
        config.sample_every = every;
    }
    if args.cycle_only {
        config.enqueue_phase = false;
    }
    if let Some(ms) = args.kill_every_ms {
        config.kill_every = Duration::from_millis(ms);
    }
    if let Some(secs) = args.timeout_secs {
        config.timeout = Duration::from_secs(secs);
    }
    config.agent_args = args.agent_args;
    config.scrape_every = args.scrape_metrics;
    config.data_root = args.data_root;
    if let Some(jobs) = args.capacity {
        config.jobs = jobs;
        let report = capacity::capacity(config).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("{}", capacity::capacity_table(&report));
        }
        return Ok(());
    }
    let report = load::run(config).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", load::table(&report));
    }
    report.ensure_clean()?;
    Ok(())
}
