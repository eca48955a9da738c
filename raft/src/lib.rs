//! rota's replication layer (issue: "Raft replication over RocksDB").
//!
//! Will hold the openraft type config, the RocksDB log store, the state-machine adapter
//! with snapshots, an in-memory store for simulations, and the Raft transport over gRPC.
