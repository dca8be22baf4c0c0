//! The raft log and hard state on disk: append-only segment files of checksummed
//! records, fsync'd before raft is told they are persisted.
//!
//! Record: `[len: u32 LE][crc32 of kind+payload: u32 LE][kind: u8][payload: len bytes]`.
//! Kinds: a batch of entries (each `[u32 LE length][protobuf Entry]`), a hard state
//! (protobuf `HardState`), a start (protobuf `SnapshotMetadata`: the log begins afresh
//! after that snapshot's index), or a segment header (protobuf `SnapshotMetadata` with
//! only index and term: the entries before this segment end there). Replaying the
//! segments in order rebuilds the in-memory `MemStorage` raft reads from: a batch that
//! starts inside the existing log replaces the suffix from there on, exactly as raft
//! asked when it wrote it.
//!
//! Segments are `raft-<seq>.log`, oldest first; only the newest is appended to. A
//! snapshot (see `snapshot.rs`) does not rewrite anything: the writer starts a new
//! segment, headed by where the log stands and the hard state, and deletes the segments
//! whose entries the durable snapshot covers (segment k's entries all precede segment
//! k+1's header). So compaction costs the writer a directory fsync, not a copy of the
//! log. The oldest remaining segment's header is where the replayed log begins. After an
//! installed snapshot (a follower that fell behind) the new segment begins with a start
//! instead, which empties the log whatever history came before; at open, entries
//! before the snapshot are kept only if the log agrees with the snapshot's term at its
//! index (raft's log matching).
//!
//! Segments are written over zeros where they can be: the snapshot thread prepares the
//! next one (zero-filled to about the size the last one reached, fsync'd) and the writer
//! renames it into place when it rolls. Writing over allocated blocks changes no
//! metadata, so the fsync after an append flushes only data and does not wait for a
//! filesystem journal commit (on ext4 such a commit can wait for other files' data, e.g.
//! a snapshot's, and measured here it took an append's fsync p99 from 0.3 to 1.4–3.5 ms).
//! An all-zero record header is where a segment's records end.
//!
//! A crash can leave the newest segment's last record torn (short, or with a bad checksum
//! that runs to the end of the file). That record was never acknowledged (the fsync did
//! not return), so it is cut off and the node starts from the record before. A bad record
//! *followed by more data*, or anywhere in an older segment (synced whole before the
//! next began), is not a torn write but damage, and the node refuses to start rather
//! than silently drop entries it may have acknowledged.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::Storage as _;
use raft::storage::MemStorage;

