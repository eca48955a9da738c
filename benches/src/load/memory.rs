//! Resident memory over a duration run: every node sampled every `sample_every`, and whether
//! each held its level. A node holds steady when, over the last two thirds of the run, every
//! sample stays within ±10% of its level at the first third: the median of its samples in
//! the second half of the first third. The first sixth is left out because it is the fill
//! (retention windows and caches filling from an empty cluster: a median over it would take
//! a level the node never means to hold); a median rather than the one sample at the mark
//! because a sample may land on a snapshot build.

use super::local::mib;
use crate::cluster::{Access, Agent};
use crate::BenchError;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far, in percent, a node may stray from its first-third level and still be steady.
pub const STEADY_WITHIN_PCT: f64 = 10.0;

/// Every node's resident memory at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct RssSample {
    /// Seconds since the sampling began, with the cycle.
    pub elapsed_secs: f64,
    /// Per node, in `Memory::nodes` order, in MiB; none while the node was down.
    pub mib: Vec<Option<f64>>,
    /// Per node, what it held: jobs in memory and the archive; none when it did not answer.
    pub held: Vec<Option<Held>>,
}

/// What one node held at a sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Held {
    /// Jobs in memory, every status.
    pub live_jobs: u64,
    /// Records in the archive (its book).
    pub archived: u64,
    /// The archive's records' size, in MiB.
    pub archive_mib: f64,
    /// The archive's directory on disk, in MiB (RocksDB's files).
    pub archive_disk_mib: f64,
}

/// How one node's memory held over the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeMemory {
    pub node: u64,
    /// Its level at the first third: the median of its samples in the second half of the
    /// first third of the run.
    pub first_third_mib: f64,
    /// Its least sample over the last two thirds.
    pub min_mib: f64,
    /// Its greatest sample over the last two thirds.
    pub max_mib: f64,
    /// Whichever of min and max lies farther from the first-third level, as a signed
    /// percentage of that level.
    pub deviation_pct: f64,
}

/// Whether every node held its level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every node stayed within ±`STEADY_WITHIN_PCT` of its first-third level.
    Steady,
    /// Some node left that band.
    Growing,
}

/// The memory figures of a duration run.
#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    pub sample_every_secs: f64,
    /// The nodes sampled, in the order of each sample's figures.
    pub nodes: Vec<u64>,
    pub samples: Vec<RssSample>,
    /// Per node with samples in both parts of the run, how its level held.
    pub per_node: Vec<NodeMemory>,
    /// None when some node has no sample in one of the two parts, so it cannot tell.
    pub verdict: Option<Verdict>,
}

impl Memory {
    /// The figures of `samples` of `nodes`, taken every `every`; the run ends at the last
    /// sample.
    pub fn of(nodes: Vec<u64>, samples: Vec<RssSample>, every: Duration) -> Self {
        let end_secs = samples.last().map_or(0.0, |s| s.elapsed_secs);
        let per_node: Vec<NodeMemory> = nodes
            .iter()
            .enumerate()
            .filter_map(|(i, &node)| {
                let points = samples
                    .iter()
                    .filter_map(|s| Some((s.elapsed_secs, (*s.mib.get(i)?)?)));
                node_memory(node, points, end_secs)
            })
            .collect();
        let told = !nodes.is_empty() && per_node.len() == nodes.len();
        let verdict = told.then(|| {
            let steady = per_node
                .iter()
                .all(|n| n.deviation_pct.abs() <= STEADY_WITHIN_PCT);
            if steady {
                Verdict::Steady
            } else {
                Verdict::Growing
            }
        });
        Self {
            sample_every_secs: every.as_secs_f64(),
            nodes,
            samples,
            per_node,
            verdict,
        }
    }
}

/// One node's figures from its (elapsed seconds, MiB) points of a run ending at `end_secs`;
/// none without a sample in each part.
fn node_memory(
    node: u64,
    points: impl Iterator<Item = (f64, f64)>,
    end_secs: f64,
) -> Option<NodeMemory> {
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    for (elapsed_secs, mib) in points {
        if elapsed_secs > end_secs / 3.0 {
            rest.push(mib);
        } else if elapsed_secs > end_secs / 6.0 {
            first.push(mib);
        }
    }
    let level = median(&mut first).filter(|&level| level > 0.0)?;
    let min_mib = rest.iter().copied().reduce(f64::min)?;
    let max_mib = rest.iter().copied().reduce(f64::max)?;
    let pct = |mib: f64| (mib - level) / level * 100.0;
    let deviation_pct = if pct(max_mib).abs() >= pct(min_mib).abs() {
        pct(max_mib)
    } else {
        pct(min_mib)
    };
    Some(NodeMemory {
        node,
        first_third_mib: level,
        min_mib,
        max_mib,
        deviation_pct,
    })
}

/// The median; the mean of the middle two for an even count.
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// What the node at `addr` (data in `dir`) holds; none when it does not answer.
async fn held_by(access: &Access, addr: &str, dir: &std::path::Path) -> Option<Held> {
    let client = rota_client::Client::with_config(rota_client::ClientConfig {
        call_timeout: Duration::from_secs(2),
        retry_for: Duration::from_secs(2),
        ..access.config([addr.to_owned()])
    })
    .ok()?;
    let status = client
        .cluster_status(rota_client::proto::ClusterStatusRequest {
            digest: false,
            leader_view: false,
        })
        .await
        .ok()?;
    let archive = status.archive.unwrap_or_default();
    Some(Held {
        live_jobs: status.jobs.iter().map(|c| c.count).sum(),
        archived: archive.records,
        archive_mib: archive.bytes as f64 / (1024.0 * 1024.0),
        archive_disk_mib: dir_bytes(&dir.join("archive")) as f64 / (1024.0 * 1024.0),
    })
}

