//! The log writer: a thread that owns the log file and makes the raft node's writes
//! durable while the node goes on (raft-rs's asynchronous Ready handling).
//!
//! Why: an fsync takes from a fraction of a millisecond to tens of milliseconds on a
//! shared disk. Done on the raft thread, every message that arrives meanwhile (a
//! follower's acknowledgment, a new proposal) waits for it, so the leader commits late
//! even when two followers have the entry on disk already. Here the raft thread stages a
//! Ready's entries in memory (raft reads them from there), queues them, and carries on;
//! the writer writes whatever has queued up, fsyncs once for all of it (group commit),
//! and reports the last Ready number it made durable. Only then does raft count the
//! entries as persisted here and may the messages that promise they are (a follower's
//! append response, a vote) go out.
//!
//! Operations are carried out in the order they were queued, so the file goes through
//! the same states as the memory did.

use std::sync::mpsc::{Receiver, Sender};

use raft::prelude::{Entry, HardState, Snapshot};
use tracing::{error, info};

use super::log_store::{LogError, LogFile, Roll};

/// A log sync this slow is logged: twice the accept latency budget (p99 10 ms) in one sync.
const SLOW_SYNC: std::time::Duration = std::time::Duration::from_millis(20);

pub enum WriteOp {
    /// Ready `number`'s entries and hard state; fsync'd if `sync` (raft's `must_sync`:
    /// anything but a commit index moving on).
    Append { number: u64, entries: Vec<Entry>, hard_state: Option<HardState>, sync: bool },
    /// Ready `number`'s snapshot from the leader: written, then the log starts afresh
    /// after it in a new segment.
    Install { number: u64, snapshot: Snapshot, roll: Roll },
    /// The log goes on in a new segment after a snapshot taken here (durable already), and
    /// the segments it covers go.
    Compact(Roll),
}

/// What the writer reports back to the raft thread.
pub enum Written {
    /// Every Ready up to this number is durable.
    Durable(u64),
    /// The log could not be written: the node must stop acknowledging.
    Failed(LogError),
}

/// Runs until `ops` is closed (its sender dropped), then returns the file.
pub fn run(mut file: LogFile, ops: Receiver<WriteOp>, report: impl Fn(Written)) -> LogFile {
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        batch.extend(ops.try_iter());
        match write_batch(&mut file, batch) {
            Ok(Some(number)) => report(Written::Durable(number)),
            Ok(None) => {}
            Err(err) => {
                error!(%err, "the raft log cannot be written");
                report(Written::Failed(err));
                // Nothing written after a failure could be trusted to follow what failed.
                return file;
            }
        }
    }
    file
}

/// Writes `batch` in order with at most one fsync of appended records; answers the last
/// Ready number it holds.
fn write_batch(file: &mut LogFile, batch: Vec<WriteOp>) -> Result<Option<u64>, LogError> {
    let mut last = None;
    let mut unsynced = false;
    for op in batch {
        match op {
            WriteOp::Append { number, entries, hard_state, sync } => {
                file.append(&entries, hard_state.as_ref())?;
                unsynced |= sync;
                last = Some(number);
            }
            // A new segment: what came before it is synced as it is left. An installed
            // snapshot's start must be durable before its Ready is reported; a segment
            // header after our own snapshot is synced with what follows.
            WriteOp::Install { number, snapshot, roll } => {
                file.install(&snapshot, &roll)?;
                unsynced = true;
                last = Some(number);
            }
            WriteOp::Compact(roll) => {
                let started = std::time::Instant::now();
                file.roll(&roll)?;
                unsynced = false;
                info!(duration_ms = started.elapsed().as_secs_f64() * 1e3, "the log goes on in a new segment");
            }
        }
    }
    if unsynced {
        let started = std::time::Instant::now();
        file.sync()?;
        // Every acknowledgment waits for a quorum's syncs: a slow disk is worth knowing.
        let took = started.elapsed();
        if took >= SLOW_SYNC {
            info!(duration_ms = took.as_secs_f64() * 1e3, "slow raft log sync");
        }
    }
    Ok(last)
}

/// The queue to a writer thread, or (a log in memory only) nothing to wait for.
pub enum Persister {
    Thread { ops: Option<Sender<WriteOp>>, thread: Option<std::thread::JoinHandle<LogFile>> },
    Memory,
}

impl Persister {
    /// Starts the writer of `file`; `report` is called on the writer thread.
    pub fn start(file: Option<LogFile>, report: impl Fn(Written) + Send + 'static) -> std::io::Result<Persister> {
        let Some(file) = file else { return Ok(Persister::Memory) };
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("raft-log".into()).spawn(move || run(file, rx, report))?;
        Ok(Persister::Thread { ops: Some(tx), thread: Some(thread) })
    }

    /// Queues `op`; false if it is durable at once (in memory) or cannot be queued.
    pub fn queue(&self, op: WriteOp) -> Result<bool, LogError> {
        match self {
            Persister::Memory => Ok(false),
            Persister::Thread { ops, .. } => match ops {
                Some(ops) if ops.send(op).is_ok() => Ok(true),
                _ => Err(LogError::WriterGone),
            },
        }
    }

    /// Waits until everything queued is written, and closes the file.
    pub fn stop(&mut self) {
        if let Persister::Thread { ops, thread } = self {
            ops.take();
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        self.stop();
    }
}
