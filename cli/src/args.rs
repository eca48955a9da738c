//! The command line's shape: every subcommand and flag, as clap parses them.

use crate::bench::BenchArgs;
use crate::config::{self, AgentArgs};
use clap::{Args, Parser, Subcommand};
use rota_client::proto as pb;
use std::net::SocketAddr;
use std::path::PathBuf;

/// rota: a Raft-replicated job orchestrator.
#[derive(Parser, Debug)]
#[command(
    name = "rota",
    version,
    about = "rota: a Raft-replicated job orchestrator",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
    #[command(flatten)]
    pub global: Global,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line, the event's fields at its top level.
    Json,
}

/// Options every client subcommand takes.
#[derive(Args, Debug)]
pub struct Global {
    /// Nodes to talk to, comma-separated; any one is enough [default: the client config
    /// file's, else 127.0.0.1:7070].
    #[arg(long, global = true, env = "ROTA_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// The client config file (TOML: endpoints, tls_ca, tls_cert, tls_key, token or
    /// token_file), for what flags and ROTA_* variables leave unset [default:
    /// ~/.config/rota/client.toml, if there is one].
    #[arg(long, global = true, env = "ROTA_CLIENT_CONFIG")]
    pub client_config: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Read from the answering node's replica without asking the leader (may lag).
    #[arg(long, global = true)]
    pub stale: bool,
    /// How long to keep retrying while no node answers, in seconds.
    #[arg(long, global = true, env = "ROTA_WAIT_SECS", default_value_t = 10)]
    pub wait_secs: u64,
    /// Who you are, recorded with governance changes [default: $USER].
    #[arg(long, global = true, env = "ROTA_ACTOR")]
    pub actor: Option<String>,
    /// How log lines are written to stderr: text for people, json (one object a line) for
    /// collectors. Which lines: the ROTA_LOG filter, in RUST_LOG's syntax [default:
    /// warn,openraft=error,rota::job=info,rota::governance=info,rota::incident=info].
    #[arg(
        long,
        global = true,
        env = "ROTA_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Export traces over OTLP/HTTP to this URL (the collector's traces path, e.g.
    /// http://127.0.0.1:4318/v1/traces). Off when unset.
    #[arg(long, global = true, env = "ROTA_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// The cluster CA's certificate (PEM): talk TLS to the nodes, trusting it.
    #[arg(long, global = true, env = "ROTA_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM, `rota cert create-client`) to authenticate with.
    #[arg(long, global = true, env = "ROTA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "ROTA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A bearer token (`rota token create`, or the one `rota cluster init` printed). Better
    /// given as ROTA_TOKEN than on the command line, where other users' `ps` can see it.
    #[arg(long, global = true, env = "ROTA_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// A file whose first line is the bearer token (readable by its owner only).
    #[arg(long, global = true, env = "ROTA_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
}

