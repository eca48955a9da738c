//! The cluster a run drives: the one it is pointed at, or local agents it starts and founds.

use super::LoadConfig;
use crate::cluster::{local_agents, wait_for_agreed_leader, Access, Agent};
use crate::BenchError;
use rota_client::proto as pb;
use rota_client::Client;
use std::time::Duration;

/// Agents started for a run, with their data directory (removed when dropped).
pub(crate) struct Local {
    pub(crate) agents: Vec<Agent>,
    pub(super) _dir: Option<tempfile::TempDir>,
}

/// Starts `config.nodes` local agents and founds the cluster, unless `config.endpoints`
/// names one; returns the endpoints to use.
pub(crate) async fn start_cluster(config: &LoadConfig) -> Result<(Vec<String>, Local), BenchError> {
    if !config.endpoints.is_empty() {
        let local = Local {
            agents: Vec::new(),
            _dir: None,
        };
        return Ok((config.endpoints.clone(), local));
    }
    let root = match &config.data_root {
        Some(root) => tempfile::TempDir::new_in(root),
        None => tempfile::TempDir::new(),
    }
    .map_err(BenchError::DataDir)?;
    let mut agents = local_agents(
        &config.rota_bin,
        config.nodes,
        root.path(),
        &config.agent_args,
    )
    .map_err(BenchError::Ports)?;
    for agent in &mut agents {
        agent.start().map_err(|source| BenchError::StartAgent {
            bin: config.rota_bin.clone(),
            source,
        })?;
    }
    let addrs: Vec<String> = agents.iter().map(|a| a.addr.clone()).collect();
    let founder = Client::connect([addrs[0].clone()]).map_err(BenchError::Client)?;
    founder
        .init_cluster(pb::InitClusterRequest { members: vec![] })
        .await
        .map_err(|source| BenchError::Call {
            call: "cluster init",
            source,
        })?;
    wait_for_agreed_leader(
        &Access::default(),
        &addrs,
        config.nodes,
        Duration::from_secs(30),
    )
    .await?;
    let local = Local {
        agents,
        _dir: Some(root),
    };
    Ok((addrs, local))
}

/// Resident memory of each running agent, in MiB.
pub(crate) fn rss_mib(agents: &[Agent]) -> Vec<f64> {
    agents
        .iter()
        .filter_map(Agent::rss_bytes)
        .map(mib)
        .collect()
}

/// Bytes in MiB.
pub(super) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
