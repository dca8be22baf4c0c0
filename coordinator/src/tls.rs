//! The cluster's private PKI: one CA, the coordinator's server certificate and the agents'
//! client certificates, all made here with rcgen.
//!
//! Both ends of the agent link trust only the cluster CA: agents verify the coordinator as
//! [`SERVER_NAME`] against `ca.pem`, the coordinator verifies agents' client certificates
//! against the same CA and takes the agent's identity from the certificate's CN. There is
//! deliberately no way to turn verification off.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The DNS name in the coordinator's certificate that agents verify, whatever address they
/// dial: agents often reach the coordinator by an IP or a name the CA never heard of.
pub const SERVER_NAME: &str = "judge-coordinator";

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "coordinator.pem";
const SERVER_KEY: &str = "coordinator.key";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{present} exists but {missing} does not; refusing to make a new CA over half of an old one")]
    IncompleteCa { present: PathBuf, missing: PathBuf },
    #[error("could not parse {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("could not generate the {what}: {source}")]
    Generate { what: &'static str, source: rcgen::Error },
    #[error("invalid agent id {0:?}: want 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    InvalidAgentId(String),
    #[error("invalid server name {0:?}")]
    InvalidServerName(String),
    #[error("could not build the client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("could not build the TLS server config: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS config unusable for QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// The cluster CA (with its key, to issue certificates) and the coordinator's identity.
pub struct ClusterTls {
    dir: PathBuf,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    server_cert: CertificateDer<'static>,
    server_key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClusterTls {
    // By hand, so that no key material can end up in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Agent ids become a certificate CN and DNS SAN and a directory name on the agent, so they
/// are kept to a small, unambiguous alphabet.
pub fn valid_agent_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl ClusterTls {
    /// [`Self::load_or_create_with_names`] with no names beyond the defaults.
    pub fn load_or_create(data_dir: &Path) -> Result<ClusterTls, TlsError> {
        Self::load_or_create_with_names(data_dir, &[])
    }

    /// Loads the PKI from `<data_dir>/tls/`, creating the CA on first start. The server
    /// certificate is (re)issued when missing or when it lacks one of `extra_names` (DNS names
    /// or IP addresses), so adding a name to the configuration needs no manual step.
    pub fn load_or_create_with_names(data_dir: &Path, extra_names: &[String]) -> Result<ClusterTls, TlsError> {
        let dir = data_dir.join("tls");
        make_private_dir(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|source| TlsError::Io { action: "restrict", path: dir.clone(), source })?;

        let (ca_cert_path, ca_key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        let (ca_pem, ca_key) = match (ca_cert_path.exists(), ca_key_path.exists()) {
            (true, true) => {
                let key_pem = read(&ca_key_path)?;
                let key = KeyPair::from_pem(&key_pem)
                    .map_err(|e| TlsError::Parse { path: ca_key_path.clone(), reason: e.to_string() })?;
                (read(&ca_cert_path)?, key)
            }
            (false, false) => {
                tracing::info!(dir = %dir.display(), "creating the cluster CA");
                let (pem, key) = new_ca()?;
                // Key first: a crash in between leaves a lone key, which the check above reports.
                write_file(&ca_key_path, &key.serialize_pem(), 0o600)?;
                write_file(&ca_cert_path, &pem, 0o644)?;
                (pem, key)
            }
            (true, false) => return Err(TlsError::IncompleteCa { present: ca_cert_path, missing: ca_key_path }),
            (false, true) => return Err(TlsError::IncompleteCa { present: ca_key_path, missing: ca_cert_path }),
        };
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| TlsError::Parse { path: ca_cert_path.clone(), reason: e.to_string() })?;
        let issuer = Issuer::from_ca_cert_der(&ca_der, ca_key)
            .map_err(|e| TlsError::Parse { path: ca_cert_path.clone(), reason: e.to_string() })?;

        let mut names = vec![SERVER_NAME.to_string(), "localhost".into(), "127.0.0.1".into()];
        for n in extra_names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        let (cert_path, key_path) = (dir.join(SERVER_CERT), dir.join(SERVER_KEY));
        let existing = if cert_path.exists() && key_path.exists() {
            let cert = CertificateDer::from_pem_file(&cert_path)
                .map_err(|e| TlsError::Parse { path: cert_path.clone(), reason: e.to_string() })?;
            let key = PrivateKeyDer::from_pem_file(&key_path)
                .map_err(|e| TlsError::Parse { path: key_path.clone(), reason: e.to_string() })?;
            covers_names(&cert, &names).then_some((cert, key))
        } else {
            None
        };
        let (server_cert, server_key) = match existing {
            Some(pair) => pair,
            None => {
                tracing::info!(names = ?names, "issuing the coordinator's server certificate");
                let (cert_pem, key_pem) = issue_server_cert(&issuer, &names)?;
                write_file(&key_path, &key_pem, 0o600)?;
                write_file(&cert_path, &cert_pem, 0o644)?;
                let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
                    .map_err(|e| TlsError::Parse { path: cert_path, reason: e.to_string() })?;
                let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                    .map_err(|e| TlsError::Parse { path: key_path, reason: e.to_string() })?;
                (cert, key)
            }
        };
        Ok(ClusterTls { dir, ca_pem, ca_der, issuer, server_cert, server_key })
    }

    /// The CA certificate, DER encoded.
    pub fn ca_cert_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// Writes `ca.pem`, `agent.pem` and `agent.key` (mode 0600) into `out_dir`: a client
    /// certificate whose CN and DNS SAN are `agent_id`, signed by the cluster CA.
    pub fn issue_agent_cert(&self, agent_id: &str, out_dir: &Path) -> Result<(), TlsError> {
        if !valid_agent_id(agent_id) {
            return Err(TlsError::InvalidAgentId(agent_id.to_string()));
        }
        let gen_err = |source| TlsError::Generate { what: "agent certificate", source };
        let mut params = CertificateParams::new(vec![agent_id.to_string()]).map_err(gen_err)?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, agent_id);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(gen_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err)?;

        make_private_dir(out_dir)?;
        write_file(&out_dir.join("agent.key"), &key.serialize_pem(), 0o600)?;
        write_file(&out_dir.join("agent.pem"), &cert.pem(), 0o644)?;
        write_file(&out_dir.join("ca.pem"), &self.ca_pem, 0o644)?;
        tracing::info!(agent.id = agent_id, dir = %out_dir.display(), "issued agent certificate");
        Ok(())
    }

    /// The QUIC server config of the agent link: TLS 1.3 only, ALPN [`protocol::ALPN`], and a
    /// client certificate signed by the cluster CA required of every peer.
    pub fn server_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.server_cert.clone()], self.server_key.clone_key())?;
        tls.alpn_protocols = vec![protocol::ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
    }
}

