//! The CI seed set: every fault kind on three and on five nodes, plus determinism and the
//! proof that the checker catches zombie workers once fencing is off. A failing seed names
//! itself and the command that replays it.

use rota_simulations::{run, Event, FaultKind, Options, Outcome, Violation};

/// Seeds per fault kind in CI (half on three nodes, half on five).
const SEEDS_PER_KIND: u64 = 24;

fn reproduce(seed: u64) -> String {
    format!("cargo run -p rota-simulations --release --bin rota-sim -- seed {seed}")
}

/// Runs the kind's CI seeds and returns their outcomes.
fn sweep_kind(kind: FaultKind) -> Vec<Outcome> {
    let index = FaultKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("a known kind") as u64;
    let kinds = FaultKind::ALL.len() as u64;
    let mut nodes_seen = std::collections::BTreeSet::new();
    let mut archived = 0;
    let mut outcomes = Vec::new();
    for k in 0..SEEDS_PER_KIND {
        let seed = index + kinds * k;
        let options = Options::for_seed(seed);
        assert_eq!(options.fault, kind);
        nodes_seen.insert(options.nodes);
        let outcome =
            run(seed, &options).unwrap_or_else(|e| panic!("{e}\nreproduce: {}", reproduce(seed)));
        assert!(
            outcome.passed(),
            "seed {seed} ({kind:?}, {} nodes) broke a promise: {:#?}\nreproduce: {}",
            options.nodes,
            outcome.violations,
            reproduce(seed)
        );
        assert!(outcome.jobs > 0, "seed {seed}: the workload never ran");
        archived += outcome.archived_jobs;
        outcomes.push(outcome);
    }
    assert!(
        archived > 0,
        "{kind:?}: no job was ever archived, so retention went untested"
    );
    assert_eq!(
        nodes_seen.len(),
        2,
        "{kind:?} ran on three and on five nodes"
    );
    outcomes
}

/// A fault that cuts a node off from the leader long enough that the log it needs is purged
/// (kept 20 entries behind snapshots): some seed must catch it up by a snapshot install.
fn sweep_kind_with_installs(kind: FaultKind) {
    let installed = sweep_kind(kind).iter().filter(|o| o.installs > 0).count();
    assert!(
        installed > 0,
        "{kind:?}: no seed installed a snapshot, so catching up by install went untested"
    );
}

#[test]
fn calm() {
    sweep_kind(FaultKind::Calm);
}

#[test]
fn one_node_isolated() {
    sweep_kind_with_installs(FaultKind::IsolateOne);
}

#[test]
fn leader_isolated() {
    sweep_kind_with_installs(FaultKind::IsolateLeader);
}

#[test]
fn minority_split_off() {
    sweep_kind_with_installs(FaultKind::SplitMinority);
}

#[test]
fn leader_split_into_the_minority() {
    sweep_kind_with_installs(FaultKind::SplitLeaderIntoMinority);
}

#[test]
fn links_held_and_released() {
    sweep_kind_with_installs(FaultKind::HoldAndRelease);
}

#[test]
fn slow_network() {
    sweep_kind(FaultKind::SlowNetwork);
}

#[test]
fn node_crashes_and_restarts() {
    sweep_kind_with_installs(FaultKind::CrashRestart);
}

#[test]
fn leader_crashes_during_leasing() {
    sweep_kind_with_installs(FaultKind::CrashLeader);
}

/// How many of `outcomes` recorded an event that `pick` matches.
fn seeds_with(outcomes: &[Outcome], pick: impl Fn(&Event) -> bool) -> usize {
    outcomes
        .iter()
        .filter(|o| o.history.iter().any(|r| pick(&r.event)))
        .count()
}

#[test]
fn clocks_skewed_and_jumping() {
    let outcomes = sweep_kind(FaultKind::ClockSkew);
    // The clocks moved, and some lease ran out under them (what checks 10 and 11 judge).
    let skewed = seeds_with(
        &outcomes,
        |e| matches!(e, Event::Fault(f) if f.starts_with("clock of")),
    );
    assert_eq!(skewed, outcomes.len(), "every seed moves clocks");
    let expired = outcomes
        .iter()
        .filter(|o| {
            o.history.iter().any(|r| {
                matches!(&r.event, Event::CompletionRefused { kind, .. } if kind == "stale_lease")
            })
        })
        .count();
    assert!(expired > 0, "no lease ran out under skewed clocks");
}

