//! Replication of the judge state machine with raft (raft-rs).
//!
//! `node` runs one raft node and applies committed entries; `log_store` makes its log and
//! hard state durable, through `writer`'s thread so that the node goes on meanwhile;
//! `snapshot` keeps snapshots of the state machine (taken off the raft thread), after
//! which the log is compacted. The scheduler proposes every `Command` through the node and acts on
//! it only once applied, so a single-node judge and a replicated one take the same path.

pub mod api;
pub mod log_store;
pub mod node;
pub mod snapshot;
pub mod transport;
pub mod writer;

pub use log_store::{LogError, LogStore, Recovery};
pub use node::{Apply, Node, NodeConfig, NodeError, NodeStatus, ProposeError, Role};
pub use snapshot::RaftStorage;
pub use transport::{Transport, TransportError};
