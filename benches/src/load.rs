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

use crate::cluster::{caught_up_to, local_agents, poll, statuses, wait_for_agreed_leader, Agent};
use hdrhistogram::Histogram;
use rota_client::proto as pb;
use rota_client::{Client, ClientConfig};
use serde::Serialize;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

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

    pub(crate) fn check(&self) -> Result<(), String> {
        if self.jobs == 0 || self.producers == 0 || self.workers == 0 {
            return Err("jobs, producers and workers must be at least 1".into());
        }
        if !(1..=rota_state_machine::MAX_BATCH).contains(&self.enqueue_batch) {
            return Err(format!(
                "enqueue batch must be between 1 and {}",
                rota_state_machine::MAX_BATCH
            ));
        }
        if self.lease_batch == 0 || self.lease_batch > rota_state_machine::MAX_LEASE_BATCH {
            return Err(format!(
                "lease batch must be between 1 and {}",
                rota_state_machine::MAX_LEASE_BATCH
            ));
        }
        if self.kill_leader > 0 && !self.endpoints.is_empty() {
            return Err("--kill-leader needs the cluster the bench starts itself".into());
        }
        if self.rate == Some(0) {
            return Err("rate must be at least 1 job/s".into());
        }
        Ok(())
    }
}

/// Quantiles of one histogram, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Quantiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Quantiles {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1_000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// One phase's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Phase {
    pub jobs: u64,
    pub seconds: f64,
    pub jobs_per_sec: f64,
    /// Enqueue send to completion acknowledged (cycle phase only).
    pub latency: Option<Quantiles>,
    /// Lease calls, empty ones included (a node answers those without a log entry).
    pub lease: Option<Quantiles>,
    /// Lease calls that granted jobs.
    pub lease_granted: Option<Quantiles>,
    /// Enqueue calls.
    pub enqueue_call: Option<Quantiles>,
}

/// The leader kills and how long completions stood still after each.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Failover {
    pub kills: u32,
    /// Per kill: until another node said it leads (polled every 10 ms).
    pub elected_ms: Vec<f64>,
    /// Per kill: the longest window without a completion, from the kill to `kill_every`
    /// after it.
    pub stall_ms: Vec<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What a run measured and what it found wrong.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub nodes: usize,
    pub jobs: u64,
    pub producers: usize,
    pub workers: usize,
    pub enqueue_batch: usize,
    pub lease_batch: u32,
    pub payload_bytes: usize,
    pub rate: Option<u64>,
    pub enqueue: Option<Phase>,
    pub cycle: Phase,
    pub drain: Option<Phase>,
    pub failover: Option<Failover>,
    /// Jobs whose enqueue was never acknowledged, or that did not end succeeded.
    pub lost: u64,
    /// Jobs enqueued twice, or completed successfully more than once.
    pub duplicated: u64,
    /// Calls that failed for good and item refusals, with a few examples.
    pub errors: u64,
    pub error_examples: Vec<String>,
    /// Raft terms that began during the run: one per leader kill, more if a busy leader was
    /// voted out.
    pub elections: u64,
    /// Resident memory of each started agent at the end, in MiB.
    pub rss_mib: Vec<f64>,
}

impl Report {
    /// True when nothing was lost or duplicated.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0
    }
}

const TENANT: &str = "bench";

/// The shared tallies of a run.
pub(crate) struct Tally {
    epoch: Instant,
    /// Per sequence number: the job id its enqueue returned, plus one (0: none yet).
    pub(crate) enqueued: Vec<AtomicU64>,
    /// Per sequence number: successful completions acknowledged.
    succeeded: Vec<AtomicU8>,
    /// Jobs completed in the current phase.
    completed: AtomicU64,
    /// Workers stop here even if jobs are missing; the ledger check then reports them.
    give_up_at: Instant,
    duplicate_enqueues: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) error_examples: Mutex<Vec<String>>,
}

impl Tally {
    pub(crate) fn new(total: u64, timeout: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            give_up_at: Instant::now() + timeout,
            enqueued: (0..total).map(|_| AtomicU64::new(0)).collect(),
            succeeded: (0..total).map(|_| AtomicU8::new(0)).collect(),
            completed: AtomicU64::new(0),
            duplicate_enqueues: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            error_examples: Mutex::new(Vec::new()),
        }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut examples) = self.error_examples.lock() {
            if examples.len() < 10 {
                examples.push(what);
            }
        }
    }
}

