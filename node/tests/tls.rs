//! The cluster's certificates: what `rota cert` makes names the right principal, is written
//! owner-only and never overwritten, and a node's TLS settings let in exactly what the
//! cluster's CA signed.

use rota_node::tls::issue::{client_files, node_files, write_pair, CA_CERT, CA_KEY};
use rota_node::tls::{identity_of, Authority, Identity, IdentityError, NodeTls, TlsError};
use std::path::Path;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Server};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn der(pem: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    pem.contents
}

mod common;
use common::secure::{hosts, node_tls};

#[test]
fn certificates_name_their_node_or_client_and_bad_names_are_refused() {
    let (ca, ca_files) = Authority::create("test CA", 30).unwrap();
    let node = ca.node(3, &hosts(), 30).unwrap();
    assert_eq!(identity_of(&der(&node.cert_pem)), Ok(Identity::Node(3)));
    let client = ca.client("alice@ops", 30).unwrap();
    assert_eq!(
        identity_of(&der(&client.cert_pem)),
        Ok(Identity::Client("alice@ops".to_owned()))
    );
    // The CA itself names nobody.
    assert_eq!(
        identity_of(&der(&ca_files.cert_pem)),
        Err(IdentityError::Unnamed)
    );
    assert!(matches!(
        identity_of(b"not a certificate"),
        Err(IdentityError::Unparsable(_))
    ));
    for bad in ["", "../../etc/passwd", "a b", &"x".repeat(65)] {
        assert!(ca.client(bad, 30).is_err(), "client name {bad:?} accepted");
    }
    assert!(
        ca.node(1, &[], 30).is_err(),
        "a node certificate without a host"
    );
    for bad in ["127.0.0.1:7011", "https://node1", "a b", ""] {
        assert!(
            ca.node(1, &[bad.to_owned()], 30).is_err(),
            "host {bad:?} accepted"
        );
    }
    assert!(
        ca.client("alice", 0).is_err(),
        "a certificate valid for no day"
    );
    // The key never shows in a debug print.
    assert!(!format!("{node:?}").contains("PRIVATE KEY"));
}

#[test]
fn a_client_certificate_carries_its_scopes_and_tenants() {
    use rota_node::auth::certificate_grants;
    use rota_state_machine::{AuthScope, TenantId};
    let (ca, _) = Authority::create("test CA", 30).unwrap();
    let scopes = [AuthScope::Read, AuthScope::Lease];
    let bound = ca
        .client_with(
            "acme-ci",
            &scopes,
            &["acme".to_owned(), "initech".to_owned()],
            30,
        )
        .unwrap();
    let (held, tenants) = certificate_grants(&der(&bound.cert_pem)).unwrap();
    assert_eq!(held, scopes.into());
    assert_eq!(
        tenants,
        Some([TenantId::from("acme"), TenantId::from("initech")].into())
    );
    // Without scopes named, a certificate may do nothing; without tenants, it is unbound.
    let bare = ca.client("old", 30).unwrap();
    assert_eq!(
        certificate_grants(&der(&bare.cert_pem)).unwrap(),
        (Default::default(), None)
    );
    let admin = ca.client_with("ops", &AuthScope::ALL, &[], 30).unwrap();
    assert_eq!(
        certificate_grants(&der(&admin.cert_pem)).unwrap().0.len(),
        6
    );
    assert!(ca
        .client_with("x", &scopes, &["a b".to_owned()], 30)
        .is_err());
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn files_are_owner_only_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, issued) = Authority::create("test CA", 30).unwrap();
    let names = (CA_CERT.to_owned(), CA_KEY.to_owned());
    let (cert, key) = write_pair(dir.path(), names.clone(), &issued).unwrap();
    assert_eq!((mode(&cert), mode(&key)), (0o600, 0o600));
    let before = std::fs::read(&key).unwrap();

    let (_, other) = Authority::create("another CA", 30).unwrap();
    let refused = write_pair(dir.path(), names, &other).unwrap_err();
    assert!(refused.to_string().contains("exists already"), "{refused}");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the CA key was overwritten"
    );

    let node = ca.node(1, &hosts(), 30).unwrap();
    let (cert, key) = write_pair(dir.path(), node_files(1), &node).unwrap();
    assert_eq!((mode(&cert), mode(&key)), (0o600, 0o600));
}

