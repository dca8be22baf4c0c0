//! One raft node: a thread that owns the `RawNode`, the durable log, and the state
//! machine's apply function, and handles raft-rs's `Ready` in its documented order.
//!
//! Why a thread rather than a tokio task: the apply function may be called from any
//! runtime flavour (the unit tests use current-thread runtimes), and a round of the loop
//! must not wait for a runtime worker. Callers talk to it over a channel and wait on a
//! oneshot for the result of applying their entry, which they get only once it is
//! committed and applied. Everything waiting in the channel is proposed before the next
//! `Ready`.
//!
//! Nothing slow runs on this thread: a Ready's entries are staged in memory and made
//! durable by the log writer (`writer.rs`, raft-rs's asynchronous Ready handling: the
//! writer fsyncs whatever queued up meanwhile at once, and raft counts the entries as
//! persisted here, and the messages that say so go out, only when it reports back); a
//! snapshot is a copy of the state taken here and encoded, written and fsync'd on a
//! thread of its own, after which the log is compacted.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use raft::prelude::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{GetEntriesContext, RawNode, SnapshotStatus, StateRole, Storage as _};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use super::log_store::{LogError, LogStore, Spares};
use super::snapshot::{RaftStorage, SnapshotFile};
use super::transport::{Deliver, Transport};
use super::writer::{Persister, WriteOp, Written};

/// The state machine as the node sees it: committed entries in log order.
pub trait Apply: Send + 'static {
    type Output: Send + 'static;
    /// Must be deterministic: every node applies the same entries to the same effect.
    fn apply(&mut self, index: u64, data: &[u8]) -> Self::Output;
    /// A copy of the whole state as of now, which encodes it (as `restore` takes it back)
    /// when called: on another thread, while this one goes on applying.
    fn snapshot(&self) -> SnapshotJob;
    /// Replaces the whole state by a snapshot's, taken after entry `index` was applied.
    fn restore(&mut self, index: u64, data: &[u8]) -> Result<(), String>;
}

/// See `Apply::snapshot`.
pub type SnapshotJob = Box<dyn FnOnce() -> Result<Vec<u8>, String> + Send>;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: u64,
    pub voters: Vec<u64>,
    /// One raft tick; elections time out after `election_ticks` of them.
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// A proposal not applied by then is answered `Timeout` (the API's 503). It may still
    /// commit later: a client that retries can create a second submission.
    pub proposal_timeout: Duration,
    /// A snapshot is taken (and the log compacted) after this many applied entries, once
    /// the entries applied since the last one are at least as large as it.
    pub snapshot_every: u64,
    /// Held for writing, it stalls this node's log writer as a slow disk would.
    #[cfg(test)]
    pub log_gate: Option<Arc<std::sync::RwLock<()>>>,
}

/// Entries applied between snapshots unless configured: a few thousand entries replay in
/// well under a second, and a snapshot costs a serialization of the whole state.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 5000;

impl NodeConfig {
    /// Node `id` of a cluster of `voters`: elections time out after 0.5–1 s, heartbeats
    /// every 100 ms. A proposal normally commits in milliseconds; one not applied within
    /// a second was most likely lost with a leader, and the scheduler proposes it again.
    /// Ticks are fine (10 ms) because raft draws each election timeout in whole ticks:
    /// with 50 ms ticks two followers drew the same one 1 time in 10, campaigned at once,
    /// split the vote and took another timeout to elect a leader.
    pub fn cluster(id: u64, voters: Vec<u64>) -> NodeConfig {
        NodeConfig {
            id,
            voters,
            tick: Duration::from_millis(10),
            election_ticks: 50,
            heartbeat_ticks: 10,
            proposal_timeout: Duration::from_secs(1),
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            #[cfg(test)]
            log_gate: None,
        }
    }

    pub fn single(id: u64) -> NodeConfig {
        NodeConfig {
            id,
            voters: vec![id],
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            proposal_timeout: Duration::from_secs(5),
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            #[cfg(test)]
            log_gate: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("not committed within {0:?}")]
    Timeout(Duration),
    #[error("raft refused the proposal: {0}")]
    Dropped(String),
    #[error("the raft node has stopped")]
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Stopped,
}

/// The node as the API and metrics show it; refreshed after every round of the loop.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    pub id: u64,
    pub role: Role,
    pub term: u64,
    pub leader: Option<u64>,
    pub commit: u64,
    pub applied: u64,
    /// Proposals made on this node since it started.
    pub proposals: u64,
    /// Times this node saw the leader change since it started.
    pub leader_changes: u64,
    /// Index of the latest snapshot (taken here or installed), 0 if none.
    pub snapshot_index: u64,
    /// Index of the latest snapshot installed from the leader since this node started
    /// (it had fallen behind what the leader still had in its log).
    pub installed_snapshot: Option<u64>,
    /// The voting members as of the last applied entry, ascending.
    pub voters: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("starting the raft thread: {0}")]
    Thread(std::io::Error),
    #[error("snapshot: {0}")]
    Snapshot(String),
}

type Reply<O> = oneshot::Sender<Result<O, ProposeError>>;

/// A change of membership, through the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Add(u64),
    Remove(u64),
}

struct PendingRead {
    deadline: Instant,
    index: Option<u64>,
    reply: oneshot::Sender<Result<u64, ProposeError>>,
}

enum Msg<O> {
    Propose { data: Vec<u8>, reply: Reply<O> },
    /// Answered with the voters once the change is applied here.
    ChangeMembership { change: Membership, reply: Reply<Vec<u64>> },
    /// A linearizable read: answered once this node has applied the leader's commit index
    /// as of the request (raft's ReadIndex).
    ReadIndex { reply: Reply<u64> },
    /// From a peer, through the transport.
    Raft(Box<Message>),
    /// From the log writer.
    Written(Written),
    /// From the snapshot thread: a snapshot of the state, durable, and a prepared segment
    /// for the log to go on in (none if preparing one failed).
    Snapshotted(Result<(Snapshot, Option<PathBuf>), String>),
    Stop,
}

