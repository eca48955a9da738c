//! `rota-sim`: runs simulation seeds outside the test harness.
//!
//!     cargo run -p rota-simulations --release --bin rota-sim -- seed 1234
//!     cargo run -p rota-simulations --release --bin rota-sim -- sweep --seeds 10000

use clap::{Parser, Subcommand};
use rota_simulations::{run, FaultKind, Options};
use std::collections::BTreeMap;
use std::process::ExitCode;
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
                        "seed {seed}: {:?}, {} nodes, {} jobs, {} events, {} simulated ms, history {}",
                        outcome.options.fault,
                        outcome.options.nodes,
                        outcome.jobs,
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
        Command::Sweep { seeds, start } => {
            let began = Instant::now();
            let mut failed = Vec::new();
            let mut kinds: BTreeMap<(FaultKind, usize), u64> = BTreeMap::new();
            for seed in start..start + seeds {
                let options = Options::for_seed(seed);
                *kinds.entry((options.fault, options.nodes)).or_default() += 1;
                match run(seed, &options) {
                    Ok(outcome) if outcome.passed() => {}
                    Ok(outcome) => {
                        println!(
                            "seed {seed} FAILED: {:?}\nreproduce: {}",
                            outcome.violations,
                            reproduce(seed)
                        );
                        failed.push(seed);
                    }
                    Err(e) => {
                        println!("{e}\nreproduce: {}", reproduce(seed));
                        failed.push(seed);
                    }
                }
                if (seed - start + 1) % 100 == 0 {
                    println!(
                        "{} seeds, {} failed, {:.0?}",
                        seed - start + 1,
                        failed.len(),
                        began.elapsed()
                    );
                }
            }
            println!(
                "swept seeds {start}..{} in {:.1?}: {} failed {failed:?}",
                start + seeds,
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
    }
}
