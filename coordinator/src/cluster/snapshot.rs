//! Snapshots of the state machine, and what raft reads through them.
//!
//! A snapshot is the state machine's bytes (rkyv of `JudgeState`, made by `Apply`) plus
//! raft's metadata: the index and term it covers and the membership (`ConfState`) at that
//! index. Taking one lets the log drop everything up to its index (`LogStore::compact`);
//! a follower that needs entries the leader has dropped is sent the snapshot instead
//! (`MsgSnapshot`) and installs it (`LogStore::install`).
//!
//! On disk, `<raft dir>/snapshot`:
//! `[magic "JSNAP001"][crc32 of the rest: u32 LE][metadata length: u32 LE]`
//! `[protobuf SnapshotMetadata][state machine bytes]`.
//! It is written to `snapshot.tmp`, fsync'd, renamed over `snapshot`, and the directory
//! fsync'd: a crash leaves either the previous snapshot or the new one, never a torn one.
//! A leftover `snapshot.tmp` (a write cut short) is deleted at start. The log is rewritten
//! only after the snapshot is durable, so the log never starts past the snapshot.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Snapshot, SnapshotMetadata};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use super::log_store::LogError;

const MAGIC: &[u8; 8] = b"JSNAP001";
pub const FILE: &str = "snapshot";
const TMP: &str = "snapshot.tmp";

fn encode(snapshot: &Snapshot) -> Result<Vec<u8>, LogError> {
    let meta = snapshot.get_metadata().write_to_bytes()?;
    let mut rest = Vec::with_capacity(4 + meta.len() + snapshot.data.len());
    rest.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    rest.extend_from_slice(&meta);
    rest.extend_from_slice(&snapshot.data);
    let mut out = Vec::with_capacity(12 + rest.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&crc32fast::hash(&rest).to_le_bytes());
    out.extend_from_slice(&rest);
    Ok(out)
}

fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
    let header = bytes.get(..12).ok_or("shorter than its header")?;
    if &header[..8] != MAGIC {
        return Err("not a snapshot (bad magic)".into());
    }
    let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    let rest = &bytes[12..];
    if crc32fast::hash(rest) != crc {
        return Err("checksum mismatch".into());
    }
    let (len, rest) = rest.split_first_chunk::<4>().ok_or("no metadata length")?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err("metadata runs past the end".into());
    }
    let meta = SnapshotMetadata::parse_from_bytes(&rest[..len]).map_err(|e| e.to_string())?;
    let mut snapshot = Snapshot::default();
    snapshot.set_metadata(meta);
    snapshot.data = rest[len..].to_vec().into();
    Ok(snapshot)
}

/// Makes `snapshot` the durable one in `dir` (temp file, fsync, rename, directory fsync).
pub fn write(dir: &Path, snapshot: &Snapshot) -> Result<(), LogError> {
    let tmp = dir.join(TMP);
    let io = |source| LogError::Io { path: tmp.clone(), source };
    let bytes = encode(snapshot)?;
    let mut file = File::create(&tmp).map_err(io)?;
    // Written back a chunk at a time as it goes, rather than all at the fsync: megabytes
    // flushed at once queue every log fsync on the disk behind them (and on ext4 a log
    // fsync's journal commit can wait for this file's data), which every commit waits for.
    let mut at = 0;
    for chunk in bytes.chunks(WRITEBACK_CHUNK) {
        file.write_all(chunk).map_err(io)?;
        write_back(&file, at, chunk.len()).map_err(io)?;
        at += chunk.len();
    }
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, dir.join(FILE)).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// See `write`: small enough that a log fsync queued behind one waits well under a
/// millisecond on an SSD. Also the unit in which `Spares` zero-fills a segment.
pub(super) const WRITEBACK_CHUNK: usize = 256 << 10;

