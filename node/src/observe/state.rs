//! Gauges read at each scrape: the queues, breakers, quotas and maintenance from the
//! replicated state (one short read under the apply lock, copying a bounded set of numbers;
//! encoded after it), Raft's term, leader, indexes and replication from openraft's metrics,
//! the log's and snapshots' totals, and the process's memory.

use super::labels::{pair, MAX_PAIRS, OTHER};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use rota_raft::{Applied, NodeId, RaftNode, Stage};
use rota_state_machine::Status;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What one scrape copies out of the replicated state.
struct Copied {
    applied_index: u64,
    log_time_ms: u64,
    /// Per (tenant, job type), jobs per status; the pairs past the cap summed under `OTHER`.
    depth: Vec<(String, String, [u32; 7])>,
    breakers: Vec<(String, bool)>,
    /// (tenant or "", job type or "", max active, active now).
    quotas: Vec<(String, String, Option<u32>, u32)>,
    maintenance: bool,
}

fn copy(applied: &Applied) -> Copied {
    let state = &applied.state;
    let mut depth = Vec::new();
    let mut other = [0u32; 7];
    for (i, (tenant, job_type, counts)) in state.depth_by_status().enumerate() {
        if i < MAX_PAIRS {
            depth.push((tenant.to_string(), job_type.to_string(), counts));
        } else {
            for (sum, n) in other.iter_mut().zip(counts) {
                *sum += n;
            }
        }
    }
    if other.iter().any(|&n| n > 0) {
        depth.push((OTHER.to_owned(), OTHER.to_owned(), other));
    }
    let breakers = state
        .breakers()
        .take(MAX_PAIRS)
        .map(|(job_type, open)| (job_type.to_string(), open))
        .collect();
    let quotas = state
        .quotas()
        .take(MAX_PAIRS)
        .map(|(scope, quota)| {
            (
                scope
                    .tenant
                    .as_ref()
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                scope
                    .job_type
                    .as_ref()
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                quota.max_active,
                state.active(scope),
            )
        })
        .collect();
    Copied {
        applied_index: applied.last_applied.map_or(0, |id| id.index),
        log_time_ms: state.now_ms(),
        depth,
        breakers,
        quotas,
        maintenance: state.maintenance().is_some(),
    }
}

/// Elections and leader changes this node saw, counted by a task that watches openraft's
/// metrics (a scrape sees only the latest term).
#[derive(Debug, Default)]
struct Seen {
    elections: AtomicU64,
    leader_changes: AtomicU64,
}

/// The scrape-time gauges of one node.
pub struct StateGauges {
    raft: Arc<RaftNode>,
    seen: Arc<Seen>,
}

impl std::fmt::Debug for StateGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateGauges").finish_non_exhaustive()
    }
}

impl StateGauges {
    /// The gauges of `raft`'s node; starts the task that counts elections.
    pub fn new(raft: Arc<RaftNode>) -> Self {
        let seen = Arc::new(Seen::default());
        tokio::spawn(count_elections(raft.metrics(), seen.clone()));
        Self { raft, seen }
    }
}

/// Counts term increases (each is an election some node started) and leader changes, until
/// the node stops.
async fn count_elections(
    mut metrics: tokio::sync::watch::Receiver<rota_raft::RaftMetrics>,
    seen: Arc<Seen>,
) {
    let (mut term, mut leader) = {
        let m = metrics.borrow_and_update();
        (m.current_term, m.current_leader)
    };
    while metrics.changed().await.is_ok() {
        let (now_term, now_leader) = {
            let m = metrics.borrow_and_update();
            (m.current_term, m.current_leader)
        };
        if now_term > term {
            seen.elections.fetch_add(now_term - term, Ordering::Relaxed);
        }
        if now_leader.is_some() && now_leader != leader {
            seen.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        term = now_term;
        if now_leader.is_some() {
            leader = now_leader;
        }
    }
}

/// Encodes one unlabelled gauge.
fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// Encodes one unlabelled counter (`_total` is added to `name`).
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    ConstCounter::new(value).encode(encoder.encode_descriptor(
        name,
        help,
        None,
        MetricType::Counter,
    )?)
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The index a majority of `voters` has, given each one's matched index.
fn quorum_index(mut matched: Vec<u64>) -> Option<u64> {
    if matched.is_empty() {
        return None;
    }
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched.get(matched.len() / 2).copied()
}

/// This process's resident memory in bytes (Linux), from `/proc/self/statm`.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the system and has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok().filter(|&p| p > 0)?)
}

