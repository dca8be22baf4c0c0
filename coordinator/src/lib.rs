//! The coordinator: HTTP API, judge state machine, scheduler, and the agents' QUIC link.

pub mod analytics;
pub mod api;
pub mod contest;
pub mod judge;
pub mod link;
pub mod metrics;
pub mod runner;
pub mod scheduler;
pub mod store;
pub mod tls;
pub mod ws;
