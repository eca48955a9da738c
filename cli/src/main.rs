//! `rota`: runs a node (`rota dev`, `rota agent`), talks to a cluster (every other
//! subcommand), or loads one (`rota bench`). Tables for people, `--json` for scripts, a
//! clear message and exit code 1 on any error.

mod args;
mod audit;
mod backup;
mod bench;
mod cert;
mod cluster;
mod config;
mod govern;
mod jobs;
mod jsonlog;
mod logbuf;
mod output;
mod schedule;
mod serve;
mod token;

use anyhow::Result;
use args::{Cli, Cmd, Global, LogFormat};
use clap::Parser;
use output::Output;
use rota_client::{Client, ClientConfig, ClientSettings};
use rota_node::observe::otel::Otlp;
use std::process::ExitCode;

/// mimalloc rather than glibc's malloc for everything Rust allocates: a node allocates and
/// frees a few buffers per job on every thread, and in the job cycle glibc's malloc and free
/// took about a third of every node's CPU time. mimalloc does the cycle with about a quarter
/// less CPU a node and ~30% more jobs/s (README, "Throughput, second round"), and hands freed
/// pages back to the system itself: mimalloc v3 (libmimalloc-sys's default) purges pages
/// that stayed free for its purge delay, 1 s (`MIMALLOC_PURGE_DELAY`), as later allocations
/// come by. RocksDB's C++ still allocates with glibc, hence the two functions below.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    limit_malloc_arenas();
    return_freed_memory();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main())
}

/// glibc gives every thread that meets contention an allocation arena of its own (up to
/// eight per core) and rarely hands their freed pages back, so RocksDB's allocations (its
/// memtables, block cache and compactions, on threads of their own; everything else is
/// mimalloc's) would leave resident memory creeping up after every burst. Two arenas keep
/// them compact. Called before any thread is started; elsewhere than glibc, nothing to do.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any other
    // thread exists, and M_ARENA_MAX with a positive value is valid on every glibc.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// How often glibc's freed heap pages are handed back to the system.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// glibc keeps freed pages inside its arenas (it trims only the top of the heap): a thread
/// asks it every two seconds to hand back every free page (`malloc_trim`). While every
/// allocation was glibc's this kept a node's memory from creeping 10-12% over the 30-minute
/// soak (README); now it covers RocksDB's share, a small heap, so each walk is short.
/// Elsewhere than glibc, nothing to do.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let trimmer = std::thread::Builder::new()
            .name("malloc-trim".to_owned())
            .spawn(|| loop {
                std::thread::sleep(TRIM_EVERY);
                // SAFETY: malloc_trim only releases free memory the allocator holds; it
                // takes the arenas' own locks and may be called from any thread at any time.
                unsafe {
                    libc::malloc_trim(0);
                }
            });
        if let Err(e) = trimmer {
            eprintln!("warning: could not start the malloc-trim thread: {e}");
        }
    }
}

/// What is logged when ROTA_LOG says nothing: warnings, and a node's job log, governance
/// changes and incidents.
const DEFAULT_LOG: &str =
    "warn,openraft=error,rota::job=info,rota::governance=info,rota::incident=info";

/// Logs to stderr in `format`, filtered by ROTA_LOG (RUST_LOG's syntax), in batches (flush
/// what it returns before the process ends); spans at info and above also go to `otlp` when
/// traces are exported.
fn init_logging(format: LogFormat, otlp: Option<&Otlp>) -> logbuf::Batched<std::io::Stderr> {
    let stderr = logbuf::Batched::start(std::io::stderr());
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROTA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    let lines = tracing_subscriber::fmt::layer().with_writer(stderr.clone());
    let lines = match format {
        LogFormat::Text => lines
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => lines.event_format(jsonlog::JsonLines).boxed(),
    };
    let registry = tracing_subscriber::registry().with(lines.with_filter(filter));
    match otlp {
        Some(otlp) => registry
            .with(
                otlp.layer()
                    .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
            )
            .init(),
        None => registry.init(),
    }
    stderr
}

