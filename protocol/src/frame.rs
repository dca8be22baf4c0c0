//! Length-prefixed frames: `u32` big-endian length, then an rkyv archive of that length.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame either side accepts. A job carries its tests inline, so this bounds the
/// test data of one job; larger payloads are refused before any byte is buffered.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the maximum of {MAX_FRAME_BYTES}")]
    TooLarge(usize),
    #[error("empty frame")]
    Empty,
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("frame failed validation: {0}")]
    Invalid(String),
    #[error("could not encode frame: {0}")]
    Encode(String),
    #[error("i/o error on the link: {0}")]
    Io(#[from] std::io::Error),
}

/// Serializes a message into an archive (without the length prefix).
pub fn encode<T>(value: &T) -> Result<AlignedVec, FrameError>
where
    T: for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    let bytes = rkyv::to_bytes::<rancor::Error>(value).map_err(|e| FrameError::Encode(e.to_string()))?;
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Validates an archive and deserializes it into an owned value. Never panics on any input.
pub fn decode<T>(bytes: &[u8]) -> Result<T, FrameError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
{
    if bytes.is_empty() {
        return Err(FrameError::Empty);
    }
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(bytes.len()));
    }
    // Bytes off the network have no alignment guarantee; the archive needs it.
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rancor::Error>(&aligned).map_err(|e| FrameError::Invalid(e.to_string()))
}

