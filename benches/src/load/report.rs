//! What a run reports: the figures of each phase, the failovers, what the audit found; as
//! serde for `--json` and as a table for a terminal.

use super::memory::{Memory, Verdict, STEADY_WITHIN_PCT};
use super::LoadConfig;
use crate::BenchError;
use hdrhistogram::Histogram;
use serde::Serialize;

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
    /// The quantiles of a histogram of microseconds.
    pub(super) fn of(h: &Histogram<u64>) -> Self {
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
    /// Enqueue due (at a fixed rate, when its batch should have gone; else sent) to
    /// completion acknowledged (cycle phase only).
    pub latency: Option<Quantiles>,
    /// Enqueue due to the job leased (its wait to start).
    pub to_start: Option<Quantiles>,
    /// Leased to completion acknowledged (the bench's work is nothing: the completion call).
    pub to_done: Option<Quantiles>,
    /// Lease calls, empty ones included (a node answers those without a log entry); with
    /// long polls, the wait included.
    pub lease: Option<Quantiles>,
    /// Lease calls that granted jobs (with long polls, the wait for a job included: run
    /// with `--lease-wait-ms 0` for what a grant itself costs).
    pub lease_granted: Option<Quantiles>,
    /// Enqueue calls.
    pub enqueue_call: Option<Quantiles>,
}

impl Phase {
    /// A phase that moved `jobs` jobs in `seconds`, with no call figures yet.
    pub(super) fn timed(jobs: u64, seconds: f64) -> Self {
        Self {
            jobs,
            seconds,
            jobs_per_sec: jobs as f64 / seconds,
            ..Self::default()
        }
    }
}

/// The leader kills and how long completions stood still after each.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Failover {
    /// How nodes were stopped: kill (the leader, SIGKILL), term (the leader, SIGTERM), or
    /// rolling (each node in turn, SIGTERM).
    pub restart: super::Restart,
    pub kills: u32,
    /// Per kill: until another node said it leads (polled every 10 ms).
    pub elected_ms: Vec<f64>,
    /// Per kill: the longest window without a completion, from the kill to `kill_every`
    /// after it.
    pub stall_ms: Vec<f64>,
    /// Per kill: until the first completion after it.
    pub resumed_ms: Vec<f64>,
    /// Per kill: when the longest window without a completion began, after the kill (0: at
    /// the kill; later: the cluster resumed and stalled again, as when the stopped node
    /// comes back).
    pub stall_from_ms: Vec<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What a run measured and what it found wrong.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub nodes: usize,
    /// Whether the run reached the cluster over TLS, with auth on (`--tls`, or a cluster
    /// of one's own reached with `--tls-ca`).
    pub tls: bool,
    /// Jobs per phase (`--jobs`); a duration run's cycle sends `cycle.jobs` instead.
    pub jobs: u64,
    pub producers: usize,
    pub workers: usize,
    pub enqueue_batch: usize,
    pub lease_batch: u32,
    /// How long each lease call waited for a job (0: workers polled).
    pub lease_wait_ms: u32,
    /// Jobs each producer kept in flight, when set.
    pub in_flight: Option<usize>,
    pub payload_bytes: usize,
    pub rate: Option<u64>,
    /// How long the cycle held `rate`, for a duration run.
    pub duration_secs: Option<f64>,
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
    /// CPU time each started agent used, user and system, in seconds: from its start, or
    /// its last restart after a kill, to the end of the run.
    pub cpu_secs: Vec<f64>,
    /// Resident memory over a duration run on started agents, and whether it held.
    pub memory: Option<Memory>,
    /// With `--scrape-metrics`: the scrapes of `/metrics` answered, and those that failed.
    pub scrapes: Option<(u64, u64)>,
}

impl Report {
    /// A report of `config`'s settings on `nodes` nodes, with no figures yet.
    pub(super) fn settings(config: &LoadConfig, nodes: usize) -> Self {
        Self {
            nodes,
            tls: config.tls || config.access.tls.is_some(),
            jobs: config.jobs,
            producers: config.producers,
            workers: config.workers,
            enqueue_batch: config.enqueue_batch,
            lease_batch: config.lease_batch,
            lease_wait_ms: config.lease_wait_ms,
            in_flight: config.in_flight,
            payload_bytes: config.payload_bytes,
            rate: config.rate,
            duration_secs: config.duration.map(|d| d.as_secs_f64()),
            ..Self::default()
        }
    }

    /// True when nothing was lost or duplicated.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0
    }

    /// `BenchError::Unclean` when something was lost or duplicated.
    pub fn ensure_clean(&self) -> Result<(), BenchError> {
        if self.clean() {
            return Ok(());
        }
        Err(BenchError::Unclean {
            lost: self.lost,
            duplicated: self.duplicated,
        })
    }
}