use super::snapshot::{self, RaftStorage, SnapshotFile};

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_START: u8 = 3;
const KIND_SEGMENT: u8 = 4;
/// The single log file of earlier versions: read as the first segment.
const LEGACY_LOG: &str = "raft.log";
/// Left by earlier versions' compaction cut short; the old log was still whole.
const LEGACY_TMP: &str = "raft.log.tmp";
/// Zero-filled segments being prepared, or prepared and not used yet, are
/// `raft-next-<n>.tmp`: a name of its own each, so that one being prepared is never one
/// the writer is renaming into place.
const SPARE_PREFIX: &str = "raft-next-";
/// Sizes of a prepared segment: about what the last segment reached, within these.
const SPARE_MIN: u64 = 1 << 20;
const SPARE_MAX: u64 = 64 << 20;
const HEADER: usize = 9;
/// Larger records are not written by us; a length beyond this in the file is damage.
const MAX_RECORD: usize = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("raft log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("raft log {path} is damaged at byte {offset}: {what}")]
    Corrupt { path: PathBuf, offset: u64, what: String },
    #[error("raft log: {0}")]
    Raft(#[from] raft::Error),
    #[error("raft log: encoding: {0}")]
    Encode(#[from] protobuf::ProtobufError),
    #[error("raft log: the writer thread has stopped")]
    WriterGone,
}

/// The node's storage: what raft reads (`MemStorage`, shared) and, unless in memory only,
/// the file that makes it durable.
pub struct LogStore {
    storage: RaftStorage,
    file: Option<LogFile>,
}

/// The file half of a `LogStore`: what the raft node's writer thread owns (see
/// `writer.rs`), while the raft thread keeps the in-memory half. Every change reaches the
/// memory first and the file after, in the same order, so the file always holds a state
/// the memory went through.
pub struct LogFile {
    dir: PathBuf,
    /// The newest segment, written at `len`.
    file: File,
    /// Where the newest segment's records end (its file can be longer: zeros).
    len: u64,
    /// Every segment, oldest first; the last is `file`.
    segments: Vec<Segment>,
    snapshots: SnapshotFile,
    spares: Spares,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    /// The index its header says the entries before it end at (0: no header, the log's
    /// first segment).
    after: u64,
}

/// What `open` found in the file, for the start-up log line and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    pub records: usize,
    /// Bytes of a torn last record that were cut off.
    pub truncated_bytes: u64,
    /// Index of the snapshot the log starts from (0: none).
    pub snapshot_index: u64,
}

impl LogStore {
    /// A log that lives in memory only (tests, and judges started without a data dir).
    pub fn in_memory(voters: &[u64]) -> LogStore {
        let mem = MemStorage::new_with_conf_state(ConfState::from((voters.to_vec(), vec![])));
        LogStore { storage: RaftStorage::new(mem), file: None }
    }

    /// Opens (or creates) the log in `dir`, loads `dir/snapshot` if there is one, and
    /// replays the segments after it. `voters` is the membership when there is no snapshot.
    pub fn open(dir: &Path, voters: &[u64]) -> Result<(LogStore, Recovery), LogError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LogError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let legacy_tmp = dir.join(LEGACY_TMP);
        if legacy_tmp.exists() {
            std::fs::remove_file(&legacy_tmp).map_err(io(&legacy_tmp))?;
        }
        let legacy = dir.join(LEGACY_LOG);
        if legacy.exists() {
            let first = segment_path(dir, 0);
            std::fs::rename(&legacy, &first).map_err(io(&first))?;
        }
        let snap = snapshot::read(dir)?;
        let (mut segments, spares) = scan(dir)?;
        for spare in spares {
            std::fs::remove_file(&spare).map_err(io(&spare))?;
        }
        let mem = MemStorage::new_with_conf_state(ConfState::from((voters.to_vec(), vec![])));
        let mut replay = Replay::default();
        let mut truncated_bytes = 0;
        let count = segments.len();
        // Where each segment's records end.
        let mut ends = Vec::with_capacity(count);
        for (k, segment) in segments.iter_mut().enumerate() {
            let bytes = std::fs::read(&segment.path).map_err(io(&segment.path))?;
            let good = replay.segment(&segment.path, &bytes, &mem, k == 0, k + 1 == count)?;
            segment.after = replay.header;
            ends.push(good);
            let rest = &bytes[good as usize..];
            if rest.iter().any(|&b| b != 0) {
                // Only the newest segment can end torn (`Replay::segment` refuses others).
                truncated_bytes = rest.len() as u64;
                tracing::warn!(path = %segment.path.display(), truncated_bytes, "cutting off a torn last record");
            }
        }
        if segments.len() > 1 && ends.last() == Some(&0) {
            // Rolled into, and nothing, not even its header, made durable: the segment
            // before is still whole and goes on.
            if let Some(empty) = segments.pop() {
                std::fs::remove_file(&empty.path).map_err(io(&empty.path))?;
            }
            ends.pop();
        }
        let end = ends.last().copied().unwrap_or(0);
        // Whatever lies past the records (zeros of a prepared segment, a torn record) is
        // cut off: the writer goes on after the last record, and a later record must not
        // be followed by remnants of an earlier one.
        if let Some(last) = segments.last() {
            let file = OpenOptions::new().write(true).open(&last.path).map_err(io(&last.path))?;
            if file.metadata().map_err(io(&last.path))?.len() > end {
                file.set_len(end).map_err(io(&last.path))?;
                file.sync_all().map_err(io(&last.path))?;
            }
        }
        let start = replay.start;
        let corrupt = |what: String| LogError::Corrupt { path: dir.to_owned(), offset: 0, what };
        let (storage, snapshot_index) = match snap {
            None if start > 0 => return Err(corrupt(format!("the log starts after index {start}, but there is no snapshot"))),
            None => (RaftStorage::new(mem), 0),
            Some(snap) => {
                let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
                if start > index {
                    return Err(corrupt(format!("the log starts after index {start}, past the snapshot at {index}")));
                }
                let last = mem.last_index()?;
                // Log matching: the same term at the snapshot's index means the same history.
                let tail = if last > index && mem.term(index).ok() == Some(term) {
                    mem.entries(index + 1, last + 1, None, raft::GetEntriesContext::empty(false))?
                } else {
                    Vec::new()
                };
                let hard_state = mem.initial_state()?.hard_state;
                let storage = RaftStorage::new(MemStorage::new());
                storage.reset(&snap, &tail, hard_state)?;
                storage.set_latest(snap);
                (storage, index)
            }
        };
        if segments.is_empty() {
            let path = segment_path(dir, 1);
            File::create(&path).map_err(io(&path))?;
            segments.push(Segment { seq: 1, path, after: 0 });
        }
        // A new segment's directory entry must be durable too, or the whole log can vanish.
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
        let path = segments.last().map(|s| s.path.clone()).unwrap_or_default();
        let file = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
        let len = file.metadata().map_err(io(&path))?.len();
        let snapshots = SnapshotFile::new(dir, snapshot_index);
        let spares =
            Spares { dir: dir.to_owned(), hint: Arc::new(AtomicU64::new(len.max(SPARE_MIN))), made: Arc::default(), retired: Arc::default() };
        let recovery = Recovery { records: replay.records, truncated_bytes, snapshot_index };
        Ok((LogStore { storage, file: Some(LogFile { dir: dir.to_owned(), file, len, segments, snapshots, spares }) }, recovery))
    }

    /// What raft reads; clones share the same log.
    pub fn storage(&self) -> RaftStorage {
        self.storage.clone()
    }

    /// The latest snapshot (empty if none): the state machine starts from it.
    pub fn snapshot(&self) -> Snapshot {
        self.storage.latest()
    }

    /// The in-memory half (what raft reads) and the file half (none in memory only).
    pub fn split(self) -> (RaftStorage, Option<LogFile>) {
        (self.storage, self.file)
    }

    /// Makes `snapshot` (of this node's applied state) durable and drops the entries it
    /// covers, from memory and from the file.
    pub fn compact(&mut self, snapshot: Snapshot) -> Result<(), LogError> {
        if let Some(file) = &self.file {
            file.snapshots.write(&snapshot)?;
        }
        let roll = self.storage.stage_compact(snapshot)?;
        if let Some(file) = &mut self.file {
            file.roll(&roll)?;
            file.sync()?;
            file.spares.delete_retired().map_err(|source| LogError::Io { path: file.dir.clone(), source })?;
        }
        Ok(())
    }

    /// Replaces the whole log by `snapshot`, received from the leader.
    pub fn install(&mut self, snapshot: Snapshot) -> Result<(), LogError> {
        let roll = self.storage.stage_install(snapshot.clone())?;
        if let Some(file) = &mut self.file {
            file.install(&snapshot, &roll)?;
            file.sync()?;
        }
        Ok(())
    }

    /// Makes `entries` and `hard_state` durable (one write, one fsync), then visible to raft.
    pub fn persist(&mut self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<(), LogError> {
        if let Some(file) = &mut self.file {
            file.append(entries, hard_state)?;
            file.sync()?;
        }
        self.storage.stage(entries, hard_state)
    }

    /// Records a commit index learnt after the entries were persisted.
    /// Written but not fsync'd: the next `persist` syncs it along, and losing it in a
    /// crash only means the commit is learnt again from the leader (or, alone, re-elected).
    pub fn persist_commit(&mut self, commit: u64) -> Result<(), LogError> {
        let mut hs = self.storage.mem.rl().hard_state().clone();
        hs.commit = commit;
        if let Some(file) = &mut self.file {
            file.append(&[], Some(&hs))?;
        }
        self.storage.stage(&[], Some(&hs))
    }
}

/// The new segment the file starts after a snapshot: headed by `header` (a segment
/// header after a snapshot taken here, a start after one installed from the leader) and
/// `hard_state`, as the memory holds them when the change is made there. Older segments
/// whose entries all come at or before `covered` (the durable snapshot's index) go.
#[derive(Debug, Clone)]
pub struct Roll {
    header: SnapshotMetadata,
    reset: bool,
    hard_state: HardState,
    covered: u64,
    /// A prepared segment to roll into (see `Spares`); without one a new file grows.
    pub spare: Option<PathBuf>,
}

/// The in-memory half's changes; the file follows with the same changes (`LogFile`).
impl RaftStorage {
    /// Appends `entries` (replacing a conflicting suffix) and sets the hard state.
    pub fn stage(&self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<(), LogError> {
        let mut core = self.mem.wl();
        if !entries.is_empty() {
            core.append(entries)?;
        }
        if let Some(hs) = hard_state {
            core.set_hardstate(hs.clone());
        }
        Ok(())
    }

    /// Drops the entries `snapshot` covers and makes it the one raft sends; answers the
    /// segment the file goes on in.
    pub fn stage_compact(&self, snapshot: Snapshot) -> Result<Roll, LogError> {
        let index = snapshot.get_metadata().index;
        let last = self.mem.last_index()?;
        let tail = if last > index {
            self.mem.entries(index + 1, last + 1, None, raft::GetEntriesContext::empty(false))?
        } else {
            Vec::new()
        };
        let hard_state = self.mem.initial_state()?.hard_state;
        self.reset(&snapshot, &tail, hard_state)?;
        self.set_latest(snapshot);
        let mut header = SnapshotMetadata::default();
        header.index = self.mem.last_index()?;
        header.term = self.mem.term(header.index)?;
        Ok(Roll { header, reset: false, hard_state: self.mem.initial_state()?.hard_state, covered: index, spare: None })
    }

    /// The whole log replaced by `snapshot` (from the leader).
    pub fn stage_install(&self, snapshot: Snapshot) -> Result<Roll, LogError> {
        let hard_state = self.mem.initial_state()?.hard_state;
        self.reset(&snapshot, &[], hard_state)?;
        let header = snapshot.get_metadata().clone();
        let covered = header.index;
        self.set_latest(snapshot);
        Ok(Roll { header, reset: true, hard_state: self.mem.initial_state()?.hard_state, covered, spare: None })
    }
}

impl LogFile {
    /// Writes entries and hard state at the end of the file, without fsync.
    pub fn append(&mut self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<(), LogError> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let mut buf = Vec::new();
        if !entries.is_empty() {
            record(&mut buf, KIND_ENTRIES, &entries_payload(entries)?);
        }
        if let Some(hs) = hard_state {
            record(&mut buf, KIND_HARD_STATE, &hs.write_to_bytes()?);
        }
        self.write(&buf)
    }

    fn write(&mut self, buf: &[u8]) -> Result<(), LogError> {
        use std::os::unix::fs::FileExt as _;
        self.file.write_all_at(buf, self.len).map_err(|source| LogError::Io { path: self.newest().to_owned(), source })?;
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.file.sync_data().map_err(|source| LogError::Io { path: self.newest().to_owned(), source })
    }

    /// Makes `snapshot` (from the leader) durable, then starts the log afresh after it.
    pub fn install(&mut self, snapshot: &Snapshot, roll: &Roll) -> Result<(), LogError> {
        self.snapshots.write(snapshot)?;
        self.roll(roll)
    }

    /// Goes on in a new segment headed by `roll` (its snapshot is durable already), and
    /// deletes the segments the snapshot covers. The new segment's records are not
    /// fsync'd here: the writer's next sync makes them durable with what follows.
    pub fn roll(&mut self, roll: &Roll) -> Result<(), LogError> {
        // Later syncs touch only the new segment: everything before must be durable now.
        // That includes the current segment's header, so every segment that stays
        // behind is whole, and the oldest one left can begin the log.
        self.sync()?;
        while self.segments.len() > 1 && self.segments[1].after <= roll.covered {
            // Deleted by the next snapshot thread, not here: unlinking megabytes can take
            // milliseconds (online discard), and appends wait behind the writer. Until
            // then, or after a crash, the file only holds entries the snapshot covers.
            let old = self.segments.remove(0);
            self.spares.retired.lock().unwrap_or_else(PoisonError::into_inner).push(old.path);
        }
        let seq = self.segments.last().map_or(1, |s| s.seq + 1);
        let path = segment_path(&self.dir, seq);
        let io = |source| LogError::Io { path: path.clone(), source };
        let mut buf = Vec::new();
        record(&mut buf, if roll.reset { KIND_START } else { KIND_SEGMENT }, &roll.header.write_to_bytes()?);
        record(&mut buf, KIND_HARD_STATE, &roll.hard_state.write_to_bytes()?);
        // A prepared segment if there is one (a failed rename only costs the zeros).
        let prepared = roll.spare.as_ref().is_some_and(|spare| std::fs::rename(spare, &path).is_ok());
        let file = OpenOptions::new().write(true).create_new(!prepared).open(&path).map_err(io)?;
        // The name must be durable before anything written to the file is reported so.
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)?;
        self.spares.hint.store(self.len, Ordering::Relaxed);
        self.file = file;
        self.len = 0;
        self.segments.push(Segment { seq, path, after: roll.header.index });
        self.write(&buf)
    }

    /// Where snapshots of this log are written.
    pub fn snapshots(&self) -> SnapshotFile {
        self.snapshots.clone()
    }

    /// Who prepares this log's next segment.
    pub fn spares(&self) -> Spares {
        self.spares.clone()
    }

    fn newest(&self) -> &Path {
        self.segments.last().map_or(self.dir.as_path(), |s| s.path.as_path())
    }
}

/// Prepares zero-filled segments for a log (on a thread that may wait for the disk).
#[derive(Clone)]
pub struct Spares {
    dir: PathBuf,
    /// The length the last segment reached.
    hint: Arc<AtomicU64>,
    /// How many were prepared (names them).
    made: Arc<AtomicU64>,
    /// Segments a snapshot covers, to be deleted.
    retired: Arc<Mutex<Vec<PathBuf>>>,
}

impl Spares {
    /// A zero-filled, fsync'd file about as long as the last segment grew, for the next
    /// roll (`Roll::spare`). Its name is durable once the directory is next fsync'd (a
    /// snapshot's rename does that); a crash before it is used leaves it to be deleted.
    pub fn prepare(&self) -> std::io::Result<PathBuf> {
        self.delete_retired()?;
        let size = (self.hint.load(Ordering::Relaxed) * 5 / 4).clamp(SPARE_MIN, SPARE_MAX);
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{SPARE_PREFIX}{n}.tmp"));
        let file = File::create(&path)?;
        let zeros = vec![0u8; snapshot::WRITEBACK_CHUNK];
        let mut at = 0;
        while at < size as usize {
            let n = zeros.len().min(size as usize - at);
            std::os::unix::fs::FileExt::write_all_at(&file, &zeros[..n], at as u64)?;
            snapshot::write_back(&file, at, n)?;
            at += n;
        }
        file.sync_all()?;
        Ok(path)
    }

    /// Deletes the segments the writer left behind as covered by a snapshot.
    pub fn delete_retired(&self) -> std::io::Result<()> {
        let retired = std::mem::take(&mut *self.retired.lock().unwrap_or_else(PoisonError::into_inner));
        for path in retired {
            match std::fs::remove_file(&path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        Ok(())
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("raft-{seq:020}.log"))
}

/// The segments in `dir`, oldest first (`after` is filled in by the replay), and the
/// prepared segments an earlier run left.
fn scan(dir: &Path) -> Result<(Vec<Segment>, Vec<PathBuf>), LogError> {
    let io = |source| LogError::Io { path: dir.to_owned(), source };
    let (mut segments, mut spares) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let Some(name_str) = name.to_str() else { continue };
        if name_str.starts_with(SPARE_PREFIX) && name_str.ends_with(".tmp") {
            spares.push(dir.join(&name));
        } else if let Some(seq) = name_str.strip_prefix("raft-").and_then(|n| n.strip_suffix(".log")?.parse::<u64>().ok()) {
            segments.push(Segment { seq, path: dir.join(&name), after: 0 });
        }
    }
    segments.sort_by_key(|s| s.seq);
    Ok((segments, spares))
}

fn entries_payload(entries: &[Entry]) -> Result<Vec<u8>, LogError> {
    let mut payload = Vec::new();
    for e in entries {
        let bytes = e.write_to_bytes()?;
        payload.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        payload.extend_from_slice(&bytes);
    }
    Ok(payload)
}

fn record(buf: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(payload);
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&hasher.finalize().to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(payload);
}

/// The replay of the segments, one after another, into one `MemStorage`.
#[derive(Default)]
struct Replay {
    records: usize,
    /// The index the log starts after (0: from the beginning).
    start: u64,
    /// The header index of the segment replayed last (0: none).
    header: u64,
}

impl Replay {
    /// Applies every intact record of one segment to `mem`; returns the length of its good
    /// prefix. Only the `newest` segment may end in a torn record.
    fn segment(&mut self, path: &Path, bytes: &[u8], mem: &MemStorage, oldest: bool, newest: bool) -> Result<u64, LogError> {
        let corrupt = |offset: usize, what: String| LogError::Corrupt { path: path.to_owned(), offset: offset as u64, what };
        let mut at = 0usize;
        self.header = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let torn = |what: &str| {
                if newest { Ok(()) } else { Err(corrupt(at, format!("{what} in a segment that a newer one follows"))) }
            };
            if rest.len() >= HEADER && rest[..HEADER].iter().all(|&b| b == 0) {
                // The records end here; the rest is a prepared segment's zeros, unless a
                // crash tore a write (only in the newest).
                if rest.iter().any(|&b| b != 0) {
                    torn("data after the end of the records")?;
                }
                break;
            }
            if rest.len() < HEADER {
                torn("a torn record header")?;
                break;
            }
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
            if len > MAX_RECORD {
                return Err(corrupt(at, format!("record length {len}")));
            }
            if rest.len() < HEADER + len {
                torn("a torn record")?;
                break;
            }
            let kind = rest[8];
            let payload = &rest[HEADER..HEADER + len];
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&[kind]);
            hasher.update(payload);
            if hasher.finalize() != crc {
                if rest[HEADER + len..].iter().all(|&b| b == 0) {
                    // The last record, half on disk.
                    torn("a torn last record")?;
                    break;
                }
                return Err(corrupt(at, "checksum mismatch before the end of the log".into()));
            }
            match kind {
                KIND_ENTRIES => {
                    let entries = parse_entries(payload).map_err(|what| corrupt(at, what))?;
                    if let Some(first) = entries.first() {
                        // MemStorage panics on a batch that leaves a gap; damage must not.
                        let (lo, hi) = (mem.first_index()?, mem.last_index()? + 1);
                        if first.index < lo || first.index > hi {
                            return Err(corrupt(at, format!("entry {} outside the log [{lo}, {hi}]", first.index)));
                        }
                        mem.wl().append(&entries)?;
                    }
                }
                KIND_HARD_STATE => {
                    let hs = HardState::parse_from_bytes(payload).map_err(|e| corrupt(at, e.to_string()))?;
                    mem.wl().set_hardstate(hs);
                }
                KIND_START | KIND_SEGMENT if at == 0 => {
                    let meta = SnapshotMetadata::parse_from_bytes(payload).map_err(|e| corrupt(at, e.to_string()))?;
                    self.header = meta.index;
                    if (kind == KIND_START || oldest) && meta.index > 0 {
                        // The log begins (again) after this index.
                        self.start = meta.index;
                        let conf_state = mem.initial_state()?.conf_state;
                        let keep_membership = kind == KIND_SEGMENT;
                        let mut marker = Snapshot::default();
                        marker.set_metadata(meta);
                        mem.wl().apply_snapshot(marker)?;
                        if keep_membership {
                            // A segment header carries no membership: it stays what it was.
                            mem.wl().set_conf_state(conf_state);
                        }
                    } else {
                        // The previous segment ended exactly where this one says.
                        let last = mem.last_index()?;
                        if meta.index != last || mem.term(last)? != meta.term {
                            return Err(corrupt(
                                at,
                                format!(
                                    "the segment follows entry {} (term {}), but the log before it ends at {last}",
                                    meta.index, meta.term
                                ),
                            ));
                        }
                    }
                }
                KIND_START | KIND_SEGMENT => return Err(corrupt(at, "a segment header after the segment's first record".into())),
                other => return Err(corrupt(at, format!("unknown record kind {other}"))),
            }
            self.records += 1;
            at += HEADER + len;
        }
        Ok(at as u64)
    }
}

