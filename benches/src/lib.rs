//! rota's benchmarks. The criterion benches of the pure scheduler and of replication live
//! in `benches/`; this library holds the cluster load generator behind `rota bench`
//! (`load`, `capacity`) and the local cluster of `rota agent` processes it drives
//! (`cluster`), which `rota`'s end-to-end tests use too. A [`BenchError`] names the step
//! that stopped a run.

pub mod capacity;
pub mod cluster;
mod error;
pub mod load;

pub use error::BenchError;
