//! The raft log and hard state on disk: one append-only file of checksummed records,
//! fsync'd before raft is told they are persisted.
//!
//! Record: `[len: u32 LE][crc32 of kind+payload: u32 LE][kind: u8][payload: len bytes]`.
//! Kinds: a batch of entries (each `[u32 LE length][protobuf Entry]`), a hard state
//! (protobuf `HardState`), or a start (protobuf `SnapshotMetadata`: the log begins after
//! that snapshot's index). Replaying the file in order rebuilds the in-memory
//! `MemStorage` raft reads from: a batch that starts inside the existing log replaces
//! the suffix from there on, exactly as raft asked when it wrote it.
//!
//! Compaction (after a snapshot, see `snapshot.rs`) rewrites the file as a start record,
//! the entries after the snapshot and the hard state: written to `raft.log.tmp`, fsync'd,
//! renamed over `raft.log`, directory fsync'd. The snapshot is made durable first, so a
//! crash in between leaves the new snapshot and the old (longer) log, whose entries up to
//! the snapshot are skipped at start. After an installed snapshot (a follower that fell
//! behind) the old log may hold entries of another history: they are kept only if the
//! log agrees with the snapshot's term at its index (raft's log matching), else dropped.
//!
//! A crash can leave the last record torn (short, or with a bad checksum that runs to the
//! end of the file). That record was never acknowledged (the fsync did not return), so it
//! is cut off and the node starts from the record before. A bad record *followed by
//! more data* is not a torn write but damage, and the node refuses to start rather than
//! silently drop entries it may have acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::Storage as _;
use raft::storage::MemStorage;

