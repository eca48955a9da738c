//! The nemesis: which faults a seed injects, and when. Faults start after the cluster is
//! up, and everything is healed by `HEAL_MS` so the workload can drain.

use crate::seed::SplitMix;

/// When the last fault is healed, in simulated milliseconds.
pub const HEAL_MS: u64 = 25_000;
/// When faults may begin.
const FIRST_FAULT_MS: u64 = 4_000;
/// Message latency on a healthy link: up to this many ms (what a slowed network heals to).
pub const BASE_LATENCY_MS: u64 = 5;
/// The furthest a node's clock is set off simulated time, either way: the clocks' spread
/// (at most twice this) stays under the lease TTL, so check 11 has room to fail.
const MAX_SKEW_MS: i64 = 600;

/// The kind of trouble a seed brings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// No fault: the baseline.
    Calm,
    /// One node cut off from the others, then healed.
    IsolateOne,
    /// The leader of the moment cut off from the others, then healed.
    IsolateLeader,
    /// A minority split from the majority (one of three, two of five).
    SplitMinority,
    /// The leader's side is the minority: the majority must elect a new leader.
    SplitLeaderIntoMinority,
    /// Links between two nodes held (messages queue), then released at once.
    HoldAndRelease,
    /// Every message slowed down (up to 200 ms).
    SlowNetwork,
    /// A node crashes and restarts later with what its store had.
    CrashRestart,
    /// The leader crashes while workers are leasing, and restarts later.
    CrashLeader,
    /// Nodes' clocks drift apart: the leader's jumps ahead, another's falls behind, the
    /// leader is cut off so a node with another clock likely leads, and the new leader's
    /// clock jumps again (ahead or back).
    ClockSkew,
    /// An operator works the cluster while a node is cut off: maintenance on and off, a
    /// quota lowered and restored, jobs canceled.
    AdminCalls,
    /// Disks that take 1–25 ms to sync, and power lost on every node at once (what was
    /// written but not synced is gone), then on the leader alone.
    DiskFaults,
    /// An operator adds a node (it catches up as a learner and is promoted) and removes a
    /// founding voter while one node is cut off.
    Membership,
}

impl FaultKind {
    /// Every kind, in the order seeds cycle through them.
    pub const ALL: [FaultKind; 13] = [
        FaultKind::Calm,
        FaultKind::IsolateOne,
        FaultKind::IsolateLeader,
        FaultKind::SplitMinority,
        FaultKind::SplitLeaderIntoMinority,
        FaultKind::HoldAndRelease,
        FaultKind::SlowNetwork,
        FaultKind::CrashRestart,
        FaultKind::CrashLeader,
        FaultKind::ClockSkew,
        FaultKind::AdminCalls,
        FaultKind::DiskFaults,
        FaultKind::Membership,
    ];

    /// The kind a seed gets: seeds cycle through every kind.
    pub fn for_seed(seed: u64) -> Self {
        Self::ALL[(seed % Self::ALL.len() as u64) as usize]
    }
}

/// Who a fault is aimed at; "the leader" is resolved when the fault fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Node(usize),
    Leader,
}

/// One step of the nemesis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Cut `target` (and, for a split, `with` more nodes on its side) off from the rest.
    Isolate {
        target: Target,
        with: usize,
    },
    /// Heal every partition.
    RepairAll,
    /// Hold the links between two nodes.
    Hold(usize, usize),
    /// Release held links between two nodes.
    Release(usize, usize),
    /// Set the largest message latency, in ms.
    Latency(u64),
    Crash(Target),
    /// Restart every crashed node.
    RestartAll,
    /// Crash every node at once (a power loss).
    CrashAll,
    /// Set a node's clock this many ms off simulated time (a jump, ahead or back).
    Skew {
        target: Target,
        offset_ms: i64,
    },
}