/// Writes `len` bytes of `file` from `offset` back to the disk and waits for them.
pub(super) fn write_back(file: &File, offset: usize, len: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: the descriptor is open for as long as `file` is borrowed, and
    // sync_file_range only starts and waits for writeback of that range: it touches no
    // memory of ours.
    let done = unsafe { libc::sync_file_range(file.as_raw_fd(), offset as libc::off64_t, len as libc::off64_t, flags) };
    if done == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// The snapshot file of one raft directory, written by whichever thread takes a snapshot
/// (in the background) or installs one from the leader (the log writer). One at a time,
/// and a snapshot taken here that finishes after a newer one was installed is not
/// written over it.
#[derive(Clone)]
pub struct SnapshotFile {
    dir: PathBuf,
    /// The index of the durable snapshot (0: none).
    durable: Arc<Mutex<u64>>,
}

impl SnapshotFile {
    pub fn new(dir: &Path, durable: u64) -> SnapshotFile {
        SnapshotFile { dir: dir.to_owned(), durable: Arc::new(Mutex::new(durable)) }
    }

    /// Makes `snapshot` the durable one.
    pub fn write(&self, snapshot: &Snapshot) -> Result<(), LogError> {
        let mut durable = self.durable.lock().unwrap_or_else(PoisonError::into_inner);
        write(&self.dir, snapshot)?;
        *durable = snapshot.get_metadata().index;
        Ok(())
    }

    /// Makes `snapshot` the durable one unless a newer one is; false if so.
    pub fn write_if_newer(&self, snapshot: &Snapshot) -> Result<bool, LogError> {
        let mut durable = self.durable.lock().unwrap_or_else(PoisonError::into_inner);
        if *durable >= snapshot.get_metadata().index {
            return Ok(false);
        }
        write(&self.dir, snapshot)?;
        *durable = snapshot.get_metadata().index;
        Ok(true)
    }
}

/// The durable snapshot of `dir`, if any. A torn temp file is a write that never
/// finished (the previous snapshot stands) and is deleted; a damaged `snapshot` itself
/// is not a torn write, and the node refuses to start rather than lose entries.
pub fn read(dir: &Path) -> Result<Option<Snapshot>, LogError> {
    let tmp = dir.join(TMP);
    if tmp.exists() {
        tracing::warn!(path = %tmp.display(), "removing an unfinished snapshot write");
        std::fs::remove_file(&tmp).map_err(|source| LogError::Io { path: tmp.clone(), source })?;
    }
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LogError::Io { path, source }),
    };
    decode(&bytes).map(Some).map_err(|what| LogError::Corrupt { path, offset: 0, what })
}

/// What raft reads: the log in memory, and for `snapshot()` the latest snapshot with its
/// state machine bytes (`MemStorage` would build one without them).
#[derive(Clone)]
pub struct RaftStorage {
    pub(super) mem: MemStorage,
    pub(super) latest: Arc<RwLock<Snapshot>>,
}

impl RaftStorage {
    pub(super) fn new(mem: MemStorage) -> RaftStorage {
        RaftStorage { mem, latest: Arc::new(RwLock::new(Snapshot::default())) }
    }

    /// The latest snapshot taken or installed (empty before the first).
    pub fn latest(&self) -> Snapshot {
        self.latest.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(super) fn set_latest(&self, snapshot: Snapshot) {
        *self.latest.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
    }

    /// Replaces the log by `snapshot`'s metadata followed by `tail` (entries after the
    /// snapshot's index), keeping `hard_state` with its commit at least the snapshot's.
    pub(super) fn reset(&self, snapshot: &Snapshot, tail: &[Entry], mut hard_state: HardState) -> Result<(), LogError> {
        let meta = snapshot.get_metadata();
        let mut core = self.mem.wl();
        let mut marker = Snapshot::default();
        marker.set_metadata(meta.clone());
        core.apply_snapshot(marker)?;
        if !tail.is_empty() {
            core.append(tail)?;
        }
        hard_state.term = hard_state.term.max(meta.term);
        let last = meta.index + tail.len() as u64;
        hard_state.commit = hard_state.commit.max(meta.index).min(last);
        core.set_hardstate(hard_state);
        Ok(())
    }
}

impl Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(&self, low: u64, high: u64, max_size: impl Into<Option<u64>>, context: GetEntriesContext) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let latest = self.latest();
        // Raft asks only once it has dropped entries, which happens only after a snapshot;
        // one older than asked is taken again after more entries are applied.
        if latest.get_metadata().index < request_index || latest.get_metadata().index == 0 {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(latest)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn snapshot(index: u64, data: &[u8]) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = 2;
        s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        s.data = data.to_vec().into();
        s
    }

    #[test]
    fn a_snapshot_survives_a_round_trip_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_none());
        write(dir.path(), &snapshot(7, b"state")).unwrap();
        let back = read(dir.path()).unwrap().unwrap();
        assert_eq!((back.get_metadata().index, back.get_metadata().term), (7, 2));
        assert_eq!(back.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
        assert_eq!(&back.data[..], b"state");
    }

    #[test]
    fn a_torn_snapshot_write_leaves_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &snapshot(7, b"old state")).unwrap();
        let full = encode(&snapshot(9, b"new state")).unwrap();
        // Cut short at every length, as a crash during the write would leave it.
        for cut in 0..full.len() {
            std::fs::write(dir.path().join(TMP), &full[..cut]).unwrap();
            let back = read(dir.path()).unwrap().unwrap();
            assert_eq!((back.get_metadata().index, &back.data[..]), (7, &b"old state"[..]), "cut at {cut}");
            assert!(!dir.path().join(TMP).exists());
        }
    }

    #[test]
    fn a_damaged_snapshot_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &snapshot(7, b"state")).unwrap();
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(read(dir.path()), Err(LogError::Corrupt { .. })));
    }
}
