//! The agent's end of the link: a QUIC client with its own certificate.
//!
//! INTERFACE (to be implemented): `run` connects, says Hello on a control stream, sends
//! heartbeats, accepts one bidirectional stream per job, hands the job to the
//! `JobRunner`, streams each `TestResult` as it comes and the `Final` last. It reconnects
//! with backoff when the coordinator goes away.

use std::future::Future;
use std::pin::Pin;

use protocol::{FinalResult, Job, TestResult};

/// Judges jobs. Implemented by the agent's judge; the link only sees this.
pub trait JobRunner: Send + Sync + 'static {
    /// Judges `job`, sending each finished test on `results` as soon as it is known, and
    /// returns the final result. Never panics on bad jobs: an unusable job is an IE result.
    fn run(
        &self,
        job: Job,
        results: tokio::sync::mpsc::Sender<TestResult>,
    ) -> Pin<Box<dyn Future<Output = FinalResult> + Send>>;
}
