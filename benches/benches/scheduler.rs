//! Benchmarks of the pure scheduler: enqueue apply throughput, one `Lease` of 10 jobs with
//! 1,000 vs 1,000,000 ready jobs across 1,000 tenants, and snapshot encode/restore of
//! 1,000,000 jobs.
//!
//! Run: `cargo bench -p rota-benches --bench scheduler`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rota_state_machine::{Command, JobSpec, JobType, Reply, State, WorkerId};
use std::hint::black_box;
use std::time::{Duration, Instant};

const TENANTS: usize = 1_000;
const T0_MS: u64 = 1_700_000_000_000;

/// A job of about 100 payload bytes for tenant `i % TENANTS`.
fn spec(i: usize) -> JobSpec {
    let mut payload = format!("{{\"order\":{i},\"pad\":\"").into_bytes();
    payload.resize(100, b'x');
    JobSpec::new(format!("tenant-{:04}", i % TENANTS), "email", payload)
}

/// A scheduler holding `n` ready jobs spread evenly over the tenants.
fn loaded(n: usize) -> (State, u64) {
    let mut state = State::new();
    for i in 0..n {
        let index = i as u64 + 1;
        let _ = state.apply(Command::Enqueue { spec: spec(i) }, T0_MS, index);
    }
    (state, n as u64)
}

fn enqueue(c: &mut Criterion) {
    const BATCH: usize = 1_000;
    let specs: Vec<JobSpec> = (0..BATCH).map(spec).collect();
    let mut group = c.benchmark_group("enqueue");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("apply_1000_enqueues", |b| {
        b.iter_batched(
            || (State::new(), specs.clone()),
            |(mut state, specs)| {
                for (i, spec) in specs.into_iter().enumerate() {
                    black_box(
                        state
                            .apply(Command::Enqueue { spec }, T0_MS, i as u64 + 1)
                            .is_ok(),
                    );
                }
                state
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Times only the `Lease` apply; outside the timer ten fresh jobs replace the ten leased, so
/// the ready count stays put however many iterations run (the leased ones stay leased).
fn lease_10(state: &mut State, index: &mut u64, iters: u64) -> Duration {
    let lease = Command::Lease {
        worker: WorkerId::new("bench-worker"),
        job_types: vec![JobType::new("email")],
        max: 10,
        ttl_ms: None,
    };
    let mut spent = Duration::ZERO;
    for _ in 0..iters {
        *index += 1;
        let started = Instant::now();
        let reply = state.apply(lease.clone(), T0_MS, *index);
        spent += started.elapsed();
        let granted = match reply {
            Ok(Reply::Leased { grants, .. }) => grants.len(),
            _ => 0,
        };
        assert_eq!(granted, 10, "the bench must lease ten jobs each time");
        for _ in 0..granted {
            *index += 1;
            let _ = state.apply(
                Command::Enqueue {
                    spec: spec(*index as usize),
                },
                T0_MS,
                *index,
            );
        }
    }
    spent
}

/// One million ready jobs are built once: snapshotted first (so the snapshot holds exactly
/// 1,000,000 jobs), then leased from.
fn snapshot_and_lease(c: &mut Criterion) {
    let (mut small, mut small_index) = loaded(1_000);
    let (mut large, mut large_index) = loaded(1_000_000);
    snapshot(c, &large);
    let mut group = c.benchmark_group("lease_10");
    group.bench_function(format!("ready_1000_tenants_{TENANTS}"), |b| {
        b.iter_custom(|iters| lease_10(&mut small, &mut small_index, iters))
    });
    group.bench_function(format!("ready_1000000_tenants_{TENANTS}"), |b| {
        b.iter_custom(|iters| lease_10(&mut large, &mut large_index, iters))
    });
    group.finish();
}

fn snapshot(c: &mut Criterion, state: &State) {
    let mut group = c.benchmark_group("snapshot_1m_jobs");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    let bytes = state.snapshot().expect("snapshot");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| black_box(state.snapshot().expect("snapshot").len()))
    });
    group.bench_function("restore", |b| {
        b.iter(|| black_box(State::restore(&bytes).expect("restore").job_count()))
    });
    group.finish();
    println!(
        "snapshot of {} jobs: {} bytes",
        state.job_count(),
        bytes.len()
    );
}

criterion_group!(benches, enqueue, snapshot_and_lease);
criterion_main!(benches);
