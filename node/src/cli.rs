//! The `rota` command line: `dev` and `agent` run a node; every other subcommand is a
//! client of a running cluster. Output is a table for people and JSON with `--json`.

use crate::config::{self, AgentArgs};
use crate::server::{NodeSettings, RunningNode};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use rota_client::proto as pb;
use rota_client::{Client, ClientConfig};
use serde::Deserialize;
use serde_json::{json, Value};
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

/// Options every client subcommand takes.
#[derive(Args, Debug)]
pub struct Global {
    /// Nodes to talk to, comma-separated; any one is enough.
    #[arg(long, global = true, env = "ROTA_ENDPOINTS", value_delimiter = ',', default_value = config::DEFAULT_LISTEN)]
    pub endpoints: Vec<String>,
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
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Runs a one-node cluster with its data in ~/.local/share/rota/dev. No setup needed.
    Dev(DevArgs),
    /// Runs a cluster node.
    Agent(AgentArgs),
    /// Cluster membership and health.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Jobs: submit, list, show, cancel, replay.
    #[command(subcommand)]
    Job(JobCmd),
    /// Plans: DAGs of jobs.
    #[command(subcommand)]
    Plan(PlanCmd),
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
    /// Shows quotas, throttles, pauses, incidents, maintenance and queue depths.
    Governance,
    /// The load generator: runs jobs through a local 3-node cluster and reports throughput,
    /// latency, failover and any job lost or duplicated.
    Bench(crate::bench::BenchArgs),
}

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Address to listen on.
    #[arg(long, default_value = config::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Data directory [default: $ROTA_DEV_DIR or ~/.local/share/rota/dev].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Founds the cluster from the node's --peers (or the given members). Run once.
    Init {
        /// Members as ID=HOST:PORT; default: the node's own --peers.
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
    },
    /// Shows each endpoint's view: role, leader, term, indexes, state digest.
    Status,
    /// Adds a node (it catches up as a learner, then votes).
    Add { id: u64, addr: String },
    /// Removes a voter.
    Remove { id: u64 },
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
}

#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// Enqueues a job.
    Submit(SubmitArgs),
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
    },
    /// Shows a job with its attempts and history.
    Show { id: u64 },
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
}

#[derive(Subcommand, Debug)]
pub enum PlanCmd {
    /// Submits a plan from a JSON or YAML file.
    Submit { file: PathBuf },
    /// Shows a plan's status and steps.
    Show { id: u64 },
}

#[derive(Subcommand, Debug)]
pub enum DlqList {
    /// Lists dead-lettered jobs, oldest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        after: Option<u64>,
    },
}
pub use DlqList as DlqCmd;

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

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Dev(args) => dev(args).await,
        Cmd::Agent(args) => agent(args).await,
        Cmd::Bench(args) => crate::bench::bench(args, &cli.global.endpoints, cli.global.json).await,
        command => client_command(command, &cli.global).await,
    }
}

async fn dev(args: DevArgs) -> Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(config::default_dev_dir);
    let settings = NodeSettings::new(1, args.listen, data_dir.clone());
    let node = RunningNode::start(settings)
        .await
        .with_context(|| format!("starting the dev node with data in {}", data_dir.display()))?;
    let created = node.initialize_alone().await?;
    println!("rota dev: listening on {} (gRPC)", node.addr());
    println!(
        "rota dev: data in {}{}",
        data_dir.display(),
        if created { " (new)" } else { "" }
    );
    println!("rota dev: auth is OFF; this is a one-node cluster for development");
    println!(
        "rota dev: try `rota job submit --tenant acme --type email --payload hi`; Ctrl-C stops"
    );
    serve_until_signal(node).await
}

async fn agent(args: AgentArgs) -> Result<()> {
    let settings = args.resolve()?;
    let data_dir = settings.data_dir.clone();
    let id = settings.id;
    let node = RunningNode::start(settings)
        .await
        .with_context(|| format!("starting node {id} with data in {}", data_dir.display()))?;
    println!(
        "rota agent {id}: listening on {} (gRPC), data in {}",
        node.addr(),
        data_dir.display()
    );
    println!("rota agent {id}: auth is OFF");
    serve_until_signal(node).await
}

/// Serves until SIGTERM or Ctrl-C, then shuts down gracefully.
async fn serve_until_signal(node: RunningNode) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    println!("rota: shutting down");
    node.shutdown().await?;
    println!("rota: stopped");
    Ok(())
}