/// The size of the files under `dir`, 0 where it cannot be read.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Samples every agent's resident memory now and every `every` after, until `duration` has
/// passed (both ends included), then tells how each node held.
pub(super) async fn sample(
    access: Access,
    agents: Arc<Mutex<Vec<Agent>>>,
    every: Duration,
    duration: Duration,
) -> Result<Memory, BenchError> {
    let lock = || agents.lock().map_err(|_| BenchError::AgentsLockPoisoned);
    let nodes = lock()?.iter().map(|a| a.id).collect();
    // `LoadConfig::check` bounds this by `MAX_MEMORY_SAMPLES`.
    let last = (duration.as_secs_f64() / every.as_secs_f64()).floor() as u32;
    let started = Instant::now();
    let mut samples = Vec::with_capacity(last as usize + 1);
    for k in 0..=last {
        tokio::time::sleep_until((started + every * k).into()).await;
        let (mib, places): (Vec<_>, Vec<_>) = lock()?
            .iter()
            .map(|a| (a.rss_bytes().map(mib), (a.addr.clone(), a.dir.clone())))
            .unzip();
        let mut held = Vec::with_capacity(places.len());
        for (addr, dir) in places {
            held.push(held_by(&access, &addr, &dir).await);
        }
        samples.push(RssSample {
            elapsed_secs: started.elapsed().as_secs_f64(),
            mib,
            held,
        });
    }
    Ok(Memory::of(nodes, samples, every))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples every 10 s of three nodes, each given as its MiB over time.
    fn samples(per_node: [&[f64]; 3]) -> Vec<RssSample> {
        (0..per_node[0].len())
            .map(|i| RssSample {
                elapsed_secs: i as f64 * 10.0,
                mib: per_node.iter().map(|n| Some(n[i])).collect(),
                held: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn nodes_within_ten_percent_of_their_level_at_the_first_third_are_steady() {
        // 0..90 s: the level is the median of the samples after 15 s and up to 30 s (100 for
        // node 1); its fill (60, 80) is left out, or 109 would be 21% over a median of 90.
        let warm = [
            60.0, 80.0, 100.0, 100.0, 105.0, 96.0, 109.0, 101.0, 98.0, 100.0,
        ];
        let flat = [200.0; 10];
        let down = [50.0, 50.0, 50.0, 50.0, 48.0, 47.0, 46.0, 45.5, 45.2, 45.1];
        let m = Memory::of(
            vec![1, 2, 3],
            samples([&warm, &flat, &down]),
            Duration::from_secs(10),
        );
        assert_eq!(m.verdict, Some(Verdict::Steady));
        let one = &m.per_node[0];
        assert_eq!(
            (one.first_third_mib, one.min_mib, one.max_mib),
            (100.0, 96.0, 109.0)
        );
        assert!((one.deviation_pct - 9.0).abs() < 1e-9, "{one:?}");
        assert_eq!(m.per_node[1].deviation_pct, 0.0);
        assert!(
            (m.per_node[2].deviation_pct + 9.8).abs() < 1e-9,
            "{:?}",
            m.per_node[2]
        );
    }

    #[test]
    fn a_node_that_leaves_the_band_makes_the_run_growing() {
        let flat = [100.0; 10];
        let leak = [
            100.0, 100.0, 100.0, 100.0, 103.0, 105.0, 107.0, 108.0, 109.0, 111.0,
        ];
        let m = Memory::of(
            vec![1, 2, 3],
            samples([&flat, &flat, &leak]),
            Duration::from_secs(10),
        );
        assert_eq!(m.verdict, Some(Verdict::Growing));
        assert!((m.per_node[2].deviation_pct - 11.0).abs() < 1e-9);
        // Falling out of the band counts too: the band is ±10%.
        let shrink = [
            100.0, 100.0, 100.0, 100.0, 95.0, 89.0, 92.0, 93.0, 94.0, 95.0,
        ];
        let m = Memory::of(
            vec![1, 2, 3],
            samples([&flat, &shrink, &flat]),
            Duration::from_secs(10),
        );
        assert_eq!(m.verdict, Some(Verdict::Growing));
        assert!((m.per_node[1].deviation_pct + 11.0).abs() < 1e-9);
    }

    #[test]
    fn a_node_without_samples_in_a_part_of_the_run_leaves_no_verdict() {
        let mut s = samples([&[100.0; 10], &[100.0; 10], &[100.0; 10]]);
        for sample in &mut s[..4] {
            sample.mib[1] = None;
        }
        let m = Memory::of(vec![1, 2, 3], s, Duration::from_secs(10));
        assert_eq!(m.verdict, None);
        let nodes: Vec<u64> = m.per_node.iter().map(|n| n.node).collect();
        assert_eq!(nodes, [1, 3]);
        assert_eq!(
            Memory::of(vec![], vec![], Duration::from_secs(10)).verdict,
            None
        );
    }

    #[test]
    fn median_takes_the_middle_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
