//! Raft messages between coordinators: QUIC with mutual TLS under the cluster CA.
//!
//! Each node listens on its raft address and dials every peer. A dialled connection
//! carries one unidirectional stream of length-prefixed protobuf `Message`s from the
//! dialler to the listener, so each direction between two nodes has its own connection
//! and a node only ever reads from peers that dialled it. The listener accepts only
//! client certificates whose CN is a peer's (`tls::peer_common_name` of a configured id):
//! an agent's certificate, though signed by the same CA, is refused, and so is any
//! certificate of another CA (in the handshake). Only then are frames parsed, because
//! raft-proto's protobuf 2 parser is not hardened against hostile input.
//!
//! Raft tolerates lost messages, so sending never blocks: each peer has a bounded queue,
//! and what does not fit (a peer down or slow) is dropped and resent by raft later.
//!
//! Peers are the configured ones plus those added at run time (`add_peer`, a node that
//! joined the cluster); a peer is never dropped here: raft stops sending to a removed one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use protobuf::Message as _;
use raft::prelude::Message;
use tokio::io::AsyncReadExt as _;
use tokio::sync::{Notify, mpsc};
use tracing::{debug, error, info, warn};

use crate::tls::{ClusterTls, SERVER_NAME, TlsError, peer_common_name};

/// Larger frames are not raft messages we send. Entries are capped at 1 MiB per message;
/// a snapshot travels whole, and the judge state grows with the history, so this bounds
/// how large a state a node can catch up from (at 64 MiB it was ~80,000 submissions).
/// Frames are read as they arrive, not allocated from the length a peer announces.
const MAX_FRAME: usize = 1 << 30;
const QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("binding the raft address {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Where received messages go (the node's inbox).
pub type Deliver = Arc<dyn Fn(Message) + Send + Sync>;

/// The sending half; cheap to share with the node thread.
pub struct Transport {
    id: u64,
    peers: Mutex<HashMap<u64, (SocketAddr, mpsc::Sender<Message>)>>,
    /// Certificate names of the peers whose connections are accepted, each with its
    /// dialler's wake-up (a peer that dials us is up again, so a dialler waiting out its
    /// back-off should try now).
    allowed: Arc<RwLock<HashMap<String, Arc<Notify>>>>,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    runtime: tokio::runtime::Handle,
}

impl Transport {
    /// Listens on `listen` and starts one sender task per peer (`id`, raft address).
    /// Must be called within a tokio runtime.
    pub fn start(
        id: u64,
        listen: SocketAddr,
        peers: &[(u64, SocketAddr)],
        tls: &ClusterTls,
        deliver: Deliver,
    ) -> Result<Transport, TransportError> {
        let (server, client) = tls.peer_configs(id)?;
        let bind_err = |source| TransportError::Bind { addr: listen, source };
        let socket = std::net::UdpSocket::bind(listen).map_err(bind_err)?;
        let endpoint = quinn::Endpoint::new(tls.endpoint_config("raft"), Some(server), socket, Arc::new(quinn::TokioRuntime))
            .map_err(bind_err)?;
        let allowed = Arc::new(RwLock::new(HashMap::new()));
        tokio::spawn(accept(endpoint.clone(), allowed.clone(), deliver));
        let transport = Transport {
            id,
            peers: Mutex::new(HashMap::new()),
            allowed,
            endpoint,
            client,
            runtime: tokio::runtime::Handle::current(),
        };
        for &(peer, addr) in peers {
            transport.add_peer(peer, addr);
        }
        Ok(transport)
    }

    /// Sends to (and accepts) peer `peer` at `addr` from now on; a known peer at a new
    /// address is dialled there instead. Callable from any thread.
    pub fn add_peer(&self, peer: u64, addr: SocketAddr) {
        if peer == self.id {
            return;
        }
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if peers.get(&peer).is_some_and(|(known, _)| *known == addr) {
            return;
        }
        let heard = self
            .allowed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(peer_common_name(peer))
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        let (tx, rx) = mpsc::channel(QUEUE);
        // Replacing the sender ends the old dialler (its queue closes).
        peers.insert(peer, (addr, tx));
        self.runtime.spawn(dial(self.endpoint.clone(), self.client.clone(), peer, addr, rx, heard));
    }

    /// The bound raft address (useful when listening on port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Queues `messages` for their peers; never blocks.
    pub fn send(&self, messages: Vec<Message>) {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        for message in messages {
            match peers.get(&message.to) {
                Some((_, tx)) => {
                    if tx.try_send(message).is_err() {
                        debug!("raft peer queue full or closed; message dropped");
                    }
                }
                None => debug!(to = message.to, "raft message to an unknown peer dropped"),
            }
        }
    }
}

/// `allowed`: the peers' certificate names, each with its dialler's wake-up (a peer that
/// dials us is up again, so a dialler waiting out its back-off should try now).
async fn accept(endpoint: quinn::Endpoint, allowed: Arc<RwLock<HashMap<String, Arc<Notify>>>>, deliver: Deliver) {
    while let Some(incoming) = endpoint.accept().await {
        let (allowed, deliver) = (allowed.clone(), deliver.clone());
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(conn) => conn,
                Err(err) => {
                    // The handshake fails here for a certificate of another CA, or none.
                    warn!(%err, "raft peer handshake failed");
                    return;
                }
            };
            let name = conn
                .peer_identity()
                .and_then(|id| id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok())
                .and_then(|certs| certs.first().and_then(crate::tls::common_name));
            let heard = name.as_ref().and_then(|n| allowed.read().unwrap_or_else(PoisonError::into_inner).get(n).cloned());
            let Some(heard) = heard else {
                warn!(peer = ?name, remote = %conn.remote_address(), "refusing a raft connection: not a peer's certificate");
                conn.close(quinn::VarInt::from_u32(1), b"not a raft peer");
                return;
            };
            heard.notify_one();
            debug!(peer = ?name, "raft peer connected");
            while let Ok(mut stream) = conn.accept_uni().await {
                let deliver = deliver.clone();
                tokio::spawn(async move {
                    if let Err(err) = read_frames(&mut stream, &deliver).await {
                        debug!(%err, "raft peer stream ended");
                    }
                });
            }
        });
    }
}

