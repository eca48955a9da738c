//! Replicated throughput on a three-node cluster over loopback gRPC with RocksDB (fsync on):
//! commands per second, and commit latency percentiles from hdrhistogram, for batches of 1,
//! 16 and 256 commands per log entry.
//!
//! Run: `cargo bench -p rota-benches --bench replication`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hdrhistogram::Histogram;
use rota_raft::{default_raft_config, Batch, NodeConfig, RaftNode, Storage};
use rota_state_machine::{Command, JobSpec};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tempfile::TempDir;

struct Cluster {
    nodes: Vec<RaftNode>,
    _dirs: Vec<TempDir>,
}

async fn cluster() -> Cluster {
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for id in 1..=3 {
        let dir = TempDir::new().expect("temp dir");
        let config = NodeConfig {
            id,
            listen: "127.0.0.1:0".parse().expect("address"),
            storage: Storage::Disk(dir.path().to_path_buf()),
            raft: default_raft_config(),
        };
        nodes.push(RaftNode::start(config).await.expect("node starts"));
        dirs.push(dir);
    }
    let members: BTreeMap<_, _> = nodes.iter().map(|n| (n.id(), n.node())).collect();
    nodes[0].initialize(members).await.expect("initialize");
    nodes[0]
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    Cluster { nodes, _dirs: dirs }
}

fn batch(size: usize, seq: &mut u64) -> Batch {
    let commands: Vec<Command> = (0..size)
        .map(|_| {
            *seq += 1;
            let mut payload = seq.to_string().into_bytes();
            payload.resize(100, b'x');
            Command::Enqueue {
                spec: JobSpec::new(format!("tenant-{}", *seq % 100), "email", payload),
            }
        })
        .collect();
    Batch::new(1_700_000_000_000 + *seq, commands)
}

fn replication(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = runtime.block_on(cluster());
    let leader = cluster
        .nodes
        .iter()
        .find(|n| n.is_leader())
        .expect("a leader among the nodes");
    let mut seq = 0u64;
    let mut group = c.benchmark_group("replicated_commit");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for size in [1usize, 16, 256] {
        let mut latencies = Histogram::<u64>::new(3).expect("histogram");
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("batch_{size}"), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let batch = batch(size, &mut seq);
                        let started = Instant::now();
                        leader.propose(batch).await.expect("commit");
                        let took = started.elapsed();
                        spent += took;
                        let _ = latencies.record(took.as_micros() as u64);
                    }
                    spent
                })
            })
        });
        println!(
            "batch {size}: commit latency p50 {} µs, p99 {} µs over {} commits",
            latencies.value_at_quantile(0.50),
            latencies.value_at_quantile(0.99),
            latencies.len()
        );
    }
    group.finish();
    runtime.block_on(async {
        for node in cluster.nodes {
            let _ = node.shutdown().await;
        }
    });
}

criterion_group!(benches, replication);
criterion_main!(benches);
