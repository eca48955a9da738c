//! Node configuration: command-line flags, then `ROTA_*` environment variables, then an
//! optional TOML file, then defaults, in that order of precedence.

use clap::Args;
use rota_node::tls::NodeTls;
use rota_node::{Limits, NodeSettings, Webhook, DEFAULT_MAX_PAGE_BYTES, DEFAULT_MAX_PAYLOAD_BYTES};
use rota_raft::{NodeId, RaftConfig, SnapshotPolicy};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Where `rota agent` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

/// A configuration that can't start a node.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("missing {0}: give --{0}, ROTA_{1}, or `{2}` in the config file")]
    Missing(&'static str, &'static str, &'static str),
    #[error("invalid peer {0:?}: expected ID=HOST:PORT, e.g. 2=127.0.0.1:7002")]
    Peer(String),
    #[error("invalid {0}: {1}")]
    Invalid(&'static str, String),
    #[error("no TLS: give --ca, --cert and --key (make them with `rota cert`, see docs/security.md), or --insecure to run without TLS, trusting anyone who reaches the ports")]
    NoTls,
}

/// `rota agent`'s settings as flags (each also read from its `ROTA_*` variable).
#[derive(Args, Debug, Default, Clone)]
pub struct AgentArgs {
    /// TOML file with any of the settings below (lowest precedence).
    #[arg(long, env = "ROTA_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id, unique in the cluster (a positive integer).
    #[arg(long, env = "ROTA_ID")]
    pub id: Option<NodeId>,
    /// Address for clients' gRPC [default: 127.0.0.1:7070].
    #[arg(long, env = "ROTA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address for the other nodes: Raft, and calls they forward to a leader [default: the
    /// listen address with the next port, e.g. 127.0.0.1:7071].
    #[arg(long, env = "ROTA_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,
    /// Address for HTTP: the REST API, its OpenAPI document, /livez and /readyz, with the
    /// client port's TLS and auth [default: the listen address with its port + 2, e.g.
    /// 127.0.0.1:7072].
    #[arg(long, env = "ROTA_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Peer address the other members reach this node at, if not the peer listen address.
    #[arg(long, env = "ROTA_ADVERTISE_PEER")]
    pub advertise_peer: Option<String>,
    /// The cluster's members' peer addresses as ID=HOST:PORT, comma-separated (this node's
    /// own entry, if there, is its advertised peer address).
    #[arg(long, env = "ROTA_PEERS", value_delimiter = ',')]
    pub peers: Option<Vec<String>>,
    /// The cluster CA's certificate, PEM (`rota cert create-ca`).
    #[arg(long, env = "ROTA_CA")]
    pub ca: Option<PathBuf>,
    /// This node's certificate, PEM (`rota cert create-node`).
    #[arg(long, env = "ROTA_CERT")]
    pub cert: Option<PathBuf>,
    /// This node's private key, PEM.
    #[arg(long, env = "ROTA_KEY")]
    pub key: Option<PathBuf>,
    /// Run without TLS: anyone who reaches either port is a peer and an administrator.
    /// Only for trying rota out on a machine of your own.
    #[arg(long, env = "ROTA_INSECURE", value_parser = clap::builder::FalseyValueParser::new())]
    pub insecure: bool,
    /// Directory for the Raft log and snapshots; created if missing.
    #[arg(long, env = "ROTA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Largest job payload accepted, in bytes [default: 1048576].
    #[arg(long, env = "ROTA_MAX_PAYLOAD_BYTES")]
    pub max_payload_bytes: Option<usize>,
    /// Largest log entry, in bytes of the requests it carries; a single write over it is
    /// refused. More than the largest payload [default: 4194304].
    #[arg(long, env = "ROTA_MAX_ENTRY_BYTES")]
    pub max_entry_bytes: Option<usize>,
    /// Largest page of jobs a list answers, in bytes [default: 16777216].
    #[arg(long, env = "ROTA_MAX_PAGE_BYTES")]
    pub max_page_bytes: Option<usize>,
    /// How often the leader advances log time when idle, in ms [default: 250].
    #[arg(long, env = "ROTA_TICK_INTERVAL_MS")]
    pub tick_interval_ms: Option<u64>,
    /// How often the leader heartbeats followers, in ms; also openraft's deadline for each
    /// AppendEntries [default: 100].
    #[arg(long, env = "ROTA_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Election timeout in ms, randomized up to twice as long [default: 150]. A follower
    /// calls an election after hearing no leader for twice this plus its own timeout
    /// (openraft's leader lease). Longer than the heartbeat.
    #[arg(long, env = "ROTA_ELECTION_TIMEOUT_MS")]
    pub election_timeout_ms: Option<u64>,
    /// Build a snapshot (and purge the log behind it) every this many entries [default: 10000].
    #[arg(long, env = "ROTA_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// Most client writes in one log entry [default: 1024].
    #[arg(long, env = "ROTA_COMMIT_MAX_BATCH")]
    pub commit_max_batch: Option<usize>,
    /// Most log entries proposed and not yet answered [default: 4].
    #[arg(long, env = "ROTA_COMMIT_IN_FLIGHT")]
    pub commit_in_flight: Option<usize>,
    /// Which applied entries this node writes to the job log (target `rota::job`): leader
    /// (those it proposed as leader: each transition once across the cluster), all, or off
    /// [default: leader].
    #[arg(long, env = "ROTA_JOB_LOG")]
    pub job_log: Option<String>,
    /// Push incidents (a breaker trips, dead letters pass --incident-dead-letters) to this
    /// http(s) URL as signed JSON; needs --incident-webhook-secret-file.
    #[arg(long, env = "ROTA_INCIDENT_WEBHOOK")]
    pub incident_webhook: Option<String>,
    /// File holding the webhook's shared secret (HMAC-SHA256 in X-Rota-Signature).
    #[arg(long, env = "ROTA_INCIDENT_WEBHOOK_SECRET_FILE")]
    pub incident_webhook_secret_file: Option<PathBuf>,
    /// Dead letters of one job type within --incident-window that raise an incident
    /// [default: 10].
    #[arg(long, env = "ROTA_INCIDENT_DEAD_LETTERS")]
    pub incident_dead_letters: Option<u32>,
    /// The window for --incident-dead-letters, in log time (e.g. 1h, 15m) [default: 1h].
    #[arg(long, env = "ROTA_INCIDENT_WINDOW")]
    pub incident_window: Option<String>,
    /// The ed25519 key (`rota audit keygen`) this node signs audit bundles with; without
    /// one, `rota audit export` through this node is refused.
    #[arg(long, env = "ROTA_AUDIT_KEY")]
    pub audit_key: Option<PathBuf>,
}

/// The same settings as a TOML file spells them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    id: Option<NodeId>,
    listen: Option<SocketAddr>,
    peer_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    advertise_peer: Option<String>,
    peers: Option<Vec<String>>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    insecure: Option<bool>,
    data_dir: Option<PathBuf>,
    max_payload_bytes: Option<usize>,
    max_entry_bytes: Option<usize>,
    max_page_bytes: Option<usize>,
    tick_interval_ms: Option<u64>,
    heartbeat_ms: Option<u64>,
    election_timeout_ms: Option<u64>,
    snapshot_every: Option<u64>,
    commit_max_batch: Option<usize>,
    commit_in_flight: Option<usize>,
    job_log: Option<String>,
    incident_webhook: Option<String>,
    incident_webhook_secret_file: Option<PathBuf>,
    incident_dead_letters: Option<u32>,
    incident_window: Option<String>,
    audit_key: Option<PathBuf>,
}