/// ALPN of the raft peer link between coordinators, distinct from the agents' link.
pub const RAFT_ALPN: &[u8] = b"judge-raft/1";

/// The CN of raft node `id`'s client certificate. The space keeps it apart from every agent
/// id (`valid_agent_id`), so an agent's certificate, signed by the same CA, is no peer's.
pub fn peer_common_name(id: u64) -> String {
    format!("raft peer {id}")
}

impl ClusterTls {
    /// QUIC configs of raft node `id`'s peer link: the server side requires a client
    /// certificate of the cluster CA (the caller then checks it is a peer's, see
    /// `peer_common_name`); the client side presents a peer certificate issued now, in
    /// memory, and trusts only the cluster CA.
    pub fn peer_configs(&self, id: u64) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TlsError> {
        let gen_err = |source| TlsError::Generate { what: "raft peer certificate", source };
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, peer_common_name(id));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(gen_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err)?;
        let key = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| TlsError::Parse { path: self.dir.clone(), reason: e.to_string() })?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        let roots = Arc::new(roots);
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.server_cert.clone()], self.server_key.clone_key())?;
        server.alpn_protocols = vec![RAFT_ALPN.to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert.der().clone()], key)?;
        client.alpn_protocols = vec![RAFT_ALPN.to_vec()];
        let mut transport = quinn::TransportConfig::default();
        // A peer that vanishes without a close is noticed within an election timeout or so.
        transport.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(3_000))));
        transport.keep_alive_interval(Some(std::time::Duration::from_millis(500)));
        let transport = Arc::new(transport);
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(quinn::crypto::rustls::QuicServerConfig::try_from(server)?));
        server.transport_config(transport.clone());
        let mut client = quinn::ClientConfig::new(Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(client)?));
        client.transport_config(transport);
        Ok((server, client))
    }
}

