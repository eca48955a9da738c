//! An example worker: handles `email` jobs until Ctrl-C, then finishes what it holds.
//!
//!     rota dev &                                   # a one-node cluster on 127.0.0.1:7070
//!     rota job submit --tenant acme --type email --payload "hello"
//!     cargo run -p rota-client --example worker   # ROTA_ENDPOINTS=a:1,b:2 for a cluster
//!
//! Against a cluster with TLS: ROTA_TLS_CA=certs/ca.crt and ROTA_TOKEN=rota_… (a token with
//! orchestrator:lease), or ROTA_TLS_CERT and ROTA_TLS_KEY for a client certificate.

use rota_client::{Client, ClientConfig, Outcome, Worker, WorkerConfig};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let config = ClientConfig::from_env()?;
    let endpoints = config.endpoints.join(",");
    let client = Client::with_config(config)?;
    let config = WorkerConfig {
        concurrency: 4,
        ..WorkerConfig::new(format!("example-worker-{}", std::process::id()))
    };
    let worker = Worker::new(client, config).handle("email", |ctx| async move {
        let text = String::from_utf8_lossy(&ctx.job.payload).into_owned();
        println!(
            "job {} attempt {}: sending {text:?}",
            ctx.job.job_id, ctx.job.attempt
        );
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = ctx.canceled() => return Outcome::GaveUp { reason: "canceled".to_owned() },
        }
        if text.is_empty() {
            return Outcome::fatal("an email needs a body");
        }
        Outcome::success()
    });
    println!("worker: leasing email jobs from {endpoints}; Ctrl-C stops");
    worker
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!("worker: stopped");
    Ok(())
}
