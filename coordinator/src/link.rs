//! The coordinator's end of the agent link: a QUIC server with mutual TLS.
//!
//! INTERFACE (to be implemented): `AgentHub` accepts agents whose client certificate is
//! signed by the cluster CA, does the Hello/Welcome handshake on the agent's control
//! stream, and reports everything that happens as `LinkEvent`s. Jobs go down a new
//! bidirectional stream each (`CoordinatorMsg::Job`), results come back on it.

use protocol::{FinalResult, Job, TestResult};

/// What the link reports to the scheduler. Sent on an unbounded channel: none may be lost.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// An agent passed the handshake.
    AgentUp { agent_id: String, languages: Vec<String>, slots: u32 },
    /// The agent's connection closed or its heartbeats stopped.
    AgentDown { agent_id: String },
    Heartbeat { agent_id: String, free_slots: u32 },
    TestResult { agent_id: String, result: TestResult },
    Final { agent_id: String, result: FinalResult },
    /// A dispatched job's stream failed before its `Final` arrived.
    JobLost { agent_id: String, submission_id: u64, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("agent {0} is not connected")]
    UnknownAgent(String),
}

/// Hands a job to a connected agent. Implemented by `AgentHub`; the scheduler only sees this.
pub trait Dispatch: Send + Sync + 'static {
    /// Starts sending `job` to `agent_id` and returns at once; the outcome arrives as
    /// `LinkEvent`s (`TestResult`s then `Final`, or `JobLost`).
    fn dispatch(&self, agent_id: &str, job: Job) -> Result<(), DispatchError>;
}