/// The nemesis's schedule for one seed: (simulated ms, action), in time order.
pub fn schedule(kind: FaultKind, nodes: usize, rng: &mut SplitMix) -> Vec<(u64, Action)> {
    let start = rng.range(FIRST_FAULT_MS, FIRST_FAULT_MS + 4_000);
    let end = rng
        .range(start + 2_000, start + 10_000)
        .min(HEAL_MS - 1_000);
    let node = rng.range(0, nodes as u64) as usize;
    let other = (node + 1 + rng.range(0, nodes as u64 - 1) as usize) % nodes;
    let minority = (nodes - 1) / 2;
    let mut plan = match kind {
        FaultKind::Calm => vec![],
        FaultKind::IsolateOne => vec![
            (
                start,
                Action::Isolate {
                    target: Target::Node(node),
                    with: 0,
                },
            ),
            (end, Action::RepairAll),
        ],
        FaultKind::IsolateLeader => vec![
            (
                start,
                Action::Isolate {
                    target: Target::Leader,
                    with: 0,
                },
            ),
            (end, Action::RepairAll),
        ],
        FaultKind::SplitMinority => vec![
            (
                start,
                Action::Isolate {
                    target: Target::Node(node),
                    with: minority - 1,
                },
            ),
            (end, Action::RepairAll),
        ],
        FaultKind::SplitLeaderIntoMinority => vec![
            (
                start,
                Action::Isolate {
                    target: Target::Leader,
                    with: minority - 1,
                },
            ),
            (end, Action::RepairAll),
        ],
        FaultKind::HoldAndRelease => vec![
            (start, Action::Hold(node, other)),
            (end, Action::Release(node, other)),
        ],
        FaultKind::SlowNetwork => vec![
            (start, Action::Latency(rng.range(50, 200))),
            (end, Action::Latency(BASE_LATENCY_MS)),
        ],
        FaultKind::CrashRestart => vec![
            (start, Action::Crash(Target::Node(node))),
            (end, Action::RestartAll),
        ],
        FaultKind::CrashLeader => vec![
            (start, Action::Crash(Target::Leader)),
            (end, Action::RestartAll),
        ],
        FaultKind::ClockSkew => {
            let ahead = rng.range(100, MAX_SKEW_MS as u64) as i64;
            let behind = -(rng.range(100, MAX_SKEW_MS as u64) as i64);
            let jump = rng.range(0, 2 * MAX_SKEW_MS as u64) as i64 - MAX_SKEW_MS;
            let cut = rng.range(start + 300, (end - 1_800).max(start + 301));
            vec![
                (
                    start,
                    Action::Skew {
                        target: Target::Leader,
                        offset_ms: ahead,
                    },
                ),
                (
                    start + 200,
                    Action::Skew {
                        target: Target::Node(other),
                        offset_ms: behind,
                    },
                ),
                (
                    cut,
                    Action::Isolate {
                        target: Target::Leader,
                        with: 0,
                    },
                ),
                (
                    cut + 1_500,
                    Action::Skew {
                        target: Target::Leader,
                        offset_ms: jump,
                    },
                ),
                (end, Action::RepairAll),
            ]
        }
        // The operator's calls come from its own client (`sim.rs`); the nemesis cuts a
        // founding node off meanwhile, so some calls are forwarded and some wait out an
        // election.
        FaultKind::AdminCalls | FaultKind::Membership => vec![
            (
                start,
                Action::Isolate {
                    target: Target::Node(node),
                    with: 0,
                },
            ),
            (end, Action::RepairAll),
        ],
        FaultKind::DiskFaults => {
            // Power back 0.5-3 s after it went, then the leader alone crashes for 1-4 s.
            let back = rng.range(start + 500, start + 3_000);
            let again = back + rng.range(1_500, 4_000);
            let restored = (again + rng.range(1_000, 4_000)).min(HEAL_MS - 500);
            vec![
                (start, Action::CrashAll),
                (back, Action::RestartAll),
                (again, Action::Crash(Target::Leader)),
                (restored, Action::RestartAll),
            ]
        }
    };
    // A second, shorter round of the same kind in some seeds (not of clock jumps nor disk
    // faults: their schedules are one story each).
    let one_story = [FaultKind::Calm, FaultKind::ClockSkew, FaultKind::DiskFaults];
    if !one_story.contains(&kind) && rng.chance(40) {
        let again = rng.range(end + 500, end + 2_000).min(HEAL_MS - 500);
        let again_end = (again + rng.range(500, 3_000)).min(HEAL_MS);
        let mut second: Vec<(u64, Action)> = plan
            .iter()
            .enumerate()
            .map(|(i, (_, action))| (if i == 0 { again } else { again_end }, action.clone()))
            .collect();
        plan.append(&mut second);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schedule_heals_by_the_deadline_and_stays_in_time_order() {
        for seed in 0..500 {
            let kind = FaultKind::for_seed(seed);
            let plan = schedule(kind, 3 + 2 * (seed % 2) as usize, &mut SplitMix::new(seed));
            assert!(
                plan.windows(2).all(|w| w[0].0 <= w[1].0),
                "seed {seed}: {plan:?}"
            );
            assert!(
                plan.iter().all(|(t, _)| *t <= HEAL_MS),
                "seed {seed}: {plan:?}"
            );
            if kind != FaultKind::Calm {
                assert!(!plan.is_empty(), "seed {seed}");
            }
        }
    }
}
