//! rota's server and the `rota` binary (issue: "A real cluster end to end").
//!
//! Will hold the gRPC and HTTP APIs, forwarding to the leader, the tick loop, auth,
//! config, metrics, the dashboard and the CLI.
