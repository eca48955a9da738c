//! `rota cluster`: founding the cluster, its members, and each node's view of it.

use crate::args::{ClusterCmd, Global};
use crate::config;
use crate::output::Output;
use anyhow::{bail, Result};
use rota_client::proto as pb;
use rota_client::{Client, ClientConfig};

/// `rota cluster init|status|add|remove|transfer-leader`.
pub async fn run(cmd: ClusterCmd, global: &Global, client: &Client, out: &Output) -> Result<()> {
    match cmd {
        ClusterCmd::Init { members } => {
            let members = config::parse_peers(&members)?
                .into_iter()
                .map(|(id, addr)| pb::Member {
                    id,
                    addr,
                    voter: true,
                    matched_index: None,
                })
                .collect();
            let status = client
                .init_cluster(pb::InitClusterRequest { members })
                .await?;
            out.cluster(&[status]);
            // The cluster's one bootstrap token, like `nomad acl bootstrap`, asked for by
            // whoever founded the cluster (an admin certificate). It waits for a leader.
            match client
                .bootstrap_token(pb::BootstrapTokenRequest {})
                .await
            {
                Ok(token) => out.bootstrap_token(&token),
                Err(e) if e.kind() == Some("auth_off") => {
                    eprintln!("note: the cluster runs without TLS, so without auth: no bootstrap token")
                }
                Err(e) => eprintln!(
                    "warning: no bootstrap token ({e}); with an admin client certificate of the CA, `rota token create` makes tokens"
                ),
            }
        }
        ClusterCmd::Status => out.cluster(&statuses(global).await?),
        ClusterCmd::Add {
            id,
            addr,
            learner,
            why,
        } => {
            let stamp = Some(global.stamp(why.reason, why.ticket));
            let request = pb::AddNodeRequest {
                id,
                addr,
                learner,
                stamp,
            };
            let status = client.add_node(request).await?;
            out.cluster(&[status]);
        }
        ClusterCmd::Remove { id, force, why } => {
            let stamp = Some(global.stamp(why.reason, why.ticket));
            let request = pb::RemoveNodeRequest { id, force, stamp };
            let status = client.remove_node(request).await?;
            out.cluster(&[status]);
        }
        ClusterCmd::TransferLeader { to } => {
            let status = client
                .transfer_leader(pb::TransferLeaderRequest { to })
                .await?;
            out.cluster(&[status]);
        }
    }
    Ok(())
}

/// Asks every endpoint for its own view; those that do not answer are named on stderr.
async fn statuses(global: &Global) -> Result<Vec<pb::ClusterStatusResponse>> {
    let mut statuses = Vec::new();
    let config = crate::client_config(global)?;
    for endpoint in &config.endpoints {
        let one = Client::with_config(ClientConfig {
            retry_for: std::time::Duration::from_secs(2),
            endpoints: vec![endpoint.clone()],
            ..config.clone()
        })?;
        match one
            .cluster_status(pb::ClusterStatusRequest {
                digest: true,
                leader_view: false,
            })
            .await
        {
            Ok(status) => statuses.push(status),
            Err(e) => eprintln!("{endpoint}: {e}"),
        }
    }
    if statuses.is_empty() {
        bail!("no endpoint answered");
    }
    Ok(statuses)
}
