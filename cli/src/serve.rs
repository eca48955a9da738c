//! The commands that run a node: `rota dev` (a one-node cluster, no setup) and `rota agent`
//! (a cluster member), each serving until SIGTERM or Ctrl-C.

use crate::args::DevArgs;
use crate::config::{self, AgentArgs};
use anyhow::{Context, Result};
use rota_node::{NodeSettings, RunningNode};

/// `rota dev`: founds a one-node cluster on first start and serves it.
pub async fn dev(args: DevArgs) -> Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(config::default_dev_dir);
    let mut settings = NodeSettings::new(1, args.listen, data_dir.clone());
    settings.job_log = args.job_log;
    settings.audit_key = Some(std::sync::Arc::new(dev_audit_key(
        args.audit_key.as_deref(),
        &data_dir,
    )?));
    settings.http_listen = Some(match args.http_listen {
        Some(addr) => addr,
        None => config::next_port(args.listen, 2, "http-listen")?,
    });
    let node = RunningNode::start(settings)
        .await
        .with_context(|| format!("starting the dev node with data in {}", data_dir.display()))?;
    let created = node.initialize_alone().await?;
    println!("rota dev: listening on {} (gRPC)", node.addr());
    if let Some(http) = node.http_addr() {
        println!("rota dev: HTTP on http://{http} (REST: /api/jobs, /api/openapi.json)");
    }
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

/// `rota agent`: one member of a cluster, configured by flags, environment and file.
pub async fn agent(args: AgentArgs) -> Result<()> {
    let settings = args.resolve()?;
    let data_dir = settings
        .data_dir()
        .map_or_else(|| "memory".to_owned(), |dir| dir.display().to_string());
    let id = settings.id;
    let secure = settings.tls.is_some();
    let node = RunningNode::start(settings)
        .await
        .with_context(|| format!("starting node {id} with data in {data_dir}"))?;
    let peer = node
        .peer_addr()
        .map_or_else(|| "none".to_owned(), |addr| addr.to_string());
    let http = node
        .http_addr()
        .map_or_else(|| "none".to_owned(), |addr| addr.to_string());
    println!(
        "rota agent {id}: clients on {} (gRPC) and {http} (HTTP), peers on {peer}, data in {data_dir}",
        node.addr(),
    );
    if secure {
        println!("rota agent {id}: peers: mutual TLS, node certificates of the cluster CA only; clients: TLS, and a bearer token or a client certificate of the CA on every call");
    } else {
        let warning = format!(
            "rota agent {id}: INSECURE (--insecure): no TLS; anyone who reaches {}, {http} or {peer} is a peer and an administrator",
            node.addr()
        );
        println!("{warning}");
        eprintln!("warning: {warning}");
    }
    serve_until_signal(node).await
}

/// Longest a stopping leader spends handing leadership away.
const HANDOFF_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves until SIGTERM or Ctrl-C, then shuts down gracefully.
async fn serve_until_signal(node: RunningNode) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    // A leader hands leadership to a caught-up voter first, so the cluster does not wait an
    // election out; then calls in progress finish and the node stops.
    match node.hand_off(HANDOFF_TIMEOUT).await {
        Ok(Some(to)) => println!("rota: handed leadership to node {to}"),
        Ok(None) => {}
        Err(e) => eprintln!("rota: could not hand leadership over ({e}); stopping anyway"),
    }
    println!("rota: shutting down");
    node.shutdown().await?;
    println!("rota: stopped");
    Ok(())
}

/// The dev node's audit key: the one given, else `audit.key` in its data directory (made,
/// with `audit.pub` beside it, on first start).
fn dev_audit_key(
    given: Option<&std::path::Path>,
    data_dir: &std::path::Path,
) -> Result<ed25519_dalek::SigningKey> {
    use rota_node::audit::format;
    if let Some(path) = given {
        return Ok(config::read_audit_key(path)?);
    }
    let path = data_dir.join("audit.key");
    if path.exists() {
        return Ok(config::read_audit_key(&path)?);
    }
    let key = format::generate().context("drawing an audit key")?;
    std::fs::create_dir_all(data_dir).with_context(|| format!("making {}", data_dir.display()))?;
    std::fs::write(&path, format::hex_line(&key.to_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    let public = data_dir.join("audit.pub");
    std::fs::write(&public, format::hex_line(key.verifying_key().as_bytes()))
        .with_context(|| format!("writing {}", public.display()))?;
    Ok(key)
}
