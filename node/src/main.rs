//! `rota`: runs a node (`rota dev`, `rota agent`) or talks to a cluster (everything else).

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROTA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,openraft=error")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = rota_node::cli::Cli::parse();
    match rota_node::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
