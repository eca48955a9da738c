//! The leader killer of the cycle phase, and what each kill cost: how long until another
//! node led, and the longest time no completion was acknowledged. The same for planned
//! restarts: the leader stopped with SIGTERM (it hands leadership away first), or every
//! node in turn, followers first, as a rolling upgrade does.

use super::report::Failover;
use super::tally::Tally;
use super::{LoadConfig, Target};
use crate::cluster::{caught_up_to, poll, wait_for_agreed_leader, wait_stopped, Access, Agent};
use crate::BenchError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the cycle's restarts stop a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Restart {
    /// SIGKILL the leader; restart it a second later.
    #[default]
    Kill,
    /// SIGTERM the leader (a planned restart); start it again once it has exited.
    Term,
    /// SIGTERM every node in turn, followers first and the leader last, each started again
    /// once it has exited and caught up before the next: a rolling upgrade. A pass once
    /// begun finishes even if the load ends first.
    Rolling,
}

/// How long a node stopped with SIGTERM may take before it is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// One leader kill: when (µs since the epoch) and how long until another node led.
pub(super) struct Kill {
    pub(super) at_us: u64,
    pub(super) elected_ms: f64,
}

/// SIGKILLs the leader every `kill_every` while the cycle runs and restarts it a second
/// later (or stops nodes as `config.restart` says); before the next, waits until the
/// restarted node has caught up, so each stop hits a healthy cluster. Returns when each
/// stop happened (µs since the epoch).
pub(super) async fn kill_leaders(
    config: LoadConfig,
    target: Target,
    agents: Arc<Mutex<Vec<Agent>>>,
    tally: Arc<Tally>,
) -> Result<Vec<Kill>, BenchError> {
    let (ops, addrs) = (&target.ops, &target.endpoints);
    let mut kills = Vec::new();
    let mut healthy_since = Instant::now();
    let mut order: Vec<u64> = Vec::new();
    for _ in 0..config.kill_leader {
        let next = healthy_since + config.kill_every.saturating_sub(Duration::from_secs(1));
        tokio::time::sleep_until(next.into()).await;
        // A rolling restart, once begun, restarts every node even if the load ends first (a
        // slow machine): a cluster left half restarted is not what the run reports on.
        let pass_underway = config.restart == Restart::Rolling && !order.is_empty();
        if tally.phase_done() && !pass_underway {
            break;
        }
        let leader =
            wait_for_agreed_leader(ops, addrs, addrs.len(), Duration::from_secs(30)).await?;
        let victim = match config.restart {
            Restart::Rolling => {
                // Each pass over the nodes starts from who leads then: the leader goes last.
                if order.is_empty() {
                    order = rolling_order(&agents, leader)?;
                    order.reverse();
                }
                order.pop().ok_or(BenchError::UnknownLeader(leader))?
            }
            Restart::Kill | Restart::Term => leader,
        };
        let stopped = Instant::now();
        let (killed_at, child) = stop(&agents, victim, config.restart, &tally)?;
        // Leadership moves only when the leader stops.
        let elected_ms = if victim == leader {
            let elected = new_leader(ops, addrs, leader, Duration::from_secs(30)).await?;
            elected.duration_since(stopped).as_secs_f64() * 1_000.0
        } else {
            0.0
        };
        kills.push(Kill {
            at_us: killed_at,
            elected_ms,
        });
        match child {
            Some(child) => {
                if !wait_stopped(child, STOP_GRACE).await {
                    return Err(BenchError::StopTimedOut(victim));
                }
            }
            None => tokio::time::sleep_until((stopped + Duration::from_secs(1)).into()).await,
        }
        restart_killed(&agents)?;
        caught_up(ops, addrs, Duration::from_secs(60)).await?;
        healthy_since = Instant::now();
    }
    Ok(kills)
}

/// Every node's id, followers first (by id) and `leader` last.
fn rolling_order(agents: &Mutex<Vec<Agent>>, leader: u64) -> Result<Vec<u64>, BenchError> {
    let agents = agents.lock().map_err(|_| BenchError::AgentsLockPoisoned)?;
    let mut order: Vec<u64> = agents
        .iter()
        .map(|a| a.id)
        .filter(|id| *id != leader)
        .collect();
    order.sort_unstable();
    order.push(leader);
    Ok(order)
}

