//! rota's client: the generated `rota.v1` gRPC types, a [`Client`] that fails over between
//! the cluster's nodes by itself and answers every write once, and the [`Worker`] runtime
//! that leases jobs, keeps their leases alive and reports what its handlers return.

#![warn(missing_docs)]

mod client;
mod error;
mod settings;
pub mod trace;
mod worker;

/// Generated types and stubs of the public wire contract, `proto/rota/v1/*.proto`. Their
/// documentation is the `.proto` files' comments, which prost copies where there are any.
pub mod proto {
    #![allow(clippy::large_enum_variant, missing_docs)]
    tonic::include_proto!("rota.v1");

    /// The encoded `FileDescriptorSet` of `proto/rota/v1/*.proto`: every service and method.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rota_v1.bin"));

    /// A wire job status by the name the CLI, REST and `?status=` use (`dead_lettered`);
    /// none for `UNSPECIFIED` or a value this build does not know.
    pub fn job_status_name(status: i32) -> Option<&'static str> {
        match JobStatus::try_from(status).ok()? {
            JobStatus::Unspecified => None,
            JobStatus::Pending => Some("pending"),
            JobStatus::Ready => Some("ready"),
            JobStatus::Leased => Some("leased"),
            JobStatus::Succeeded => Some("succeeded"),
            JobStatus::Failed => Some("failed"),
            JobStatus::DeadLettered => Some("dead_lettered"),
            JobStatus::Canceled => Some("canceled"),
        }
    }
}

pub use client::{
    admin_service, job_service, tls_from_files, worker_service, Client, ClientConfig, Dial,
    MAX_MESSAGE_BYTES,
};
pub use error::{ClientError, ERROR_KIND_KEY, FORWARDED_KEY, LEADER_KEY};
pub use settings::{ClientSettings, CONFIG_VAR, DEFAULT_ENDPOINT};

/// TLS settings for `ClientConfig::tls`: the CA to trust, a client certificate.
pub mod tls {
    pub use tonic::transport::{Certificate, ClientTlsConfig, Identity};
}
pub use worker::{JobContext, Outcome, Worker, WorkerConfig, MAX_LEASE_WAIT_MS};
