//! The rota node and the `rota` command line: the gRPC server that fronts the replicated
//! scheduler (forwarding to the leader, group commit, ticks), its configuration, and the
//! client subcommands operators use.

mod api;
mod bench;
pub mod cli;
mod commit;
pub mod config;
mod convert;
mod server;
mod status;

pub use commit::CommitSettings;
pub use convert::Limits;
pub use server::{
    system_clock, Clock, NodeSettings, NodeStorage, RunningNode, DEFAULT_MAX_PAYLOAD_BYTES,
};