use super::snapshot::{self, RaftStorage, SnapshotFile};

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_START: u8 = 3;
const LOG: &str = "raft.log";
const LOG_TMP: &str = "raft.log.tmp";
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
    file: File,
    path: PathBuf,
    snapshots: SnapshotFile,
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

    /// Opens (or creates) `dir/raft.log`, loads `dir/snapshot` if there is one, and
    /// replays the log after it. `voters` is the membership when there is no snapshot.
    pub fn open(dir: &Path, voters: &[u64]) -> Result<(LogStore, Recovery), LogError> {
        let path = dir.join(LOG);
        let io = |source| LogError::Io { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let unfinished = dir.join(LOG_TMP);
        if unfinished.exists() {
            // A compaction cut short before its rename: the old log is still whole.
            std::fs::remove_file(&unfinished).map_err(io)?;
        }
        let snap = snapshot::read(dir)?;
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let mem = MemStorage::new_with_conf_state(ConfState::from((voters.to_vec(), vec![])));
        let (records, good, start) = replay(&path, &bytes, &mem)?;
        let corrupt = |what: String| LogError::Corrupt { path: path.clone(), offset: 0, what };
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
        let truncated_bytes = bytes.len() as u64 - good;
        if truncated_bytes > 0 {
            tracing::warn!(path = %path.display(), truncated_bytes, "cutting off a torn last record");
            file.set_len(good).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        // A new file's directory entry must be durable too, or the whole log can vanish.
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        let snapshots = SnapshotFile::new(dir, snapshot_index);
        Ok((LogStore { storage, file: Some(LogFile { file, path, snapshots }) }, Recovery { records, truncated_bytes, snapshot_index }))
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
        let rewrite = self.storage.stage_compact(snapshot)?;
        if let Some(file) = &mut self.file {
            file.rewrite(&rewrite)?;
        }
        Ok(())
    }

    /// Replaces the whole log by `snapshot`, received from the leader.
    pub fn install(&mut self, snapshot: Snapshot) -> Result<(), LogError> {
        let rewrite = self.storage.stage_install(snapshot.clone())?;
        if let Some(file) = &mut self.file {
            file.install(&snapshot, &rewrite)?;
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

/// What the file must become after a snapshot: a start at `meta`, then `entries` (those
/// after the snapshot that the log keeps) and `hard_state`, as the memory holds them
/// when the change is made there.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub meta: SnapshotMetadata,
    pub entries: Vec<Entry>,
    pub hard_state: HardState,
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

    /// Drops the entries `snapshot` covers and makes it the one raft sends; answers what
    /// the file must become.
    pub fn stage_compact(&self, snapshot: Snapshot) -> Result<Rewrite, LogError> {
        let index = snapshot.get_metadata().index;
        let last = self.mem.last_index()?;
        let tail = if last > index {
            self.mem.entries(index + 1, last + 1, None, raft::GetEntriesContext::empty(false))?
        } else {
            Vec::new()
        };
        let hard_state = self.mem.initial_state()?.hard_state;
        self.replace(snapshot, &tail, hard_state)
    }

    /// The whole log replaced by `snapshot` (from the leader).
    pub fn stage_install(&self, snapshot: Snapshot) -> Result<Rewrite, LogError> {
        let hard_state = self.mem.initial_state()?.hard_state;
        self.replace(snapshot, &[], hard_state)
    }

    fn replace(&self, snapshot: Snapshot, tail: &[Entry], hard_state: HardState) -> Result<Rewrite, LogError> {
        self.reset(&snapshot, tail, hard_state)?;
        let meta = snapshot.get_metadata().clone();
        self.set_latest(snapshot);
        let (first, last) = (self.mem.first_index()?, self.mem.last_index()?);
        let entries = if last >= first {
            self.mem.entries(first, last + 1, None, raft::GetEntriesContext::empty(false))?
        } else {
            Vec::new()
        };
        Ok(Rewrite { meta, entries, hard_state: self.mem.initial_state()?.hard_state })
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
        self.file.write_all(&buf).map_err(|source| LogError::Io { path: self.path.clone(), source })
    }

    /// Makes everything appended so far durable.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.file.sync_data().map_err(|source| LogError::Io { path: self.path.clone(), source })
    }

    /// Makes `snapshot` (from the leader) durable, then rewrites the log after it.
    pub fn install(&mut self, snapshot: &Snapshot, rewrite: &Rewrite) -> Result<(), LogError> {
        self.snapshots.write(snapshot)?;
        self.rewrite(rewrite)
    }

    /// The file becomes `rewrite` (its snapshot is durable already): temp file, fsync,
    /// rename, directory fsync.
    pub fn rewrite(&mut self, rewrite: &Rewrite) -> Result<(), LogError> {
        let mut buf = Vec::new();
        record(&mut buf, KIND_START, &rewrite.meta.write_to_bytes()?);
        if !rewrite.entries.is_empty() {
            record(&mut buf, KIND_ENTRIES, &entries_payload(&rewrite.entries)?);
        }
        record(&mut buf, KIND_HARD_STATE, &rewrite.hard_state.write_to_bytes()?);
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(LOG_TMP);
        let io = |source| LogError::Io { path: tmp.clone(), source };
        let mut new = File::create(&tmp).map_err(io)?;
        new.write_all(&buf).map_err(io)?;
        new.sync_all().map_err(io)?;
        drop(new);
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        self.file =
            OpenOptions::new().append(true).open(&self.path).map_err(|source| LogError::Io { path: self.path.clone(), source })?;
        Ok(())
    }

    /// Where snapshots of this log are written.
    pub fn snapshots(&self) -> SnapshotFile {
        self.snapshots.clone()
    }
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

/// Applies every intact record to `mem`; returns the count, the length of the good
/// prefix of `bytes`, and the index of the snapshot the log starts after (0: none).
fn replay(path: &Path, bytes: &[u8], mem: &MemStorage) -> Result<(usize, u64, u64), LogError> {
    let corrupt = |offset: usize, what: String| LogError::Corrupt { path: path.to_owned(), offset: offset as u64, what };
    let mut at = 0usize;
    let mut records = 0usize;
    let mut start = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < HEADER {
            break; // torn header
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_RECORD {
            return Err(corrupt(at, format!("record length {len}")));
        }
        if rest.len() < HEADER + len {
            break; // torn payload
        }
        let kind = rest[8];
        let payload = &rest[HEADER..HEADER + len];
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&[kind]);
        hasher.update(payload);
        if hasher.finalize() != crc {
            if rest.len() == HEADER + len {
                break; // the last record, half on disk
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
            KIND_START if records == 0 => {
                let meta = SnapshotMetadata::parse_from_bytes(payload).map_err(|e| corrupt(at, e.to_string()))?;
                start = meta.index;
                let mut marker = Snapshot::default();
                marker.set_metadata(meta);
                mem.wl().apply_snapshot(marker)?;
            }
            KIND_START => return Err(corrupt(at, "a start record after the first".into())),
            other => return Err(corrupt(at, format!("unknown record kind {other}"))),
        }
        records += 1;
        at += HEADER + len;
    }
    Ok((records, at as u64, start))
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
        let path = dir.path().join("raft.log");
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
        let path = dir.path().join("raft.log");
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

    #[test]
    fn a_compacted_log_keeps_its_tail_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = written(dir.path());
        let before = std::fs::metadata(dir.path().join(LOG)).unwrap().len();
        store.compact(snap(2, 1)).unwrap();
        assert_eq!(datas(&store), vec![(3, 1, b"c".to_vec())]);
        assert!(std::fs::metadata(dir.path().join(LOG)).unwrap().len() < before, "entries 1 and 2 left the file");
        // Appending goes on in the rewritten file.
        store.persist(&[entry(4, 1, b"d")], Some(&hs(1, 4))).unwrap();
        drop(store);
        let (store, rec) = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(rec.snapshot_index, 2);
        assert_eq!(first_last(&store), (3, 4));
        assert_eq!(datas(&store), vec![(3, 1, b"c".to_vec()), (4, 1, b"d".to_vec())]);
        assert_eq!(store.storage().term(2).unwrap(), 1, "the snapshot's term answers for its index");
        assert_eq!(store.storage().initial_state().unwrap().hard_state.commit, 4);
        assert_eq!(&store.snapshot().data[..], b"state");
    }

    #[test]
    fn a_crash_between_the_snapshot_and_the_rewrite_skips_what_the_snapshot_covers() {
        let dir = tempfile::tempdir().unwrap();
        drop(written(dir.path()));
        // The snapshot is durable; the log was not rewritten yet (a rewrite cut short).
        snapshot::write(dir.path(), &snap(2, 1)).unwrap();
        std::fs::write(dir.path().join(LOG_TMP), b"half a rewrite").unwrap();
        let (store, rec) = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(rec.snapshot_index, 2);
        assert_eq!(datas(&store), vec![(3, 1, b"c".to_vec())]);
        assert!(!dir.path().join(LOG_TMP).exists());
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
        drop(store);
        std::fs::remove_file(dir.path().join(snapshot::FILE)).unwrap();
        assert!(matches!(LogStore::open(dir.path(), &[1]), Err(LogError::Corrupt { .. })));
    }

    #[test]
    fn damage_before_the_end_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        drop(written(dir.path()));
        let path = dir.path().join("raft.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 2] ^= 0xff; // inside the first batch
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(LogStore::open(dir.path(), &[1]), Err(LogError::Corrupt { offset: 0, .. })));
    }
}