#[test]
fn an_operator_at_work() {
    let outcomes = sweep_kind(FaultKind::AdminCalls);
    let all = outcomes.len();
    let on = seeds_with(&outcomes, |e| {
        matches!(e, Event::Maintenance { on: true, .. })
    });
    let off = seeds_with(&outcomes, |e| {
        matches!(e, Event::Maintenance { on: false, .. })
    });
    let lowered = seeds_with(&outcomes, |e| {
        matches!(e, Event::QuotaSet { max_active: 1, .. })
    });
    assert_eq!(
        (on, off, lowered),
        (all, all, all),
        "every seed's operator got through"
    );
    let canceled = seeds_with(&outcomes, |e| matches!(e, Event::CancelAcknowledged { .. }));
    assert!(
        canceled > 0,
        "no cancel was acknowledged, so check 14 went untested"
    );
}

#[test]
fn disks_slow_to_sync_and_power_lost_everywhere() {
    let outcomes = sweep_kind(FaultKind::DiskFaults);
    let lost_power = seeds_with(
        &outcomes,
        |e| matches!(e, Event::Fault(f) if f == "crash every node"),
    );
    assert_eq!(
        lost_power,
        outcomes.len(),
        "every seed cuts every node's power"
    );
}

#[test]
fn a_node_added_and_a_voter_removed_under_faults() {
    let outcomes = sweep_kind(FaultKind::Membership);
    let all = outcomes.len();
    let added = seeds_with(&outcomes, |e| matches!(e, Event::NodeAdded { .. }));
    let promoted = seeds_with(&outcomes, |e| matches!(e, Event::NodePromoted { .. }));
    let removed = seeds_with(&outcomes, |e| matches!(e, Event::NodeRemoved { .. }));
    assert_eq!(
        (added, promoted, removed),
        (all, all, all),
        "every seed's operator added, saw promoted and removed a node"
    );
}

/// The disk's protection switched off: appends reported flushed before they are synced.
/// When every node loses power, writes the cluster acknowledged are gone, and the checker
/// must say so for some seed.
#[test]
fn with_a_disk_that_lies_about_syncing_the_checker_catches_lost_writes() {
    let index = FaultKind::ALL
        .iter()
        .position(|k| *k == FaultKind::DiskFaults)
        .expect("a known kind") as u64;
    let kinds = FaultKind::ALL.len() as u64;
    let caught = (0..SEEDS_PER_KIND)
        .map(|k| index + kinds * k)
        .find_map(|seed| {
            let mut options = Options::for_seed(seed);
            let disk = options.disk.as_mut().expect("disk fault seeds have a disk");
            disk.acknowledges_before_sync = true;
            let outcome = run(seed, &options).ok()?;
            (!outcome.passed()).then_some((seed, outcome.violations))
        });
    assert!(
        caught.is_some(),
        "with disks that acknowledge before they sync, no DiskFaults seed lost a write the checker saw"
    );
}

#[test]
fn the_same_seed_replays_the_same_history() {
    for seed in [3, 7, 9, 10, 11, 12, 16] {
        let options = Options::for_seed(seed);
        let first = run(seed, &options).unwrap_or_else(|e| panic!("{e}"));
        let second = run(seed, &options).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            first.history_digest,
            second.history_digest,
            "seed {seed} replayed differently\nreproduce: {}",
            reproduce(seed)
        );
        assert_eq!(first.events, second.events);
    }
}

#[test]
fn without_fencing_the_checker_catches_zombie_workers() {
    let caught = (0..30).find_map(|seed| {
        let options = Options {
            fencing: false,
            ..Options::for_seed(seed)
        };
        let outcome = run(seed, &options).ok()?;
        outcome
            .violations
            .iter()
            .any(|v| {
                matches!(
                    v,
                    Violation::StaleCompletionAccepted { .. } | Violation::DoubleSuccess { .. }
                )
            })
            .then_some(seed)
    });
    assert!(
        caught.is_some(),
        "with fencing off, no seed in 0..30 let a zombie's completion through"
    );
}
