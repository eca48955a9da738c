//! The rota server: the gRPC services that front the replicated scheduler (forwarding to
//! the leader, group commit, the tick loop, health), as a library. The `rota` binary
//! (`cli/`) and the simulations start it through `RunningNode`.

mod api;
pub mod audit;
pub mod auth;
mod clock;
mod commit;
mod convert;
mod http;
pub mod observe;
mod server;
mod status;
mod tick;
pub mod tls;

pub use clock::{system_clock, Clock};
pub use commit::{CommitSettings, DEFAULT_MAX_ENTRY_BYTES};
pub use convert::{Limits, DEFAULT_MAX_PAGE_BYTES, DEFAULT_MAX_PAYLOAD_BYTES};
pub use observe::{IncidentSettings, JobLog, Webhook};
pub use server::{NodeSettings, RunningNode};
