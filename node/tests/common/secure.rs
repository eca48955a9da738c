//! Clusters with TLS (and so auth on): the CA and certificates in a temporary directory,
//! nodes with peer ports, clients with a certificate, a token or nothing.

use rota_client::proto as pb;
use rota_client::tls::{Certificate, ClientTlsConfig, Identity};
use rota_client::{Client, ClientConfig};
use rota_node::tls::issue::{client_files, node_files, write_pair, CA_CERT, CA_KEY};
use rota_node::tls::{Authority, NodeTls};
use rota_node::{NodeSettings, RunningNode};
use rota_raft::NodeId;
use std::path::Path;
use std::time::Duration;

/// The hosts test certificates name.
pub fn hosts() -> Vec<String> {
    vec!["127.0.0.1".to_owned(), "localhost".to_owned()]
}

/// Writes a CA (unless `dir` has one) and node `id`'s files into `dir` (the CA read back
/// from its files, as `rota cert create-node` does), returning the node's TLS settings.
pub fn node_tls(dir: &Path, id: u64) -> NodeTls {
    if !dir.join(CA_CERT).exists() {
        let (_, ca) = Authority::create("test CA", 30).unwrap();
        write_pair(dir, (CA_CERT.to_owned(), CA_KEY.to_owned()), &ca).unwrap();
    }
    let ca = Authority::read(dir).unwrap();
    let node = ca.node(id, &hosts(), 30).unwrap();
    let (cert, key) = write_pair(dir, node_files(id), &node).unwrap();
    NodeTls::read(&dir.join(CA_CERT), &cert, &key).unwrap()
}

/// Starts node `id` with a peer port and TLS from `certs`, data under `data`. No idle
/// ticks (the log moves only when the test writes) and elections slow enough that a busy
/// machine does not call one while a test compares terms.
pub async fn start_secure(id: NodeId, data: &Path, certs: &Path) -> RunningNode {
    let mut settings = NodeSettings::new(
        id,
        "127.0.0.1:0".parse().unwrap(),
        data.join(format!("node{id}")),
    );
    settings.peer_listen = Some("127.0.0.1:0".parse().unwrap());
    settings.http_listen = Some("127.0.0.1:0".parse().unwrap());
    settings.tls = Some(node_tls(certs, id));
    settings.tick_interval = Duration::from_secs(3600);
    settings.raft.election_timeout_min = 1000;
    settings.raft.election_timeout_max = 2000;
    RunningNode::start(settings).await.unwrap()
}

/// The cluster CA's certificate, for clients to trust.
pub fn ca(certs: &Path) -> Certificate {
    Certificate::from_pem(std::fs::read(certs.join(CA_CERT)).unwrap())
}

/// A certificate and key written in `certs`, as a TLS identity.
pub fn pair(certs: &Path, (cert, key): (String, String)) -> Identity {
    Identity::from_pem(
        std::fs::read(certs.join(cert)).unwrap(),
        std::fs::read(certs.join(key)).unwrap(),
    )
}