#[test]
fn a_node_refuses_tls_files_that_do_not_name_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let tls = node_tls(dir.path(), 2);
    assert_eq!(tls.id(), 2);
    let ca = Authority::read(dir.path()).unwrap();
    let client = ca.client("bob", 30).unwrap();
    let (cert, key) = write_pair(dir.path(), client_files("bob"), &client).unwrap();
    let refused = NodeTls::read(&dir.path().join(CA_CERT), &cert, &key).unwrap_err();
    assert!(
        matches!(&refused, TlsError::NotANode { why, .. } if why.contains("client \"bob\"")),
        "{refused}"
    );
    let missing = NodeTls::read(&dir.path().join("nope.crt"), &cert, &key).unwrap_err();
    assert!(matches!(missing, TlsError::Read { .. }), "{missing}");
}

async fn health_check(addr: std::net::SocketAddr, tls: ClientTlsConfig) -> Result<(), String> {
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
        .map_err(|e| format!("call: {e:?}"))
}

/// A health service behind `tls`'s peer-port settings, on a free loopback port.
async fn health_server(tls: &NodeTls) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let server = Server::builder()
        .tls_config(tls.peer_server())
        .unwrap()
        .add_service(health)
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    addr
}

#[tokio::test]
async fn the_peer_listener_lets_in_only_certificates_of_the_cluster_ca() {
    rota_node::tls::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let server_tls = node_tls(dir.path(), 1);
    let peer_tls = node_tls(dir.path(), 2);
    let stranger_dir = tempfile::tempdir().unwrap();
    let impostor = node_tls(stranger_dir.path(), 2);

    let addr = health_server(&server_tls).await;

    // A node of the cluster gets in.
    health_check(addr, peer_tls.dialer()).await.unwrap();

    // One that trusts the CA but shows no certificate does not.
    let ca_pem = std::fs::read(dir.path().join(CA_CERT)).unwrap();
    let anonymous = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca_pem));
    assert!(health_check(addr, anonymous).await.is_err());

    // Nor does a node of another CA, even trusting ours.
    let stranger = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca_pem))
        .identity(tonic::transport::Identity::from_pem(
            std::fs::read(stranger_dir.path().join("node.2.crt")).unwrap(),
            std::fs::read(stranger_dir.path().join("node.2.key")).unwrap(),
        ));
    assert!(health_check(addr, stranger).await.is_err());

    // And a node of ours does not talk to a server of another CA.
    let impostor_addr = health_server(&impostor).await;
    assert!(health_check(impostor_addr, peer_tls.dialer())
        .await
        .is_err());
}

mod cluster {
    //! Three nodes with peer ports and mutual TLS: calls forwarded between them work, and
    //! nothing without a member's certificate reaches Raft.

    use super::common::secure::{ca, hosts, node_tls, pair, Credential, SecureCluster};
    use openraft::raft::{AppendEntriesRequest, VoteRequest};
    use openraft::{CommittedLeaderId, LogId, Vote};
    use rota_client::proto as pb;
    use rota_client::tls::ClientTlsConfig;
    use rota_node::tls::issue::{client_files, node_files, write_pair};
    use rota_node::tls::Authority;
    use rota_node::RunningNode;
    use rota_raft::proto::raft_transport_client::RaftTransportClient;
    use rota_raft::proto::RaftMessage;
    use rota_raft::{NodeId, TypeConfig};
    use std::time::Duration;
    use tonic::transport::Endpoint;