fn stamp(global: &Global, reason: String, ticket: Option<String>) -> pb::Stamp {
    let actor = global
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

fn scope(args: ScopeArgs) -> Result<pb::Scope> {
    if args.tenant.is_none() && args.job_type.is_none() {
        bail!("give --tenant, --type, or both");
    }
    Ok(pb::Scope {
        tenant: args.tenant,
        job_type: args.job_type,
    })
}

fn read_options(global: &Global) -> Option<pb::ReadOptions> {
    Some(pb::ReadOptions {
        stale: global.stale,
    })
}

async fn client_command(command: Cmd, global: &Global) -> Result<()> {
    let client = Client::with_config(ClientConfig {
        retry_for: std::time::Duration::from_secs(global.wait_secs),
        ..ClientConfig::new(global.endpoints.clone())
    })?;
    let out = Output { json: global.json };
    match command {
        Cmd::Dev(_) | Cmd::Agent(_) | Cmd::Bench(_) => unreachable_command(),
        Cmd::Cluster(cmd) => cluster(cmd, global, &client, &out).await,
        Cmd::Job(cmd) => job(cmd, global, &client, &out).await,
        Cmd::Plan(PlanCmd::Submit { file }) => {
            let request = plan_file(&file)?;
            let answer = client.submit_plan(request).await?;
            let jobs: Vec<Value> = answer
                .jobs
                .iter()
                .map(|j| json!({"key": j.key, "job_id": j.job_id}))
                .collect();
            out.show(json!({"plan_id": answer.plan_id, "jobs": jobs}), || {
                let mut table = table(&["step", "job"]);
                for j in &answer.jobs {
                    table.add_row(vec![j.key.clone(), j.job_id.to_string()]);
                }
                format!("plan {} submitted\n{table}", answer.plan_id)
            });
            Ok(())
        }
        Cmd::Plan(PlanCmd::Show { id }) => {
            let plan = client
                .get_plan(pb::GetPlanRequest {
                    plan_id: id,
                    read: read_options(global),
                })
                .await?;
            let status =
                pb::PlanStatus::try_from(plan.status).map_or("unknown", |s| plan_status_name(s));
            let steps: Vec<Value> = plan
                .steps
                .iter()
                .map(|s| json!({"key": s.key, "job_id": s.job_id, "status": status_name(s.status)}))
                .collect();
            out.show(
                json!({"plan_id": plan.plan_id, "status": status, "created_ms": plan.created_ms, "steps": steps}),
                || {
                    let mut table = table(&["step", "job", "status"]);
                    for s in &plan.steps {
                        table.add_row(vec![s.key.clone(), s.job_id.to_string(), status_name(s.status).to_owned()]);
                    }
                    format!("plan {} is {status}\n{table}", plan.plan_id)
                },
            );
            Ok(())
        }
        Cmd::Dlq(DlqCmd::List { limit, after }) => {
            let page = client
                .list_dead_letters(pb::ListDeadLettersRequest {
                    after,
                    limit,
                    read: read_options(global),
                })
                .await?;
            out.jobs(&page);
            Ok(())
        }
        Cmd::Quota(QuotaCmd::Set {
            tenant,
            job_type,
            max_active,
            max_per_hour,
            burst,
            reason,
            ticket,
        }) => {
            client
                .set_quota(pb::SetQuotaRequest {
                    session: None,
                    tenant,
                    job_type,
                    max_active,
                    max_per_hour,
                    burst,
                    stamp: Some(stamp(global, reason, ticket)),
                })
                .await?;
            out.done("quota set");
            Ok(())
        }
        Cmd::Throttle(args) => {
            let max_concurrent = if args.lift { None } else { args.max_concurrent };
            client
                .throttle(pb::ThrottleRequest {
                    session: None,
                    scope: Some(scope(args.scope)?),
                    max_concurrent,
                    stamp: Some(stamp(global, args.reason, None)),
                })
                .await?;
            out.done(if max_concurrent.is_some() {
                "throttle set"
            } else {
                "throttle lifted"
            });
            Ok(())
        }
        Cmd::Source(SourceCmd::Pause { scope: s, reason }) => {
            let request = pb::SourceRequest {
                session: None,
                scope: Some(scope(s)?),
                stamp: Some(stamp(global, reason, None)),
            };
            client.pause_source(request).await?;
            out.done("source paused");
            Ok(())
        }
        Cmd::Source(SourceCmd::Resume { scope: s, reason }) => {
            let request = pb::SourceRequest {
                session: None,
                scope: Some(scope(s)?),
                stamp: Some(stamp(global, reason, None)),
            };
            client.resume_source(request).await?;
            out.done("source resumed");
            Ok(())
        }
        Cmd::Maintenance(cmd) => {
            let (enabled, reason) = match cmd {
                MaintenanceCmd::On { reason } => (true, reason),
                MaintenanceCmd::Off { reason } => (false, reason),
            };
            client
                .set_maintenance(pb::SetMaintenanceRequest {
                    session: None,
                    enabled,
                    stamp: Some(stamp(global, reason, None)),
                })
                .await?;
            out.done(if enabled {
                "maintenance mode on: no new leases"
            } else {
                "maintenance mode off"
            });
            Ok(())
        }
        Cmd::Breaker(BreakerCmd::Set {
            job_type,
            threshold_percent,
            window_ms,
            min_attempts,
            reason,
        }) => {
            let config = pb::BreakerConfig {
                failure_threshold_percent: threshold_percent,
                window_ms,
                min_attempts,
            };
            configure_breaker(&client, global, job_type, Some(config), reason).await?;
            out.done("breaker set");
            Ok(())
        }
        Cmd::Breaker(BreakerCmd::Remove { job_type, reason }) => {
            configure_breaker(&client, global, job_type, None, reason).await?;
            out.done("breaker removed");
            Ok(())
        }
        Cmd::Breaker(BreakerCmd::Reset { job_type, reason }) => {
            client
                .reset_breaker(pb::ResetBreakerRequest {
                    session: None,
                    job_type,
                    stamp: Some(stamp(global, reason, None)),
                })
                .await?;
            out.done("breaker reset");
            Ok(())
        }
        Cmd::Governance => {
            let view = client
                .get_governance(pb::GetGovernanceRequest {
                    read: read_options(global),
                })
                .await?;
            out.governance(&view);
            Ok(())
        }
    }
}

async fn configure_breaker(
    client: &Client,
    global: &Global,
    job_type: String,
    config: Option<pb::BreakerConfig>,
    reason: String,
) -> Result<()> {
    client
        .configure_breaker(pb::ConfigureBreakerRequest {
            session: None,
            job_type,
            config,
            stamp: Some(stamp(global, reason, None)),
        })
        .await?;
    Ok(())
}

fn unreachable_command() -> Result<()> {
    bail!("dev and agent are not client commands")
}

async fn cluster(cmd: ClusterCmd, _global: &Global, client: &Client, out: &Output) -> Result<()> {
    match cmd {
        ClusterCmd::Init { members } => {
            let members = config::parse_peers(&members)?
                .into_iter()
                .map(|(id, addr)| pb::Member {
                    id,
                    addr,
                    voter: true,
                })
                .collect();
            let status = client
                .init_cluster(pb::InitClusterRequest { members })
                .await?;
            out.cluster(&[status]);
        }
        ClusterCmd::Status => {
            let mut statuses = Vec::new();
            for endpoint in &_global.endpoints {
                let one = Client::with_config(ClientConfig {
                    retry_for: std::time::Duration::from_secs(2),
                    ..ClientConfig::new([endpoint.clone()])
                })?;
                match one
                    .cluster_status(pb::ClusterStatusRequest { digest: true })
                    .await
                {
                    Ok(status) => statuses.push(status),
                    Err(e) => eprintln!("{endpoint}: {e}"),
                }
            }
            if statuses.is_empty() {
                bail!("no endpoint answered");
            }
            out.cluster(&statuses);
        }
        ClusterCmd::Add { id, addr } => {
            let status = client.add_node(pb::AddNodeRequest { id, addr }).await?;
            out.cluster(&[status]);
        }
        ClusterCmd::Remove { id } => {
            let status = client.remove_node(pb::RemoveNodeRequest { id }).await?;
            out.cluster(&[status]);
        }
    }
    Ok(())
}

async fn job(cmd: JobCmd, global: &Global, client: &Client, out: &Output) -> Result<()> {
    match cmd {
        JobCmd::Submit(args) => {
            let spec = submit_spec(args)?;
            let answer = client
                .enqueue(pb::EnqueueRequest {
                    session: None,
                    spec: Some(spec),
                })
                .await?;
            out.show(
                json!({"job_id": answer.job_id, "created": answer.created}),
                || match answer.created {
                    true => format!("job {} enqueued", answer.job_id),
                    false => format!(
                        "job {} already exists for this idempotency key",
                        answer.job_id
                    ),
                },
            );
        }
        JobCmd::List {
            status,
            tenant,
            job_type,
            limit,
            after,
        } => {
            let status = match status {
                None => pb::JobStatus::Unspecified,
                Some(name) => parse_status(&name)?,
            };
            let page = client
                .list_jobs(pb::ListJobsRequest {
                    status: status as i32,
                    tenant,
                    job_type,
                    since_ms: None,
                    until_ms: None,
                    after,
                    limit,
                    read: read_options(global),
                    summary: true,
                })
                .await?;
            out.jobs(&page);
        }
        JobCmd::Show { id } => {
            let answer = client
                .get_job(pb::GetJobRequest {
                    job_id: id,
                    read: read_options(global),
                })
                .await?;
            let job = answer.job.context("the node answered without the job")?;
            out.job(&job);
        }
        JobCmd::Cancel { id, reason } => {
            client
                .cancel_job(pb::CancelJobRequest {
                    session: None,
                    job_id: id,
                    stamp: Some(stamp(global, reason, None)),
                })
                .await?;
            out.show(json!({"job_id": id, "canceled": true}), || {
                format!("job {id} canceled")
            });
        }
        JobCmd::Replay { id, reason } => {
            let answer = client
                .replay_job(pb::ReplayJobRequest {
                    session: None,
                    job_id: id,
                    stamp: Some(stamp(global, reason, None)),
                })
                .await?;
            out.show(json!({"replay_of": id, "job_id": answer.job_id}), || {
                format!("job {id} replayed as job {}", answer.job_id)
            });
        }
    }
    Ok(())
}

fn submit_spec(args: SubmitArgs) -> Result<pb::JobSpec> {
    let payload = match (args.payload, args.payload_file) {
        (Some(text), _) => text.into_bytes(),
        (None, Some(path)) => std::fs::read(&path)
            .with_context(|| format!("reading the payload from {}", path.display()))?,
        (None, None) => Vec::new(),
    };
    let retry = args.max_attempts.map(|max_attempts| pb::RetryPolicy {
        max_attempts,
        base_backoff_ms: rota_state_machine::RetryPolicy::default().base_backoff_ms,
        max_backoff_ms: rota_state_machine::RetryPolicy::default().max_backoff_ms,
    });
    Ok(pb::JobSpec {
        tenant: args.tenant,
        job_type: args.job_type,
        payload,
        idempotency_key: args.idempotency_key,
        priority: args.priority,
        depends_on: args.depends_on,
        retry,
        lease_ttl_ms: args.lease_ttl_ms,
        ..pb::JobSpec::default()
    })
}

/// A plan file: steps with dependencies by key, in JSON or YAML.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    steps: Vec<PlanFileStep>,
    backfill: Option<PlanFileBackfill>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFileBackfill {
    reason: String,
    ticket: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFileStep {
    key: String,
    tenant: String,
    #[serde(rename = "type")]
    job_type: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    depends_on: Vec<String>,
    priority: Option<u32>,
    max_attempts: Option<u32>,
    idempotency_key: Option<String>,
    lease_ttl_ms: Option<u64>,
}

/// Reads a plan file; YAML is a superset of JSON, so one parser reads both.
fn plan_file(path: &std::path::Path) -> Result<pb::SubmitPlanRequest> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the plan file {}", path.display()))?;
    let plan: PlanFile = serde_norway::from_str(&text)
        .with_context(|| format!("{} is not a valid plan (JSON or YAML)", path.display()))?;
    Ok(plan_request(plan))
}

fn plan_request(plan: PlanFile) -> pb::SubmitPlanRequest {
    let steps = plan
        .steps
        .into_iter()
        .map(|step| pb::PlanStep {
            key: step.key,
            depends_on: step.depends_on,
            spec: Some(pb::JobSpec {
                tenant: step.tenant,
                job_type: step.job_type,
                payload: step.payload.into_bytes(),
                priority: step.priority,
                idempotency_key: step.idempotency_key,
                lease_ttl_ms: step.lease_ttl_ms,
                retry: step.max_attempts.map(|max_attempts| pb::RetryPolicy {
                    max_attempts,
                    base_backoff_ms: rota_state_machine::RetryPolicy::default().base_backoff_ms,
                    max_backoff_ms: rota_state_machine::RetryPolicy::default().max_backoff_ms,
                }),
                ..pb::JobSpec::default()
            }),
        })
        .collect();
    pb::SubmitPlanRequest {
        session: None,
        steps,
        backfill: plan.backfill.map(|b| pb::Backfill {
            reason: b.reason,
            ticket: b.ticket,
        }),
    }
}

fn parse_status(name: &str) -> Result<pb::JobStatus> {
    match rota_state_machine::Status::parse(name) {
        Some(status) => Ok(pb::JobStatus::from_str_name(&format!("JOB_STATUS_{}", status.as_str().to_uppercase()))
            .unwrap_or(pb::JobStatus::Unspecified)),
        None => bail!(
            "unknown status {name:?}; one of: pending, ready, leased, succeeded, failed, dead_lettered, canceled"
        ),
    }
}

fn status_name(status: i32) -> &'static str {
    match pb::JobStatus::try_from(status) {
        Ok(pb::JobStatus::Pending) => "pending",
        Ok(pb::JobStatus::Ready) => "ready",
        Ok(pb::JobStatus::Leased) => "leased",
        Ok(pb::JobStatus::Succeeded) => "succeeded",
        Ok(pb::JobStatus::Failed) => "failed",
        Ok(pb::JobStatus::DeadLettered) => "dead_lettered",
        Ok(pb::JobStatus::Canceled) => "canceled",
        _ => "unknown",
    }
}