/// A secret from the command line or the environment: printed nowhere, `Debug` included.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Runs a one-node cluster with its data in ~/.local/share/rota/dev. No setup needed.
    Dev(DevArgs),
    /// Runs a cluster node.
    Agent(Box<AgentArgs>),
    /// Cluster membership and health.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Backups: save a snapshot of the cluster, seed a new cluster from one.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Jobs: submit, list, show, cancel, replay.
    #[command(subcommand)]
    Job(JobCmd),
    /// Plans: DAGs of jobs.
    #[command(subcommand)]
    Plan(PlanCmd),
    /// Recurring schedules: a job template fired on a cron expression (UTC) or an interval.
    #[command(subcommand)]
    Schedule(ScheduleCmd),
    /// Signed audit bundles: make a key, export a window of log time, verify offline.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Incidents (a tripped breaker): acknowledge, resolve. `rota governance` lists them.
    #[command(subcommand)]
    Incident(IncidentCmd),
    /// Blocks and unblocks a misbehaving tenant.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Which jobs wrote and read an artifact (by name, URI or digest), and the chain up and
    /// down.
    Lineage {
        /// The artifact's name, URI or digest.
        artifact: String,
        /// Only up the chain: what the writers read, and who wrote that.
        #[arg(long, conflicts_with = "down")]
        up: bool,
        /// Only down the chain: what the readers wrote, and who read that.
        #[arg(long)]
        down: bool,
        /// Steps beyond the artifact's own writers and readers (at most 20).
        #[arg(long, default_value_t = 5)]
        depth: u32,
    },
    /// The dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCmd),
    /// Per-tenant quotas.
    #[command(subcommand)]
    Quota(QuotaCmd),
    /// Caps how many jobs of a tenant and/or job type run at once.
    Throttle(ThrottleArgs),
    /// Pauses and resumes a source (tenant and/or job type).
    #[command(subcommand)]
    Source(SourceCmd),
    /// Maintenance mode: no new leases anywhere.
    #[command(subcommand)]
    Maintenance(MaintenanceCmd),
    /// Circuit breakers.
    #[command(subcommand)]
    Breaker(BreakerCmd),
    /// Shows quotas, throttles, pauses, incidents, maintenance and queue depths; `history`
    /// lists every change.
    Governance {
        /// Also list resolved incidents from the archive.
        #[arg(long)]
        archived: bool,
        #[command(subcommand)]
        cmd: Option<GovernanceCmd>,
    },
    /// How long finished work stays in memory, then in the archive.
    #[command(subcommand)]
    Retention(RetentionCmd),
    /// Certificates: the cluster's CA, node and client certificates (see docs/security.md).
    #[command(subcommand)]
    Cert(CertCmd),
    /// Bearer tokens: create (the secret is shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCmd),
    /// The load generator: runs jobs through a local 3-node cluster and reports throughput,
    /// latency, failover and any job lost or duplicated.
    Bench(Box<BenchArgs>),
}

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Address to listen on.
    #[arg(long, default_value = config::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Address for HTTP (REST, OpenAPI, health) [default: the listen port + 2, 7072].
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Data directory [default: $ROTA_DEV_DIR or ~/.local/share/rota/dev].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Write the job log (target `rota::job`): leader or all (the same on one node), or off.
    #[arg(long, default_value = "leader")]
    pub job_log: rota_node::JobLog,
    /// The key audit bundles are signed with [default: audit.key in the data directory,
    /// made on first start].
    #[arg(long)]
    pub audit_key: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Founds the cluster from the node's --peers (or the given members). Run once.
    Init {
        /// Members as ID=HOST:PORT, peer addresses; default: the node's own --peers.
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
    },
    /// Shows each endpoint's view: role, leader, term, indexes, state digest.
    Status,
    /// Adds a node: it joins as a learner at once, catches up in the background, and votes
    /// once it has (`rota cluster status --leader` shows how far it is).
    Add {
        id: u64,
        /// The node's peer address (its --peer-listen, as the other nodes reach it).
        addr: String,
        /// Keep it a learner: a replica without a vote.
        #[arg(long)]
        learner: bool,
        #[command(flatten)]
        why: ReasonArgs,
    },
    /// Removes a member (a voter or a learner).
    Remove {
        id: u64,
        /// Remove a voter even if that leaves fewer than three voters, or fewer live ones
        /// than a quorum.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        why: ReasonArgs,
    },
    /// Hands leadership to another voter without an election timeout: writes wait while it
    /// catches up, then it elects itself. Before a planned restart of the leader.
    TransferLeader {
        /// The voter to lead [default: the one furthest replicated that answers].
        #[arg(long)]
        to: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Saves a backup to FILE: a snapshot the leader builds of everything committed when
    /// asked. Checked (sha256, state, archive) before it is renamed into place; prints the
    /// log index it covers and its state digest.
    Save { file: PathBuf },
    /// Seeds a new node's data directory from FILE, as `etcdctl snapshot restore` does. For a
    /// cluster, run it once per node with the same --members; then start each node on its
    /// directory (`rota agent`, or `rota dev` for one node). No `cluster init` is needed.
    Restore {
        file: PathBuf,
        /// The new node's data directory; must hold no node's data.
        #[arg(long)]
        data_dir: PathBuf,
        /// The new node's id.
        #[arg(long, default_value_t = 1)]
        id: u64,
        /// The new cluster's voters as ID=HOST:PORT, peer addresses [default: this node
        /// alone, at rota dev's address].
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
    },
    /// Checks FILE as a node would and shows what it holds.
    Info { file: PathBuf },
}