/// A setting that must be positive, if given.
fn positive<T: PartialEq + Default + Copy>(
    name: &'static str,
    value: Option<T>,
) -> Result<Option<T>, ConfigError> {
    match value {
        Some(v) if v == T::default() => {
            Err(ConfigError::Invalid(name, "must be positive".to_owned()))
        }
        other => Ok(other),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

/// Parses `ID=HOST:PORT` entries.
pub fn parse_peers(entries: &[String]) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('=')
            .ok_or_else(|| ConfigError::Peer(entry.to_owned()))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| ConfigError::Peer(entry.to_owned()))?;
        let addr = addr.trim();
        if addr.is_empty() || !addr.contains(':') {
            return Err(ConfigError::Peer(entry.to_owned()));
        }
        peers.insert(id, addr.to_owned());
    }
    Ok(peers)
}

impl AgentArgs {
    /// Merges flags and environment (already merged by clap) over the file and defaults.
    pub fn resolve(self) -> Result<NodeSettings, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let id = self
            .id
            .or(file.id)
            .ok_or(ConfigError::Missing("id", "ID", "id"))?;
        if id == 0 {
            return Err(ConfigError::Invalid(
                "id",
                "must be a positive integer".to_owned(),
            ));
        }
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .ok_or(ConfigError::Missing("data-dir", "DATA_DIR", "data_dir"))?;
        let listen = match self.listen.or(file.listen) {
            Some(listen) => listen,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|e| ConfigError::Invalid("listen", format!("{e}")))?,
        };
        let peer_listen = match self.peer_listen.or(file.peer_listen) {
            Some(addr) => addr,
            None => next_port(listen, 1, "peer-listen")?,
        };
        let http_listen = match self.http_listen.or(file.http_listen) {
            Some(addr) => addr,
            None => next_port(listen, 2, "http-listen")?,
        };
        for (other, flag) in [(listen, "listen"), (peer_listen, "peer-listen")] {
            if http_listen.port() != 0 && http_listen == other {
                return Err(ConfigError::Invalid(
                    "http-listen",
                    format!("{http_listen} is also the --{flag} address: give each its own port"),
                ));
            }
        }
        let mut peers = parse_peers(&self.peers.or(file.peers).unwrap_or_default())?;
        // This node's own entry in --peers is where the others reach it.
        let listed_self = peers.remove(&id);
        let advertise_peer = self.advertise_peer.or(file.advertise_peer).or(listed_self);
        let tls = tls(
            self.ca.or(file.ca),
            self.cert.or(file.cert),
            self.key.or(file.key),
            self.insecure || file.insecure.unwrap_or(false),
        )?;
        let mut settings = NodeSettings::new(id, listen, data_dir);
        settings.peer_listen = Some(peer_listen);
        settings.http_listen = Some(http_listen);
        settings.advertise_peer = advertise_peer;
        settings.peers = peers;
        settings.tls = tls;
        settings.limits = Limits {
            max_payload_bytes: positive(
                "max-payload-bytes",
                self.max_payload_bytes.or(file.max_payload_bytes),
            )?
            .unwrap_or(DEFAULT_MAX_PAYLOAD_BYTES),
            max_page_bytes: positive(
                "max-page-bytes",
                self.max_page_bytes.or(file.max_page_bytes),
            )?
            .unwrap_or(DEFAULT_MAX_PAGE_BYTES),
        };
        entry_budget(&mut settings, self.max_entry_bytes.or(file.max_entry_bytes))?;
        if let Some(ms) = positive(
            "tick-interval-ms",
            self.tick_interval_ms.or(file.tick_interval_ms),
        )? {
            settings.tick_interval = Duration::from_millis(ms);
        }
        raft_timing(
            &mut settings.raft,
            self.heartbeat_ms.or(file.heartbeat_ms),
            self.election_timeout_ms.or(file.election_timeout_ms),
            self.snapshot_every.or(file.snapshot_every),
        )?;
        if let Some(n) = positive(
            "commit-max-batch",
            self.commit_max_batch.or(file.commit_max_batch),
        )? {
            settings.commit.max_batch = n;
        }
        if let Some(n) = positive(
            "commit-in-flight",
            self.commit_in_flight.or(file.commit_in_flight),
        )? {
            settings.commit.max_in_flight = n;
        }
        if let Some(mode) = self.job_log.or(file.job_log) {
            settings.job_log = mode
                .parse()
                .map_err(|e| ConfigError::Invalid("job-log", e))?;
        }
        if let Some(n) = positive(
            "incident-dead-letters",
            self.incident_dead_letters.or(file.incident_dead_letters),
        )? {
            settings.incidents.dead_letters = n;
        }
        if let Some(window) = self.incident_window.or(file.incident_window) {
            settings.incidents.window = humantime::parse_duration(&window)
                .ok()
                .filter(|w| !w.is_zero())
                .ok_or_else(|| {
                    ConfigError::Invalid(
                        "incident-window",
                        format!("{window:?} is not a positive duration such as 1h or 15m"),
                    )
                })?;
        }
        let secret_file = self
            .incident_webhook_secret_file
            .or(file.incident_webhook_secret_file);
        match (self.incident_webhook.or(file.incident_webhook), secret_file) {
            (Some(url), Some(path)) => {
                let secret =
                    std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                        path: path.clone(),
                        source,
                    })?;
                settings.incidents.webhook = Some(
                    Webhook::new(&url, &secret)
                        .map_err(|e| ConfigError::Invalid("incident-webhook", e))?,
                );
            }
            (Some(_), None) => {
                return Err(ConfigError::Invalid(
                    "incident-webhook",
                    "give --incident-webhook-secret-file too: incidents are pushed signed"
                        .to_owned(),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "incident-webhook-secret-file",
                    "there is no --incident-webhook to sign for".to_owned(),
                ))
            }
            (None, None) => {}
        }
        if let Some(path) = self.audit_key.or(file.audit_key) {
            settings.audit_key = Some(std::sync::Arc::new(read_audit_key(&path)?));
        }
        Ok(settings)
    }
}