fn plan_status_name(status: pb::PlanStatus) -> &'static str {
    match status {
        pb::PlanStatus::Pending => "pending",
        pb::PlanStatus::Running => "running",
        pb::PlanStatus::Failing => "failing",
        pb::PlanStatus::Succeeded => "succeeded",
        pb::PlanStatus::Failed => "failed",
        pb::PlanStatus::Unspecified => "unknown",
    }
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(header.to_vec());
    table
}

fn scope_text(scope: &Option<pb::Scope>) -> String {
    let tenant = scope
        .as_ref()
        .and_then(|s| s.tenant.clone())
        .unwrap_or_else(|| "*".to_owned());
    let job_type = scope
        .as_ref()
        .and_then(|s| s.job_type.clone())
        .unwrap_or_else(|| "*".to_owned());
    format!("{tenant}/{job_type}")
}

fn job_json(job: &pb::Job) -> Value {
    let spec = job.spec.clone().unwrap_or_default();
    json!({
        "id": job.id,
        "status": status_name(job.status),
        "tenant": spec.tenant,
        "job_type": spec.job_type,
        "priority": spec.priority,
        "payload_bytes": spec.payload.len(),
        "payload_digest": job.payload_digest,
        "idempotency_key": spec.idempotency_key,
        "depends_on": spec.depends_on,
        "created_ms": job.created_ms,
        "plan_id": job.plan_id,
        "plan_step": job.plan_step,
        "replay_of": job.replay_of,
        "lease_id": job.lease_id,
        "lease_worker": job.lease_worker,
        "lease_until_ms": job.lease_until_ms,
        "retry_at_ms": job.retry_at_ms,
        "finished_ms": job.finished_ms,
        "error": job.error,
        "attempts": job.attempts.iter().map(|a| json!({
            "number": a.number, "worker": a.worker, "lease_id": a.lease_id,
            "started_ms": a.started_ms, "ended_ms": a.ended_ms,
            "outcome": pb::AttemptOutcome::try_from(a.outcome).map_or("unknown", |o| o.as_str_name()),
            "error": a.error,
        })).collect::<Vec<_>>(),
        "history": job.history.iter().map(|e| json!({
            "log_index": e.log_index, "at_ms": e.at_ms, "kind": e.kind, "detail": e.detail,
        })).collect::<Vec<_>>(),
    })
}