/// A payload of `len` bytes (at least 16) naming its job and when it was sent.
fn payload(seq: u64, sent_us: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len.max(16));
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&sent_us.to_le_bytes());
    out.resize(len.max(16), b'.');
    out
}

/// The (sequence, sent time) a payload carries, if it is one of ours.
fn read_payload(payload: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
    let sent = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((seq, sent))
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant figures; constant bounds, cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// Agents started for a run, with their data directory (removed when dropped).
pub(crate) struct Local {
    pub(crate) agents: Vec<Agent>,
    _dir: Option<tempfile::TempDir>,
}

/// Starts `config.nodes` local agents and founds the cluster, unless `config.endpoints`
/// names one; returns the endpoints to use.
pub(crate) async fn start_cluster(config: &LoadConfig) -> Result<(Vec<String>, Local), String> {
    if !config.endpoints.is_empty() {
        let local = Local {
            agents: Vec::new(),
            _dir: None,
        };
        return Ok((config.endpoints.clone(), local));
    }
    let root = match &config.data_root {
        Some(root) => tempfile::TempDir::new_in(root),
        None => tempfile::TempDir::new(),
    }
    .map_err(|e| format!("data directory: {e}"))?;
    let mut agents = local_agents(
        &config.rota_bin,
        config.nodes,
        root.path(),
        &config.agent_args,
    )
    .map_err(|e| format!("ports for the agents: {e}"))?;
    for agent in &mut agents {
        agent
            .start()
            .map_err(|e| format!("starting {}: {e}", config.rota_bin.display()))?;
    }
    let addrs: Vec<String> = agents.iter().map(|a| a.addr.clone()).collect();
    let founder = Client::connect([addrs[0].clone()]).map_err(|e| e.to_string())?;
    founder
        .init_cluster(pb::InitClusterRequest { members: vec![] })
        .await
        .map_err(|e| format!("cluster init: {e}"))?;
    wait_for_agreed_leader(&addrs, config.nodes, Duration::from_secs(30)).await?;
    let local = Local {
        agents,
        _dir: Some(root),
    };
    Ok((addrs, local))
}

pub(crate) fn rss_mib(agents: &[Agent]) -> Vec<f64> {
    agents
        .iter()
        .filter_map(Agent::rss_bytes)
        .map(|b| b as f64 / (1024.0 * 1024.0))
        .collect()
}

/// Starts the local cluster when asked to, runs the phases, checks the ledger.
pub async fn run(config: LoadConfig) -> Result<Report, String> {
    config.check()?;
    let (endpoints, local) = start_cluster(&config).await?;
    let Local { agents, _dir } = local;
    let agents = Arc::new(Mutex::new(agents));
    let result = tokio::time::timeout(
        config.timeout + Duration::from_secs(120),
        phases(&config, &endpoints, agents.clone()),
    )
    .await;
    let mut report = match result {
        Ok(report) => report?,
        Err(_) => return Err(format!("the run took longer than {:?}", config.timeout)),
    };
    if let Ok(agents) = agents.lock() {
        report.rss_mib = rss_mib(&agents);
    }
    Ok(report)
}

/// Each client starts at a different node, as a fleet of producers and workers would.
pub(crate) fn client_for(endpoints: &[String], i: usize) -> Result<Client, String> {
    let mut rotated = endpoints.to_vec();
    rotated.rotate_left(i % endpoints.len());
    Client::with_config(ClientConfig {
        call_timeout: Duration::from_secs(10),
        retry_for: Duration::from_secs(60),
        ..ClientConfig::new(rotated)
    })
    .map_err(|e| e.to_string())
}

async fn phases(
    config: &LoadConfig,
    endpoints: &[String],
    agents: Arc<Mutex<Vec<Agent>>>,
) -> Result<Report, String> {
    let run_id = format!("{:x}", std::process::id() as u64 ^ now_nanos());
    let fill_type = format!("bench-{run_id}-fill");
    let cycle_type = format!("bench-{run_id}-cycle");
    let n = config.jobs;
    let tally = Arc::new(Tally::new(2 * n, config.timeout));
    let mut report = Report {
        nodes: endpoints.len(),
        jobs: n,
        producers: config.producers,
        workers: config.workers,
        enqueue_batch: config.enqueue_batch,
        lease_batch: config.lease_batch,
        payload_bytes: config.payload_bytes,
        rate: config.rate,
        ..Report::default()
    };

    let term_before = max_term(endpoints).await;
    if config.enqueue_phase {
        let started = Instant::now();
        let calls = produce_all(config, endpoints, &fill_type, 0..n, None, &tally).await?;
        let seconds = started.elapsed().as_secs_f64();
        report.enqueue = Some(Phase {
            jobs: n,
            seconds,
            jobs_per_sec: n as f64 / seconds,
            enqueue_call: Some(Quantiles::of(&calls)),
            ..Phase::default()
        });
    }

    // The cycle: producers, workers and (maybe) the leader killer at once.
    tally.completed.store(0, Ordering::SeqCst);
    let started = Instant::now();
    let workers = spawn_workers(config, endpoints, &cycle_type, n, true, &tally)?;
    let killer = (config.kill_leader > 0).then(|| {
        tokio::spawn(kill_leaders(
            config.clone(),
            endpoints.to_vec(),
            agents.clone(),
            tally.clone(),
            n,
        ))
    });
    let calls = produce_all(
        config,
        endpoints,
        &cycle_type,
        n..2 * n,
        config.rate,
        &tally,
    )
    .await?;
    let done = join_workers(workers).await?;
    let seconds = started.elapsed().as_secs_f64();
    report.cycle = Phase {
        jobs: n,
        seconds,
        jobs_per_sec: n as f64 / seconds,
        latency: Some(Quantiles::of(&done.latency)),
        lease: Some(Quantiles::of(&done.lease)),
        lease_granted: Some(Quantiles::of(&done.lease_granted)),
        enqueue_call: Some(Quantiles::of(&calls)),
    };
    if let Some(killer) = killer {
        let kills = killer.await.map_err(|e| format!("leader killer: {e}"))??;
        report.failover = Some(failover(&kills, &done.completions_us, config.kill_every));
    }

    if config.enqueue_phase {
        tally.completed.store(0, Ordering::SeqCst);
        let started = Instant::now();
        let workers = spawn_workers(config, endpoints, &fill_type, n, false, &tally)?;
        let done = join_workers(workers).await?;
        let seconds = started.elapsed().as_secs_f64();
        report.drain = Some(Phase {
            jobs: n,
            seconds,
            jobs_per_sec: n as f64 / seconds,
            lease: Some(Quantiles::of(&done.lease)),
            ..Phase::default()
        });
    }

    report.elections = max_term(endpoints).await.saturating_sub(term_before);
    let checker = client_for(endpoints, 0)?;
    let mut seen = vec![0u8; 2 * n as usize];
    let mut types = vec![cycle_type.clone()];
    if config.enqueue_phase {
        types.push(fill_type.clone());
    }
    let mut not_succeeded = 0u64;
    for job_type in types {
        let jobs = checker
            .list_all_jobs(pb::ListJobsRequest {
                job_type: Some(job_type),
                tenant: Some(TENANT.to_owned()),
                limit: 1_000,
                summary: true,
                ..pb::ListJobsRequest::default()
            })
            .await
            .map_err(|e| format!("reading the ledger back: {e}"))?;
        for job in jobs {
            let seq = job
                .spec
                .as_ref()
                .and_then(|s| read_payload(&s.payload))
                .map(|(seq, _)| seq as usize);
            match seq {
                Some(seq) if seq < seen.len() => seen[seq] = seen[seq].saturating_add(1),
                _ => tally.error(format!("job {} has a payload that is not ours", job.id)),
            }
            if job.status != pb::JobStatus::Succeeded as i32 {
                not_succeeded += 1;
                tally.error(format!("job {} ended with status {}", job.id, job.status));
            }
        }
    }
    let phases_run = if config.enqueue_phase {
        0..2 * n
    } else {
        n..2 * n
    };
    let mut lost = not_succeeded;
    let mut duplicated = tally.duplicate_enqueues.load(Ordering::Relaxed);
    for seq in phases_run {
        let i = seq as usize;
        let successes = tally.succeeded[i].load(Ordering::Relaxed);
        let enqueued = tally.enqueued[i].load(Ordering::Relaxed);
        if seen[i] == 0 || enqueued == 0 || successes == 0 {
            lost += 1;
        }
        if seen[i] > 1 || successes > 1 {
            duplicated += 1;
        }
        if seen[i] != 1 || enqueued == 0 || successes != 1 {
            tally.error(format!(
                "sequence {seq}: enqueue {}, {} in the ledger, {successes} successes acknowledged",
                enqueued
                    .checked_sub(1)
                    .map_or("unanswered".to_owned(), |id| format!("answered job-{id}")),
                seen[i]
            ));
        }
    }
    report.lost = lost;
    report.duplicated = duplicated;
    report.errors = tally.errors.load(Ordering::Relaxed);
    report.error_examples = tally
        .error_examples
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    Ok(report)
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

pub(crate) fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Enqueues `seqs` from `config.producers` producers; returns the enqueue call latencies.
pub(crate) async fn produce_all(
    config: &LoadConfig,
    endpoints: &[String],
    job_type: &str,
    seqs: Range<u64>,
    rate: Option<u64>,
    tally: &Arc<Tally>,
) -> Result<Histogram<u64>, String> {
    let mut producers = JoinSet::new();
    let p = config.producers as u64;
    let span = seqs.end - seqs.start;
    for i in 0..p {
        let mine = seqs.start + span * i / p..seqs.start + span * (i + 1) / p;
        let client = client_for(endpoints, i as usize)?;
        let job_type = job_type.to_owned();
        let tally = tally.clone();
        let batch = config.enqueue_batch as u64;
        let payload_bytes = config.payload_bytes;
        let rate = rate.map(|r| r as f64 / p as f64);
        producers.spawn(async move {
            let mut calls = histogram();
            let started = Instant::now();
            let mut sent = 0u64;
            let mut start = mine.start;
            while start < mine.end {
                let end = (start + batch).min(mine.end);
                if let Some(rate) = rate {
                    let due = Duration::from_secs_f64(sent as f64 / rate);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                let sent_us = tally.now_us();
                let specs = (start..end)
                    .map(|seq| pb::JobSpec {
                        tenant: TENANT.to_owned(),
                        job_type: job_type.clone(),
                        payload: payload(seq, sent_us, payload_bytes),
                        ..pb::JobSpec::default()
                    })
                    .collect();
                let t0 = Instant::now();
                let answer = client
                    .enqueue_batch(pb::EnqueueBatchRequest {
                        session: None,
                        specs,
                    })
                    .await;
                let _ = calls.record((t0.elapsed().as_micros() as u64).max(1));
                match answer {
                    Ok(response) => record_enqueues(&tally, start, response),
                    Err(e) => tally.error(format!("enqueue of jobs {start}..{end}: {e}")),
                }
                sent += end - start;
                start = end;
            }
            calls
        });
    }
    let mut all = histogram();
    while let Some(done) = producers.join_next().await {
        let calls = done.map_err(|e| format!("producer: {e}"))?;
        all.add(&calls).map_err(|e| format!("histogram: {e}"))?;
    }
    Ok(all)
}

fn record_enqueues(tally: &Tally, first: u64, response: pb::EnqueueBatchResponse) {
    use pb::enqueue_result::Result as R;
    for (i, result) in response.results.into_iter().enumerate() {
        let seq = first + i as u64;
        match result.result {
            Some(R::Enqueued(e)) => {
                // Stored plus one: job ids start at 0, and 0 means "not yet".
                let mark = e.job_id + 1;
                let before = tally.enqueued[seq as usize].swap(mark, Ordering::Relaxed);
                if before != 0 && before != mark {
                    tally.duplicate_enqueues.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(R::Error(e)) => tally.error(format!("job {seq} refused: {}", e.message)),
            None => tally.error(format!("job {seq}: an empty result")),
        }
    }
}

/// What one worker saw.
struct WorkerTally {
    latency: Histogram<u64>,
    lease: Histogram<u64>,
    /// Lease calls that granted at least one job (they went through the log).
    lease_granted: Histogram<u64>,
    completions_us: Vec<u64>,
}

impl WorkerTally {
    fn new() -> Self {
        Self {
            latency: histogram(),
            lease: histogram(),
            lease_granted: histogram(),
            completions_us: Vec::new(),
        }
    }
}

fn spawn_workers(
    config: &LoadConfig,
    endpoints: &[String],
    job_type: &str,
    target: u64,
    timed: bool,
    tally: &Arc<Tally>,
) -> Result<JoinSet<WorkerTally>, String> {
    let mut workers = JoinSet::new();
    for i in 0..config.workers {
        let client = client_for(endpoints, i)?;
        let job_type = job_type.to_owned();
        let tally = tally.clone();
        let max = config.lease_batch;
        workers.spawn(work(
            client,
            format!("bench-w{i}"),
            job_type,
            max,
            target,
            timed,
            tally,
        ));
    }
    Ok(workers)
}

async fn join_workers(mut workers: JoinSet<WorkerTally>) -> Result<WorkerTally, String> {
    let mut all = WorkerTally::new();
    while let Some(done) = workers.join_next().await {
        let one = done.map_err(|e| format!("worker: {e}"))?;
        all.latency.add(&one.latency).map_err(|e| e.to_string())?;
        all.lease.add(&one.lease).map_err(|e| e.to_string())?;
        all.lease_granted
            .add(&one.lease_granted)
            .map_err(|e| e.to_string())?;
        all.completions_us.extend(one.completions_us);
    }
    all.completions_us.sort_unstable();
    Ok(all)
}

/// Leases and completes until the phase's `target` jobs are done.
async fn work(
    client: Client,
    name: String,
    job_type: String,
    max: u32,
    target: u64,
    timed: bool,
    tally: Arc<Tally>,
) -> WorkerTally {
    let mut mine = WorkerTally::new();
    let mut idle = Duration::from_millis(1);
    while tally.completed.load(Ordering::Relaxed) < target && Instant::now() < tally.give_up_at {
        let t0 = Instant::now();
        let leased = client
            .lease(pb::LeaseRequest {
                session: None,
                worker: name.clone(),
                job_types: vec![job_type.clone()],
                max,
                ttl_ms: Some(30_000),
            })
            .await;
        let took_us = (t0.elapsed().as_micros() as u64).max(1);
        let _ = mine.lease.record(took_us);
        let jobs = match leased {
            Ok(response) => {
                if !response.jobs.is_empty() {
                    let _ = mine.lease_granted.record(took_us);
                }
                response.jobs
            }
            Err(e) => {
                tally.error(format!("{name} lease: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if jobs.is_empty() {
            tokio::time::sleep(idle).await;
            idle = (idle * 2).min(Duration::from_millis(20));
            continue;
        }
        idle = Duration::from_millis(1);
        let items = jobs
            .iter()
            .map(|job| pb::CompleteItem {
                job_id: job.job_id,
                lease_id: job.lease_id,
                outcome: Some(pb::complete_item::Outcome::Succeeded(pb::Succeeded {
                    outputs: vec![],
                })),
            })
            .collect();
        let completed = client
            .complete_batch(pb::CompleteBatchRequest {
                session: None,
                items,
            })
            .await;
        match completed {
            Ok(response) => record_completions(&tally, &mut mine, &jobs, response, timed),
            // The leases run out and the jobs are leased again; the ledger check tells.
            Err(e) => tally.error(format!("{name} complete of {} jobs: {e}", jobs.len())),
        }
    }
    mine
}

fn record_completions(
    tally: &Tally,
    mine: &mut WorkerTally,
    jobs: &[pb::LeasedJob],
    response: pb::CompleteBatchResponse,
    timed: bool,
) {
    use pb::complete_result::Result as R;
    let now_us = tally.now_us();
    for (job, result) in jobs.iter().zip(response.results) {
        match result.result {
            Some(R::Completed(c)) if c.status == pb::JobStatus::Succeeded as i32 => {
                let Some((seq, sent_us)) = read_payload(&job.payload) else {
                    tally.error(format!("job {} has a payload that is not ours", job.job_id));
                    continue;
                };
                if let Some(count) = tally.succeeded.get(seq as usize) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                tally.completed.fetch_add(1, Ordering::Relaxed);
                if timed {
                    let _ = mine.latency.record(now_us.saturating_sub(sent_us).max(1));
                    mine.completions_us.push(now_us);
                }
            }
            Some(R::Completed(c)) => {
                tally.error(format!("job {} completed as {}", job.job_id, c.status))
            }
            Some(R::Error(e)) => tally.error(format!("job {}: {}", job.job_id, e.message)),
            None => tally.error(format!("job {}: an empty result", job.job_id)),
        }
    }
}

/// SIGKILLs the leader every `kill_every` while the cycle runs and restarts it a second
/// later; before the next kill, waits until the restarted node has caught up, so each kill
/// hits a healthy cluster. Returns when each kill happened (µs since the epoch).
async fn kill_leaders(
    config: LoadConfig,
    addrs: Vec<String>,
    agents: Arc<Mutex<Vec<Agent>>>,
    tally: Arc<Tally>,
    target: u64,
) -> Result<Vec<Kill>, String> {
    let mut kills = Vec::new();
    let mut healthy_since = Instant::now();
    for _ in 0..config.kill_leader {
        let next = healthy_since + config.kill_every.saturating_sub(Duration::from_secs(1));
        tokio::time::sleep_until(next.into()).await;
        if tally.completed.load(Ordering::Relaxed) >= target {
            break;
        }
        let leader = wait_for_agreed_leader(&addrs, addrs.len(), Duration::from_secs(30)).await?;
        let killed_at = {
            let mut agents = agents.lock().map_err(|_| "agents lock poisoned")?;
            let victim = agents
                .iter_mut()
                .find(|a| a.id == leader)
                .ok_or_else(|| format!("leader {leader} is not one of the started agents"))?;
            victim.kill();
            tally.now_us()
        };
        let killed = Instant::now();
        let elected = new_leader(&addrs, leader, Duration::from_secs(30)).await?;
        kills.push(Kill {
            at_us: killed_at,
            elected_ms: elected.duration_since(killed).as_secs_f64() * 1_000.0,
        });
        tokio::time::sleep_until((killed + Duration::from_secs(1)).into()).await;
        {
            let mut agents = agents.lock().map_err(|_| "agents lock poisoned")?;
            for agent in agents.iter_mut().filter(|a| !a.is_running()) {
                agent
                    .start()
                    .map_err(|e| format!("restarting node {}: {e}", agent.id))?;
            }
        }
        caught_up(&addrs, Duration::from_secs(60)).await?;
        healthy_since = Instant::now();
    }
    Ok(kills)
}

/// One leader kill: when (µs since the epoch) and how long until another node led.
struct Kill {
    at_us: u64,
    elected_ms: f64,
}

/// Polls until a node other than `old` says it leads; returns when.
async fn new_leader(addrs: &[String], old: u64, within: Duration) -> Result<Instant, String> {
    let every = Duration::from_millis(10);
    poll(addrs, false, every, within, "new leader", |seen| {
        seen.iter()
            .any(|s| s.node_id != old && s.leader_id == Some(s.node_id))
            .then(Instant::now)
    })
    .await
}

/// Waits until one node leads and every node has applied what the leader had applied then.
async fn caught_up(addrs: &[String], within: Duration) -> Result<(), String> {
    let every = Duration::from_millis(50);
    let leader_index = poll(addrs, false, every, within, "leader", |seen| {
        seen.iter()
            .find(|s| s.leader_id == Some(s.node_id))
            .and_then(|s| s.applied_index)
    })
    .await?;
    caught_up_to(addrs, leader_index, within).await
}

/// For each kill, the longest window without a completion between the kill and
/// `window` after it.
fn failover(kills: &[Kill], completions_us: &[u64], window: Duration) -> Failover {
    let window_us = window.as_micros() as u64;
    let mut stalls: Vec<f64> = kills
        .iter()
        .map(|k| {
            let kill = k.at_us;
            let end = kill + window_us;
            let from = completions_us.partition_point(|&t| t < kill);
            let to = completions_us.partition_point(|&t| t <= end);
            let mut last = kill;
            let mut longest = 0;
            for &t in &completions_us[from..to] {
                longest = longest.max(t - last);
                last = t;
            }
            if to == completions_us.len() {
                // The run ended inside the window: the tail is not a stall.
                longest
            } else {
                longest.max(end - last)
            }
        })
        .map(|us| us as f64 / 1_000.0)
        .collect();
    let per_kill = stalls.clone();
    stalls.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if stalls.is_empty() {
            0.0
        } else {
            stalls[((stalls.len() - 1) as f64 * q).round() as usize]
        }
    };
    Failover {
        kills: kills.len() as u32,
        elected_ms: kills.iter().map(|k| k.elected_ms).collect(),
        stall_ms: per_kill,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

/// The report as a table for a terminal.
pub fn table(report: &Report) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(["figure", "value"]);
    let q = |q: &Option<Quantiles>| {
        q.as_ref().map_or("-".to_owned(), |q| {
            format!(
                "p50 {:.2} · p99 {:.2} · p99.9 {:.2} · max {:.2} ms",
                q.p50_ms, q.p99_ms, q.p999_ms, q.max_ms
            )
        })
    };
    t.add_row([
        "setup".to_owned(),
        format!(
            "{} nodes · {} jobs/phase · {} producers × {} per call · {} workers × {} per lease · {} B payloads{}",
            report.nodes,
            report.jobs,
            report.producers,
            report.enqueue_batch,
            report.workers,
            report.lease_batch,
            report.payload_bytes,
            report.rate.map_or(String::new(), |r| format!(" · rate {r}/s")),
        ),
    ]);
    if let Some(e) = &report.enqueue {
        t.add_row([
            "enqueue alone".to_owned(),
            format!("{:.0} jobs/s ({:.2} s)", e.jobs_per_sec, e.seconds),
        ]);
    }
    let c = &report.cycle;
    t.add_row([
        "job cycle, end to end".to_owned(),
        format!("{:.0} jobs/s ({:.2} s)", c.jobs_per_sec, c.seconds),
    ]);
    t.add_row(["enqueue → completed".to_owned(), q(&c.latency)]);
    t.add_row(["lease call (all)".to_owned(), q(&c.lease)]);
    t.add_row(["lease call (granting)".to_owned(), q(&c.lease_granted)]);
    t.add_row(["enqueue call".to_owned(), q(&c.enqueue_call)]);
    if let Some(d) = &report.drain {
        t.add_row([
            "lease + complete alone".to_owned(),
            format!("{:.0} jobs/s ({:.2} s)", d.jobs_per_sec, d.seconds),
        ]);
    }
    if let Some(f) = &report.failover {
        t.add_row([
            "failover stall".to_owned(),
            format!(
                "{} kills · p50 {:.0} · p99 {:.0} · max {:.0} ms",
                f.kills, f.p50_ms, f.p99_ms, f.max_ms
            ),
        ]);
    }
    t.add_row([
        "lost · duplicated".to_owned(),
        format!("{} · {}", report.lost, report.duplicated),
    ]);
    t.add_row(["errors".to_owned(), report.errors.to_string()]);
    t.add_row(["elections".to_owned(), report.elections.to_string()]);
    if !report.rss_mib.is_empty() {
        t.add_row([
            "resident memory".to_owned(),
            report
                .rss_mib
                .iter()
                .map(|m| format!("{m:.0} MiB"))
                .collect::<Vec<_>>()
                .join(" · "),
        ]);
    }
    let mut out = t.to_string();
    for e in &report.error_examples {
        out.push_str(&format!("\n  error: {e}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_pad() {
        let p = payload(42, 7, 100);
        assert_eq!(p.len(), 100);
        assert_eq!(read_payload(&p), Some((42, 7)));
        assert_eq!(payload(1, 2, 3).len(), 16);
        assert_eq!(read_payload(b"short"), None);
    }

    #[test]
    fn failover_takes_the_longest_quiet_window_after_each_kill() {
        // Completions every 10 ms, a 700 ms hole after the kill at 1,000 ms.
        let mut times: Vec<u64> = (0..100).map(|i| i * 10_000).collect();
        times.extend((0..300).map(|i| 1_700_000 + i * 10_000));
        let kill = Kill {
            at_us: 1_000_000,
            elected_ms: 400.0,
        };
        let f = failover(&[kill], &times, Duration::from_secs(2));
        assert_eq!(f.kills, 1);
        assert!((f.stall_ms[0] - 700.0).abs() < 0.01, "{:?}", f.stall_ms);
        assert_eq!(f.max_ms, f.stall_ms[0]);
    }

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
