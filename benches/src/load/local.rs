//! The cluster a run drives: the one it is pointed at, or local agents it starts and founds.

use super::{LoadConfig, TENANT};
use crate::cluster::{start_local_agents, wait_for_agreed_leader, Access, Agent, Certificates};
use crate::BenchError;
use rota_client::proto as pb;
use rota_state_machine::AuthScope;
use std::time::Duration;

/// The cluster a run drives, and who each part of the run is to it.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) endpoints: Vec<String>,
    /// The run's setup and watching: retention, status polls, the audit's reads.
    pub(crate) ops: Access,
    /// The producers'.
    pub(crate) producers: Access,
    /// The workers'.
    pub(crate) workers: Access,
}

impl Target {
    /// Everyone with the same access.
    fn all(endpoints: Vec<String>, access: &Access) -> Self {
        Self {
            endpoints,
            ops: access.clone(),
            producers: access.clone(),
            workers: access.clone(),
        }
    }
}

/// Agents started for a run, with their data directory (removed when dropped).
pub(crate) struct Local {
    pub(crate) agents: Vec<Agent>,
    pub(super) _dir: Option<tempfile::TempDir>,
}

/// Starts `config.nodes` local agents (with TLS and tokens when `config.tls`) and founds
/// the cluster, unless `config.endpoints` names one; returns whom to reach and how.
pub(crate) async fn start_cluster(config: &LoadConfig) -> Result<(Target, Local), BenchError> {
    if !config.endpoints.is_empty() {
        let local = Local {
            agents: Vec::new(),
            _dir: None,
        };
        return Ok((Target::all(config.endpoints.clone(), &config.access), local));
    }
    let root = match &config.data_root {
        Some(root) => tempfile::TempDir::new_in(root),
        None => tempfile::TempDir::new(),
    }
    .map_err(BenchError::DataDir)?;
    let certs = if config.tls {
        let dir = root.path().join("certs");
        let certs = Certificates::write(&dir, config.nodes as u64)?;
        Some((dir, certs))
    } else {
        None
    };
    let agents = start_local_agents(
        &config.rota_bin,
        config.nodes,
        root.path(),
        &config.agent_args,
        certs.as_ref().map(|(dir, _)| dir.as_path()),
    )
    .await?;
    let certs = certs.map(|(_, certs)| certs);
    let addrs: Vec<String> = agents.iter().map(|a| a.addr.clone()).collect();
    let ops = certs.as_ref().map(|c| c.ops.clone()).unwrap_or_default();
    let founder = ops.client([addrs[0].clone()]).map_err(BenchError::Client)?;
    founder
        .init_cluster(pb::InitClusterRequest { members: vec![] })
        .await
        .map_err(|source| BenchError::Call {
            call: "cluster init",
            source,
        })?;
    wait_for_agreed_leader(&ops, &addrs, config.nodes, Duration::from_secs(30)).await?;
    let target = match &certs {
        // Producers may only enqueue; workers may only lease, and only the bench's tenant.
        Some(certs) => Target {
            producers: certs
                .token(&addrs[0], "bench-producers", &[AuthScope::Write], &[])
                .await?,
            workers: certs
                .token(&addrs[0], "bench-workers", &[AuthScope::Lease], &[TENANT])
                .await?,
            ops,
            endpoints: addrs,
        },
        None => Target::all(addrs, &ops),
    };
    let local = Local {
        agents,
        _dir: Some(root),
    };
    Ok((target, local))
}

/// Resident memory of each running agent, in MiB.
pub(crate) fn rss_mib(agents: &[Agent]) -> Vec<f64> {
    agents
        .iter()
        .filter_map(Agent::rss_bytes)
        .map(mib)
        .collect()
}

/// CPU seconds each running agent has used since it (last) started.
pub(crate) fn cpu_secs(agents: &[Agent]) -> Vec<f64> {
    agents.iter().filter_map(Agent::cpu_secs).collect()
}

/// Bytes in MiB.
pub(super) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
