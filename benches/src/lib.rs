//! rota's benchmarks. The criterion benches of the pure scheduler live in `benches/`;
//! the cluster load generator arrives with the issue "Speed: group commit, a cluster load
//! generator".
