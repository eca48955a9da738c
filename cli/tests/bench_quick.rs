//! `rota bench --quick`: the load generator's smoke run. Three agents, 3,000 jobs per
//! phase, one leader SIGKILL; it must lose and duplicate nothing. No speed threshold: the
//! figures are printed for the log only.

use serde_json::Value;
use std::process::Command;

#[test]
fn rota_bench_quick_moves_every_job_exactly_once_through_a_leader_kill() {
    let out = Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["bench", "--quick", "--json"])
        .output()
        .expect("rota bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rota bench failed:\n{stdout}\n{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).expect("a JSON report");
    eprintln!("{report:#}");
    assert_eq!(report["lost"], 0, "{report:#}");
    assert_eq!(report["duplicated"], 0, "{report:#}");
    assert_eq!(report["jobs"], 3_000);
    assert_eq!(report["cycle"]["jobs"], 3_000);
    assert_eq!(report["drain"]["jobs"], 3_000);
    assert_eq!(report["failover"]["kills"], 1, "the leader was killed once");
    let latencies = report["cycle"]["latency"]["count"].as_u64().unwrap_or(0);
    assert!(
        latencies >= 3_000,
        "every cycle job's latency was measured: {report:#}"
    );
}