    /// Sends a forged AppendEntries (in node `leader`'s name, at a term far ahead) and a
    /// forged Vote (for `leader`) to the peer port at `addr`, as `tls` dials.
    async fn forge(addr: String, tls: ClientTlsConfig, leader: NodeId) -> Vec<tonic::Status> {
        let term = 1 << 40;
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(term, leader),
            prev_log_id: None,
            entries: vec![],
            leader_commit: Some(LogId::new(CommittedLeaderId::new(term, leader), 1)),
        };
        let vote = VoteRequest::<NodeId> {
            vote: Vote::new(term, leader),
            last_log_id: Some(LogId::new(CommittedLeaderId::new(term, leader), 1 << 20)),
        };
        let message = |bytes: Vec<u8>| tonic::Request::new(RaftMessage { payload: bytes });
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_lazy();
        let mut client = RaftTransportClient::new(channel);
        let mut refusals = Vec::new();
        match client
            .append_entries(message(postcard::to_stdvec(&append).unwrap()))
            .await
        {
            Ok(_) => panic!("a forged AppendEntries in node {leader}'s name was taken"),
            Err(status) => refusals.push(status),
        }
        match client
            .vote(message(postcard::to_stdvec(&vote).unwrap()))
            .await
        {
            Ok(_) => panic!("a forged Vote for node {leader} was taken"),
            Err(status) => refusals.push(status),
        }
        refusals
    }

    /// Each node's term and last log index, once all three agree on the log and have
    /// applied it.
    async fn settled(nodes: &[RunningNode]) -> Vec<(u64, Option<u64>)> {
        super::common::secure::settled(nodes)
            .await
            .iter()
            .map(|m| (m.current_term, m.last_log_index))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_a_members_certificate_reaches_raft_and_forwarding_goes_over_tls() {
        let cluster = SecureCluster::start().await;
        let certs = cluster.certs.path();
        let nodes = &cluster.nodes;
        let leader = nodes[0]
            .raft()
            .wait_for_leader(Duration::from_secs(10))
            .await
            .unwrap();

        // A write sent to each node, leader or not, lands: followers forward it to the
        // leader's peer port with their own certificate.
        for i in 0..nodes.len() {
            cluster
                .client(i, Credential::Certificate("ops"))
                .enqueue(pb::EnqueueRequest {
                    session: None,
                    spec: Some(pb::JobSpec {
                        tenant: "acme".to_owned(),
                        job_type: "email".to_owned(),
                        payload: b"hello".to_vec(),
                        ..pb::JobSpec::default()
                    }),
                })
                .await
                .unwrap();
        }
        let before = settled(nodes).await;
        // The client port carries no Raft: its port is for clients alone.
        let mut on_client_port = RaftTransportClient::new(
            Endpoint::from_shared(format!("https://{}", nodes[0].addr()))
                .unwrap()
                .tls_config(ClientTlsConfig::new().ca_certificate(ca(certs)))
                .unwrap()
                .connect_lazy(),
        );
        let refused = on_client_port
            .vote(tonic::Request::new(RaftMessage { payload: vec![] }))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused}");

        // Strangers: no certificate, another CA's node 2, our CA's client, a node of our
        // CA that is no member, and a member speaking in the leader's name. The first two
        // fail at the handshake (any error will do: the writes above show the ports work).
        let stranger_certs = tempfile::tempdir().unwrap();
        node_tls(stranger_certs.path(), 2);
        let ours = Authority::read(certs).unwrap();
        write_pair(
            certs,
            client_files("mallory"),
            &ours.client("mallory", 30).unwrap(),
        )
        .unwrap();
        write_pair(certs, node_files(9), &ours.node(9, &hosts(), 30).unwrap()).unwrap();
        let other = if leader == 3 { 2 } else { 3 };
        let callers = [
            (
                "no certificate",
                ClientTlsConfig::new().ca_certificate(ca(certs)),
                leader,
                None,
            ),
            (
                "another CA's node",
                ClientTlsConfig::new()
                    .ca_certificate(ca(certs))
                    .identity(pair(stranger_certs.path(), node_files(2))),
                2,
                None,
            ),
            (
                "a client certificate",
                ClientTlsConfig::new()
                    .ca_certificate(ca(certs))
                    .identity(pair(certs, client_files("mallory"))),
                leader,
                Some(tonic::Code::PermissionDenied),
            ),
            (
                "a node that is no member",
                ClientTlsConfig::new()
                    .ca_certificate(ca(certs))
                    .identity(pair(certs, node_files(9))),
                9,
                Some(tonic::Code::PermissionDenied),
            ),
            (
                "a member in the leader's name",
                ClientTlsConfig::new()
                    .ca_certificate(ca(certs))
                    .identity(pair(certs, node_files(other))),
                leader,
                Some(tonic::Code::PermissionDenied),
            ),
        ];
        for (who, tls, claimed, code) in callers {
            for node in nodes {
                let addr = node.peer_addr().unwrap().to_string();
                for refusal in forge(addr, tls.clone(), claimed).await {
                    if let Some(code) = code {
                        assert_eq!(refusal.code(), code, "{who}: {refusal}");
                    }
                }
            }
        }
        let after = settled(nodes).await;
        assert_eq!(before, after, "a stranger moved a term or a log");
        for node in nodes {
            let metrics = node.raft().metrics().borrow().clone();
            assert_eq!(metrics.current_leader, Some(leader));
            assert!(metrics.running_state.is_ok());
        }
        cluster.stop().await;
    }
}