/// The node thread's handle; dropping it stops the thread and waits for it, so the log
/// file is closed when `drop` returns (a restart in the same process can reopen it).
pub struct Node<O> {
    tx: Mutex<Option<Sender<Msg<O>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    status: Arc<Mutex<NodeStatus>>,
    transport: Arc<OnceLock<Transport>>,
}

impl<O> Drop for Node<O> {
    fn drop(&mut self) {
        // Explicitly: the transport's inbox holds a sender too.
        if let Some(tx) = self.tx.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = tx.send(Msg::Stop);
        }
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

impl<O: Send + 'static> Node<O> {
    /// Starts the node on `store`: the state machine (in memory) is restored from the
    /// store's snapshot if there is one, then committed entries after it are applied with
    /// `apply`.
    pub fn start<A: Apply<Output = O>>(config: NodeConfig, store: LogStore, mut apply: A) -> Result<Node<O>, NodeError> {
        let logger = slog::Logger::root(TracingDrain, slog::o!("raft_id" => config.id));
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let snapshot = store.snapshot();
        let snapshot_index = snapshot.get_metadata().index;
        if snapshot_index > 0 {
            // The log holds only what came after; raft hands out entries from there on.
            apply.restore(snapshot_index, &snapshot.data).map_err(NodeError::Snapshot)?;
            info!(index = snapshot_index, bytes = snapshot.data.len(), "state restored from the snapshot");
        }
        let conf_state = store.storage().initial_state()?.conf_state;
        let (storage, file) = store.split();
        let mut raw = RawNode::new(&raft_config, storage.clone(), &logger)?;
        if config.voters == [config.id] {
            // Alone, there is nobody to wait for: lead at once instead of after a timeout.
            raw.campaign()?;
        }
        let status = Arc::new(Mutex::new(status_of(&raw, 0, 0, 0, snapshot_index, None, &conf_state)));
        let transport = Arc::new(OnceLock::new());
        let (tx, rx) = std::sync::mpsc::channel();
        let runtime = tokio::runtime::Handle::try_current().ok();
        let snapshots = file.as_ref().map(|f| (f.snapshots(), f.spares()));
        let written = tx.clone();
        #[cfg(test)]
        let gate = config.log_gate.clone();
        let persister = Persister::start(file, move |w| {
            #[cfg(test)]
            let _stalled = gate.as_ref().map(|g| g.read());
            let _ = written.send(Msg::Written(w));
        })
        .map_err(NodeError::Thread)?;
        let mut thread = NodeThread {
            raw,
            storage,
            persister,
            snapshots,
            inbox: tx.clone(),
            submitted: 0,
            persisted: 0,
            held: VecDeque::new(),
            snapshot_job: None,
            // Nodes of one cluster apply the same entries at about the same time: left
            // alone, all would snapshot and compact at once, each follower's acknowledgments
            // would wait for its compaction, and commits with them. Node k's first snapshot
            // comes (k-1)/4 of an interval later, so they take turns.
            snapshot_floor: snapshot_index + config.snapshot_every * ((config.id.max(1) - 1) % 4) / 4,
            apply,
            config,
            pending: HashMap::new(),
            pending_changes: HashMap::new(),
            reads: HashMap::new(),
            applied: 0,
            answers: Vec::new(),
            seq: 0,
            incarnation: incarnation(),
            status: status.clone(),
            proposals: 0,
            leader_changes: 0,
            last_leader: 0,
            transport: transport.clone(),
            conf_state,
            snapshot_index,
            installed_snapshot: None,
            snapshots_sent: Vec::new(),
            snapshot_now: false,
            snapshot_bytes: snapshot.data.len() as u64,
            applied_bytes: 0,
        };
        let thread = std::thread::Builder::new()
            .name("raft-node".into())
            .spawn(move || {
                // The apply function may spawn tasks (callbacks, projections).
                let _guard = runtime.as_ref().map(|h| h.enter());
                thread.run(rx);
            })
            .map_err(NodeError::Thread)?;
        Ok(Node { tx: Mutex::new(Some(tx)), thread: Some(thread), status, transport })
    }

    /// Where the transport delivers messages from peers.
    pub fn inbox(&self) -> Deliver {
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner).clone();
        Arc::new(move |message| {
            if let Some(tx) = &tx {
                let _ = tx.send(Msg::Raft(Box::new(message)));
            }
        })
    }

    /// Connects the node to its peers; before this, its messages are dropped.
    pub fn set_transport(&self, transport: Transport) {
        let _ = self.transport.set(transport);
    }

    /// Adds or removes a voter through the log (one at a time, raft's single-server
    /// change); answers with the voters once the change is applied here.
    pub async fn change_membership(&self, change: Membership) -> Result<Vec<u64>, ProposeError> {
        self.ask(|reply| Msg::ChangeMembership { change, reply }).await
    }

    /// Sends the node thread the message `make` builds around a reply channel, and waits
    /// for the answer; a stopped node answers `Stopped`.
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Msg<O>) -> Result<T, ProposeError> {
        let (reply, rx) = oneshot::channel();
        let sent = match self.tx.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            Some(tx) => tx.send(make(reply)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(ProposeError::Stopped);
        }
        rx.await.unwrap_or(Err(ProposeError::Stopped))
    }

    /// The peer transport, once set; the scheduler adds peers that joined to it.
    pub fn transport(&self) -> Arc<OnceLock<Transport>> {
        self.transport.clone()
    }

    /// Proposes `data` and waits until it is committed and applied here.
    pub async fn propose(&self, data: Vec<u8>) -> Result<O, ProposeError> {
        self.ask(|reply| Msg::Propose { data, reply }).await
    }

    /// Waits until this node has applied everything committed when the call was made, as
    /// the leader confirms it still leads (raft's ReadIndex): a read of the state machine
    /// after it sees every write acknowledged before the call, on any node. Answers the
    /// applied index.
    pub async fn read_index(&self) -> Result<u64, ProposeError> {
        self.ask(|reply| Msg::ReadIndex { reply }).await
    }

    pub fn status(&self) -> NodeStatus {
        self.status.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn is_leader(&self) -> bool {
        self.status().role == Role::Leader
    }
}