/// The peer port's default: the client port's next.
/// The listen address with its port `step` further on (port 0 stays 0: any free port).
pub fn next_port(
    listen: SocketAddr,
    step: u16,
    flag: &'static str,
) -> Result<SocketAddr, ConfigError> {
    let port = match listen.port() {
        0 => 0,
        port => port.checked_add(step).ok_or_else(|| {
            ConfigError::Invalid(
                flag,
                format!("the listen port {port} leaves no port {step} after it: give --{flag}"),
            )
        })?,
    };
    Ok(SocketAddr::new(listen.ip(), port))
}

/// The node's TLS files, or none if `insecure`: one or the other must be asked for.
fn tls(
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    insecure: bool,
) -> Result<Option<NodeTls>, ConfigError> {
    match (ca, cert, key) {
        (None, None, None) if insecure => Ok(None),
        (None, None, None) => Err(ConfigError::NoTls),
        _ if insecure => Err(ConfigError::Invalid(
            "insecure",
            "given with --ca, --cert or --key: choose TLS or --insecure".to_owned(),
        )),
        (Some(ca), Some(cert), Some(key)) => NodeTls::read(&ca, &cert, &key)
            .map(Some)
            .map_err(|e| ConfigError::Invalid("cert", e.to_string())),
        _ => Err(ConfigError::Invalid(
            "cert",
            "give all three of --ca, --cert and --key".to_owned(),
        )),
    }
}

