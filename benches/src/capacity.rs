//! `rota bench --capacity N`: how much memory a node needs to hold N live jobs, and how
//! long a whole cluster takes to come back after every node is SIGKILLed at once.

use crate::cluster::{caught_up_to, settled, Access, Agent};
use crate::load::{
    client_for, now_nanos, produce_all, rss_mib, start_cluster, LoadConfig, Pace, Tally,
};
use crate::BenchError;
use rota_client::proto as pb;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `rota bench --capacity` measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CapacityReport {
    pub nodes: usize,
    /// Live (ready) jobs held.
    pub jobs: u64,
    pub payload_bytes: usize,
    pub enqueue_per_sec: f64,
    /// The applied index every node reached before the restart.
    pub applied_index: u64,
    /// Resident memory of each node holding the jobs, in MiB.
    pub rss_mib: Vec<f64>,
    /// All nodes SIGKILLed and started again: until a linearizable read of the last job
    /// is answered.
    pub restart_serving_ms: f64,
    /// ... and until every node has applied the index it had before.
    pub restart_caught_up_ms: f64,
    pub rss_after_restart_mib: Vec<f64>,
    pub errors: u64,
    pub error_examples: Vec<String>,
}

/// Fills a local cluster with `config.jobs` ready jobs, measures each node's memory, then
/// SIGKILLs every node and times the restart to serving.
pub async fn capacity(config: LoadConfig) -> Result<CapacityReport, BenchError> {
    config.check()?;
    if !config.endpoints.is_empty() {
        return Err(BenchError::Settings(
            "--capacity restarts the cluster, so it needs the one it starts",
        ));
    }
    let (target, mut local) = start_cluster(&config).await?;
    let (ops, addrs) = (&target.ops, &target.endpoints);
    let tally = Arc::new(Tally::new(config.jobs, config.timeout));
    let job_type = format!("bench-{:x}-hold", now_nanos());
    let started = Instant::now();
    produce_all(
        &config,
        &target,
        &job_type,
        0..config.jobs,
        Pace::default(),
        &tally,
    )
    .await?;
    let enqueue_secs = started.elapsed().as_secs_f64();
    let last_job = tally
        .enqueued
        .iter()
        .map(|e| e.load(Ordering::Relaxed))
        .max()
        .and_then(|mark| mark.checked_sub(1))
        .ok_or(BenchError::NothingEnqueued)?;
    let applied = settled(ops, addrs, false, Duration::from_secs(120))
        .await?
        .first()
        .and_then(|s| s.applied_index)
        .unwrap_or(0);
    let rss = rss_mib(&local.agents);

    let restarted = restart_all(&mut local.agents)?;
    let serving = serving(ops, addrs, last_job, restarted).await?;
    caught_up_to(ops, addrs, applied, Duration::from_secs(300)).await?;
    let caught_up = restarted.elapsed();
    Ok(CapacityReport {
        nodes: addrs.len(),
        jobs: config.jobs,
        payload_bytes: config.payload_bytes,
        enqueue_per_sec: config.jobs as f64 / enqueue_secs,
        applied_index: applied,
        rss_mib: rss,
        restart_serving_ms: serving.as_secs_f64() * 1_000.0,
        restart_caught_up_ms: caught_up.as_secs_f64() * 1_000.0,
        rss_after_restart_mib: rss_mib(&local.agents),
        errors: tally.errors.load(Ordering::Relaxed),
        error_examples: tally.error_examples(),
    })
}

/// SIGKILLs every agent, then starts each again on its data; returns when all were down.
fn restart_all(agents: &mut [Agent]) -> Result<Instant, BenchError> {
    for agent in agents.iter_mut() {
        agent.kill();
    }
    let restarted = Instant::now();
    for agent in agents.iter_mut() {
        agent.start().map_err(|source| BenchError::RestartAgent {
            node: agent.id,
            source,
        })?;
    }
    Ok(restarted)
}

/// Reads `job` until the cluster answers (for at most 300 s); returns how long that took
/// from `restarted`.
async fn serving(
    ops: &Access,
    addrs: &[String],
    job: u64,
    restarted: Instant,
) -> Result<Duration, BenchError> {
    let reader = client_for(ops, addrs, 0)?;
    let within = Duration::from_secs(300);
    let deadline = Instant::now() + within;
    loop {
        let read = reader
            .get_job(pb::GetJobRequest {
                signed: false,
                job_id: job,
                read: None,
            })
            .await;
        let last = match read {
            Ok(_) => return Ok(restarted.elapsed()),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Err(BenchError::NotServing { within, last });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The capacity report as a table.
pub fn capacity_table(r: &CapacityReport) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(["figure", "value"]);
    let mib = |v: &[f64]| {
        v.iter()
            .map(|m| format!("{m:.0} MiB"))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    t.add_row([
        "setup".to_owned(),
        format!(
            "{} nodes · {} live jobs · {} B payloads",
            r.nodes, r.jobs, r.payload_bytes
        ),
    ]);
    t.add_row([
        "enqueue".to_owned(),
        format!("{:.0} jobs/s", r.enqueue_per_sec),
    ]);
    t.add_row(["resident memory".to_owned(), mib(&r.rss_mib)]);
    t.add_row([
        "restart to serving".to_owned(),
        format!("{:.0} ms", r.restart_serving_ms),
    ]);
    t.add_row([
        "restart to caught up".to_owned(),
        format!(
            "{:.0} ms (index {})",
            r.restart_caught_up_ms, r.applied_index
        ),
    ]);
    t.add_row([
        "memory after restart".to_owned(),
        mib(&r.rss_after_restart_mib),
    ]);
    t.add_row(["errors".to_owned(), r.errors.to_string()]);
    let mut out = t.to_string();
    for e in &r.error_examples {
        out.push_str(&format!("\n  error: {e}"));
    }
    out
}