struct NodeThread<A: Apply> {
    raw: RawNode<RaftStorage>,
    /// The log in memory, as raft reads it; the file follows through `persister`.
    storage: RaftStorage,
    persister: Persister,
    /// Where snapshots are written (none: in memory only).
    snapshots: Option<(SnapshotFile, Spares)>,
    /// For the snapshot thread's answer.
    inbox: Sender<Msg<A::Output>>,
    /// The number of the last Ready that gave the writer something to persist, and of
    /// the last one it reported durable.
    submitted: u64,
    persisted: u64,
    /// Messages that may only go out once Ready `.0` is durable (raft's persisted
    /// messages: a follower's append response, a vote), in order.
    held: VecDeque<(u64, Vec<Message>)>,
    /// The thread taking a snapshot, if one is under way (one at a time).
    snapshot_job: Option<std::thread::JoinHandle<()>>,
    /// No snapshot is due before `snapshot_every` entries past this one (set when one
    /// failed, so that a failing disk is not asked again every round, and at start, so that
    /// the nodes of a cluster take their snapshots in turn).
    snapshot_floor: u64,
    apply: A,
    config: NodeConfig,
    /// This node's proposals not yet applied, by sequence number.
    pending: HashMap<u64, (Instant, Reply<A::Output>)>,
    /// This node's membership changes not yet applied, by sequence number.
    pending_changes: HashMap<u64, (Instant, Reply<Vec<u64>>)>,
    /// This node's reads, by sequence number: until their deadline, with the read index
    /// once the leader has confirmed it.
    reads: HashMap<u64, PendingRead>,
    /// The index of the last entry applied.
    applied: u64,
    /// Outputs of this round's applied proposals, answered once the status shows them.
    answers: Vec<(Reply<A::Output>, A::Output)>,
    seq: u64,
    /// Tells this run's proposals from those of an earlier run of the same node id, whose
    /// uncommitted entries a new term may still commit under the same sequence numbers.
    incarnation: u64,
    status: Arc<Mutex<NodeStatus>>,
    proposals: u64,
    leader_changes: u64,
    last_leader: u64,
    transport: Arc<OnceLock<Transport>>,
    /// The membership as of the last applied entry (what a snapshot records).
    conf_state: ConfState,
    snapshot_index: u64,
    installed_snapshot: Option<u64>,
    /// Peers sent a snapshot this round, reported to raft after `advance`.
    snapshots_sent: Vec<u64>,
    /// Set when a node was added: it must start from a snapshot (see `apply_conf_change`).
    snapshot_now: bool,
    /// The size of the last snapshot, and of the entries applied since it was copied: a
    /// snapshot writes the whole state, so taking one every `snapshot_every` entries
    /// whatever its size would make the work grow with the square of the history. Waiting
    /// until the log since is as large keeps it in proportion to what is appended (at
    /// most twice the bytes), and a restart replays no more than a snapshot's worth.
    snapshot_bytes: u64,
    applied_bytes: u64,
}