async fn async_main() -> ExitCode {
    let cli = Cli::parse();
    let otlp = match cli
        .global
        .otlp_endpoint
        .as_deref()
        .map(|endpoint| Otlp::start(endpoint, "rota", std::time::Duration::from_secs(1)))
    {
        Some(Err(e)) => {
            eprintln!("error: --otlp-endpoint: {e}");
            return ExitCode::FAILURE;
        }
        Some(Ok(otlp)) => Some(otlp),
        None => None,
    };
    let log = init_logging(cli.global.log_format, otlp.as_ref());
    let ran = run(cli).await;
    log.flush();
    if let Some(otlp) = otlp {
        // Sends what is batched; blocking, so off the runtime's threads.
        let flushed = tokio::task::spawn_blocking(move || otlp.shutdown()).await;
        if let Ok(Err(e)) = flushed {
            eprintln!("warning: the last traces were not exported: {e}");
        }
    }
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the parsed command line.
async fn run(cli: Cli) -> Result<()> {
    let global = cli.global;
    let client = || client(&global);
    let out = Output { json: global.json };
    match cli.command {
        Cmd::Dev(args) => serve::dev(args).await,
        Cmd::Agent(args) => serve::agent(*args).await,
        Cmd::Bench(args) => bench::bench(*args, client_config(&global)?, global.json).await,
        Cmd::Cert(cmd) => cert::run(cmd),
        Cmd::Token(cmd) => token::run(cmd, &global, &client()?, &out).await,
        Cmd::Cluster(cmd) => cluster::run(cmd, &global, &client()?, &out).await,
        Cmd::Snapshot(cmd) => backup::run(cmd, client, &out).await,
        Cmd::Job(cmd) => jobs::job(cmd, &global, &client()?, &out).await,
        Cmd::Plan(cmd) => jobs::plan(cmd, &global, &client()?, &out).await,
        Cmd::Schedule(cmd) => schedule::schedule(cmd, &global, &client()?, &out).await,
        Cmd::Audit(cmd) => audit::audit(cmd, &global, client, &out).await,
        Cmd::Incident(cmd) => govern::incident(cmd, &global, &client()?, &out).await,
        Cmd::Lineage {
            artifact,
            up,
            down,
            depth,
        } => {
            let direction = match (up, down) {
                (true, _) => rota_client::proto::LineageDirection::Up,
                (_, true) => rota_client::proto::LineageDirection::Down,
                _ => rota_client::proto::LineageDirection::Unspecified,
            };
            jobs::lineage(artifact, direction, depth, &global, &client()?, &out).await
        }
        Cmd::Dlq(cmd) => jobs::dlq(cmd, &global, &client()?, &out).await,
        Cmd::Quota(cmd) => govern::quota(cmd, &global, &client()?, &out).await,
        Cmd::Tenant(cmd) => govern::tenant(cmd, &global, &client()?, &out).await,
        Cmd::Throttle(args) => govern::throttle(args, &global, &client()?, &out).await,
        Cmd::Source(cmd) => govern::source(cmd, &global, &client()?, &out).await,
        Cmd::Maintenance(cmd) => govern::maintenance(cmd, &global, &client()?, &out).await,
        Cmd::Breaker(cmd) => govern::breaker(cmd, &global, &client()?, &out).await,
        Cmd::Governance { cmd: Some(cmd), .. } => {
            govern::history(cmd, &global, &client()?, &out).await
        }
        Cmd::Governance {
            archived,
            cmd: None,
        } => govern::show(archived, &global, &client()?, &out).await,
        Cmd::Retention(cmd) => govern::retention(cmd, &global, &client()?, &out).await,
    }
}

/// The client settings of the flags (and their `ROTA_*` variables), with what they leave
/// unset taken from the client config file (`--client-config`, else the default one), and
/// `--wait-secs` as how long calls keep retrying.
fn client_config(global: &Global) -> Result<ClientConfig> {
    let flags = ClientSettings {
        endpoints: (!global.endpoints.is_empty()).then(|| global.endpoints.clone()),
        tls_ca: global.tls_ca.clone(),
        tls_cert: global.tls_cert.clone(),
        tls_key: global.tls_key.clone(),
        token: global.token.as_ref().map(|t| t.0.clone()),
        token_file: global.token_file.clone(),
    };
    let file = global
        .client_config
        .clone()
        .or_else(ClientSettings::default_file);
    let file = ClientSettings::from_optional_file(file.as_deref())?;
    Ok(ClientConfig {
        retry_for: std::time::Duration::from_secs(global.wait_secs),
        ..flags.or(file).into_config()?
    })
}

/// A client of the endpoints and with the credentials `client_config` finds.
fn client(global: &Global) -> Result<Client> {
    Ok(Client::with_config(client_config(global)?)?)
}
