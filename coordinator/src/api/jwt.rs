//! Login sessions as JSON Web Tokens: HS256 (HMAC-SHA256) over a secret every coordinator
//! of a cluster shares (`JWT_SECRET`, as in the seed), so any of them accepts a session
//! another one issued, without a database round trip.
//!
//! Only what we issue is accepted: the header must be exactly HS256/JWT (no `alg: none`,
//! no algorithm picked by the token), the signature is compared in constant time by
//! `hmac`, and `exp` is required. The claims carry the role, so a role change takes
//! effect when the session expires (one hour by default); API tokens are checked against
//! the store on every request and are the credential to revoke.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::store::auth::{Principal, Role};

/// The only header we issue and accept, pre-encoded.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
/// Secrets shorter than this are refused: HS256 is only as strong as its key.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JwtError {
    #[error("not a JWT (expected three base64url parts)")]
    Malformed,
    #[error("unsupported JWT header (only HS256 is accepted)")]
    Header,
    #[error("bad JWT signature")]
    Signature,
    #[error("the session expired; log in again")]
    Expired,
    #[error("bad JWT claims: {0}")]
    Claims(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user id, as text (RFC 7519 `sub` is a string).
    sub: String,
    name: String,
    role: String,
    iat: u64,
    exp: u64,
    /// The user's session epoch at issue (see `Store::end_sessions`).
    #[serde(default)]
    ep: u32,
}

/// The user id of a session minted by the holder of the secret itself (`coordinator
/// cluster add-node`), not by a login: no user has it, and it has no session epoch to
/// check. Whoever has the secret could sign any session anyway.
pub const OPERATOR_USER_ID: i64 = 0;

/// The key sessions are signed with.
#[derive(Clone)]
pub struct JwtKey {
    secret: Vec<u8>,
    /// How long a session lasts.
    pub ttl: Duration,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("JwtKey").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("JWT_SECRET is {0} bytes; at least {MIN_SECRET_BYTES} are needed")]
    TooShort(usize),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: std::path::PathBuf, source: std::io::Error },
    #[error("reading the OS random source: {0}")]
    Random(String),
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl JwtKey {
    pub fn new(secret: &[u8], ttl: Duration) -> Result<JwtKey, SecretError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort(secret.len()));
        }
        Ok(JwtKey { secret: secret.to_vec(), ttl })
    }

    /// A fresh random key (tests, and `load_or_create`'s first start).
    pub fn random(ttl: Duration) -> Result<JwtKey, SecretError> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| SecretError::Random(e.to_string()))?;
        JwtKey::new(crate::store::hex(&bytes).as_bytes(), ttl)
    }

    /// `secret` when given (JWT_SECRET), else the one in `file`, created on first use
    /// (0600). A cluster of several coordinators must be given the same JWT_SECRET.
    pub fn load_or_create(secret: Option<&str>, file: &Path, ttl: Duration) -> Result<JwtKey, SecretError> {
        if let Some(secret) = secret {
            return JwtKey::new(secret.as_bytes(), ttl);
        }
        let io = |what, source| SecretError::Io { what, path: file.to_owned(), source };
        match std::fs::read_to_string(file) {
            Ok(text) => JwtKey::new(text.trim().as_bytes(), ttl),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let key = JwtKey::random(ttl)?;
                // create_new: two coordinators sharing a data dir never overwrite each other's.
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(file)
                    .map_err(|e| io("creating", e))?;
                f.write_all(&key.secret).and_then(|_| f.write_all(b"\n")).and_then(|_| f.sync_all()).map_err(|e| io("writing", e))?;
                Ok(key)
            }
            Err(e) => Err(io("reading", e)),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; new_from_slice cannot fail for it.
        match Hmac::<Sha256>::new_from_slice(&self.secret) {
            Ok(m) => m,
            Err(e) => unreachable!("HMAC accepts any key length: {e}"),
        }
    }

    /// A session for `who`, and when it expires (seconds since the epoch).
    pub fn issue(&self, who: &Principal, epoch: u32) -> (String, u64) {
        let iat = now_s();
        let exp = iat + self.ttl.as_secs();
        let claims =
            Claims { sub: who.user_id.to_string(), name: who.name.clone(), role: who.role.as_str().into(), iat, exp, ep: epoch };
        // Serializing a struct of strings and integers cannot fail.
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(payload));
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        (format!("{signing_input}.{sig}"), exp)
    }

    /// The principal of a valid, unexpired session we signed, and its session epoch.
    pub fn verify(&self, token: &str) -> Result<(Principal, u32), JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| JwtError::Malformed)?;
        // The signature first: nothing of an unsigned token is parsed further.
        let mut mac = self.mac();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).map_err(|_| JwtError::Signature)?;
        let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| JwtError::Malformed)?;
        let header: serde_json::Value = serde_json::from_slice(&header).map_err(|_| JwtError::Header)?;
        if header.get("alg").and_then(|v| v.as_str()) != Some("HS256") {
            return Err(JwtError::Header);
        }
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| JwtError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|e| JwtError::Claims(e.to_string()))?;
        if claims.exp <= now_s() {
            return Err(JwtError::Expired);
        }
        let user_id = claims.sub.parse().map_err(|_| JwtError::Claims(format!("sub {:?} is not a user id", claims.sub)))?;
        let role = Role::parse(&claims.role).ok_or_else(|| JwtError::Claims(format!("role {:?}", claims.role)))?;
        Ok((Principal { user_id, name: claims.name, role }, claims.ep))
    }
}