/// A job's description on the command line.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[arg(long)]
    pub tenant: String,
    #[arg(long = "type")]
    pub job_type: String,
    /// The payload as text.
    #[arg(long, conflicts_with = "payload_file")]
    pub payload: Option<String>,
    /// Read the payload from a file.
    #[arg(long)]
    pub payload_file: Option<PathBuf>,
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[arg(long)]
    pub priority: Option<u32>,
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Jobs that must succeed first.
    #[arg(long, value_delimiter = ',')]
    pub depends_on: Vec<u64>,
    #[arg(long)]
    pub lease_ttl_ms: Option<u64>,
    /// The project within the tenant (default "default").
    #[arg(long)]
    pub project: Option<String>,
    /// Not leased before this time (RFC 3339, e.g. 2026-12-24T06:00:00Z).
    #[arg(long)]
    pub not_before: Option<humantime::Timestamp>,
    /// An id that ties the job to the caller's own records.
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// An artifact the job reads, for lineage: name=NAME,uri=URI[,digest=DIGEST]; repeat
    /// for more.
    #[arg(long = "input")]
    pub inputs: Vec<String>,
    /// Marks the job as a backfill (needs orch:backfill), with --backfill-ticket.
    #[arg(long, requires = "backfill_ticket")]
    pub backfill_reason: Option<String>,
    /// The backfill's ticket.
    #[arg(long, requires = "backfill_reason")]
    pub backfill_ticket: Option<String>,
    /// The first retry's backoff, doubled at each retry (e.g. 1s).
    #[arg(long)]
    pub base_backoff: Option<humantime::Duration>,
    /// The longest backoff (e.g. 5m).
    #[arg(long)]
    pub max_backoff: Option<humantime::Duration>,
}

