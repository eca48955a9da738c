//! A node killed with SIGKILL comes back from its RocksDB directory with every write that
//! was acknowledged to the client.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WRITER: &str = env!("CARGO_BIN_EXE_rota-raft-writer");

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let mut acked = BTreeSet::new();
    for round in 0..3 {
        let mut child = Command::new(WRITER)
            .args(["write", &dir.path().display().to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("writer starts");
        let stdout = child.stdout.take().expect("stdout");
        let started = Instant::now();
        let mut lines = BufReader::new(stdout).lines();
        // Kill it mid-stream, at a different point each round.
        let target = acked.len() + 200 + round * 37;
        while acked.len() < target && started.elapsed() < Duration::from_secs(60) {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(n) = line.strip_prefix("ack ") {
                acked.insert(n.parse::<u64>().expect("number"));
            }
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        assert!(
            acked.len() >= target,
            "round {round}: the writer stopped early at {}",
            acked.len()
        );
    }
    let output = Command::new(WRITER)
        .args(["read", &dir.path().display().to_string()])
        .output()
        .expect("reader runs");
    assert!(
        output.status.success(),
        "reader failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let held: BTreeSet<u64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("has ")?.parse().ok())
        .collect();
    let lost: Vec<_> = acked.difference(&held).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}
