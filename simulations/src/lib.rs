//! rota's deterministic cluster simulations (issue: "Deterministic cluster simulations").
//!
//! Will hold turmoil clusters under faults, simulated producers and workers, and the
//! history checker.