impl ClusterTls {
    /// The QUIC endpoint settings of this coordinator's listener for `purpose` ("raft",
    /// "link"): the stateless-reset key and the connection-id key are derived from the
    /// coordinator's private key, so they survive a restart. A peer still talking to the
    /// previous process then gets a reset the new one can authenticate on its first packet
    /// and reconnects at once, instead of writing into a dead connection until the idle
    /// timeout (which made a leader election right after a restart wait for it).
    pub fn endpoint_config(&self, purpose: &str) -> quinn::EndpointConfig {
        let secret = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.server_key.secret_der());
        let derive = |what: &str| ring::hmac::sign(&secret, format!("judge quic {what}/{purpose}").as_bytes());
        let reset = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derive("stateless reset").as_ref());
        let mut config = quinn::EndpointConfig::new(Arc::new(reset));
        config.cid_generator(|| Box::new(RandomCids(ring::rand::SystemRandom::new())));
        config
    }
}

/// Random connection ids that every process accepts as possibly its own. quinn's default
/// generator tags its ids with a per-process random key and silently drops packets whose
/// tag it cannot check, so a restarted process would never answer an old connection's
/// packets with the reset that ends it. The cost: any stray short-header packet is
/// answered with a reset too (smaller than the packet, and rate-limited by quinn).
struct RandomCids(ring::rand::SystemRandom);

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut id = [0u8; 8];
        if ring::rand::SecureRandom::fill(&self.0, &mut id).is_err() {
            // The kernel's random source does not fail once the system has booted; ids
            // only need to be unique per connection here, so a clock is a sound fallback.
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            id = (nanos as u64).to_le_bytes();
        }
        quinn::ConnectionId::new(&id)
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

fn new_ca() -> Result<(String, KeyPair), TlsError> {
    let gen_err = |source| TlsError::Generate { what: "cluster CA", source };
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "judge cluster CA");
    // Path length 0: the CA signs leaves only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().map_err(gen_err)?;
    let cert = params.self_signed(&key).map_err(gen_err)?;
    Ok((cert.pem(), key))
}

/// Returns the certificate and key PEMs.
fn issue_server_cert(issuer: &Issuer<'static, KeyPair>, names: &[String]) -> Result<(String, String), TlsError> {
    let mut params = CertificateParams::new(names.to_vec()).map_err(|e| match e {
        rcgen::Error::InvalidAsn1String(_) => TlsError::InvalidServerName(format!("{names:?}")),
        source => TlsError::Generate { what: "server certificate", source },
    })?;
    let gen_err = |source| TlsError::Generate { what: "server certificate", source };
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, SERVER_NAME);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(gen_err)?;
    let cert = params.signed_by(&key, issuer).map_err(gen_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Whether the certificate's SANs hold every one of `names`; an unparsable certificate
/// covers nothing, so it gets replaced.
fn covers_names(cert: &CertificateDer<'_>, names: &[String]) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else { return false };
    let Ok(Some(san)) = parsed.subject_alternative_name() else { return false };
    names.iter().all(|name| {
        san.value.general_names.iter().any(|g| match (g, name.parse::<IpAddr>()) {
            (GeneralName::IPAddress(bytes), Ok(IpAddr::V4(ip))) => *bytes == ip.octets(),
            (GeneralName::IPAddress(bytes), Ok(IpAddr::V6(ip))) => *bytes == ip.octets(),
            (GeneralName::DNSName(dns), Err(_)) => dns.eq_ignore_ascii_case(name),
            _ => false,
        })
    })
}

/// The CN of a DER certificate: the agent's identity on the link.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

fn make_private_dir(dir: &Path) -> Result<(), TlsError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| TlsError::Io { action: "create directory", path: dir.to_path_buf(), source })
}