/// Each node's metrics, once all of them agree on the log and have applied it.
pub async fn settled(nodes: &[RunningNode]) -> Vec<rota_raft::RaftMetrics> {
    for _ in 0..500 {
        let views: Vec<_> = nodes
            .iter()
            .map(|n| n.raft().metrics().borrow().clone())
            .collect();
        let log = views[0].last_log_index;
        if views
            .iter()
            .all(|m| m.last_log_index == log && m.last_applied.map(|id| id.index) == log)
        {
            return views;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the nodes did not settle on one log within 10 s");
}

/// How a test client proves who it is.
#[derive(Clone, Debug)]
pub enum Credential {
    /// Nothing: TLS that trusts the CA, no certificate, no token.
    Nothing,
    /// The client certificate `rota cert create-client NAME` wrote (every scope).
    Certificate(&'static str),
    /// A bearer token.
    Token(String),
}

/// An HTTPS client trusting the CA in `certs`, presenting the certificate and key `files`
/// (as `rota cert` names them) when given. HTTP/1.1 only: what Python's urllib and most
/// scripts speak.
pub fn https(certs: &Path, files: Option<(String, String)>) -> reqwest::Client {
    let ca = std::fs::read(certs.join(CA_CERT)).expect("CA");
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA certificate"))
        .http1_only();
    if let Some((cert, key)) = files {
        let mut pem = std::fs::read(certs.join(cert)).expect("certificate");
        pem.extend(std::fs::read(certs.join(key)).expect("key"));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    builder.build().expect("client")
}

/// Three nodes with mutual TLS between them, founded by a client holding the admin
/// certificate `ops`.
pub struct SecureCluster {
    pub nodes: Vec<RunningNode>,
    pub certs: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl SecureCluster {
    /// Starts and founds the cluster; returns once it has a leader.
    pub async fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let certs = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(start_secure(id, data.path(), certs.path()).await);
        }
        let ours = Authority::read(certs.path()).unwrap();
        let every = rota_state_machine::AuthScope::ALL;
        let ops = ours.client_with("ops", &every, &[], 30).unwrap();
        write_pair(certs.path(), client_files("ops"), &ops).unwrap();
        let cluster = Self {
            nodes,
            certs,
            _data: data,
        };
        let members = cluster
            .nodes
            .iter()
            .map(|node| pb::Member {
                id: node.raft().id(),
                addr: node.peer_addr().unwrap().to_string(),
                voter: true,
                matched_index: None,
            })
            .collect();
        cluster
            .client(0, Credential::Certificate("ops"))
            .init_cluster(pb::InitClusterRequest { members })
            .await
            .unwrap();
        cluster.nodes[0]
            .raft()
            .wait_for_leader(Duration::from_secs(10))
            .await
            .unwrap();
        cluster
    }

    /// A client of node `i` alone, retrying for 2 s, proving itself with `credential`.
    pub fn client(&self, i: usize, credential: Credential) -> Client {
        let certs = self.certs.path();
        let mut tls = ClientTlsConfig::new().ca_certificate(ca(certs));
        let mut token = None;
        match credential {
            Credential::Nothing => {}
            Credential::Certificate(name) => {
                tls = tls.identity(pair(certs, client_files(name)));
            }
            Credential::Token(secret) => token = Some(secret),
        }
        Client::with_config(ClientConfig {
            tls: Some(tls),
            token,
            retry_for: Duration::from_secs(2),
            ..ClientConfig::new([self.nodes[i].addr().to_string()])
        })
        .unwrap()
    }

    /// A bearer token `name` with `scopes`, bound to `tenants` when some are given, made by
    /// the admin certificate `ops`: its secret.
    pub async fn token(&self, name: &str, scopes: &[&str], tenants: &[&str]) -> String {
        self.client(0, Credential::Certificate("ops"))
            .create_token(pb::CreateTokenRequest {
                name: name.to_owned(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                tenants: tenants.iter().map(|s| s.to_string()).collect(),
                ttl_ms: None,
                stamp: Some(pb::Stamp {
                    actor: "ops".to_owned(),
                    reason: "a test".to_owned(),
                    ticket: None,
                }),
            })
            .await
            .expect("token")
            .secret
    }

    /// A node that does not lead, once it knows the leader.
    pub async fn follower(&self) -> &RunningNode {
        let via = self
            .nodes
            .iter()
            .find(|n| !n.raft().is_leader())
            .expect("a follower");
        via.raft()
            .wait_for_leader(Duration::from_secs(10))
            .await
            .expect("the follower knows the leader");
        via
    }

    /// The log index at which all three nodes have everything applied, once they agree.
    pub async fn settled(&self) -> Option<u64> {
        settled(&self.nodes).await[0].last_log_index
    }

    /// Stops every node.
    pub async fn stop(self) {
        for node in self.nodes {
            node.shutdown().await.unwrap();
        }
    }
}
