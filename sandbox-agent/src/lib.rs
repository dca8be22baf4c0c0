//! The sandbox agent: judges jobs from the coordinator in fresh sandboxes.

pub mod check;
pub mod checker;
pub mod cli;
pub mod function;
pub mod judge;
pub mod link;
pub mod metrics;
pub mod sandbox;
