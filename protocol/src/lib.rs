//! Wire types of the agent <-> coordinator link and their framing.
//!
//! Every message is an rkyv archive prefixed by its length (u32, big endian). Received
//! frames are validated with rkyv's checked access before anything reads them, and then
//! deserialized into owned values, so the rest of the code never sees archived data.
//! bytecheck validates structure only: meaning (sizes, counts) is checked by the receiver.

mod frame;
mod messages;

pub use frame::{FrameError, MAX_FRAME_BYTES, decode, encode, read_frame, write_frame};
pub use messages::*;

/// Bumped on every incompatible change of the types below; the handshake carries it.
/// 2: function-style jobs (`RunFunction`, `Cancel`, `Step`, `Return`).
/// 3: optional expected output and `JobOptions` (the Judge0-compatible API), with 2.
/// 4: checkers, test groups, lazy judging, interactors (`JobOptions`), test scores.
/// 5: benchmark measurements of function calls (`FunctionSpec::repetitions`,
///    `ReturnValue::call_cpu_ns`), with 4.
/// 6: jobs outlive a lost connection (`Hello::held`; their results re-sent on the control
///    stream of the next one), with 5.
/// 7: input generator programs of benchmarks (`FunctionSpec::generator`), with 6.
pub const PROTOCOL_VERSION: u32 = 7;

/// ALPN protocol id of the agent link, so a stray TLS client of another kind is refused.
pub const ALPN: &[u8] = b"judge-agent/1";