impl<A: Apply> NodeThread<A> {
    fn run(&mut self, rx: Receiver<Msg<A::Output>>) {
        let mut next_tick = Instant::now() + self.config.tick;
        loop {
            match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
                Ok(msg) => {
                    let mut stop = !self.handle(msg);
                    // Everything already waiting goes into this round's single fsync.
                    while let (false, Ok(msg)) = (stop, rx.try_recv()) {
                        stop = !self.handle(msg);
                    }
                    if stop {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick = now + self.config.tick;
                self.expire(now);
            }
            // A Ready handled can make another (in memory only, entries are durable at
            // once, and a leader alone commits them then): handle that now, not next round.
            let mut rounds = 0;
            let handled = loop {
                match self.on_ready() {
                    Ok(()) if rounds < 8 && self.raw.has_ready() => rounds += 1,
                    Ok(()) => break self.maybe_snapshot(),
                    outcome => break outcome,
                }
            };
            if let Err(err) = handled {
                // A node that cannot make its log durable must not go on acknowledging.
                error!(%err, "raft node stops");
                break;
            }
            self.publish();
            self.answer();
            self.answer_reads();
        }
        for (_, (_, reply)) in self.pending.drain() {
            let _ = reply.send(Err(ProposeError::Stopped));
        }
        for (_, (_, reply)) in self.pending_changes.drain() {
            let _ = reply.send(Err(ProposeError::Stopped));
        }
        for (_, read) in self.reads.drain() {
            let _ = read.reply.send(Err(ProposeError::Stopped));
        }
        // Both write into the raft directory: a node restarted in this process must find
        // them done.
        if let Some(job) = self.snapshot_job.take() {
            let _ = job.join();
        }
        self.persister.stop();
        self.status.lock().unwrap_or_else(PoisonError::into_inner).role = Role::Stopped;
        info!("raft node stopped");
    }

    /// False when the node is to stop.
    fn handle(&mut self, msg: Msg<A::Output>) -> bool {
        match msg {
            Msg::Stop => return false,
            Msg::Written(Written::Durable(number)) => self.persisted_up_to(number),
            // The writer has logged why; a node whose log is not durable must not go on.
            Msg::Written(Written::Failed(_)) => return false,
            Msg::Snapshotted(snapshot) => {
                if let Err(err) = self.snapshotted(snapshot) {
                    error!(%err, "raft node stops");
                    return false;
                }
            }
            Msg::Raft(message) => {
                if let Err(err) = self.raw.step(*message) {
                    debug!(%err, "raft message refused");
                }
            }
            Msg::ChangeMembership { change, reply } => {
                // raft-rs forwards no conf change: only the leader may propose one.
                if self.raw.raft.state != StateRole::Leader {
                    let leader = Some(self.raw.raft.leader_id).filter(|&l| l != 0);
                    let _ = reply.send(Err(ProposeError::NotLeader { leader }));
                    return true;
                }
                let context = self.next_context();
                let mut cc = ConfChange::default();
                let (kind, node) = match change {
                    Membership::Add(node) => (ConfChangeType::AddNode, node),
                    Membership::Remove(node) => (ConfChangeType::RemoveNode, node),
                };
                cc.set_change_type(kind);
                cc.node_id = node;
                match self.raw.propose_conf_change(context, cc) {
                    Ok(()) => {
                        self.pending_changes.insert(self.seq, (Instant::now() + self.config.proposal_timeout, reply));
                    }
                    Err(err) => {
                        let _ = reply.send(Err(ProposeError::Dropped(err.to_string())));
                    }
                }
            }
            Msg::Propose { data, reply } => {
                // A follower's proposal is forwarded to the leader by raft itself; without a
                // known leader there is nobody to forward to.
                if self.raw.raft.leader_id == 0 {
                    let _ = reply.send(Err(ProposeError::NotLeader { leader: None }));
                    return true;
                }
                let context = self.next_context();
                match self.raw.propose(context, data) {
                    Ok(()) => {
                        self.proposals += 1;
                        self.pending.insert(self.seq, (Instant::now() + self.config.proposal_timeout, reply));
                    }
                    Err(err) => {
                        let _ = reply.send(Err(ProposeError::Dropped(err.to_string())));
                    }
                }
            }
            Msg::ReadIndex { reply } => {
                // A follower asks the leader; without one the request would just be dropped.
                if self.raw.raft.leader_id == 0 {
                    let _ = reply.send(Err(ProposeError::NotLeader { leader: None }));
                    return true;
                }
                let context = self.next_context();
                self.raw.read_index(context);
                let deadline = Instant::now() + self.config.proposal_timeout;
                self.reads.insert(self.seq, PendingRead { deadline, index: None, reply });
            }
        }
        true
    }

    /// The context of this node's next proposal or read: who asked, in which run, and a
    /// sequence number, so that the answer finds its way back to the caller.
    fn next_context(&mut self) -> Vec<u8> {
        self.seq += 1;
        let mut context = Vec::with_capacity(24);
        context.extend_from_slice(&self.config.id.to_le_bytes());
        context.extend_from_slice(&self.incarnation.to_le_bytes());
        context.extend_from_slice(&self.seq.to_le_bytes());
        context
    }

    /// Answers the reads whose index this node has applied.
    fn answer_reads(&mut self) {
        let applied = self.applied;
        let ready: Vec<u64> =
            self.reads.iter().filter(|(_, r)| r.index.is_some_and(|i| i <= applied)).map(|(s, _)| *s).collect();
        for seq in ready {
            if let Some(read) = self.reads.remove(&seq) {
                let _ = read.reply.send(Ok(applied));
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let late: Vec<u64> = self.pending.iter().filter(|(_, (at, _))| *at <= now).map(|(s, _)| *s).collect();
        for seq in late {
            if let Some((_, reply)) = self.pending.remove(&seq) {
                let _ = reply.send(Err(ProposeError::Timeout(self.config.proposal_timeout)));
            }
        }
        let late: Vec<u64> = self.pending_changes.iter().filter(|(_, (at, _))| *at <= now).map(|(s, _)| *s).collect();
        for seq in late {
            if let Some((_, reply)) = self.pending_changes.remove(&seq) {
                let _ = reply.send(Err(ProposeError::Timeout(self.config.proposal_timeout)));
            }
        }
        // A leader that has not committed in its term yet drops read requests, and so does
        // a message lost on the way: the caller asks again.
        let late: Vec<u64> = self.reads.iter().filter(|(_, r)| r.deadline <= now).map(|(s, _)| *s).collect();
        for seq in late {
            if let Some(read) = self.reads.remove(&seq) {
                let _ = read.reply.send(Err(ProposeError::Timeout(self.config.proposal_timeout)));
            }
        }
    }

    /// raft-rs's order, asynchronously: send, apply committed, stage entries and hard
    /// state in memory and queue them for the writer, hold what may only be sent once they
    /// are durable, advance. `persisted_up_to` goes on when the writer reports.
    fn on_ready(&mut self) -> Result<(), NodeError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        let number = ready.number();
        self.send(ready.take_messages());
        for state in ready.take_read_states() {
            if let Some(seq) = self.own_proposal(&state.request_ctx)
                && let Some(read) = self.reads.get_mut(&seq)
            {
                read.index = Some(state.index);
            }
        }
        let mut queued = false;
        if !ready.snapshot().is_empty() {
            queued |= self.install(ready.snapshot().clone(), number)?;
        }
        // Their proposers are answered at the round's end, after the status shows them
        // (nothing in the round waits for a disk).
        self.apply_committed(ready.take_committed_entries());
        self.apply_ahead();
        let entries = ready.take_entries();
        let hard_state = ready.hs().cloned();
        if !entries.is_empty() || hard_state.is_some() {
            self.storage.stage(&entries, hard_state.as_ref())?;
            let sync = ready.must_sync();
            queued |= self.persister.queue(WriteOp::Append { number, entries, hard_state, sync })?;
        }
        if queued {
            self.submitted = number;
        }
        // A follower's messages all come as "persisted" ones, but a proposal or read request
        // it forwards to the leader promises nothing about its own log: out now, not after
        // the fsync under way (which would add up to a whole fsync to every request made
        // through a follower).
        let (forwarded, persisted): (Vec<Message>, Vec<Message>) = ready
            .take_persisted_messages()
            .into_iter()
            .partition(|m| matches!(m.get_msg_type(), MessageType::MsgPropose | MessageType::MsgReadIndex));
        self.send(forwarded);
        if !persisted.is_empty() {
            // They promise what this Ready and every earlier one wrote.
            self.held.push_back((self.submitted, persisted));
        }
        self.raw.advance_append_async(ready);
        if self.submitted <= self.persisted {
            // Nothing of this Ready or an earlier one is waiting for the writer (in memory
            // only, or nothing to write): as good as durable.
            self.persisted_up_to(number);
        } else {
            self.advance_apply();
            self.release_held();
        }
        // Counted as delivered once handed to the transport: if it was lost, the peer's
        // answer to the next append shows it still behind, and raft sends it again.
        for peer in self.snapshots_sent.drain(..) {
            self.raw.report_snapshot(peer, SnapshotStatus::Finish);
        }
        Ok(())
    }

    /// The writer has made every Ready up to `number` durable.
    fn persisted_up_to(&mut self, number: u64) {
        self.persisted = self.persisted.max(number);
        self.raw.on_persist_ready(number);
        self.advance_apply();
        self.release_held();
    }

    /// Tells raft what is applied. An installed snapshot counts only once it is durable
    /// (raft refuses an applied index past what it knows persisted).
    fn advance_apply(&mut self) {
        let log = &self.raw.raft.raft_log;
        let applied = self.applied.min(log.persisted).min(log.committed);
        if applied > log.applied {
            self.raw.advance_apply_to(applied);
        }
    }

    fn release_held(&mut self) {
        while self.held.front().is_some_and(|(needs, _)| *needs <= self.persisted) {
            if let Some((_, messages)) = self.held.pop_front() {
                self.send(messages);
            }
        }
    }

    /// A snapshot from the leader: the state machine and the log start over from it.
    /// True if the writer has it to make durable.
    fn install(&mut self, snapshot: Snapshot, number: u64) -> Result<bool, NodeError> {
        let index = snapshot.get_metadata().index;
        self.apply.restore(index, &snapshot.data).map_err(NodeError::Snapshot)?;
        (self.snapshot_bytes, self.applied_bytes) = (snapshot.data.len() as u64, 0);
        self.conf_state = snapshot.get_metadata().get_conf_state().clone();
        let roll = self.storage.stage_install(snapshot.clone())?;
        let queued = self.persister.queue(WriteOp::Install { number, snapshot, roll })?;
        info!(index, "installed a snapshot from the leader");
        self.snapshot_index = index;
        self.installed_snapshot = Some(index);
        self.applied = self.applied.max(index);
        Ok(queued)
    }

    /// Every `snapshot_every` applied entries (or at once after a node was added): a copy
    /// of the state machine, encoded and made durable on a thread of its own; the log is
    /// compacted when it is (`snapshotted`).
    fn maybe_snapshot(&mut self) -> Result<(), NodeError> {
        if self.snapshot_job.as_ref().is_some_and(|job| !job.is_finished()) {
            // One at a time; a membership change's wish waits for it.
            return Ok(());
        }
        // The copy holds every entry applied, ahead of the log's durable end or not; it
        // waits for the log, so that a snapshot never covers entries the log has yet to
        // write (the compaction that follows would retire segments out of order).
        let applied = self.applied;
        if applied > self.raw.raft.raft_log.persisted {
            return Ok(());
        }
        let since = self.snapshot_index.max(self.snapshot_floor);
        let due = self.config.snapshot_every > 0
            && applied >= since + self.config.snapshot_every
            && self.applied_bytes >= self.snapshot_bytes;
        if !(due || std::mem::take(&mut self.snapshot_now)) || applied <= self.snapshot_index {
            return Ok(());
        }
        if let Some(done) = self.snapshot_job.take() {
            let _ = done.join();
        }
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = applied;
        meta.term = self.raw.raft.raft_log.term(applied)?;
        meta.set_conf_state(self.conf_state.clone());
        // The next one is due `snapshot_every` after this one, whatever becomes of it (its
        // answer can come after the thread is seen finished, and must not start another).
        self.snapshot_floor = applied;
        let copying = Instant::now();
        let encode = self.apply.snapshot();
        self.applied_bytes = 0;
        let copy_ms = copying.elapsed().as_secs_f64() * 1e3;
        let (file, inbox) = (self.snapshots.clone(), self.inbox.clone());
        let job = std::thread::Builder::new()
            .name("raft-snapshot".into())
            .spawn(move || {
                background_priority();
                let started = Instant::now();
                // The log's next segment first: the snapshot's directory fsync makes its
                // name durable too.
                let spare = file.as_ref().and_then(|(_, spares)| {
                    spares.prepare().map_err(|err| warn!(%err, "no prepared log segment; the next one grows as written")).ok()
                });
                let result = encode().and_then(|data| {
                    snapshot.data = data.into();
                    match &file {
                        Some((file, _)) => match file.write_if_newer(&snapshot) {
                            Ok(true) => Ok((snapshot, spare.clone())),
                            Ok(false) => Err("a newer snapshot was installed meanwhile".into()),
                            Err(err) => Err(err.to_string()),
                        },
                        None => Ok((snapshot, None)),
                    }
                });
                if let (Err(_), Some(spare)) = (&result, &spare) {
                    // Not rolled into: it would only take disk space until a restart.
                    let _ = std::fs::remove_file(spare);
                }
                if let Ok((snapshot, _)) = &result {
                    let (index, bytes) = (snapshot.get_metadata().index, snapshot.data.len());
                    info!(index, bytes, copy_ms, write_ms = started.elapsed().as_secs_f64() * 1e3, "snapshot written");
                }
                let _ = inbox.send(Msg::Snapshotted(result));
            })
            .map_err(NodeError::Thread)?;
        self.snapshot_job = Some(job);
        Ok(())
    }

    /// A snapshot taken here is durable: the log drops what it covers.
    fn snapshotted(&mut self, snapshot: Result<(Snapshot, Option<PathBuf>), String>) -> Result<(), NodeError> {
        let (snapshot, spare) = match snapshot {
            Ok(taken) => taken,
            Err(err) => {
                error!(%err, "snapshot failed; the log is not compacted");
                self.snapshot_floor = self.applied;
                return Ok(());
            }
        };
        let (index, bytes) = (snapshot.get_metadata().index, snapshot.data.len());
        if index <= self.snapshot_index {
            // A newer one was installed meanwhile. Its prepared segment, if any, is left
            // for the next start to delete (the raft thread touches no disk).
            return Ok(());
        }
        let mut roll = self.storage.stage_compact(snapshot)?;
        roll.spare = spare;
        self.persister.queue(WriteOp::Compact(roll))?;
        self.snapshot_index = index;
        self.snapshot_bytes = bytes as u64;
        info!(index, bytes, "snapshot taken; log compacted");
        Ok(())
    }

    fn send(&mut self, mut messages: Vec<Message>) {
        // A node added at run time must start from a snapshot: the log does not hold the
        // membership the cluster started with, so entries from index 1 would make it a
        // cluster of its own. The leader compacts when a node is added (`snapshot_now`);
        // until then appends from the start are held back, and raft, hearing nothing,
        // sends again at the next heartbeat, a snapshot once the log is compacted.
        messages.retain(|m| {
            let from_the_start = m.get_msg_type() == MessageType::MsgAppend && m.index == 0 && !m.entries.is_empty();
            let held = from_the_start && !self.config.voters.contains(&m.to);
            if held {
                debug!(to = m.to, "entries from the start of the log held back from an added node");
            }
            !held
        });
        if messages.is_empty() {
            return;
        }
        self.snapshots_sent
            .extend(messages.iter().filter(|m| m.get_msg_type() == MessageType::MsgSnapshot).map(|m| m.to));
        match self.transport.get() {
            Some(transport) => transport.send(messages),
            None => debug!(count = messages.len(), "no peer transport yet; raft messages dropped"),
        }
    }

    /// Applies what is committed but not yet durable here. raft-rs hands out only entries
    /// this node has persisted, so a node whose own fsync lags would answer its clients
    /// late even though a quorum already has their entries on disk (which is what makes
    /// them safe: a committed entry is never undone, and a crash here loses nothing the
    /// quorum does not hold). The entries are in memory from the Ready that brought them.
    /// A membership change is left, with all after it, to raft's own order.
    fn apply_ahead(&mut self) {
        let log = &self.raw.raft.raft_log;
        let (from, to) = (self.applied + 1, log.committed);
        if from > to {
            return;
        }
        let entries = match log.slice(from, to + 1, None, GetEntriesContext::empty(false)) {
            Ok(entries) => entries,
            Err(err) => {
                debug!(%err, from, to, "committed entries not at hand; applied once durable");
                return;
            }
        };
        let normal = entries.iter().take_while(|e| e.get_entry_type() != EntryType::EntryConfChange).count();
        self.apply_committed(entries.into_iter().take(normal).collect());
    }

    fn apply_committed(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            // Applied ahead already (`apply_ahead`).
            if entry.index <= self.applied {
                continue;
            }
            self.applied = entry.index;
            if entry.get_entry_type() == EntryType::EntryConfChange {
                self.apply_conf_change(&entry);
                continue;
            }
            // Empty entries are the no-ops a new leader appends.
            if entry.data.is_empty() || entry.get_entry_type() != EntryType::EntryNormal {
                continue;
            }
            self.applied_bytes += entry.data.len() as u64;
            let output = self.apply.apply(entry.index, &entry.data);
            if let Some(seq) = self.own_proposal(&entry.context)
                && let Some((_, reply)) = self.pending.remove(&seq)
            {
                self.answers.push((reply, output));
            }
        }
    }

    /// A membership change, committed: raft applies it to its configuration here. One that
    /// raft refuses is refused alike on every node, so it is skipped, not fatal.
    fn apply_conf_change(&mut self, entry: &Entry) {
        use protobuf::Message as _;
        let cc = match ConfChange::parse_from_bytes(&entry.data) {
            Ok(cc) => cc,
            Err(err) => {
                error!(index = entry.index, %err, "a conf change entry that does not parse; skipped");
                return;
            }
        };
        match self.raw.apply_conf_change(&cc) {
            Ok(conf_state) => self.conf_state = conf_state,
            Err(err) => {
                error!(index = entry.index, %err, node = cc.node_id, "raft refused the conf change; skipped");
                return;
            }
        }
        info!(index = entry.index, change = ?cc.get_change_type(), node = cc.node_id, voters = ?self.conf_state.voters, "membership changed");
        if cc.get_change_type() == ConfChangeType::AddNode {
            // A new node must start from a snapshot, not from entry 1 (see `send`):
            // compacting now gives the leader one to send.
            self.snapshot_now = true;
        }
        if let Some(seq) = self.own_proposal(&entry.context)
            && let Some((_, reply)) = self.pending_changes.remove(&seq)
        {
            let mut voters = self.conf_state.voters.clone();
            voters.sort_unstable();
            let _ = reply.send(Ok(voters));
        }
    }

    /// The sequence number of this run's proposal or read that `context` names.
    fn own_proposal(&self, context: &[u8]) -> Option<u64> {
        let word = |i: usize| context.get(i * 8..i * 8 + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
        (word(0)? == self.config.id && word(1)? == self.incarnation).then_some(word(2)?)
    }

    /// Answers the proposals applied so far, once the status shows them applied (only
    /// that: a leader change is `publish`'s, at the end of the round, after this round's
    /// entries are applied, so that it fails only proposals that are still pending).
    fn answer(&mut self) {
        if self.answers.is_empty() {
            return;
        }
        {
            let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            status.applied = status.applied.max(self.applied);
            status.commit = status.commit.max(self.applied);
        }
        for (reply, output) in self.answers.drain(..) {
            let _ = reply.send(Ok(output));
        }
    }

    fn publish(&mut self) {
        let leader = self.raw.raft.leader_id;
        if leader != self.last_leader {
            if leader != 0 {
                self.leader_changes += 1;
                info!(leader, term = self.raw.raft.term, "raft leader");
            }
            // Proposals forwarded to the old leader are likely lost with it; say so now
            // rather than at the timeout, so the caller can propose again. One may still
            // commit (the new leader had it): it is then applied without an answer.
            // Without an old leader, every pending proposal was made under the new one
            // (none is taken while there is no leader), in this round: those stand.
            let now_leader = Some(leader).filter(|&l| l != 0);
            if self.last_leader != 0 {
                for (_, (_, reply)) in self.pending.drain() {
                    let _ = reply.send(Err(ProposeError::NotLeader { leader: now_leader }));
                }
                for (_, (_, reply)) in self.pending_changes.drain() {
                    let _ = reply.send(Err(ProposeError::NotLeader { leader: now_leader }));
                }
            }
            self.last_leader = leader;
            // A read index confirmed by the old leader is still sound (it was the commit
            // index while that leader led); unconfirmed requests may be lost with it.
            let unconfirmed: Vec<u64> = self.reads.iter().filter(|(_, r)| r.index.is_none()).map(|(s, _)| *s).collect();
            for seq in unconfirmed {
                if let Some(read) = self.reads.remove(&seq) {
                    let _ = read.reply.send(Err(ProposeError::NotLeader { leader: now_leader }));
                }
            }
        }
        let status = status_of(
            &self.raw,
            self.applied,
            self.proposals,
            self.leader_changes,
            self.snapshot_index,
            self.installed_snapshot,
            &self.conf_state,
        );
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = status;
    }
}

/// Lowers the calling thread's CPU priority to the least (nice 19). A snapshot's encoding
/// is background work: on a busy host it must not take CPU from the threads that commit
/// and answer, and it needs little (the log holds everything meanwhile).
fn background_priority() {
    // SAFETY: gettid has no preconditions; setpriority on our own thread id changes only
    // this thread's nice value (Linux applies PRIO_PROCESS to a thread id).
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) } != 0;
    if failed {
        debug!(err = %std::io::Error::last_os_error(), "snapshot thread keeps its priority");
    }
}