/// The log entry's byte budget, if given: more than the largest payload, so that a job
/// with one fits.
fn entry_budget(settings: &mut NodeSettings, bytes: Option<usize>) -> Result<(), ConfigError> {
    if let Some(n) = positive("max-entry-bytes", bytes)? {
        settings.commit.max_entry_bytes = n;
    }
    if settings.commit.max_entry_bytes <= settings.limits.max_payload_bytes {
        return Err(ConfigError::Invalid(
            "max-entry-bytes",
            format!(
                "{} must be more than max-payload-bytes ({}): a job with the largest payload must fit in an entry",
                settings.commit.max_entry_bytes, settings.limits.max_payload_bytes
            ),
        ));
    }
    Ok(())
}

/// Heartbeat, election timeout and snapshot policy, each if given; the election timeout
/// must stay longer than the heartbeat.
fn raft_timing(
    raft: &mut RaftConfig,
    heartbeat_ms: Option<u64>,
    election_timeout_ms: Option<u64>,
    snapshot_every: Option<u64>,
) -> Result<(), ConfigError> {
    if let Some(ms) = positive("heartbeat-ms", heartbeat_ms)? {
        raft.heartbeat_interval = ms;
    }
    if let Some(ms) = positive("election-timeout-ms", election_timeout_ms)? {
        raft.election_timeout_min = ms;
        raft.election_timeout_max = ms * 2;
    }
    if raft.election_timeout_min <= raft.heartbeat_interval {
        return Err(ConfigError::Invalid(
            "election-timeout-ms",
            format!(
                "{} ms must be longer than the heartbeat ({} ms)",
                raft.election_timeout_min, raft.heartbeat_interval
            ),
        ));
    }
    if let Some(n) = positive("snapshot-every", snapshot_every)? {
        raft.snapshot_policy = SnapshotPolicy::LogsSinceLast(n);
    }
    Ok(())
}

/// `rota dev`'s data directory: `$ROTA_DEV_DIR`, else `~/.local/share/rota/dev`.
pub fn default_dev_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ROTA_DEV_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/rota/dev")
}

