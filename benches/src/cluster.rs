//! A cluster of `rota agent` child processes on 127.0.0.1, for the load generator and the
//! end-to-end tests of `rota`: start, SIGKILL, restart, and ask each node how it sees itself.

use crate::BenchError;
use rota_client::proto as pb;
use rota_client::tls::{Certificate, ClientTlsConfig, Identity};
use rota_client::{Client, ClientConfig};
use rota_node::tls::issue::{client_files, node_files, write_pair, CA_CERT, CA_KEY};
use rota_node::tls::Authority;
use rota_state_machine::AuthScope;
use std::fs::File;
use std::hash::BuildHasher;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (bound and released; the agent binds it right after).
///
/// Drawn at random from below the kernel's ephemeral range: inside it, the outgoing
/// connections of every other process (and the listeners that ask the kernel for any port)
/// take their ports, and one may take ours between this check and the agent's bind (the
/// agent then exits, and a bench run in CI failed so). Asks the kernel for any port when
/// `PORT_DRAWS` draws found none free, or when the range starts too low to draw below it
/// (at `LOWEST_PORT` or under). (The portpicker crate draws the same way but
/// also demands the port free over IPv6 and UDP, which an agent never binds.)
pub fn free_port() -> std::io::Result<u16> {
    let below = ephemeral_start();
    if below > LOWEST_PORT {
        let draw = std::collections::hash_map::RandomState::new();
        for attempt in 0..PORT_DRAWS {
            let port =
                LOWEST_PORT + (draw.hash_one(attempt) % u64::from(below - LOWEST_PORT)) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The lowest port `free_port` draws (above the well-known and most registered services'
/// ports).
pub const LOWEST_PORT: u16 = 16_384;

/// How many ports below the ephemeral range `free_port` tries before it asks the kernel.
const PORT_DRAWS: u32 = 64;

/// The first port of the kernel's ephemeral range (Linux's default when it cannot be read).
pub fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// How a client reaches the cluster: plain TCP (agents run `--insecure`, the default), or
/// TLS trusting the cluster's CA with a client certificate and/or a bearer token.
#[derive(Clone, Default)]
pub struct Access {
    /// The CA to trust and the client certificate, for a cluster with TLS.
    pub tls: Option<ClientTlsConfig>,
    /// A bearer token, for a cluster with auth.
    pub token: Option<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("Access")
            .field("tls", &self.tls.is_some())
            .field("token", &self.token.as_ref().map(|_| "set"))
            .finish()
    }
}

impl Access {
    /// Client settings for `endpoints`, with this access.
    pub fn config(&self, endpoints: impl IntoIterator<Item = impl Into<String>>) -> ClientConfig {
        ClientConfig {
            tls: self.tls.clone(),
            token: self.token.clone(),
            ..ClientConfig::new(endpoints)
        }
    }

    /// A client of `endpoints` with this access and the default timeouts.
    pub fn client(
        &self,
        endpoints: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Client, rota_client::ClientError> {
        Client::with_config(self.config(endpoints))
    }
}

/// How long the certificates `Certificates::write` makes are valid, in days.
const CERT_DAYS: u32 = 30;

/// A local cluster's CA and the operator's client certificate (every scope), as
/// `Certificates::write` made them; tokens for the other principals of a run come from it.
pub struct Certificates {
    /// TLS trusting the cluster's CA, with no certificate of its own (a token's holder).
    pub trust: ClientTlsConfig,
    /// The operator's access: the client certificate `ops`, holding every scope.
    pub ops: Access,
}

impl Certificates {
    /// Writes a new CA, certificates for nodes 1 to `nodes` (at 127.0.0.1 and localhost)
    /// and the operator's client certificate into `dir`, under the names `rota cert`
    /// gives them, so that `Agent::with_certs(dir)` finds them.
    pub fn write(dir: &Path, nodes: u64) -> Result<Self, BenchError> {
        let (ca, ca_files) = Authority::create("rota local CA", CERT_DAYS)?;
        write_pair(dir, (CA_CERT.to_owned(), CA_KEY.to_owned()), &ca_files)?;
        let hosts = ["127.0.0.1".to_owned(), "localhost".to_owned()];
        for id in 1..=nodes {
            let node = ca.node(id, &hosts, CERT_DAYS)?;
            write_pair(dir, node_files(id), &node)?;
        }
        let ops = ca.client_with("ops", &AuthScope::ALL, &[], CERT_DAYS)?;
        write_pair(dir, client_files("ops"), &ops)?;
        let trust =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca_files.cert_pem));
        let ops = Access {
            tls: Some(
                trust
                    .clone()
                    .identity(Identity::from_pem(&ops.cert_pem, &ops.key_pem)),
            ),
            token: None,
        };
        Ok(Self { trust, ops })
    }

    /// A new token `name` of `scopes` (bound to `tenants`, if any), made through the node
    /// at `addr` with the operator's access, as the access it gives.
    pub async fn token(
        &self,
        addr: &str,
        name: &str,
        scopes: &[AuthScope],
        tenants: &[&str],
    ) -> Result<Access, BenchError> {
        let made = self
            .ops
            .client([addr.to_owned()])
            .map_err(BenchError::Client)?
            .create_token(pb::CreateTokenRequest {
                name: name.to_owned(),
                scopes: scopes.iter().map(|s| s.name().to_owned()).collect(),
                tenants: tenants.iter().map(|t| t.to_string()).collect(),
                ttl_ms: None,
                stamp: Some(pb::Stamp {
                    actor: "ops".to_owned(),
                    reason: format!("a token for {name} on a local cluster"),
                    ticket: None,
                }),
            })
            .await
            .map_err(|source| BenchError::Call {
                call: "creating a token",
                source,
            })?;
        Ok(Access {
            tls: Some(self.trust.clone()),
            token: Some(made.secret),
        })
    }
}

/// One `rota agent` process; killed when dropped.
pub struct Agent {
    pub id: u64,
    pub addr: String,
    /// Where the agent's peer port listens (Raft, forwarded calls).
    pub peer_addr: String,
    /// Where the agent's HTTP face listens (REST, health).
    pub http_addr: String,
    pub dir: PathBuf,
    bin: PathBuf,
    peers: String,
    extra_args: Vec<String>,
    /// The directory with the CA's and this node's certificates (`rota cert` names); without
    /// one the agent runs `--insecure`.
    certs: Option<PathBuf>,
    child: Option<Child>,
}

impl Agent {
    /// An agent of `bin` (the `rota` executable) that keeps its data in `dir` and its log
    /// in `dir` + `.log`.
    pub fn new(
        bin: &Path,
        id: u64,
        (addr, peer_addr, http_addr): (String, String, String),
        dir: PathBuf,
        peers: String,
    ) -> Self {
        Self {
            id,
            addr,
            peer_addr,
            http_addr,
            dir,
            bin: bin.to_owned(),
            peers,
            extra_args: Vec::new(),
            certs: None,
            child: None,
        }
    }

    /// Runs the agent with TLS (and so auth) from the certificates in `dir`: `ca.crt`,
    /// `node.ID.crt` and `node.ID.key`, as `rota cert` writes them.
    pub fn with_certs(mut self, dir: &Path) -> Self {
        self.certs = Some(dir.to_owned());
        self
    }

    /// Flags added to `rota agent` on every start.
    pub fn with_args(mut self, args: Vec<String>) -> Self {
        self.extra_args = args;
        self
    }

    /// Starts (or restarts) the process with the same data directory.
    pub fn start(&mut self) -> std::io::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))?;
        let security: Vec<String> = match &self.certs {
            Some(dir) => {
                let file = |name: String| dir.join(name).display().to_string();
                vec![
                    "--ca".to_owned(),
                    file("ca.crt".to_owned()),
                    "--cert".to_owned(),
                    file(format!("node.{}.crt", self.id)),
                    "--key".to_owned(),
                    file(format!("node.{}.key", self.id)),
                ]
            }
            None => vec!["--insecure".to_owned()],
        };
        let child = Command::new(&self.bin)
            .args([
                "agent",
                "--id",
                &self.id.to_string(),
                "--listen",
                &self.addr,
                "--peer-listen",
                &self.peer_addr,
                "--http-listen",
                &self.http_addr,
            ])
            .args(&security)
            .args(["--peers", &self.peers, "--data-dir"])
            .arg(&self.dir)
            .args(&self.extra_args)
            // The agents log what the bench was given in ROTA_LOG, else warnings only.
            .env(
                "ROTA_LOG",
                std::env::var("ROTA_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no shutdown, nothing flushed beyond what was synced.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: the agent hands leadership away if it leads, lets calls in progress finish
    /// and stops. Returns the process to wait for (see `wait_stopped`); the agent counts as
    /// stopped from here.
    pub fn terminate(&mut self) -> Option<Child> {
        let child = self.child.take()?;
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: `kill` only sends a signal to the process we started and still own.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        Some(child)
    }

    /// How the process ended, once it has (it then counts as stopped); `None` while it runs
    /// or when it was never started.
    pub fn exited(&mut self) -> Option<String> {
        let status = match self.child.as_mut()?.try_wait() {
            Ok(None) => return None,
            Ok(Some(status)) => status.to_string(),
            Err(e) => {
                // Not known to have ended: stopped here, so nothing is left running.
                self.kill();
                return Some(format!("could not be waited for: {e}"));
            }
        };
        self.child = None;
        Some(status)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory in bytes, from `/proc` (Linux only).
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// CPU time the process has used since it started (user and system, all threads), in
    /// seconds, from `/proc` (Linux only).
    pub fn cpu_secs(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?)).ok()?;
        // Fields after the command name (which may hold spaces, so skip to its ')'):
        // utime and stime are the 14th and 15th of the line, in USER_HZ (100) ticks.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
        Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
    }

    /// `BenchError::AgentDown` for this agent: `what` happened to it, with its log's end.
    fn down(&self, what: String) -> BenchError {
        BenchError::AgentDown {
            node: self.id,
            what,
            log: self.log_tail(),
        }
    }

    /// The last lines of the agent's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for a terminated agent's process to exit; SIGKILLs it after `grace`. Returns
/// whether it exited by itself.
pub async fn wait_stopped(mut child: Child, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// How many times `start_local_agents` draws new ports for agents that could not bind theirs.
const START_ATTEMPTS: usize = 3;

/// `n` agents on free loopback ports with data under `root` (with TLS from the certificates
/// in `certs`, if given), started and listening. Should an agent not start (most often
/// because another process took a port between `free_port` and the agent's bind; but any
/// exit or a wait past 30 s counts), every agent is stopped, its data directory and log
/// removed, and all start again on new ports, up to `START_ATTEMPTS` times in all; the
/// last failure is the error.
pub async fn start_local_agents(
    bin: &Path,
    n: usize,
    root: &Path,
    extra_args: &[String],
    certs: Option<&Path>,
) -> Result<Vec<Agent>, BenchError> {
    let mut attempt = 1;
    loop {
        let mut agents = local_agents(bin, n, root, extra_args).map_err(BenchError::Ports)?;
        if let Some(dir) = certs {
            agents = agents.into_iter().map(|a| a.with_certs(dir)).collect();
        }
        for agent in &mut agents {
            agent.start().map_err(|source| BenchError::StartAgent {
                bin: bin.to_owned(),
                source,
            })?;
        }
        match wait_listening(&mut agents, Duration::from_secs(30)).await {
            Ok(()) => return Ok(agents),
            Err(down) if attempt < START_ATTEMPTS => {
                tracing::warn!(%down, attempt, "an agent did not start; new ports for all");
                for agent in &mut agents {
                    agent.kill();
                    // The log too, so that the next failure's tail is the next attempt's.
                    let log = agent.dir.with_extension("log");
                    for gone in [
                        std::fs::remove_dir_all(&agent.dir),
                        std::fs::remove_file(log),
                    ] {
                        match gone {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(BenchError::DataDir(e)),
                        }
                    }
                }
                attempt += 1;
            }
            Err(down) => return Err(down),
        }
    }
}

/// Waits until every agent accepts connections on its client, peer and HTTP ports. An
/// agent that exits first, or is not listening after `within`, is `BenchError::AgentDown`.
pub async fn wait_listening(agents: &mut [Agent], within: Duration) -> Result<(), BenchError> {
    let deadline = Instant::now() + within;
    for agent in agents.iter_mut() {
        for addr in [
            agent.addr.clone(),
            agent.peer_addr.clone(),
            agent.http_addr.clone(),
        ] {
            loop {
                if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                    break;
                }
                if let Some(status) = agent.exited() {
                    return Err(agent.down(format!("exited ({status}) before listening")));
                }
                if Instant::now() >= deadline {
                    return Err(agent.down(format!("was not listening on {addr} after {within:?}")));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // An agent that bound its first ports and then failed (on its last bind, its TLS files,
    // its storage) may have answered above in the moment before it exited.
    for agent in agents.iter_mut() {
        if let Some(status) = agent.exited() {
            return Err(agent.down(format!("exited ({status}) after it listened")));
        }
    }
    Ok(())
}

/// `n` agents on free loopback ports with data under `root`, not yet started.
fn local_agents(
    bin: &Path,
    n: usize,
    root: &Path,
    extra_args: &[String],
) -> std::io::Result<Vec<Agent>> {
    // A client port, a peer port and an HTTP port each, all different (each draw is
    // released before the next, so two draws may find the same free port).
    let mut drawn = std::collections::BTreeSet::new();
    let mut distinct = || {
        for _ in 0..PORT_DRAWS {
            let port = free_port()?;
            if drawn.insert(port) {
                return Ok(port);
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "every free loopback port drawn was already another agent's",
        ))
    };
    let ports = (0..n)
        .map(|_| Ok((distinct()?, distinct()?, distinct()?)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer, _))| format!("{}=127.0.0.1:{peer}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    Ok(ports
        .iter()
        .enumerate()
        .map(|(i, (client, peer, http))| {
            let id = i as u64 + 1;
            let addr = |port: &u16| format!("127.0.0.1:{port}");
            Agent::new(
                bin,
                id,
                (addr(client), addr(peer), addr(http)),
                root.join(format!("node{id}")),
                peers.clone(),
            )
            .with_args(extra_args.to_vec())
        })
        .collect())
}

/// A client of one node that tries once, for status polls (a dead node answers at once
/// with a refused connection; retrying it would slow every poll of the others).
pub fn node_client(access: &Access, addr: &str) -> Result<Client, rota_client::ClientError> {
    Client::with_config(ClientConfig {
        retry_for: Duration::ZERO,
        call_timeout: Duration::from_secs(2),
        ..access.config([addr.to_owned()])
    })
}

/// Each reachable node's status, with its state digest when asked (costly on a big ledger).
pub async fn statuses(
    access: &Access,
    addrs: &[String],
    digest: bool,
) -> Vec<pb::ClusterStatusResponse> {
    let mut out = Vec::new();
    for addr in addrs {
        let Ok(client) = node_client(access, addr) else {
            continue;
        };
        if let Ok(status) = client
            .cluster_status(pb::ClusterStatusRequest {
                digest,
                leader_view: false,
            })
            .await
        {
            out.push(status);
        }
    }
    out
}

/// Polls every node's status each `every` until `check` finds what it waits for in them;
/// after `within`, `BenchError::Timeout` naming `what`, with the statuses last seen.
pub async fn poll<T>(
    access: &Access,
    addrs: &[String],
    digest: bool,
    every: Duration,
    within: Duration,
    what: &str,
    mut check: impl FnMut(&[pb::ClusterStatusResponse]) -> Option<T>,
) -> Result<T, BenchError> {
    let deadline = Instant::now() + within;
    loop {
        let seen = statuses(access, addrs, digest).await;
        if let Some(found) = check(&seen) {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Timeout {
                what: what.to_owned(),
                within,
                seen,
            });
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until every node in `addrs` answers and all agree on one leader among `voters`
/// voters; returns the leader's id.
pub async fn wait_for_agreed_leader(
    access: &Access,
    addrs: &[String],
    voters: usize,
    within: Duration,
) -> Result<u64, BenchError> {
    let every = Duration::from_millis(50);
    poll(
        access,
        addrs,
        false,
        every,
        within,
        "agreed leader",
        |seen| {
            let leader = seen.first()?.leader_id?;
            let agreed = seen.len() == addrs.len()
                && seen.iter().all(|s| {
                    s.leader_id == Some(leader)
                        && s.members.iter().filter(|m| m.voter).count() == voters
                });
            agreed.then_some(leader)
        },
    )
    .await
}

/// Waits until every node answers at one applied index; returns their statuses there,
/// with digests when asked (costly on a big ledger).
pub async fn settled(
    access: &Access,
    addrs: &[String],
    digest: bool,
    within: Duration,
) -> Result<Vec<pb::ClusterStatusResponse>, BenchError> {
    let every = Duration::from_millis(100);
    poll(
        access,
        addrs,
        digest,
        every,
        within,
        "common applied index",
        |seen| {
            let index = seen.first()?.applied_index;
            (seen.len() == addrs.len() && seen.iter().all(|s| s.applied_index == index))
                .then(|| seen.to_vec())
        },
    )
    .await
}

/// Waits until every node has applied the same index; returns (node, index, digest) each.
pub async fn settled_digests(
    access: &Access,
    addrs: &[String],
    within: Duration,
) -> Result<Vec<(u64, Option<u64>, String)>, BenchError> {
    Ok(settled(access, addrs, true, within)
        .await?
        .into_iter()
        .map(|s| (s.node_id, s.applied_index, s.state_digest))
        .collect())
}

/// Waits until every node answers having applied at least `index`.
pub async fn caught_up_to(
    access: &Access,
    addrs: &[String],
    index: u64,
    within: Duration,
) -> Result<(), BenchError> {
    let every = Duration::from_millis(20);
    poll(
        access,
        addrs,
        false,
        every,
        within,
        "node set caught up",
        |seen| {
            (seen.len() == addrs.len() && seen.iter().all(|s| s.applied_index >= Some(index)))
                .then_some(())
        },
    )
    .await
}