impl Collector for StateGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let copied = self.raft.read_local(copy);
        let metrics = self.raft.metrics().borrow().clone();
        let stats = self.raft.stats().read();

        let mut family = encoder.encode_descriptor(
            "job_queue_depth",
            "Jobs per tenant, job type and status, from the replicated state (terminal ones until retention archives them)",
            None,
            MetricType::Gauge,
        )?;
        for (tenant, job_type, counts) in &copied.depth {
            for status in Status::ALL {
                let labels = pair(tenant, job_type, &[("status", status.as_str())]);
                ConstGauge::new(i64::from(counts[status as usize]))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "breaker_open",
            "1 while a job type's circuit breaker is open (tripped and not reset), else 0",
            None,
            MetricType::Gauge,
        )?;
        for (job_type, open) in &copied.breakers {
            ConstGauge::new(i64::from(*open))
                .encode(family.encode_family(&[("jobType", job_type.as_str())])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "quota_active",
            "Jobs leased now within a quota's scope (empty tenant or jobType: every one)",
            None,
            MetricType::Gauge,
        )?;
        for (tenant, job_type, _, active) in &copied.quotas {
            ConstGauge::new(i64::from(*active)).encode(family.encode_family(&pair(
                tenant,
                job_type,
                &[],
            ))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "quota_max_active",
            "A quota's cap on jobs leased at once; a scope at its cap holds its ready jobs back",
            None,
            MetricType::Gauge,
        )?;
        for (tenant, job_type, max, _) in &copied.quotas {
            if let Some(max) = max {
                ConstGauge::new(i64::from(*max)).encode(family.encode_family(&pair(
                    tenant,
                    job_type,
                    &[],
                ))?)?;
            }
        }
        gauge(
            &mut encoder,
            "maintenance_mode",
            "1 while the cluster is in maintenance mode (no leases granted), else 0",
            i64::from(copied.maintenance),
        )?;
        gauge(
            &mut encoder,
            "state_applied_index",
            "The log index the state gauges above were read at",
            signed(copied.applied_index),
        )?;
        gauge(
            &mut encoder,
            "state_log_time_seconds",
            "Log time of the latest applied entry, as Unix seconds",
            signed(copied.log_time_ms / 1000),
        )?;

        gauge(
            &mut encoder,
            "raft_term",
            "This node's current term",
            signed(metrics.current_term),
        )?;
        gauge(
            &mut encoder,
            "raft_leader",
            "The leader's node id as this node knows it (0: none)",
            signed(metrics.current_leader.unwrap_or(0)),
        )?;
        let leads = metrics.current_leader == Some(metrics.id);
        gauge(
            &mut encoder,
            "raft_is_leader",
            "1 on the leader, else 0",
            i64::from(leads),
        )?;
        gauge(
            &mut encoder,
            "raft_last_log_index",
            "The last index in this node's log",
            signed(metrics.last_log_index.unwrap_or(0)),
        )?;
        gauge(
            &mut encoder,
            "raft_applied_index",
            "The last index this node applied",
            signed(metrics.last_applied.map_or(0, |id| id.index)),
        )?;
        gauge(
            &mut encoder,
            "raft_snapshot_index",
            "The last index this node's latest snapshot covers",
            signed(metrics.snapshot.map_or(0, |id| id.index)),
        )?;
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        gauge(
            &mut encoder,
            "raft_voters",
            "Voters in this node's membership",
            voters.len() as i64,
        )?;
        if let (true, Some(replication)) = (leads, metrics.replication.as_ref()) {
            let last = metrics.last_log_index.unwrap_or(0);
            let matched: BTreeMap<NodeId, u64> = membership
                .nodes()
                .map(|(id, _)| {
                    // The leader's own entry, where openraft reports it, is what it synced.
                    let matched = replication.get(id).and_then(|log| log.map(|l| l.index));
                    let index = match matched {
                        Some(index) => index,
                        None if *id == metrics.id => last,
                        None => 0,
                    };
                    (*id, index)
                })
                .collect();
            let commit = quorum_index(
                voters
                    .iter()
                    .filter_map(|id| matched.get(id).copied())
                    .collect(),
            );
            gauge(
                &mut encoder,
                "raft_commit_index",
                "The index a majority of voters has matched (leader only; openraft commits it once it is of the current term)",
                signed(commit.unwrap_or(0)),
            )?;
            let mut family = encoder.encode_descriptor(
                "raft_replication_lag_entries",
                "Entries each other member is behind the leader's log (leader only)",
                None,
                MetricType::Gauge,
            )?;
            for (id, index) in matched.iter().filter(|(id, _)| **id != metrics.id) {
                let follower = id.to_string();
                ConstGauge::new(signed(last.saturating_sub(*index)))
                    .encode(family.encode_family(&[("follower", follower.as_str())])?)?;
            }
        }
        counter(
            &mut encoder,
            "raft_elections",
            "Elections this node saw start (term increases) since it started",
            self.seen.elections.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "raft_leader_changes",
            "Times this node saw a new leader since it started",
            self.seen.leader_changes.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "raft_log_appends",
            "Synced appends to this node's log",
            stats.log_appends,
        )?;
        counter(
            &mut encoder,
            "raft_log_entries",
            "Entries appended to this node's log",
            stats.log_entries,
        )?;
        counter(
            &mut encoder,
            "raft_log_bytes",
            "Bytes of the entries appended to this node's log, as stored",
            stats.log_bytes,
        )?;
        counter(
            &mut encoder,
            "raft_snapshots_built",
            "Snapshots this node built",
            stats.snapshots_built,
        )?;
        let build_seconds = prometheus_client::metrics::counter::ConstCounter::new(
            stats.snapshot_build_time.as_secs_f64(),
        );
        build_seconds.encode(encoder.encode_descriptor(
            "raft_snapshot_build_seconds",
            "Time spent building snapshots",
            None,
            MetricType::Counter,
        )?)?;
        counter(
            &mut encoder,
            "raft_snapshots_installed",
            "Snapshots this node installed from a leader",
            stats.snapshots_installed,
        )?;
        counter(
            &mut encoder,
            "raft_campaigns",
            "Elections this node started: it heard no leader for the lease and a majority answered its pre-vote",
            stats.prompt_elections,
        )?;
        gauge(
            &mut encoder,
            "raft_snapshot_bytes",
            "Size of the latest snapshot this node built or installed",
            signed(stats.last_snapshot_bytes),
        )?;
        let mut family = encoder.encode_descriptor(
            "raft_stage_seconds",
            "Time spent in each stage of the write path since start (queued: writes waiting to be proposed; committed: entries from proposal to answer, leader only; log_sync: synced log writes (appends, truncations, purges, votes); log_read: entries read back from the log; replicated: AppendEntries with entries, sent to answered; append_served: the same, served by a follower; applied: apply calls)",
            None,
            MetricType::Counter,
        )?;
        for (stage, (_, took)) in Stage::ALL.iter().zip(stats.stages) {
            ConstCounter::new(took.as_secs_f64())
                .encode(family.encode_family(&[("stage", stage.name())])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "raft_stage",
            "Times each stage of the write path ran since start (see raft_stage_seconds)",
            None,
            MetricType::Counter,
        )?;
        for (stage, (count, _)) in Stage::ALL.iter().zip(stats.stages) {
            ConstCounter::new(count).encode(family.encode_family(&[("stage", stage.name())])?)?;
        }
        if let Some(bytes) = resident_bytes() {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory of this process",
                signed(bytes),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::quorum_index;

    #[test]
    fn the_commit_index_is_what_a_majority_holds() {
        assert_eq!(quorum_index(vec![10, 7, 3]), Some(7));
        assert_eq!(quorum_index(vec![10, 7, 3, 2, 9]), Some(7));
        assert_eq!(quorum_index(vec![5]), Some(5));
        assert_eq!(quorum_index(vec![4, 8]), Some(4));
        assert_eq!(quorum_index(Vec::new()), None);
    }
}
