//! A one-node rota cluster on a data directory, for crash tests.
//!
//! `rota-raft-writer write DIR` enqueues jobs with idempotency keys `key-0`, `key-1`, … and
//! prints `ack N` once job N is committed (synced); it runs until killed.
//! `rota-raft-writer read DIR` restarts from DIR and prints `has N` for every job it holds.

use rota_raft::{default_raft_config, Batch, NodeConfig, RaftNode, Storage};
use rota_state_machine::{Command, JobFilter, JobSpec, MAX_PAGE};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(dir)) = (args.get(1), args.get(2)) else {
        return Err("usage: rota-raft-writer write|read DIR".into());
    };
    let node = RaftNode::start(NodeConfig {
        id: 1,
        listen: "127.0.0.1:0".parse()?,
        storage: Storage::Disk(PathBuf::from(dir)),
        raft: default_raft_config(),
    })
    .await?;
    if !node.raft().is_initialized().await? {
        node.initialize(BTreeMap::from([(1, node.node())])).await?;
    }
    node.wait_for_leader(WAIT).await?;
    let mut out = std::io::stdout().lock();
    match mode.as_str() {
        "write" => {
            for i in 0u64.. {
                let mut spec = JobSpec::new("crash", "write", i.to_be_bytes().to_vec());
                spec.idempotency_key = Some(format!("key-{i}"));
                let batch = Batch::new(1_700_000_000_000 + i, [Command::Enqueue { spec }]);
                node.propose(batch).await?;
                writeln!(out, "ack {i}")?;
                out.flush()?;
            }
        }
        "read" => {
            let keys = node
                .read_linearizable(|applied| {
                    let mut keys = Vec::new();
                    let mut after = None;
                    loop {
                        let page = applied
                            .state
                            .list_jobs(&JobFilter::default(), after, MAX_PAGE);
                        keys.extend(
                            page.jobs
                                .iter()
                                .filter_map(|j| j.spec.idempotency_key.clone()),
                        );
                        match page.next_after {
                            Some(next) => after = Some(next),
                            None => return keys,
                        }
                    }
                })
                .await?;
            for key in keys {
                writeln!(out, "has {}", key.trim_start_matches("key-"))?;
            }
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    node.shutdown().await?;
    Ok(())
}