/// `applied`: what this node has applied, which runs ahead of raft's own count (raft hears
/// of it at the round's end, and only up to what this node has persisted).
fn status_of(
    raw: &RawNode<RaftStorage>,
    applied: u64,
    proposals: u64,
    leader_changes: u64,
    snapshot_index: u64,
    installed_snapshot: Option<u64>,
    conf_state: &ConfState,
) -> NodeStatus {
    let raft = &raw.raft;
    let mut voters = conf_state.voters.clone();
    voters.sort_unstable();
    NodeStatus {
        id: raft.id,
        role: match raft.state {
            StateRole::Leader => Role::Leader,
            StateRole::Follower => Role::Follower,
            StateRole::Candidate | StateRole::PreCandidate => Role::Candidate,
        },
        term: raft.term,
        leader: Some(raft.leader_id).filter(|&l| l != 0),
        commit: raft.raft_log.committed,
        applied: raft.raft_log.applied.max(applied),
        proposals,
        leader_changes,
        snapshot_index,
        installed_snapshot,
        voters,
    }
}

fn incarnation() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// raft-rs logs through slog; this forwards its records to tracing.
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, _values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => error!(target: "raft", "{}", record.msg()),
            slog::Level::Warning => warn!(target: "raft", "{}", record.msg()),
            slog::Level::Info => info!(target: "raft", "{}", record.msg()),
            slog::Level::Debug | slog::Level::Trace => debug!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::mpsc;

    use super::*;

    /// A state machine of the entries applied, whose first snapshot is encoded only once
    /// the test says so: a snapshot as slow as the test wants, without a clock.
    struct Slow {
        applied: Vec<Vec<u8>>,
        started: mpsc::Sender<u64>,
        release: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
    }

    impl Apply for Slow {
        type Output = usize;

        fn apply(&mut self, _index: u64, data: &[u8]) -> usize {
            self.applied.push(data.to_vec());
            self.applied.len()
        }

        fn snapshot(&self) -> SnapshotJob {
            let copy = self.applied.clone();
            let (started, release) = (self.started.clone(), self.release.lock().unwrap().take());
            Box::new(move || {
                let _ = started.send(copy.len() as u64);
                if let Some(release) = release {
                    // Bounded, so that a failing test ends instead of hanging in its drop.
                    release.recv_timeout(Duration::from_secs(30)).map_err(|e| e.to_string())?;
                }
                Ok(copy.concat())
            })
        }

        fn restore(&mut self, _index: u64, data: &[u8]) -> Result<(), String> {
            self.applied = data.iter().map(|b| vec![*b]).collect();
            Ok(())
        }
    }

    /// A node alone in `dir`, due a snapshot every 5 entries.
    fn single_node<A: Apply<Output = usize>>(dir: &std::path::Path, apply: A) -> Node<usize> {
        let (store, _) = LogStore::open(dir, &[1]).unwrap();
        let mut config = NodeConfig::single(1);
        config.snapshot_every = 5;
        Node::start(config, store, apply).unwrap()
    }

    #[tokio::test]
    async fn the_node_keeps_committing_while_a_snapshot_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (started, started_rx) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let slow = Slow { applied: Vec::new(), started, release: Arc::new(Mutex::new(Some(release_rx))) };
        let node = single_node(dir.path(), slow);
        let mut answers = Vec::new();
        for i in 0..5u8 {
            answers.push(node.propose(vec![i]).await.unwrap());
        }
        // The snapshot of the first five entries (after the leader's empty one) is under
        // way, and stays so.
        let copied = started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(copied >= 4, "{copied}");
        for i in 5..200u8 {
            answers.push(node.propose(vec![i]).await.unwrap());
        }
        assert_eq!(answers, (1..=200).collect::<Vec<_>>(), "every entry applied, in order");
        let status = node.status();
        assert!(status.applied >= 200, "{status:?}");
        assert_eq!(status.snapshot_index, 0, "the snapshot is not done: {status:?}");

        release.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.status().snapshot_index < copied + 1 {
            assert!(Instant::now() < deadline, "the snapshot never finished: {:?}", node.status());
            tokio::task::yield_now().await;
            std::thread::yield_now();
        }
        // Once a snapshot finished, the next (of everything applied since) may start.
        assert_eq!(node.propose(vec![200]).await.unwrap(), 201);
        drop(node);

        // On disk: the snapshot, and a log that starts after it with every later entry.
        let (store, recovery) = LogStore::open(dir.path(), &[1]).unwrap();
        assert!(recovery.snapshot_index > copied, "{recovery:?}");
        let storage = store.storage();
        assert_eq!(storage.first_index().unwrap(), recovery.snapshot_index + 1);
        assert!(storage.last_index().unwrap() >= 201, "every entry is in the log");
    }

    /// The entries applied, in order.
    struct Entries(Vec<Vec<u8>>);

    impl Apply for Entries {
        type Output = usize;

        fn apply(&mut self, _index: u64, data: &[u8]) -> usize {
            self.0.push(data.to_vec());
            self.0.len()
        }

        fn snapshot(&self) -> SnapshotJob {
            let copy = self.0.concat();
            Box::new(move || Ok(copy))
        }

        fn restore(&mut self, _index: u64, data: &[u8]) -> Result<(), String> {
            self.0 = data.iter().map(|b| vec![*b]).collect();
            Ok(())
        }
    }

    /// A follower's disk stalls: what it forwards still goes out at once, and what a
    /// quorum (the other two) has durable is applied and answered there, though raft
    /// alone would wait for the follower's own fsync for both.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_whose_disk_stalls_answers_what_a_quorum_has_durable() {
        let dir = tempfile::tempdir().unwrap();
        let tls = crate::tls::ClusterTls::load_or_create(&dir.path().join("tls")).unwrap();
        let voters = vec![1, 2, 3];
        let gates: Vec<Arc<std::sync::RwLock<()>>> = voters.iter().map(|_| Arc::default()).collect();
        let mut nodes = Vec::new();
        for &id in &voters {
            let (store, _) = LogStore::open(&dir.path().join(format!("node{id}")), &voters).unwrap();
            let mut config = NodeConfig::cluster(id, voters.clone());
            config.log_gate = Some(gates[id as usize - 1].clone());
            let node = Node::start(config, store, Entries(Vec::new())).unwrap();
            let transport = Transport::start(id, "127.0.0.1:0".parse().unwrap(), &[], &tls, node.inbox()).unwrap();
            nodes.push((node, transport));
        }
        let addrs: Vec<_> = nodes.iter().map(|(_, t)| t.local_addr().unwrap()).collect();
        let nodes: Vec<Node<usize>> = nodes
            .into_iter()
            .map(|(node, transport)| {
                for (k, &addr) in addrs.iter().enumerate() {
                    transport.add_peer(k as u64 + 1, addr);
                }
                node.set_transport(transport);
                node
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        let leader = loop {
            let leaders: Vec<u64> = nodes.iter().map(|n| n.status().leader.unwrap_or(0)).collect();
            if leaders[0] != 0 && leaders.iter().all(|&l| l == leaders[0]) {
                break leaders[0];
            }
            assert!(Instant::now() < deadline, "no leader known to all: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let f = (0..3).find(|&k| k as u64 + 1 != leader).unwrap();
        let follower = &nodes[f];
        let before = follower.propose(vec![0]).await.unwrap();

        let stall = gates[f].write().unwrap();
        for i in 1..=20u8 {
            let answer = follower.propose(vec![i]).await;
            assert_eq!(answer, Ok(before + usize::from(i)), "proposal {i} through the stalled follower");
        }
        assert!(follower.read_index().await.is_ok(), "a consistent read through the stalled follower");
        drop(stall);
        // Once its disk is back, it goes on as before.
        assert_eq!(follower.propose(vec![21]).await, Ok(before + 21));
    }

    /// Entries with a state of `padding` bytes besides them.
    struct Padded(Entries, usize);

    impl Apply for Padded {
        type Output = usize;

        fn apply(&mut self, index: u64, data: &[u8]) -> usize {
            self.0.apply(index, data)
        }

        fn snapshot(&self) -> SnapshotJob {
            let mut copy = vec![0; self.1];
            copy.extend(self.0.0.concat());
            Box::new(move || Ok(copy))
        }

        fn restore(&mut self, index: u64, data: &[u8]) -> Result<(), String> {
            self.0.restore(index, data)
        }
    }

    async fn snapshot_past(node: &Node<usize>, index: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let taken = node.status().snapshot_index;
            if taken > index {
                return taken;
            }
            assert!(Instant::now() < deadline, "no snapshot past {index}: {:?}", node.status());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_large_state_is_snapshotted_only_once_the_log_since_is_as_large() {
        let dir = tempfile::tempdir().unwrap();
        // A 2000-byte state besides 10-byte entries.
        let node = single_node(dir.path(), Padded(Entries(Vec::new()), 2000));
        let entry = |i: u32| format!("entry{i:05}").into_bytes();
        // The first is due after 5 entries: nothing was written yet.
        for i in 0..5 {
            node.propose(entry(i)).await.unwrap();
        }
        let first = snapshot_past(&node, 0).await;
        // 150 entries of 10 bytes are 1500 bytes: less than the 2000-byte state, no
        // snapshot yet, though 5 entries would have been enough for the count alone.
        for i in 5..155 {
            node.propose(entry(i)).await.unwrap();
        }
        assert_eq!(node.status().snapshot_index, first, "{:?}", node.status());
        // 60 more make over 2000 bytes: the next one is taken.
        for i in 155..215 {
            node.propose(entry(i)).await.unwrap();
        }
        let second = snapshot_past(&node, first).await;
        assert!(second > first + 200, "{second} after {first}");
    }
}
