//! Performance analytics: what a benchmark's measurements say about an algorithm.
//! The fit is pure and deterministic so it can be tested on synthetic data and re-run on
//! stored measurements with the same answer.

pub mod benchmark;
pub mod complexity;