/// Prints answers as tables or JSON.
struct Output {
    json: bool,
}

impl Output {
    fn show(&self, value: Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", text());
        }
    }

    fn done(&self, message: &str) {
        self.show(json!({"ok": true, "message": message}), || {
            message.to_owned()
        });
    }

    fn jobs(&self, page: &pb::ListJobsResponse) {
        let jobs: Vec<Value> = page.jobs.iter().map(job_json).collect();
        self.show(json!({"jobs": jobs, "next_after": page.next_after}), || {
            let mut table = table(&["id", "status", "tenant", "type", "attempts", "error"]);
            for job in &page.jobs {
                let spec = job.spec.clone().unwrap_or_default();
                table.add_row(vec![
                    job.id.to_string(),
                    status_name(job.status).to_owned(),
                    spec.tenant,
                    spec.job_type,
                    job.attempts.len().to_string(),
                    job.error.clone().unwrap_or_default(),
                ]);
            }
            match page.next_after {
                Some(next) => format!("{table}\nmore: --after {next}"),
                None => table.to_string(),
            }
        });
    }

    fn job(&self, job: &pb::Job) {
        self.show(job_json(job), || {
            let spec = job.spec.clone().unwrap_or_default();
            let mut text = format!(
                "job {}  {}  tenant={} type={} priority={}\npayload: {} bytes, sha256 {}\n",
                job.id,
                status_name(job.status),
                spec.tenant,
                spec.job_type,
                spec.priority.unwrap_or_default(),
                spec.payload.len(),
                job.payload_digest,
            );
            if let Some(error) = &job.error {
                text.push_str(&format!("error: {error}\n"));
            }
            let mut attempts = table(&[
                "attempt", "worker", "lease", "started", "ended", "outcome", "error",
            ]);
            for a in &job.attempts {
                attempts.add_row(vec![
                    a.number.to_string(),
                    a.worker.clone(),
                    a.lease_id.to_string(),
                    a.started_ms.to_string(),
                    a.ended_ms.map(|m| m.to_string()).unwrap_or_default(),
                    pb::AttemptOutcome::try_from(a.outcome)
                        .map_or("unknown", |o| o.as_str_name())
                        .to_owned(),
                    a.error.clone().unwrap_or_default(),
                ]);
            }
            let mut history = table(&["log index", "at", "event", "detail"]);
            for e in &job.history {
                history.add_row(vec![
                    e.log_index.to_string(),
                    e.at_ms.to_string(),
                    e.kind.clone(),
                    e.detail.clone(),
                ]);
            }
            text.push_str(&format!("{attempts}\n{history}"));
            text
        });
    }

    fn cluster(&self, statuses: &[pb::ClusterStatusResponse]) {
        let values: Vec<Value> = statuses
            .iter()
            .map(|s| {
                json!({
                    "node_id": s.node_id, "role": s.role, "leader_id": s.leader_id,
                    "leader_addr": s.leader_addr, "term": s.term,
                    "last_log_index": s.last_log_index, "applied_index": s.applied_index,
                    "state_digest": s.state_digest, "log_time_ms": s.log_time_ms,
                    "members": s.members.iter().map(|m| json!({"id": m.id, "addr": m.addr, "voter": m.voter})).collect::<Vec<_>>(),
                    "jobs": s.jobs.iter().map(|c| json!({"status": status_name(c.status), "count": c.count})).collect::<Vec<_>>(),
                })
            })
            .collect();
        self.show(json!({"nodes": values}), || {
            let mut table = table(&["node", "role", "leader", "term", "log", "applied", "digest"]);
            for s in statuses {
                table.add_row(vec![
                    s.node_id.to_string(),
                    s.role.clone(),
                    s.leader_id
                        .map(|l| l.to_string())
                        .unwrap_or_else(|| "-".to_owned()),
                    s.term.to_string(),
                    s.last_log_index.map(|i| i.to_string()).unwrap_or_default(),
                    s.applied_index.map(|i| i.to_string()).unwrap_or_default(),
                    s.state_digest.chars().take(16).collect(),
                ]);
            }
            let members = statuses
                .first()
                .map(|s| {
                    s.members
                        .iter()
                        .map(|m| {
                            format!(
                                "{}={}{}",
                                m.id,
                                m.addr,
                                if m.voter { "" } else { " (learner)" }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            format!("{table}\nmembers: {members}")
        });
    }

    fn governance(&self, view: &pb::GetGovernanceResponse) {
        let quotas: Vec<Value> = view
            .quotas
            .iter()
            .map(|q| json!({"scope": scope_text(&q.scope), "max_active": q.max_active, "max_per_hour": q.max_per_hour, "burst": q.burst, "active": q.active}))
            .collect();
        let throttles: Vec<Value> = view
            .throttles
            .iter()
            .map(|t| json!({"scope": scope_text(&t.scope), "max_concurrent": t.max_concurrent, "active": t.active}))
            .collect();
        let paused: Vec<Value> = view
            .paused
            .iter()
            .map(|p| json!({"scope": scope_text(&p.scope), "reason": p.stamp.as_ref().map(|s| s.reason.clone())}))
            .collect();
        let incidents: Vec<Value> = view
            .incidents
            .iter()
            .map(|i| json!({"id": i.id, "job_type": i.job_type, "opened_ms": i.opened_ms, "failure_rate_percent": i.failure_rate_percent, "resolved": i.resolved}))
            .collect();
        let queues: Vec<Value> = view
            .queues
            .iter()
            .map(|q| json!({"tenant": q.tenant, "job_type": q.job_type, "pending": q.pending, "ready": q.ready, "leased": q.leased, "retrying": q.retrying}))
            .collect();
        let maintenance = view
            .maintenance
            .as_ref()
            .map(|s| json!({"actor": s.actor, "reason": s.reason}));
        self.show(
            json!({"quotas": quotas, "throttles": throttles, "paused": paused, "incidents": incidents, "maintenance": maintenance, "queues": queues}),
            || {
                let mut text = match &view.maintenance {
                    Some(s) => format!("maintenance mode ON ({}: {})\n", s.actor, s.reason),
                    None => "maintenance mode off\n".to_owned(),
                };
                let mut q = table(&["queue", "pending", "ready", "leased", "retrying"]);
                for d in &view.queues {
                    q.add_row(vec![format!("{}/{}", d.tenant, d.job_type), d.pending.to_string(), d.ready.to_string(), d.leased.to_string(), d.retrying.to_string()]);
                }
                let mut g = table(&["control", "scope", "setting", "active"]);
                for x in &view.quotas {
                    let setting = format!("max_active={} max_per_hour={}", x.max_active.map_or("-".to_owned(), |v| v.to_string()), x.max_per_hour.map_or("-".to_owned(), |v| v.to_string()));
                    g.add_row(vec!["quota".to_owned(), scope_text(&x.scope), setting, x.active.to_string()]);
                }
                for x in &view.throttles {
                    g.add_row(vec!["throttle".to_owned(), scope_text(&x.scope), format!("max_concurrent={}", x.max_concurrent), x.active.to_string()]);
                }
                for x in &view.paused {
                    g.add_row(vec!["paused".to_owned(), scope_text(&x.scope), x.stamp.as_ref().map(|s| s.reason.clone()).unwrap_or_default(), String::new()]);
                }
                for x in &view.incidents {
                    g.add_row(vec!["incident".to_owned(), x.job_type.clone(), format!("{}% failing", x.failure_rate_percent), if x.resolved { "resolved" } else { "OPEN" }.to_owned()]);
                }
                text.push_str(&format!("{q}\n{g}"));
                text
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_files_read_as_yaml_and_as_json() {
        let yaml = "steps:\n  - key: a\n    tenant: acme\n    type: etl\n  - key: b\n    tenant: acme\n    type: etl\n    depends_on: [a]\n";
        let json = r#"{"steps": [{"key": "a", "tenant": "acme", "type": "etl"}, {"key": "b", "tenant": "acme", "type": "etl", "depends_on": ["a"]}]}"#;
        for text in [yaml, json] {
            let plan: PlanFile = serde_norway::from_str(text).expect("valid plan");
            let request = plan_request(plan);
            assert_eq!(request.steps.len(), 2);
            assert_eq!(request.steps[1].depends_on, vec!["a".to_owned()]);
        }
    }

    #[test]
    fn plan_files_with_unknown_fields_are_refused() {
        let text = "steps:\n  - key: a\n    tenant: acme\n    type: etl\n    depend_on: [b]\n";
        let error = serde_norway::from_str::<PlanFile>(text).expect_err("typo");
        assert!(error.to_string().contains("depend_on"), "{error}");
    }

    #[test]
    fn status_names_parse_to_wire_statuses() {
        assert_eq!(
            parse_status("dead_lettered").expect("known"),
            pb::JobStatus::DeadLettered
        );
        assert!(parse_status("done").is_err());
    }
}