#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// Enqueues a job.
    Submit(Box<SubmitArgs>),
    /// Lists jobs, newest ids last.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long = "type")]
        job_type: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Start after this job id (a previous page's last).
        #[arg(long)]
        after: Option<u64>,
        /// List archived jobs (finished and past their retention window) instead.
        #[arg(long)]
        archived: bool,
    },
    /// Shows a job with its attempts and history, from memory or the archive.
    Show {
        id: u64,
        /// Prints instead the job's audit record in a DSSE envelope signed by the node's audit
        /// key (JSON), to keep and check offline with `rota audit verify-job`.
        #[arg(long)]
        signed: bool,
    },
    /// Cancels a job.
    Cancel {
        id: u64,
        #[arg(long)]
        reason: String,
    },
    /// Runs a job's spec again as a new job.
    Replay {
        id: u64,
        #[arg(long)]
        reason: String,
    },
    /// Takes a stuck lease back: the job is ready again at once, the attempt recorded as
    /// released (not failed, not counted against its retries).
    Release {
        id: u64,
        /// Only this lease (as `rota job show` gave it): refused if the job holds another.
        #[arg(long)]
        lease: Option<u64>,
        #[command(flatten)]
        why: ReasonArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// Blocks a tenant: its enqueues are refused, its jobs not leased, its schedules'
    /// firings missed, until it is unblocked.
    Block {
        tenant: String,
        #[command(flatten)]
        why: ReasonArgs,
    },
    /// Unblocks a tenant.
    Unblock {
        tenant: String,
        #[command(flatten)]
        why: ReasonArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum GovernanceCmd {
    /// The governance history, oldest first: who changed what, why, under which ticket,
    /// when and at which log index.
    History {
        /// Only this kind (repeat for more): quota_set, throttled, source_paused,
        /// source_resumed, breaker_configured, breaker_tripped, breaker_reset, maintenance,
        /// schedule_created, schedule_paused, schedule_resumed, schedule_deleted, job_canceled, job_replayed,
        /// backfill, retention_set, token_created, token_revoked.
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// Only changes at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<humantime::Timestamp>,
        /// Only changes before this time (RFC 3339).
        #[arg(long)]
        until: Option<humantime::Timestamp>,
        /// Also the archived changes (past the history's retention window).
        #[arg(long)]
        archived: bool,
        /// Most changes listed.
        #[arg(long, default_value_t = 1_000)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum IncidentCmd {
    /// Marks an open incident as seen and being handled.
    Ack {
        id: u64,
        #[command(flatten)]
        why: ReasonArgs,
    },
    /// Resolves an open incident; a breaker it keeps open is reset (its jobs lease again).
    Resolve {
        id: u64,
        #[command(flatten)]
        why: ReasonArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Makes an audit signing key: DIR/audit.key (secret, for the nodes' --audit-key) and
    /// DIR/audit.pub (for `rota audit verify --key`).
    Keygen {
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Exports the jobs created in a window of log time, with their history, the throttle
    /// changes, incidents and replays, signed by the answering node's key.
    Export {
        /// Jobs created at or after this time (RFC 3339) [default: the beginning].
        #[arg(long)]
        since: Option<humantime::Timestamp>,
        /// Jobs created before this time (RFC 3339) [default: now and on].
        #[arg(long)]
        until: Option<humantime::Timestamp>,
        /// Only this tenant's jobs.
        #[arg(long)]
        tenant: Option<String>,
        /// Where to write the bundle (it must not exist): a directory, or one tar archive
        /// when the name ends in `.tar`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Checks a bundle offline: the signature, every file's digest and line chain, the
    /// counts, that every history line belongs to a job of the bundle.
    Verify {
        /// The bundle: its directory, or its tar archive.
        bundle: PathBuf,
        /// The public key (audit.pub).
        #[arg(long)]
        key: PathBuf,
    },
    /// Checks a signed job (what `rota job show --signed` wrote) offline: the DSSE
    /// envelope's signature by the key; prints the job's record it signs.
    VerifyJob {
        /// The envelope's file.
        envelope: PathBuf,
        /// The public key (audit.pub).
        #[arg(long)]
        key: PathBuf,
    },
}

/// Why a change is made, and under which ticket.
#[derive(Args, Debug)]
pub struct ReasonArgs {
    /// Why (recorded in the governance history).
    #[arg(long)]
    pub reason: String,
    /// The change ticket it is made under.
    #[arg(long)]
    pub ticket: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCmd {
    /// Adds a schedule: each firing enqueues the job the flags describe, under the
    /// idempotency key `schedule:NAME:FIRE_MS`.
    Create(Box<ScheduleCreateArgs>),
    /// Lists every schedule with its next fire time.
    List,
    /// Shows a schedule and its next fire times.
    Show {
        name: String,
        /// How many next fire times to list (at most 100).
        #[arg(long, default_value_t = 5)]
        upcoming: u32,
    },
    /// Stops a schedule's firings.
    Pause {
        name: String,
        #[command(flatten)]
        why: ReasonArgs,
    },
    /// Resumes a paused schedule; firings due while it was paused are not made up.
    Resume {
        name: String,
        #[command(flatten)]
        why: ReasonArgs,
    },
    /// Removes a schedule; the jobs it enqueued stay.
    Delete {
        name: String,
        #[command(flatten)]
        why: ReasonArgs,
    },
    /// Runs a schedule's template for its past fire times in a window, as one backfill (a
    /// plan: `rota plan show` tells its progress, `rota plan cancel` stops it). A fire time
    /// that already ran runs not again. Needs orch:backfill.
    Backfill {
        name: String,
        /// The window's start (RFC 3339), with --until.
        #[arg(long, requires = "until", conflicts_with = "at")]
        since: Option<humantime::Timestamp>,
        /// The window's end (RFC 3339), not after now.
        #[arg(long, requires = "since")]
        until: Option<humantime::Timestamp>,
        /// Or these fire times (RFC 3339; repeat).
        #[arg(long)]
        at: Vec<humantime::Timestamp>,
        /// Why (the jobs' backfill reason).
        #[arg(long)]
        reason: String,
        /// The ticket that authorises it (required).
        #[arg(long)]
        ticket: String,
    },
}

#[derive(Args, Debug)]
pub struct ScheduleCreateArgs {
    /// The schedule's name, unique in the cluster.
    pub name: String,
    /// A cron expression in UTC: five fields (minute first), six with seconds first, or
    /// @hourly, @daily, ...
    #[arg(long, required_unless_present = "every", conflicts_with = "every")]
    pub cron: Option<String>,
    /// A fixed interval instead, e.g. 30s, 15m, 1h (at least 1s).
    #[arg(long)]
    pub every: Option<humantime::Duration>,
    /// Missed firings (the cluster was down): skip (cron's way, the default), run-once
    /// (one run for the latest), or run-each (each of them, the latest --catch-up-max).
    #[arg(long, default_value = "skip")]
    pub catch_up: String,
    /// How many missed firings run-each makes up (1-100).
    #[arg(long, default_value_t = 10)]
    pub catch_up_max: u32,
    /// No firing before this time (RFC 3339, e.g. 2026-12-24T06:00:00Z); an interval
    /// schedule's first firing falls on it.
    #[arg(long)]
    pub start: Option<humantime::Timestamp>,
    /// No firing after this time (RFC 3339).
    #[arg(long)]
    pub end: Option<humantime::Timestamp>,
    /// The job each firing enqueues.
    #[command(flatten)]
    pub job: SubmitArgs,
    #[command(flatten)]
    pub why: ReasonArgs,
}

#[derive(Subcommand, Debug)]
pub enum PlanCmd {
    /// Submits a plan from a JSON or YAML file.
    Submit { file: PathBuf },
    /// Shows a plan's status and steps.
    Show { id: u64 },
    /// Cancels every live job a plan created (a backfill as a whole); finished ones and jobs
    /// its steps reused stay.
    Cancel {
        id: u64,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DlqCmd {
    /// Lists dead-lettered jobs, oldest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        after: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum QuotaCmd {
    /// Sets a quota for a tenant, or a tenant's job type.
    Set {
        #[arg(long)]
        tenant: String,
        #[arg(long = "type")]
        job_type: Option<String>,
        #[arg(long)]
        max_active: Option<u32>,
        #[arg(long)]
        max_per_hour: Option<u32>,
        #[arg(long)]
        burst: Option<u32>,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        ticket: Option<String>,
    },
}

/// A tenant, a job type, or both.
#[derive(Args, Debug)]
pub struct ScopeArgs {
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long = "type")]
    pub job_type: Option<String>,
}

#[derive(Args, Debug)]
pub struct ThrottleArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Most jobs leased at once; leave out with --lift.
    #[arg(long, required_unless_present = "lift")]
    pub max_concurrent: Option<u32>,
    /// Removes the cap.
    #[arg(long)]
    pub lift: bool,
    #[arg(long)]
    pub reason: String,
}

#[derive(Subcommand, Debug)]
pub enum SourceCmd {
    Pause {
        #[command(flatten)]
        scope: ScopeArgs,
        #[arg(long)]
        reason: String,
    },
    Resume {
        #[command(flatten)]
        scope: ScopeArgs,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RetentionCmd {
    /// Shows the windows in force and the archive's size.
    Show,
    /// Changes windows (durations such as 30m, 1h, 7d); those left out keep their value.
    Set {
        /// How long a succeeded job stays in memory.
        #[arg(long, value_parser = humantime::parse_duration)]
        succeeded: Option<std::time::Duration>,
        /// How long a canceled job stays in memory.
        #[arg(long, value_parser = humantime::parse_duration)]
        canceled: Option<std::time::Duration>,
        /// How long a dead-lettered job stays in memory (where it can be replayed).
        #[arg(long, value_parser = humantime::parse_duration)]
        dead_lettered: Option<std::time::Duration>,
        /// How long resolved incidents and governance events stay in memory.
        #[arg(long, value_parser = humantime::parse_duration)]
        history: Option<std::time::Duration>,
        /// How long anything stays in the archive before it is gone for good.
        #[arg(long, value_parser = humantime::parse_duration)]
        archive: Option<std::time::Duration>,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        ticket: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Creates a token and prints its secret, once: the cluster keeps only its hash.
    Create {
        /// Unique name: what `list` shows, `revoke` takes and stamps record.
        #[arg(long)]
        name: String,
        /// Comma-separated: orchestrator:read, orchestrator:write, orchestrator:lease,
        /// orch:quota, orch:backfill, orch:admin; orchestrator:* (read, write, lease), * (all).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Binds the token to these tenants (comma-separated): it sees, enqueues and leases
        /// only their jobs. Unset: every tenant.
        #[arg(long, value_delimiter = ',')]
        tenants: Vec<String>,
        /// Lifetime (e.g. 30d, 12h), in log time. Unset: until revoked.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        ticket: Option<String>,
    },
    /// Lists the cluster's tokens (never their secrets).
    List,
    /// Revokes a token: writes and reads through the leader are refused from the commit on,
    /// a follower's stale reads once it has applied the revocation.
    Revoke {
        name: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        ticket: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum MaintenanceCmd {
    On {
        #[arg(long)]
        reason: String,
    },
    Off {
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum BreakerCmd {
    /// Sets a job type's circuit breaker: trip when failures reach a share of a window.
    Set {
        job_type: String,
        /// Trip at this failure rate, in percent (1-100).
        #[arg(long)]
        threshold_percent: u32,
        /// The sliding window, in milliseconds of log time.
        #[arg(long, default_value_t = 60_000)]
        window_ms: u64,
        /// No trip on fewer attempts than this in the window.
        #[arg(long, default_value_t = 20)]
        min_attempts: u32,
        #[arg(long)]
        reason: String,
    },
    /// Removes a job type's circuit breaker.
    Remove {
        job_type: String,
        #[arg(long)]
        reason: String,
    },
    /// Closes a tripped breaker and resolves its incident.
    Reset {
        job_type: String,
        #[arg(long)]
        reason: String,
    },
}

impl Global {
    /// Who made a governance change and why: the actor is `--actor`, else `$USER`.
    pub fn stamp(&self, reason: String, ticket: Option<String>) -> pb::Stamp {
        let actor = self
            .actor
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "cli".to_owned());
        pb::Stamp {
            actor,
            reason,
            ticket,
        }
    }

    /// The read options `--stale` asks for.
    pub fn read_options(&self) -> Option<pb::ReadOptions> {
        Some(pb::ReadOptions { stale: self.stale })
    }
}

/// Where certificates are kept, and for how long a new one is valid.
#[derive(Args, Debug)]
pub struct CertFiles {
    /// The directory with the CA (`ca.crt`, `ca.key`), where new files are written.
    #[arg(long, env = "ROTA_CERTS_DIR", default_value = "certs")]
    pub certs_dir: PathBuf,
    /// Days the new certificate is valid [default: 3650 for a CA, 730 otherwise].
    #[arg(long)]
    pub days: Option<u32>,
}

/// The subcommands read as `rota cert create-ca` and so on, as CockroachDB's do.
#[derive(Subcommand, Debug)]
#[allow(clippy::enum_variant_names)]
pub enum CertCmd {
    /// Makes the cluster's CA: ca.crt (give it to every node and client) and ca.key (keep
    /// it away from the nodes; it signs new certificates).
    CreateCa {
        #[command(flatten)]
        files: CertFiles,
        /// The CA's common name.
        #[arg(long, default_value = "rota cluster CA")]
        name: String,
    },
    /// Makes node.ID.crt and node.ID.key, signed by the CA: the node's identity on its peer
    /// and client ports.
    CreateNode {
        #[command(flatten)]
        files: CertFiles,
        /// The node's id in the cluster.
        #[arg(long)]
        id: u64,
        /// A DNS name or IP address peers and clients dial it at (repeatable, or
        /// comma-separated).
        #[arg(long = "host", required = true, value_delimiter = ',')]
        hosts: Vec<String>,
    },
    /// Makes client.NAME.crt and client.NAME.key, signed by the CA: a client principal.
    CreateClient {
        #[command(flatten)]
        files: CertFiles,
        /// The principal's name (letters, digits, '-', '_', '.', '@').
        name: String,
        /// Scopes the certificate holds, comma-separated (as `rota token create --scopes`);
        /// `*` for every scope, orch:admin included (the operator's certificate).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Binds the certificate to these tenants (comma-separated). Unset: every tenant.
        #[arg(long, value_delimiter = ',')]
        tenants: Vec<String>,
    },
}
