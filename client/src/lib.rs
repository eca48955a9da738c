//! rota's client (issue: "A real cluster end to end").
//!
//! Will hold the gRPC types generated from `proto/`, a typed client that finds the leader
//! by itself, and the worker runtime (lease loop, heartbeats, completion).
