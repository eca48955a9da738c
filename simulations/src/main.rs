//! `rota-sim`: runs simulation seeds outside the test harness.
//!
//!     cargo run -p rota-simulations --release --bin rota-sim -- seed 1234
//!     cargo run -p rota-simulations --release --bin rota-sim -- sweep --seeds 10000

use clap::{Parser, Subcommand};
use rota_simulations::{run, FaultKind, Options};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "rota-sim", about = "rota's deterministic cluster simulations")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one seed and prints its history digest and verdict.
    Seed {
        seed: u64,
        /// Turn fencing off (to watch the checker catch zombie workers).
        #[arg(long)]
        no_fencing: bool,
        /// Print every event the clients saw, with its simulated time.
        #[arg(long)]
        history: bool,
        /// Disks report appends flushed before they sync (to watch the checker catch the
        /// writes a power loss then takes; `DiskFaults` seeds only).
        #[arg(long)]
        lying_disk: bool,
    },
    /// Runs seeds `start..start+seeds` and reports failures and timing.
    Sweep {
        #[arg(long, default_value_t = 1_000)]
        seeds: u64,
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Seeds run on this many threads at once.
        #[arg(long, default_value_t = 1)]
        threads: u64,
        /// Run every seed twice and fail if the two histories differ.
        #[arg(long)]
        replay: bool,
    },
}

fn reproduce(seed: u64) -> String {
    format!("cargo run -p rota-simulations --release --bin rota-sim -- seed {seed}")
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Seed {
            seed,
            no_fencing,
            history,
            lying_disk,
        } => {
            let mut options = Options {
                fencing: !no_fencing,
                ..Options::for_seed(seed)
            };
            if let Some(disk) = options.disk.as_mut() {
                disk.acknowledges_before_sync = lying_disk;
            }
            match run(seed, &options) {
                Ok(outcome) => {
                    println!(
                        "seed {seed}: {:?}, {} nodes, {} jobs ({} archived), {} snapshot installs, {} events, {} simulated ms, history {}",
                        outcome.options.fault,
                        outcome.options.nodes,
                        outcome.jobs,
                        outcome.archived_jobs,
                        outcome.installs,
                        outcome.events,
                        outcome.sim_ms,
                        outcome.history_digest
                    );
                    for record in outcome.history.iter().filter(|_| history) {
                        println!("  {:>6} ms  {:?}", record.at_ms, record.event);
                    }
                    for v in &outcome.violations {
                        println!("  violation: {v:?}");
                    }
                    if outcome.passed() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    println!("{e}\nreproduce: {}", reproduce(seed));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sweep {
            seeds,
            start,
            threads,
            replay,
        } => sweep(start, seeds, threads.max(1), replay),
    }
}

/// What went wrong with one seed, or `None` when it passed (and replayed, if asked).
/// Runs `seed` (twice with `replay`): the snapshot installs it saw, or what went wrong.
fn judge(seed: u64, replay: bool) -> Result<u64, String> {
    let options = Options::for_seed(seed);
    let outcome = run(seed, &options)?;
    if !outcome.passed() {
        return Err(format!("seed {seed} FAILED: {:?}", outcome.violations));
    }
    if replay {
        let again = run(seed, &options)?;
        if again.history_digest != outcome.history_digest {
            return Err(format!(
                "seed {seed} replayed differently: {} then {}",
                outcome.history_digest, again.history_digest
            ));
        }
    }
    Ok(outcome.installs)
}

fn sweep(start: u64, seeds: u64, threads: u64, replay: bool) -> ExitCode {
    let began = Instant::now();
    let failed: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let installs: Mutex<BTreeMap<u64, u64>> = Mutex::default();
    let done = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (failed, installs, done) = (&failed, &installs, &done);
            scope.spawn(move || {
                for seed in (start + t..start + seeds).step_by(threads as usize) {
                    match judge(seed, replay) {
                        Ok(n) => {
                            if let Ok(mut installs) = installs.lock() {
                                installs.insert(seed, n);
                            }
                        }
                        Err(problem) => {
                            println!("{problem}\nreproduce: {}", reproduce(seed));
                            if let Ok(mut failed) = failed.lock() {
                                failed.push(seed);
                            }
                        }
                    }
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % 500 == 0 {
                        println!("{n} seeds done, {:.0?}", began.elapsed());
                    }
                }
            });
        }
    });
    let mut failed = failed.into_inner().unwrap_or_default();
    failed.sort_unstable();
    let installs = installs.into_inner().unwrap_or_default();
    // Per kind and size: seeds, and of them those that saw a snapshot install.
    let mut kinds: BTreeMap<(FaultKind, usize), (u64, u64)> = BTreeMap::new();
    for seed in start..start + seeds {
        let options = Options::for_seed(seed);
        let kind = kinds.entry((options.fault, options.nodes)).or_default();
        kind.0 += 1;
        kind.1 += u64::from(installs.get(&seed).is_some_and(|&n| n > 0));
    }
    println!(
        "swept seeds {start}..{} on {threads} threads{} in {:.1?}: {} failed {failed:?}",
        start + seeds,
        if replay { ", each run twice" } else { "" },
        began.elapsed(),
        failed.len()
    );
    for ((kind, nodes), (count, installed)) in kinds {
        println!("  {kind:?} on {nodes} nodes: {count} seeds, {installed} with a snapshot install");
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