/// Stops agent `victim` as `how` says; returns when (µs since the epoch), and the process
/// to wait for after a SIGTERM.
fn stop(
    agents: &Mutex<Vec<Agent>>,
    victim: u64,
    how: Restart,
    tally: &Tally,
) -> Result<(u64, Option<std::process::Child>), BenchError> {
    let mut agents = agents.lock().map_err(|_| BenchError::AgentsLockPoisoned)?;
    let agent = agents
        .iter_mut()
        .find(|a| a.id == victim)
        .ok_or(BenchError::UnknownLeader(victim))?;
    let at = tally.now_us();
    let child = match how {
        Restart::Kill => {
            agent.kill();
            None
        }
        Restart::Term | Restart::Rolling => agent.terminate(),
    };
    Ok((at, child))
}

/// Starts every agent that is not running, with the data it had.
fn restart_killed(agents: &Mutex<Vec<Agent>>) -> Result<(), BenchError> {
    let mut agents = agents.lock().map_err(|_| BenchError::AgentsLockPoisoned)?;
    for agent in agents.iter_mut().filter(|a| !a.is_running()) {
        agent.start().map_err(|source| BenchError::RestartAgent {
            node: agent.id,
            source,
        })?;
    }
    Ok(())
}

/// Polls until a node other than `old` says it leads; returns when.
async fn new_leader(
    ops: &Access,
    addrs: &[String],
    old: u64,
    within: Duration,
) -> Result<Instant, BenchError> {
    let every = Duration::from_millis(10);
    poll(ops, addrs, false, every, within, "new leader", |seen| {
        seen.iter()
            .any(|s| s.node_id != old && s.leader_id == Some(s.node_id))
            .then(Instant::now)
    })
    .await
}

/// Waits until one node leads and every node has applied what the leader had applied then.
async fn caught_up(ops: &Access, addrs: &[String], within: Duration) -> Result<(), BenchError> {
    let every = Duration::from_millis(50);
    let leader_index = poll(ops, addrs, false, every, within, "leader", |seen| {
        seen.iter()
            .find(|s| s.leader_id == Some(s.node_id))
            .and_then(|s| s.applied_index)
    })
    .await?;
    caught_up_to(ops, addrs, leader_index, within).await
}

/// For each kill, the longest window without a completion between the kill and
/// `window` after it.
pub(super) fn failover(kills: &[Kill], completions_us: &[u64], window: Duration) -> Failover {
    let window_us = window.as_micros() as u64;
    let ms = |us: u64| us as f64 / 1_000.0;
    let gaps: Vec<Gap> = kills
        .iter()
        .map(|k| longest_stall_us(k.at_us, completions_us, window_us))
        .collect();
    let mut stalls: Vec<f64> = gaps.iter().map(|g| ms(g.longest)).collect();
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
        restart: Restart::Kill,
        kills: kills.len() as u32,
        elected_ms: kills.iter().map(|k| k.elected_ms).collect(),
        stall_ms: per_kill,
        resumed_ms: gaps.iter().map(|g| ms(g.first)).collect(),
        stall_from_ms: gaps.iter().map(|g| ms(g.longest_from)).collect(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

/// The completions around one kill (µs): the longest gap, when it began (after the kill),
/// and the first completion after the kill.
#[derive(Debug, Default, PartialEq, Eq)]
struct Gap {
    longest: u64,
    longest_from: u64,
    first: u64,
}

/// The longest gap between completions (sorted, µs) from the kill at `kill` to `window_us`
/// after it.
fn longest_stall_us(kill: u64, completions_us: &[u64], window_us: u64) -> Gap {
    let end = kill + window_us;
    let from = completions_us.partition_point(|&t| t < kill);
    let to = completions_us.partition_point(|&t| t <= end);
    let mut last = kill;
    let mut gap = Gap {
        first: completions_us
            .get(from)
            .map_or(window_us, |t| (t - kill).min(window_us)),
        ..Gap::default()
    };
    let widen = |gap: &mut Gap, from: u64, to: u64| {
        if to - from > gap.longest {
            gap.longest = to - from;
            gap.longest_from = from - kill;
        }
    };
    for &t in &completions_us[from..to] {
        widen(&mut gap, last, t);
        last = t;
    }
    // A run that ended inside the window: the tail is not a stall.
    if to < completions_us.len() {
        widen(&mut gap, last, end);
    }
    gap
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!((f.resumed_ms[0] - 700.0).abs() < 0.01, "{:?}", f.resumed_ms);
        assert!(f.stall_from_ms[0].abs() < 0.01, "{:?}", f.stall_from_ms);
        assert_eq!(f.max_ms, f.stall_ms[0]);
    }
}
