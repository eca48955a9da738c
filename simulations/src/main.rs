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
        Command::Seed { seed, no_fencing } => {
            let options = Options {
                fencing: !no_fencing,
                ..Options::for_seed(seed)
            };
            match run(seed, &options) {
                Ok(outcome) => {
                    println!(
                        "seed {seed}: {:?}, {} nodes, {} jobs ({} archived), {} events, {} simulated ms, history {}",
                        outcome.options.fault,
                        outcome.options.nodes,
                        outcome.jobs,
                        outcome.archived_jobs,
                        outcome.events,
                        outcome.sim_ms,
                        outcome.history_digest
                    );
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
fn judge(seed: u64, replay: bool) -> Option<String> {
    let options = Options::for_seed(seed);
    let outcome = match run(seed, &options) {
        Ok(outcome) => outcome,
        Err(e) => return Some(e),
    };
    if !outcome.passed() {
        return Some(format!("seed {seed} FAILED: {:?}", outcome.violations));
    }
    if replay {
        match run(seed, &options) {
            Ok(again) if again.history_digest == outcome.history_digest => {}
            Ok(again) => {
                return Some(format!(
                    "seed {seed} replayed differently: {} then {}",
                    outcome.history_digest, again.history_digest
                ))
            }
            Err(e) => return Some(e),
        }
    }
    None
}

fn sweep(start: u64, seeds: u64, threads: u64, replay: bool) -> ExitCode {
    let began = Instant::now();
    let failed: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let done = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (failed, done) = (&failed, &done);
            scope.spawn(move || {
                for seed in (start + t..start + seeds).step_by(threads as usize) {
                    if let Some(problem) = judge(seed, replay) {
                        println!("{problem}\nreproduce: {}", reproduce(seed));
                        if let Ok(mut failed) = failed.lock() {
                            failed.push(seed);
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
    let mut kinds: BTreeMap<(FaultKind, usize), u64> = BTreeMap::new();
    for seed in start..start + seeds {
        let options = Options::for_seed(seed);
        *kinds.entry((options.fault, options.nodes)).or_default() += 1;
    }
    println!(
        "swept seeds {start}..{} on {threads} threads{} in {:.1?}: {} failed {failed:?}",
        start + seeds,
        if replay { ", each run twice" } else { "" },
        began.elapsed(),
        failed.len()
    );
    for ((kind, nodes), count) in kinds {
        println!("  {kind:?} on {nodes} nodes: {count} seeds");
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