/// True for what looks like a JWT rather than an API token (`jc_...`): three dot-separated
/// parts. Decides which check a Bearer credential gets.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn alice() -> Principal {
        Principal { user_id: 7, name: "alice".into(), role: Role::Setter }
    }

    #[test]
    fn a_session_round_trips_and_another_key_refuses_it() {
        let key = JwtKey::random(Duration::from_secs(60)).unwrap();
        let (token, exp) = key.issue(&alice(), 3);
        assert!(looks_like_jwt(&token));
        assert!(exp >= now_s() + 59);
        assert_eq!(key.verify(&token).unwrap(), (alice(), 3));
        let other = JwtKey::random(Duration::from_secs(60)).unwrap();
        assert_eq!(other.verify(&token), Err(JwtError::Signature));
    }

    #[test]
    fn tampered_expired_and_unsigned_tokens_are_refused() {
        let key = JwtKey::random(Duration::from_secs(60)).unwrap();
        let (token, _) = key.issue(&alice(), 3);
        let parts: Vec<&str> = token.split('.').collect();
        // Promote ourselves to admin, keeping the signature.
        let forged = URL_SAFE_NO_PAD
            .encode(String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap().replace("setter", "admin"));
        assert_eq!(key.verify(&format!("{}.{forged}.{}", parts[0], parts[2])), Err(JwtError::Signature));
        // alg none with an empty signature.
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(key.verify(&format!("{none}.{}.", parts[1])), Err(JwtError::Signature));
        assert_eq!(key.verify("a.b"), Err(JwtError::Malformed));
        let expired = JwtKey { secret: key.secret.clone(), ttl: Duration::ZERO };
        let (old, _) = expired.issue(&alice(), 3);
        assert_eq!(key.verify(&old), Err(JwtError::Expired));
    }

    #[test]
    fn short_secrets_are_refused_and_the_file_secret_is_kept() {
        assert!(matches!(JwtKey::new(b"short", Duration::from_secs(1)), Err(SecretError::TooShort(5))));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwt-secret");
        let a = JwtKey::load_or_create(None, &file, Duration::from_secs(60)).unwrap();
        let b = JwtKey::load_or_create(None, &file, Duration::from_secs(60)).unwrap();
        let (token, _) = a.issue(&alice(), 3);
        assert_eq!(b.verify(&token).unwrap(), (alice(), 3), "a restart keeps accepting its sessions");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