/// Writes one length-prefixed frame.
pub async fn write_frame<W, T>(w: &mut W, value: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    let bytes = encode(value)?;
    let len = u32::try_from(bytes.len()).map_err(|_| FrameError::TooLarge(bytes.len()))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame<R, T>(r: &mut R) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin,
    T: rkyv::Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
{
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(FrameError::Truncated) };
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = AlignedVec::<16>::with_capacity(len);
    buf.resize(len, 0);
    match r.read_exact(&mut buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Truncated),
        Err(e) => return Err(e.into()),
    }
    rkyv::from_bytes::<T, rancor::Error>(&buf).map(Some).map_err(|e| FrameError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::*;

    fn limits() -> Limits {
        Limits { cpu_ms: 1000, wall_ms: 3000, memory_bytes: 64 << 20, max_processes: 64, output_bytes: 1 << 20 }
    }

    fn agent_msgs() -> Vec<AgentMsg> {
        vec![
            AgentMsg::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                agent_id: "agent-1".into(),
                languages: vec!["c".into(), "python".into()],
                slots: 2,
                held: vec![5],
            }),
            AgentMsg::Heartbeat(Heartbeat { free_slots: 1, running: vec![7, 9] }),
            AgentMsg::TestResult(TestResult {
                submission_id: 7,
                index: 3,
                verdict: Verdict::TLE,
                limit: Some(LimitHit::Wall),
                cpu_time_us: 12,
                wall_time_us: 3_000_100,
                peak_memory_bytes: 1 << 20,
                exit_code: None,
                signal: Some(9),
                stdout: b"out".to_vec(),
                stderr: vec![],
                message: "wall time limit".into(),
                score: Some(0.5),
            }),
            AgentMsg::Final(FinalResult {
                submission_id: 7,
                verdict: Verdict::CE,
                compile_output: "main.c:1: error".into(),
                message: String::new(),
            }),
            AgentMsg::Error(ErrorMsg { code: ErrorCode::BadFrame, message: "nope".into() }),
        ]
    }

    fn coordinator_msgs() -> Vec<CoordinatorMsg> {
        vec![
            CoordinatorMsg::Welcome(Welcome {
                protocol_version: PROTOCOL_VERSION,
                coordinator_id: "c1".into(),
                heartbeat_interval_ms: 1000,
            }),
            CoordinatorMsg::Job(Job {
                submission_id: 1,
                language: "cpp".into(),
                source: b"int main(){}".to_vec(),
                tests: vec![
                    TestCase { input: b"1 2\n".to_vec(), expected_output: Some(b"3\n".to_vec()) },
                    TestCase { input: vec![], expected_output: None },
                ],
                limits: limits(),
                options: JobOptions {
                    extra_cpu_ms: 500,
                    stack_bytes: Some(8 << 20),
                    file_bytes: None,
                    compiler_args: vec!["-O3".into()],
                    run_args: vec!["a b".into()],
                    merge_stderr: true,
                    runs: 3,
                    checker: Checker::Program(CheckerProgram {
                        convention: CheckerConvention::Kattis,
                        language: "python".into(),
                        source: b"exit(42)".to_vec(),
                        args: vec!["float_tolerance".into(), "1e-6".into()],
                        limits: limits(),
                    }),
                    groups: vec![0, 1, 1],
                    lazy: true,
                    interactor: None,
                },
            }),
            CoordinatorMsg::Error(ErrorMsg { code: ErrorCode::VersionMismatch, message: "v2".into() }),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in agent_msgs() {
            let bytes = encode(&m).unwrap();
            assert_eq!(decode::<AgentMsg>(&bytes).unwrap(), m);
        }
        for m in coordinator_msgs() {
            let bytes = encode(&m).unwrap();
            assert_eq!(decode::<CoordinatorMsg>(&bytes).unwrap(), m);
        }
    }

    #[tokio::test]
    async fn frames_round_trip_over_a_stream() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let msgs = agent_msgs();
        let sent = msgs.clone();
        let writer = tokio::spawn(async move {
            for m in &sent {
                write_frame(&mut a, m).await.unwrap();
            }
        });
        for m in msgs {
            assert_eq!(read_frame::<_, AgentMsg>(&mut b).await.unwrap(), Some(m));
        }
        writer.await.unwrap();
        assert_eq!(read_frame::<_, AgentMsg>(&mut b).await.unwrap(), None);
    }

    #[tokio::test]
    async fn every_truncated_frame_is_an_error_not_a_panic() {
        for m in coordinator_msgs() {
            let bytes = encode(&m).unwrap();
            let mut framed = (bytes.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            for cut in 1..framed.len() {
                let mut r = &framed[..cut];
                let got = read_frame::<_, CoordinatorMsg>(&mut r).await;
                assert!(matches!(got, Err(FrameError::Truncated)), "cut at {cut}: {got:?}");
            }
            // A bare archive cut short may happen to hold a smaller valid archive (rkyv puts
            // the root last), which is why frames carry their length; it must never panic
            // nor decode to the whole message.
            for cut in 0..bytes.len() {
                if let Ok(v) = decode::<CoordinatorMsg>(&bytes[..cut]) {
                    assert_ne!(v, m, "cut at {cut}");
                }
            }
        }
    }

    #[tokio::test]
    async fn truncated_stream_is_reported() {
        let bytes = encode(&agent_msgs()[0]).unwrap();
        let mut framed = (bytes.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes[..bytes.len() / 2]);
        let mut r = &framed[..];
        assert!(matches!(read_frame::<_, AgentMsg>(&mut r).await, Err(FrameError::Truncated)));
        let mut r = &[0u8, 0][..];
        assert!(matches!(read_frame::<_, AgentMsg>(&mut r).await, Err(FrameError::Truncated)));
    }

    #[tokio::test]
    async fn oversized_frame_is_refused_before_reading_it() {
        let framed = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
        let mut r = &framed[..];
        assert!(matches!(read_frame::<_, AgentMsg>(&mut r).await, Err(FrameError::TooLarge(_))));
        assert!(matches!(decode::<AgentMsg>(&vec![0; MAX_FRAME_BYTES + 1]), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn garbage_never_panics() {
        // A deterministic xorshift stream stands in for hostile bytes.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 1..512usize {
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let _ = decode::<AgentMsg>(&buf);
            let _ = decode::<CoordinatorMsg>(&buf);
        }
        // Flipping bytes of a valid archive must be caught or decode to some value, never panic.
        let good = encode(&agent_msgs()[2]).unwrap();
        for i in 0..good.len() {
            let mut bad = good.to_vec();
            bad[i] ^= 0xff;
            let _ = decode::<AgentMsg>(&bad);
        }
        assert!(decode::<AgentMsg>(&[0xff; 64]).is_err());
    }
}
