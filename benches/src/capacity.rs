//! `rota bench --capacity N`: how much memory a node needs to hold N live jobs, and how
//! long a whole cluster takes to come back after every node is SIGKILLed at once.

use crate::cluster::{caught_up_to, settled};
use crate::load::{client_for, now_nanos, produce_all, rss_mib, start_cluster, LoadConfig, Tally};
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
pub async fn capacity(config: LoadConfig) -> Result<CapacityReport, String> {
    config.check()?;
    if !config.endpoints.is_empty() {
        return Err("--capacity restarts the cluster, so it needs the one it starts".into());
    }
    let (addrs, mut local) = start_cluster(&config).await?;
    let tally = Arc::new(Tally::new(config.jobs, config.timeout));
    let job_type = format!("bench-{:x}-hold", now_nanos());
    let started = Instant::now();
    produce_all(&config, &addrs, &job_type, 0..config.jobs, None, &tally).await?;
    let enqueue_secs = started.elapsed().as_secs_f64();
    let last_job = tally
        .enqueued
        .iter()
        .map(|e| e.load(Ordering::Relaxed))
        .max()
        .and_then(|mark| mark.checked_sub(1))
        .ok_or("no enqueue was answered")?;
    let applied = settled(&addrs, false, Duration::from_secs(120))
        .await?
        .first()
        .and_then(|s| s.applied_index)
        .unwrap_or(0);
    let rss = rss_mib(&local.agents);

    for agent in &mut local.agents {
        agent.kill();
    }
    let restarted = Instant::now();
    for agent in &mut local.agents {
        agent
            .start()
            .map_err(|e| format!("restarting node {}: {e}", agent.id))?;
    }
    let reader = client_for(&addrs, 0)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let serving = loop {
        let read = reader
            .get_job(pb::GetJobRequest {
                job_id: last_job,
                read: None,
            })
            .await;
        if read.is_ok() {
            break restarted.elapsed();
        }
        if Instant::now() > deadline {
            return Err(format!("the cluster did not serve within 300 s: {read:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    caught_up_to(&addrs, applied, Duration::from_secs(300)).await?;
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
        error_examples: tally
            .error_examples
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default(),
    })
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