/// The audit signing key in `path`, as `rota audit keygen` writes it.
pub fn read_audit_key(path: &std::path::Path) -> Result<ed25519_dalek::SigningKey, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    rota_node::audit::format::signing_key(&text).ok_or_else(|| {
        ConfigError::Invalid(
            "audit-key",
            format!(
                "{} does not hold an audit signing key (64 hex digits; rota audit keygen makes one)",
                path.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write config");
        file
    }

    #[test]
    fn flags_override_the_file_and_the_file_fills_the_rest() {
        let config = file(
            "id = 7\nlisten = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/x\"\nmax_payload_bytes = 10\ninsecure = true\n",
        );
        let path = config.path().to_str().expect("utf-8 path");
        let cli = Cli::parse_from([
            "rota",
            "--config",
            path,
            "--id",
            "3",
            "--max-payload-bytes",
            "99",
        ]);
        let settings = cli.agent.resolve().expect("valid config");
        assert_eq!(settings.id, 3);
        assert_eq!(settings.limits.max_payload_bytes, 99);
        assert_eq!(settings.listen, "127.0.0.1:9000".parse().expect("addr"));
        assert_eq!(
            settings.peer_listen,
            Some("127.0.0.1:9001".parse().expect("addr"))
        );
        assert_eq!(settings.data_dir(), Some(Path::new("/tmp/x")));
    }

    #[test]
    fn the_environment_sits_between_flags_and_the_file() {
        let config =
            file("id = 1\ndata_dir = \"/tmp/y\"\ntick_interval_ms = 900\ninsecure = true\n");
        let path = config.path().to_str().expect("utf-8 path");
        // Only this test sets ROTA_TICK_INTERVAL_MS.
        std::env::set_var("ROTA_TICK_INTERVAL_MS", "40");
        let from_env = Cli::parse_from(["rota", "--config", path]).agent.resolve();
        let from_flag = Cli::parse_from(["rota", "--config", path, "--tick-interval-ms", "70"])
            .agent
            .resolve();
        std::env::remove_var("ROTA_TICK_INTERVAL_MS");
        assert_eq!(
            from_env.expect("valid").tick_interval,
            Duration::from_millis(40)
        );
        assert_eq!(
            from_flag.expect("valid").tick_interval,
            Duration::from_millis(70)
        );
    }

    #[test]
    fn peers_name_the_members_and_this_nodes_entry_is_its_address() {
        let cli = Cli::parse_from([
            "rota",
            "--id",
            "2",
            "--data-dir",
            "/tmp/z",
            "--peers",
            "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003",
            "--insecure",
        ]);
        let settings = cli.agent.resolve().expect("valid config");
        assert_eq!(settings.advertise_peer.as_deref(), Some("127.0.0.1:7002"));
        assert_eq!(
            settings.peers.keys().copied().collect::<Vec<_>>(),
            vec![1, 3]
        );
    }

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        let missing = Cli::parse_from(["rota", "--data-dir", "/tmp/z"])
            .agent
            .resolve();
        assert!(matches!(missing, Err(ConfigError::Missing("id", _, _))));
        let peer = Cli::parse_from(["rota", "--id", "1", "--data-dir", "/d", "--peers", "two"])
            .agent
            .resolve();
        assert!(matches!(peer, Err(ConfigError::Peer(p)) if p == "two"));
        // Node 1 with data in /d, and `extra`.
        let node_one = |extra: &[&str]| {
            let args = ["rota", "--id", "1", "--data-dir", "/d"]
                .iter()
                .chain(extra);
            Cli::parse_from(args).agent.resolve()
        };
        assert!(matches!(node_one(&[]), Err(ConfigError::NoTls)));
        assert!(matches!(
            node_one(&["--insecure", "--ca", "ca.crt"]),
            Err(ConfigError::Invalid("insecure", _))
        ));
        assert!(matches!(
            node_one(&["--ca", "ca.crt"]),
            Err(ConfigError::Invalid("cert", _))
        ));
        assert!(matches!(
            node_one(&["--insecure", "--listen", "127.0.0.1:65535"]),
            Err(ConfigError::Invalid("peer-listen", _))
        ));
        let unknown = file("id = 1\ndata_dri = \"/tmp\"\n");
        let path = unknown.path().to_str().expect("utf-8 path");
        let typo = Cli::parse_from(["rota", "--config", path]).agent.resolve();
        let message = typo.expect_err("unknown key").to_string();
        assert!(message.contains("data_dri"), "{message}");
    }
}
