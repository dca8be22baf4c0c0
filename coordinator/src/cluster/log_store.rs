//! The raft log and hard state on disk: one append-only file of checksummed records,
//! fsync'd before raft is told they are persisted.
//!
//! Record: `[len: u32 LE][crc32 of kind+payload: u32 LE][kind: u8][payload: len bytes]`.
//! Kinds: a batch of entries (each `[u32 LE length][protobuf Entry]`), or a hard state
//! (protobuf `HardState`). Replaying the file in order rebuilds the in-memory
//! `MemStorage` raft reads from: a batch that starts inside the existing log replaces
//! the suffix from there on, exactly as raft asked when it wrote it.
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
use raft::prelude::{ConfState, Entry, HardState};
use raft::Storage as _;
use raft::storage::MemStorage;

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
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
}

/// The node's storage: what raft reads (`MemStorage`, shared) and, unless in memory only,
/// the file that makes it durable.
pub struct LogStore {
    mem: MemStorage,
    file: Option<(File, PathBuf)>,
}

/// What `open` found in the file, for the start-up log line and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    pub records: usize,
    /// Bytes of a torn last record that were cut off.
    pub truncated_bytes: u64,
}

impl LogStore {
    /// A log that lives in memory only (tests, and judges started without a data dir).
    pub fn in_memory(voters: &[u64]) -> LogStore {
        LogStore { mem: MemStorage::new_with_conf_state(ConfState::from((voters.to_vec(), vec![]))), file: None }
    }

    /// Opens (or creates) `dir/raft.log` and replays it.
    pub fn open(dir: &Path, voters: &[u64]) -> Result<(LogStore, Recovery), LogError> {
        let path = dir.join("raft.log");
        let io = |source| LogError::Io { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let mem = MemStorage::new_with_conf_state(ConfState::from((voters.to_vec(), vec![])));
        let (records, good) = replay(&path, &bytes, &mem)?;
        let truncated_bytes = bytes.len() as u64 - good;
        if truncated_bytes > 0 {
            tracing::warn!(path = %path.display(), truncated_bytes, "cutting off a torn last record");
            file.set_len(good).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        // A new file's directory entry must be durable too, or the whole log can vanish.
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok((LogStore { mem, file: Some((file, path)) }, Recovery { records, truncated_bytes }))
    }

    /// What raft reads; clones share the same log.
    pub fn storage(&self) -> MemStorage {
        self.mem.clone()
    }

    /// Makes `entries` and `hard_state` durable (one write, one fsync), then visible to raft.
    pub fn persist(&mut self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<(), LogError> {
        self.write(entries, hard_state, true)
    }

    fn write(&mut self, entries: &[Entry], hard_state: Option<&HardState>, sync: bool) -> Result<(), LogError> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        if let Some((file, path)) = &mut self.file {
            let mut buf = Vec::new();
            if !entries.is_empty() {
                let mut payload = Vec::new();
                for e in entries {
                    let bytes = e.write_to_bytes()?;
                    payload.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    payload.extend_from_slice(&bytes);
                }
                record(&mut buf, KIND_ENTRIES, &payload);
            }
            if let Some(hs) = hard_state {
                record(&mut buf, KIND_HARD_STATE, &hs.write_to_bytes()?);
            }
            let io = |source| LogError::Io { path: path.clone(), source };
            file.write_all(&buf).map_err(io)?;
            if sync {
                file.sync_data().map_err(io)?;
            }
        }
        let mut core = self.mem.wl();
        if !entries.is_empty() {
            core.append(entries)?;
        }
        if let Some(hs) = hard_state {
            core.set_hardstate(hs.clone());
        }
        Ok(())
    }

    /// Records a commit index learnt after the entries were persisted (raft's LightReady).
    /// Written but not fsync'd: the next `persist` syncs it along, and losing it in a
    /// crash only means the commit is learnt again from the leader (or, alone, re-elected).
    pub fn persist_commit(&mut self, commit: u64) -> Result<(), LogError> {
        let mut hs = self.mem.rl().hard_state().clone();
        hs.commit = commit;
        self.write(&[], Some(&hs), false)
    }
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

/// Applies every intact record to `mem`; returns the count and the length of the good
/// prefix of `bytes`.
fn replay(path: &Path, bytes: &[u8], mem: &MemStorage) -> Result<(usize, u64), LogError> {
    let corrupt = |offset: usize, what: String| LogError::Corrupt { path: path.to_owned(), offset: offset as u64, what };
    let mut at = 0usize;
    let mut records = 0usize;
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
            other => return Err(corrupt(at, format!("unknown record kind {other}"))),
        }
        records += 1;
        at += HEADER + len;
    }
    Ok((records, at as u64))
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
        assert_eq!(rec, Recovery { records: 5, truncated_bytes: 0 });
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