/// The report as a table for a terminal.
pub fn table(report: &Report) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(["figure", "value"]);
    t.add_row(["setup".to_owned(), setup(report)]);
    if let Some(e) = &report.enqueue {
        t.add_row(["enqueue alone".to_owned(), throughput(e)]);
    }
    let c = &report.cycle;
    t.add_row(["job cycle, end to end".to_owned(), throughput(c)]);
    t.add_row(["enqueue → completed".to_owned(), quantiles(&c.latency)]);
    t.add_row(["  enqueue → leased".to_owned(), quantiles(&c.to_start)]);
    t.add_row(["  leased → completed".to_owned(), quantiles(&c.to_done)]);
    t.add_row(["lease call (all)".to_owned(), quantiles(&c.lease)]);
    t.add_row([
        "lease call (granting)".to_owned(),
        quantiles(&c.lease_granted),
    ]);
    t.add_row(["enqueue call".to_owned(), quantiles(&c.enqueue_call)]);
    if let Some(d) = &report.drain {
        t.add_row(["lease + complete alone".to_owned(), throughput(d)]);
    }
    if let Some(f) = &report.failover {
        let (what, stops) = match f.restart {
            super::Restart::Kill => ("failover stall", "leader kills"),
            super::Restart::Term => ("restart stall", "leader SIGTERMs"),
            super::Restart::Rolling => ("rolling restart stall", "node SIGTERMs"),
        };
        t.add_row([
            what.to_owned(),
            format!(
                "{} {stops} · p50 {:.0} · p99 {:.0} · max {:.0} ms",
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
    if let Some((answered, failed)) = report.scrapes {
        t.add_row([
            "metrics scrapes".to_owned(),
            format!("{answered} answered · {failed} failed"),
        ]);
    }
    if !report.rss_mib.is_empty() {
        t.add_row(["resident memory".to_owned(), mib(&report.rss_mib)]);
    }
    if !report.cpu_secs.is_empty() {
        let each: Vec<String> = report
            .cpu_secs
            .iter()
            .map(|s| format!("{s:.1} s"))
            .collect();
        t.add_row(["CPU time".to_owned(), each.join(" · ")]);
    }
    if let Some(memory) = &report.memory {
        for row in memory_rows(memory) {
            t.add_row(row);
        }
    }
    let mut out = t.to_string();
    for e in &report.error_examples {
        out.push_str(&format!("\n  error: {e}"));
    }
    out
}

/// The setup row: what ran, on how many nodes.
fn setup(report: &Report) -> String {
    let security = if report.tls {
        "TLS and auth"
    } else {
        "plaintext"
    };
    let mut parts = vec![format!("{} nodes", report.nodes), security.to_owned()];
    match report.duration_secs {
        None => parts.push(format!("{} jobs/phase", report.jobs)),
        Some(_) if report.enqueue.is_some() => {
            parts.push(format!("{} jobs to enqueue and drain", report.jobs))
        }
        Some(_) => {}
    }
    let in_flight = report
        .in_flight
        .map_or(String::new(), |n| format!(", {n} in flight"));
    let wait = match report.lease_wait_ms {
        0 => "polling".to_owned(),
        ms => format!("waiting ≤ {ms} ms"),
    };
    parts.extend([
        format!(
            "{} producers × {} per call{in_flight}",
            report.producers, report.enqueue_batch
        ),
        format!(
            "{} workers × {} per lease, {wait}",
            report.workers, report.lease_batch
        ),
        format!("{} B payloads", report.payload_bytes),
    ]);
    match (report.rate, report.duration_secs) {
        (Some(rate), Some(secs)) => parts.push(format!("rate {rate}/s for {secs:.0} s")),
        (Some(rate), None) => parts.push(format!("rate {rate}/s")),
        (None, _) => {}
    }
    parts.join(" · ")
}

/// The memory rows of a duration run: the sampling, each node's figures, the verdict.
fn memory_rows(memory: &Memory) -> Vec<[String; 2]> {
    let mut rows = vec![[
        "memory samples".to_owned(),
        format!(
            "{} every {:.0} s",
            memory.samples.len(),
            memory.sample_every_secs
        ),
    ]];
    for n in &memory.per_node {
        rows.push([
            format!("memory node {}", n.node),
            format!(
                "at the first third {:.1} MiB · last two thirds {:.1}–{:.1} MiB · {:+.1}%",
                n.first_third_mib, n.min_mib, n.max_mib, n.deviation_pct
            ),
        ]);
    }
    let within = STEADY_WITHIN_PCT;
    let verdict = match memory.verdict {
        Some(Verdict::Steady) => format!("steady: every node within ±{within:.0}%"),
        Some(Verdict::Growing) => format!("growing: a node left ±{within:.0}%"),
        None => "-: a node has no sample in the first third or after it".to_owned(),
    };
    rows.push(["memory verdict".to_owned(), verdict]);
    rows.extend(held_rows(memory));
    rows
}

/// What the first node held at a third, two thirds and the end of a duration run: jobs in
/// memory, the archive (records, their size, its directory on disk) and its memory.
fn held_rows(memory: &Memory) -> Vec<[String; 2]> {
    let n = memory.samples.len();
    if n == 0 {
        return Vec::new();
    }
    let at = [
        ("a third in", n / 3),
        ("two thirds in", 2 * n / 3),
        ("at the end", n - 1),
    ];
    at.into_iter()
        .filter_map(|(when, i)| {
            let sample = memory.samples.get(i)?;
            let held = (*sample.held.first()?)?;
            let rss = sample.mib.first().copied().flatten().unwrap_or(0.0);
            Some([
                format!("node {} {when}", memory.nodes.first()?),
                format!(
                    "{rss:.0} MiB resident · {} live jobs · archive {} records, {:.1} MiB, {:.1} MiB on disk",
                    held.live_jobs, held.archived, held.archive_mib, held.archive_disk_mib
                ),
            ])
        })
        .collect()
}

/// A phase's rate and duration.
fn throughput(phase: &Phase) -> String {
    format!("{:.0} jobs/s ({:.2} s)", phase.jobs_per_sec, phase.seconds)
}

/// Quantiles in ms, or "-" when the phase did not measure them.
fn quantiles(q: &Option<Quantiles>) -> String {
    q.as_ref().map_or("-".to_owned(), |q| {
        format!(
            "p50 {:.2} · p99 {:.2} · p99.9 {:.2} · max {:.2} ms",
            q.p50_ms, q.p99_ms, q.p999_ms, q.max_ms
        )
    })
}

/// Memory figures in MiB, one per node.
fn mib(values: &[f64]) -> String {
    values
        .iter()
        .map(|m| format!("{m:.0} MiB"))
        .collect::<Vec<_>>()
        .join(" · ")
}