fn read(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::Io { action: "read", path: path.to_path_buf(), source })
}

/// Writes through a temporary file created with `mode` and renamed into place, so a key is
/// never readable by others even for an instant, and a crash never leaves half a file.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    let io_err = |action| move |source| TlsError::Io { action, path: path.to_path_buf(), source };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A stale temporary file from a crash may have other permissions: start afresh.
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err("create"))?;
    f.write_all(contents.as_bytes()).map_err(io_err("write"))?;
    f.sync_all().map_err(io_err("sync"))?;
    fs::rename(&tmp, path).map_err(io_err("rename into place"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn second_start_loads_the_same_ca_and_keys_are_private() {
        let data = tempfile::tempdir().unwrap();
        let first = ClusterTls::load_or_create(data.path()).unwrap();
        let tls = data.path().join("tls");
        let ca_key = fs::read(tls.join(CA_KEY)).unwrap();
        let server_pem = fs::read(tls.join(SERVER_CERT)).unwrap();

        let second = ClusterTls::load_or_create(data.path()).unwrap();
        assert_eq!(first.ca_cert_der(), second.ca_cert_der());
        assert_eq!(first.server_cert, second.server_cert);
        assert_eq!(fs::read(tls.join(CA_KEY)).unwrap(), ca_key);
        assert_eq!(fs::read(tls.join(SERVER_CERT)).unwrap(), server_pem);
        assert_eq!(mode(&tls), 0o700);
        assert_eq!(mode(&tls.join(CA_KEY)), 0o600);
        assert_eq!(mode(&tls.join(SERVER_KEY)), 0o600);
        assert_eq!(common_name(&first.server_cert).as_deref(), Some(SERVER_NAME));
    }

    #[test]
    fn new_names_reissue_the_server_cert_under_the_same_ca() {
        let data = tempfile::tempdir().unwrap();
        let first = ClusterTls::load_or_create(data.path()).unwrap();
        assert!(covers_names(&first.server_cert, &["localhost".into(), "127.0.0.1".into()]));
        let names = ["judge.example.org".to_string(), "10.1.2.3".to_string()];
        let second = ClusterTls::load_or_create_with_names(data.path(), &names).unwrap();
        assert_eq!(first.ca_cert_der(), second.ca_cert_der());
        assert_ne!(first.server_cert, second.server_cert);
        assert!(covers_names(&second.server_cert, &names));
        assert!(!covers_names(&second.server_cert, &["10.1.2.4".into()]));
        // A third start with the same names keeps the certificate.
        let third = ClusterTls::load_or_create_with_names(data.path(), &names).unwrap();
        assert_eq!(second.server_cert, third.server_cert);
    }

    #[test]
    fn half_a_ca_is_an_error_not_a_new_ca() {
        let data = tempfile::tempdir().unwrap();
        ClusterTls::load_or_create(data.path()).unwrap();
        fs::remove_file(data.path().join("tls").join(CA_KEY)).unwrap();
        assert!(matches!(ClusterTls::load_or_create(data.path()), Err(TlsError::IncompleteCa { .. })));
    }

    #[test]
    fn agent_cert_carries_the_id_and_is_private() {
        let data = tempfile::tempdir().unwrap();
        let tls = ClusterTls::load_or_create(data.path()).unwrap();
        let out = data.path().join("agent");
        tls.issue_agent_cert("judge-01.rack_2", &out).unwrap();
        assert_eq!(mode(&out.join("agent.key")), 0o600);
        let cert = CertificateDer::from_pem_file(out.join("agent.pem")).unwrap();
        assert_eq!(common_name(&cert).as_deref(), Some("judge-01.rack_2"));
        assert_eq!(&CertificateDer::from_pem_file(out.join("ca.pem")).unwrap(), tls.ca_cert_der());

        for bad in ["", "a b", "x/y", "é", &"a".repeat(65)] {
            assert!(matches!(tls.issue_agent_cert(bad, &out), Err(TlsError::InvalidAgentId(_))), "{bad:?}");
        }
        assert!(tls.server_config().is_ok());
    }
}