async fn read_frames(stream: &mut quinn::RecvStream, deliver: &Deliver) -> Result<(), String> {
    loop {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await.map_err(|e| e.to_string())?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(format!("frame of {len} bytes"));
        }
        let mut buf = Vec::with_capacity(len.min(1 << 20));
        let read = (&mut *stream).take(len as u64).read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        if read < len {
            return Err(format!("stream ended {read} bytes into a frame of {len}"));
        }
        let message = Message::parse_from_bytes(&buf).map_err(|e| e.to_string())?;
        deliver(message);
    }
}

/// Keeps a connection to `peer` and writes its queue into it, reconnecting as needed.
/// `heard` wakes it from a back-off pause when the peer dials us.
async fn dial(
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    peer: u64,
    addr: SocketAddr,
    mut rx: mpsc::Receiver<Message>,
    heard: Arc<Notify>,
) {
    let mut pause = Duration::from_millis(50);
    loop {
        let stream = async {
            let conn = endpoint.connect_with(config.clone(), addr, SERVER_NAME).map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())?;
            conn.open_uni().await.map_err(|e| e.to_string())
        };
        let mut stream = match stream.await {
            Ok(stream) => stream,
            Err(err) => {
                debug!(peer, %addr, %err, "raft peer unreachable");
                if rx.is_closed() {
                    return; // replaced by a dialler to a new address
                }
                // Messages queued meanwhile are stale; raft resends what still matters.
                while rx.try_recv().is_ok() {}
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = heard.notified() => debug!(peer, "raft peer dialled us; reconnecting now"),
                }
                pause = (pause * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        info!(peer, %addr, "connected to raft peer");
        pause = Duration::from_millis(50);
        loop {
            let Some(message) = rx.recv().await else { return };
            let mut frame = Vec::new();
            match message.write_to_bytes() {
                Ok(bytes) if bytes.len() > MAX_FRAME => {
                    error!(peer, bytes = bytes.len(), kind = ?message.get_msg_type(), "a raft message over the frame limit; not sent");
                    continue;
                }
                Ok(bytes) => {
                    frame.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    frame.extend_from_slice(&bytes);
                }
                Err(err) => {
                    warn!(%err, "cannot encode a raft message");
                    continue;
                }
            }
            // Batch what else is queued into the same write.
            while frame.len() < (1 << 20) {
                let Ok(more) = rx.try_recv() else { break };
                if let Ok(bytes) = more.write_to_bytes()
                    && bytes.len() <= MAX_FRAME
                {
                    frame.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    frame.extend_from_slice(&bytes);
                }
            }
            if let Err(err) = stream.write_all(&frame).await {
                debug!(peer, %err, "raft peer connection lost");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::*;
    use crate::tls::RAFT_ALPN;

    /// A raft-ALPN client that trusts `ca` and presents the agent certificate in `dir`.
    fn agent_client(ca: &CertificateDer<'static>, dir: &std::path::Path) -> quinn::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let cert = CertificateDer::from_pem_file(dir.join("agent.pem")).unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join("agent.key")).unwrap();
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert], key)
            .unwrap();
        tls.alpn_protocols = vec![RAFT_ALPN.to_vec()];
        quinn::ClientConfig::new(Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap()))
    }

    /// Connects and sends one frame; true if the listener kept the connection open.
    async fn heard(endpoint: &quinn::Endpoint, config: quinn::ClientConfig, to: SocketAddr) -> bool {
        let Ok(connecting) = endpoint.connect_with(config, to, SERVER_NAME) else { return false };
        let Ok(conn) = connecting.await else { return false };
        let sent = async {
            let mut stream = conn.open_uni().await.ok()?;
            let m = Message { to: 1, term: 99, ..Default::default() };
            let bytes = m.write_to_bytes().ok()?;
            stream.write_all(&(bytes.len() as u32).to_le_bytes()).await.ok()?;
            stream.write_all(&bytes).await.ok()
        };
        // A refusal may surface in the handshake, on the first stream, or as a close.
        if sent.await.is_none() {
            return false;
        }
        tokio::time::timeout(Duration::from_secs(2), conn.closed()).await.is_err()
    }

    /// Node 1, whose received messages come out of the receiver, and node 2, a peer that
    /// sends to it; both with `tls`.
    fn two_nodes(tls: &ClusterTls) -> (Transport, Transport, mpsc::UnboundedReceiver<Message>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let deliver: Deliver = Arc::new(move |m| {
            let _ = tx.send(m);
        });
        let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let node1 = Transport::start(1, "127.0.0.1:0".parse().unwrap(), &[(2, unused)], tls, deliver).unwrap();
        let addr = node1.local_addr().unwrap();
        let node2 = Transport::start(2, "127.0.0.1:0".parse().unwrap(), &[(1, addr)], tls, Arc::new(|_| {})).unwrap();
        (node1, node2, rx)
    }

    #[tokio::test]
    async fn only_configured_peers_of_the_cluster_ca_are_heard() {
        let (dir, other_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let tls = ClusterTls::load_or_create(dir.path()).unwrap();
        let other = ClusterTls::load_or_create(other_dir.path()).unwrap();
        let (node1, node2, mut rx) = two_nodes(&tls);
        let addr = node1.local_addr().unwrap();

        // Node 2, with a peer certificate of this cluster: its message arrives.
        node2.send(vec![Message { to: 1, from: 2, term: 7, ..Default::default() }]);
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        assert_eq!((got.from, got.term), (2, 7));

        let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        // A peer certificate of this CA, but not of a configured peer.
        assert!(!heard(&client, tls.peer_configs(9).unwrap().1, addr).await);
        // An agent's certificate of this CA.
        tls.issue_agent_cert("agent1", &dir.path().join("agent1")).unwrap();
        assert!(!heard(&client, agent_client(tls.ca_cert_der(), &dir.path().join("agent1")), addr).await);
        // A certificate of another cluster's CA.
        other.issue_agent_cert("agent1", &other_dir.path().join("agent1")).unwrap();
        assert!(!heard(&client, agent_client(tls.ca_cert_der(), &other_dir.path().join("agent1")), addr).await);
        // The check itself can fail: the same probe with node 2's credentials is heard.
        assert!(heard(&client, tls.peer_configs(2).unwrap().1, addr).await);
        let probe = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        assert_eq!(probe.term, 99);
        assert!(rx.try_recv().is_err(), "nothing from the refused connections");
    }

    /// A snapshot larger than the 64 MiB the frames were once capped at arrives whole
    /// (a judge state of ~100,000 submissions), and the messages after it too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_over_64_mib_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let tls = ClusterTls::load_or_create(dir.path()).unwrap();
        let (_node1, node2, mut rx) = two_nodes(&tls);
        let mut snapshot = Message { to: 1, from: 2, term: 3, ..Default::default() };
        snapshot.set_msg_type(raft::prelude::MessageType::MsgSnapshot);
        let data: Vec<u8> = (0..72u32 << 20).map(|i| (i % 251) as u8).collect();
        snapshot.mut_snapshot().data = data.clone().into();
        snapshot.mut_snapshot().mut_metadata().index = 123_456;
        node2.send(vec![snapshot, Message { to: 1, from: 2, term: 4, ..Default::default() }]);
        let got = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.unwrap().unwrap();
        assert_eq!(got.get_snapshot().get_metadata().index, 123_456);
        assert!(got.get_snapshot().data[..] == data[..], "the snapshot's bytes, all {} of them", data.len());
        let next = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        assert_eq!(next.term, 4);
    }
}