fn parse_entries(mut payload: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    while !payload.is_empty() {
        let Some((len, rest)) = payload.split_first_chunk::<4>() else {
            return Err("truncated entry length".into());
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err("truncated entry".into());
        }
        entries.push(Entry::parse_from_bytes(&rest[..len]).map_err(|e| e.to_string())?);
        payload = &rest[len..];
    }
    // Entries of one batch are consecutive; anything else was not written by `persist`.
    if entries.windows(2).any(|w| w[1].index != w[0].index + 1) {
        return Err("entries of a batch are not consecutive".into());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use raft::Storage;

    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry { index, term, data: data.to_vec().into(), ..Default::default() }
    }

    fn hs(term: u64, commit: u64) -> HardState {
        HardState { term, vote: 1, commit, ..Default::default() }
    }

    fn datas(store: &LogStore) -> Vec<(u64, u64, Vec<u8>)> {
        let s = store.storage();
        let (lo, hi) = (s.first_index().unwrap(), s.last_index().unwrap());
        if hi < lo {
            return Vec::new();
        }
        s.entries(lo, hi + 1, None, raft::GetEntriesContext::empty(false))
            .unwrap()
            .into_iter()
            .map(|e| (e.index, e.term, e.data.to_vec()))
            .collect()
    }

    fn written(dir: &Path) -> LogStore {
        let (mut store, rec) = LogStore::open(dir, &[1]).unwrap();
        assert_eq!(rec, Recovery::default());
        store.persist(&[entry(1, 1, b"a"), entry(2, 1, b"b")], Some(&hs(1, 0))).unwrap();
        store.persist_commit(2).unwrap();
        store.persist(&[entry(3, 1, b"c")], Some(&hs(1, 2))).unwrap();
        store
    }

    #[test]
    fn entries_and_hard_state_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        drop(written(dir.path()));
        let (store, rec) = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(rec, Recovery { records: 5, truncated_bytes: 0, snapshot_index: 0 });
        assert_eq!(datas(&store), vec![(1, 1, b"a".to_vec()), (2, 1, b"b".to_vec()), (3, 1, b"c".to_vec())]);
        let state = store.storage().initial_state().unwrap();
        assert_eq!((state.hard_state.term, state.hard_state.commit), (1, 2));
        assert_eq!(state.conf_state.voters, vec![1]);
    }

    #[test]
    fn a_later_batch_replaces_the_conflicting_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = written(dir.path());
        // A new leader overwrote index 3 with its own term.
        store.persist(&[entry(3, 2, b"x"), entry(4, 2, b"y")], Some(&hs(2, 2))).unwrap();
        drop(store);
        let (store, _) = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(datas(&store)[2..], [(3, 2, b"x".to_vec()), (4, 2, b"y".to_vec())]);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_at_every_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 1);
        let mut store = LogStore::open(dir.path(), &[1]).unwrap().0;
        store.persist(&[entry(1, 1, b"a"), entry(2, 1, b"b")], Some(&hs(1, 2))).unwrap();
        let good = std::fs::metadata(&path).unwrap().len() as usize;
        // The batch of entry 3 is one record: torn anywhere, it is gone whole.
        store.persist(&[entry(3, 1, b"ccc"), entry(4, 1, b"dd")], None).unwrap();
        drop(store);
        let full = std::fs::read(&path).unwrap();
        for cut in good..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (store, rec) = LogStore::open(dir.path(), &[1]).unwrap();
            assert_eq!(rec.truncated_bytes, (cut - good) as u64, "cut at {cut}");
            assert_eq!(datas(&store).len(), 2, "cut at {cut}");
            assert_eq!(store.storage().initial_state().unwrap().hard_state.commit, 2);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), good as u64, "the torn bytes are gone");
        }
        std::fs::write(&path, &full).unwrap();
        assert_eq!(datas(&LogStore::open(dir.path(), &[1]).unwrap().0).len(), 4);
    }

    #[test]
    fn a_corrupt_last_record_is_dropped_and_writing_resumes() {
        let dir = tempfile::tempdir().unwrap();
        drop(written(dir.path()));
        let path = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff; // inside the last hard state
        std::fs::write(&path, &bytes).unwrap();
        let (mut store, rec) = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(rec.records, 4);
        assert!(rec.truncated_bytes > 0);
        assert_eq!(datas(&store).len(), 3);
        store.persist(&[entry(4, 1, b"d")], Some(&hs(1, 4))).unwrap();
        drop(store);
        let (store, rec) = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(datas(&store).len(), 4);
        assert_eq!(store.storage().initial_state().unwrap().hard_state.commit, 4);
    }

    fn snap(index: u64, term: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s.mut_metadata().mut_conf_state().voters = vec![1];
        s.data = b"state".to_vec().into();
        s
    }

    fn first_last(store: &LogStore) -> (u64, u64) {
        let s = store.storage();
        (s.first_index().unwrap(), s.last_index().unwrap())
    }

    fn segments(dir: &Path) -> Vec<u64> {
        scan(dir).unwrap().0.iter().map(|s| s.seq).collect()
    }

    #[test]
    fn a_compacted_log_keeps_its_tail_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = written(dir.path());
        store.compact(snap(2, 1)).unwrap();
        assert_eq!(datas(&store), vec![(3, 1, b"c".to_vec())]);
        // The first segment holds entry 3, which the snapshot does not cover: it stays.
        assert_eq!(segments(dir.path()), [1, 2]);
        // Appending goes on in the new segment.
        store.persist(&[entry(4, 1, b"d")], Some(&hs(1, 4))).unwrap();
        drop(store);
        let (mut store, rec) = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(rec.snapshot_index, 2);
        assert_eq!(first_last(&store), (3, 4));
        assert_eq!(datas(&store), vec![(3, 1, b"c".to_vec()), (4, 1, b"d".to_vec())]);
        assert_eq!(store.storage().term(2).unwrap(), 1, "the snapshot's term answers for its index");
        assert_eq!(store.storage().initial_state().unwrap().hard_state.commit, 4);
        assert_eq!(&store.snapshot().data[..], b"state");
        // A snapshot past entry 3 covers the first segment: it goes, and the second, headed
        // by entry 3, begins the log.
        store.compact(snap(3, 1)).unwrap();
        assert_eq!(segments(dir.path()), [2, 3]);
        store.persist(&[entry(5, 1, b"e")], Some(&hs(1, 5))).unwrap();
        drop(store);
        let (store, rec) = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(rec.snapshot_index, 3);
        assert_eq!(datas(&store), vec![(4, 1, b"d".to_vec()), (5, 1, b"e".to_vec())]);
        assert_eq!(store.storage().initial_state().unwrap().hard_state.commit, 5);
    }

    #[test]
    fn a_crash_between_the_snapshot_and_the_new_segment_skips_what_the_snapshot_covers() {
        let dir = tempfile::tempdir().unwrap();
        drop(written(dir.path()));
        // The snapshot is durable; the log has not gone on in a new segment yet.
        snapshot::write(dir.path(), &snap(2, 1)).unwrap();
        let (store, rec) = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(rec.snapshot_index, 2);
        assert_eq!(datas(&store), vec![(3, 1, b"c".to_vec())]);
    }

    #[test]
    fn an_installed_snapshot_drops_a_log_of_another_history() {
        let dir = tempfile::tempdir().unwrap();
        drop(written(dir.path()));
        // The leader's snapshot has term 2 at index 2, where this log has term 1.
        snapshot::write(dir.path(), &snap(2, 2)).unwrap();
        let (store, _) = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(first_last(&store), (3, 2), "entry 3 followed another entry 2");
        let hs = store.storage().initial_state().unwrap().hard_state;
        assert_eq!((hs.term, hs.commit), (2, 2));
    }

    #[test]
    fn an_install_replaces_the_whole_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = written(dir.path());
        store.install(snap(10, 3)).unwrap();
        assert_eq!(first_last(&store), (11, 10));
        store.persist(&[entry(11, 3, b"k")], Some(&hs(3, 11))).unwrap();
        drop(store);
        let (store, rec) = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(rec.snapshot_index, 10);
        assert_eq!(datas(&store), vec![(11, 3, b"k".to_vec())]);
        assert_eq!(store.storage().initial_state().unwrap().conf_state.voters, vec![1]);
    }

    #[test]
    fn a_compacted_log_without_its_snapshot_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = written(dir.path());
        store.compact(snap(2, 1)).unwrap();
        store.persist(&[entry(4, 1, b"d")], Some(&hs(1, 4))).unwrap();
        // The second snapshot covers the first segment, whose entries are gone with it.
        store.compact(snap(4, 1)).unwrap();
        drop(store);
        assert_eq!(segments(dir.path()), [2, 3]);
        std::fs::remove_file(dir.path().join(snapshot::FILE)).unwrap();
        assert!(matches!(LogStore::open(dir.path(), &[1]), Err(LogError::Corrupt { .. })));
    }

    #[test]
    fn damage_before_the_end_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        drop(written(dir.path()));
        let path = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 2] ^= 0xff; // inside the first batch
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(LogStore::open(dir.path(), &[1]), Err(LogError::Corrupt { offset: 0, .. })));
    }

    #[test]
    fn an_install_after_a_compaction_empties_the_log_of_the_older_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path(), &[1]).unwrap().0;
        let five: Vec<Entry> = (1..=5).map(|i| entry(i, 1, b"old")).collect();
        store.persist(&five, Some(&hs(1, 3))).unwrap();
        store.compact(snap(2, 1)).unwrap();
        // The leader's snapshot has term 2 at index 4, where this log has term 1: the
        // first segment (entries up to 5) stays, and the log after the install must not be
        // read as its continuation.
        store.install(snap(4, 2)).unwrap();
        assert_eq!(segments(dir.path()), [1, 2, 3]);
        store.persist(&[entry(5, 2, b"new"), entry(6, 2, b"new")], Some(&hs(2, 6))).unwrap();
        drop(store);
        let (store, rec) = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(rec.snapshot_index, 4);
        assert_eq!(datas(&store), vec![(5, 2, b"new".to_vec()), (6, 2, b"new".to_vec())]);
        assert_eq!(store.storage().initial_state().unwrap().hard_state.commit, 6);
    }

    #[test]
    fn a_segment_that_does_not_follow_the_one_before_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path(), &[1]).unwrap().0;
        store.persist(&[entry(1, 1, b"a"), entry(2, 1, b"b")], Some(&hs(1, 2))).unwrap();
        let before_3 = std::fs::metadata(segment_path(dir.path(), 1)).unwrap().len();
        store.persist(&[entry(3, 1, b"c")], Some(&hs(1, 3))).unwrap();
        store.compact(snap(1, 1)).unwrap();
        drop(store);
        // Entry 3's records lost from the older segment, at a record boundary: the newer
        // segment says the log before it ends at 3.
        let first = segment_path(dir.path(), 1);
        let bytes = std::fs::read(&first).unwrap();
        std::fs::write(&first, &bytes[..before_3 as usize]).unwrap();
        let err = LogStore::open(dir.path(), &[1]).err().unwrap();
        assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("ends at 2"), "{err}");
    }

    #[test]
    fn a_torn_record_in_an_older_segment_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = written(dir.path());
        store.compact(snap(2, 1)).unwrap();
        store.persist(&[entry(4, 1, b"d")], Some(&hs(1, 4))).unwrap();
        drop(store);
        // The older segment was synced whole before the newer began: a short one is damage.
        let first = segment_path(dir.path(), 1);
        let bytes = std::fs::read(&first).unwrap();
        std::fs::write(&first, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(LogStore::open(dir.path(), &[1]), Err(LogError::Corrupt { .. })));
    }

    #[test]
    fn the_single_log_file_of_earlier_versions_is_read_as_the_first_segment() {
        let dir = tempfile::tempdir().unwrap();
        drop(written(dir.path()));
        std::fs::rename(segment_path(dir.path(), 1), dir.path().join(LEGACY_LOG)).unwrap();
        let (mut store, rec) = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(rec.records, 5);
        assert_eq!(datas(&store).len(), 3);
        assert!(!dir.path().join(LEGACY_LOG).exists());
        store.persist(&[entry(4, 1, b"d")], Some(&hs(1, 4))).unwrap();
        drop(store);
        assert_eq!(datas(&LogStore::open(dir.path(), &[1]).unwrap().0).len(), 4);
    }

    /// `written`, compacted at 2 into a prepared segment, with entry 4 written there.
    fn rolled_into_a_spare(dir: &Path) -> LogStore {
        let mut store = written(dir);
        let spare = store.file.as_ref().unwrap().spares().prepare().unwrap();
        assert!(std::fs::metadata(&spare).unwrap().len() >= SPARE_MIN);
        snapshot::write(dir, &snap(2, 1)).unwrap();
        let mut roll = store.storage.stage_compact(snap(2, 1)).unwrap();
        roll.spare = Some(spare);
        let file = store.file.as_mut().unwrap();
        file.roll(&roll).unwrap();
        store.persist(&[entry(4, 1, b"d")], Some(&hs(1, 4))).unwrap();
        store
    }

    #[test]
    fn a_prepared_segment_is_written_over_and_cut_to_its_records_at_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(rolled_into_a_spare(dir.path()));
        let second = segment_path(dir.path(), 2);
        assert!(std::fs::metadata(&second).unwrap().len() >= SPARE_MIN, "written over its zeros, not grown");
        assert!(!dir.path().join(format!("{SPARE_PREFIX}0.tmp")).exists());
        let (mut store, rec) = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(rec.truncated_bytes, 0, "zeros after the records are not a torn write");
        assert_eq!(datas(&store), vec![(3, 1, b"c".to_vec()), (4, 1, b"d".to_vec())]);
        assert!(std::fs::metadata(&second).unwrap().len() < 1000, "cut to its records");
        store.persist(&[entry(5, 1, b"e")], Some(&hs(1, 5))).unwrap();
        drop(store);
        assert_eq!(datas(&LogStore::open(dir.path(), &[1]).unwrap().0).len(), 3);
    }

    #[test]
    fn a_torn_record_over_zeros_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let store = rolled_into_a_spare(dir.path());
        let end = store.file.as_ref().unwrap().len as usize;
        drop(store);
        let second = segment_path(dir.path(), 2);
        let mut bytes = std::fs::read(&second).unwrap();
        // Entry 4's batch was the last record written: spoil its last byte (half on disk).
        let batch_end = end - (HEADER + hs(1, 4).write_to_bytes().unwrap().len());
        bytes[batch_end - 1] ^= 0xff;
        // And the hard state after it never reached the disk.
        bytes[batch_end..end].fill(0);
        std::fs::write(&second, &bytes).unwrap();
        let (store, rec) = LogStore::open(dir.path(), &[1]).unwrap();
        assert!(rec.truncated_bytes > 0);
        assert_eq!(datas(&store), vec![(3, 1, b"c".to_vec())]);
    }

    #[test]
    fn data_after_the_end_of_an_older_segment_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = rolled_into_a_spare(dir.path());
        store.compact(snap(3, 1)).unwrap();
        drop(store);
        // The second segment is older now; past its records there must be only zeros.
        let second = segment_path(dir.path(), 2);
        let mut bytes = std::fs::read(&second).unwrap();
        let last = bytes.len() - 1;
        bytes[last] = 7;
        std::fs::write(&second, &bytes).unwrap();
        assert!(matches!(LogStore::open(dir.path(), &[1]), Err(LogError::Corrupt { .. })));
    }

    #[test]
    fn a_segment_rolled_into_with_nothing_durable_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = rolled_into_a_spare(dir.path());
        drop(store);
        // A crash before the new segment's first records reached the disk.
        let second = segment_path(dir.path(), 2);
        let len = std::fs::metadata(&second).unwrap().len() as usize;
        std::fs::write(&second, vec![0u8; len]).unwrap();
        std::fs::write(dir.path().join(format!("{SPARE_PREFIX}7.tmp")), b"a spare being prepared").unwrap();
        let (mut store, _) = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(segments(dir.path()), [1]);
        assert!(!dir.path().join(format!("{SPARE_PREFIX}7.tmp")).exists());
        assert_eq!(datas(&store), vec![(3, 1, b"c".to_vec())]);
        store.persist(&[entry(4, 1, b"D")], Some(&hs(1, 4))).unwrap();
        drop(store);
        assert_eq!(datas(&LogStore::open(dir.path(), &[1]).unwrap().0)[1], (4, 1, b"D".to_vec()));
    }

    #[test]
    fn a_prepared_segment_that_is_gone_is_replaced_by_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = written(dir.path());
        snapshot::write(dir.path(), &snap(2, 1)).unwrap();
        let mut roll = store.storage.stage_compact(snap(2, 1)).unwrap();
        roll.spare = Some(dir.path().join(format!("{SPARE_PREFIX}9.tmp")));
        store.file.as_mut().unwrap().roll(&roll).unwrap();
        store.persist(&[entry(4, 1, b"d")], Some(&hs(1, 4))).unwrap();
        drop(store);
        assert_eq!(segments(dir.path()), [1, 2]);
        assert_eq!(datas(&LogStore::open(dir.path(), &[1]).unwrap().0).len(), 2);
    }

    #[test]
    fn covered_segments_are_deleted_by_the_next_preparation_not_by_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = written(dir.path());
        store.compact(snap(2, 1)).unwrap();
        store.persist(&[entry(4, 1, b"d")], Some(&hs(1, 4))).unwrap();
        // As the writer rolls: the first segment is covered, and left for later.
        snapshot::write(dir.path(), &snap(4, 1)).unwrap();
        let roll = store.storage.stage_compact(snap(4, 1)).unwrap();
        store.file.as_mut().unwrap().roll(&roll).unwrap();
        assert_eq!(segments(dir.path()), [1, 2, 3]);
        let spare = store.file.as_ref().unwrap().spares().prepare().unwrap();
        assert_eq!(segments(dir.path()), [2, 3]);
        std::fs::remove_file(spare).unwrap();
        drop(store);
        assert_eq!(datas(&LogStore::open(dir.path(), &[1]).unwrap().0), Vec::<(u64, u64, Vec<u8>)>::new());
    }
}
