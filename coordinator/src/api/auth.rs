//! Who is calling: an API token (`jc_...`, checked against the store) or a login session
//! (a JWT, checked with the shared secret) from `Authorization: Bearer <credential>` or
//! `X-Auth-Token` (what Judge0 clients send); `/ws` takes it as a `token` query parameter
//! or a first `AUTH` message. Plus the `/api/auth` routes: password login, exchanging a
//! token for a session, the caller's identity, setting a password, logging out.
//!
//! A session is signed, but not trusted alone: it carries its user's session epoch, and
//! a logout or a password change raises the epoch, which ends every session issued
//! before. The user's current role and name come from the store, so a session does not
//! outlive its user either. Reads of the epoch are cached for `SESSION_RECHECK`.
//!
//! No credential means anonymous, which may read the catalog, and may run code only when
//! the operator allows it (`--allow-anonymous`). A credential that is present but unknown,
//! revoked or expired is refused (401) even where anonymous access would do: a client
//! with a typo in its token should hear about it, not silently get less.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use salvo::Request;
use salvo::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::jwt::{JwtKey, looks_like_jwt};
use crate::store::Store;
use crate::store::auth::{MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, Principal, Role};

/// How callers are authenticated, for the HTTP API and `/ws` alike.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Whether callers without a credential may run code (submissions, Judge0, /ws runs).
    pub allow_anonymous: bool,
    /// Signs and checks login sessions; without it `/api/auth/login` answers 503.
    pub jwt: Option<JwtKey>,
}

impl Default for AuthConfig {
    /// What library users and tests of the router get: anonymous runs allowed, no
    /// sessions. The coordinator binary always configures both.
    fn default() -> Self {
        AuthConfig { allow_anonymous: true, jwt: None }
    }
}

/// `AuthConfig` plus the store tokens are checked against; cheap to clone.
#[derive(Clone)]
pub struct Authn {
    pub config: AuthConfig,
    pub store: Option<Store>,
    sessions: SessionCache,
}

/// How long a session's user, as read from the store, is taken as current: a logout or a
/// password change on another coordinator of the cluster takes effect within it (on this
/// one at once).
pub const SESSION_RECHECK: Duration = Duration::from_secs(1);

/// Users bigger than this trigger a sweep of the stale entries.
const SESSION_SWEEP_AT: usize = 100_000;

/// A session user as the store has them now, and their session epoch.
type SessionState = Option<(Principal, u32)>;

/// Session states read recently, by user id (None: no such user).
#[derive(Clone, Default)]
struct SessionCache {
    seen: Arc<Mutex<HashMap<i64, (Instant, SessionState)>>>,
}

impl SessionCache {
    fn get(&self, user_id: i64) -> Option<SessionState> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.get(&user_id).filter(|(at, _)| at.elapsed() < SESSION_RECHECK).map(|(_, state)| state.clone())
    }

    fn put(&self, user_id: i64, state: SessionState) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= SESSION_SWEEP_AT {
            seen.retain(|_, (at, _)| at.elapsed() < SESSION_RECHECK);
        }
        seen.insert(user_id, (Instant::now(), state));
    }

    fn forget(&self, user_id: i64) {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).remove(&user_id);
    }
}

impl Authn {
    pub fn new(config: AuthConfig, store: Option<Store>) -> Authn {
        Authn { config, store, sessions: SessionCache::default() }
    }

    /// Drops what this coordinator remembers of a user's sessions (their role changed,
    /// or they are gone): the next request reads the store.
    pub(super) fn forget_user(&self, user_id: i64) {
        self.sessions.forget(user_id);
    }

    /// The session user's current identity and epoch (None: the user is gone).
    async fn session_state(&self, store: &Store, user_id: i64) -> Result<SessionState, ApiError> {
        if let Some(state) = self.sessions.get(user_id) {
            return Ok(state);
        }
        let state = store.session_state(user_id).await.map_err(super::catalog::store_error)?;
        self.sessions.put(user_id, state.clone());
        Ok(state)
    }

    /// The caller behind `credential` (None: anonymous).
    pub async fn resolve(&self, credential: Option<&str>) -> Result<Caller, ApiError> {
        let Some(credential) = credential else { return Ok(Caller::Anonymous) };
        if looks_like_jwt(credential) {
            let key = self.config.jwt.as_ref().ok_or_else(|| ApiError::Unauthorized("login sessions are not enabled here".into()))?;
            let (claimed, epoch) = key.verify(credential).map_err(|e| ApiError::Unauthorized(e.to_string()))?;
            // Without a store nobody can log in or out here: the signature is all there is.
            let Some(store) = self.store.as_ref().filter(|_| claimed.user_id != super::jwt::OPERATOR_USER_ID) else {
                return Ok(Caller::User(claimed));
            };
            return match self.session_state(store, claimed.user_id).await? {
                None => Err(ApiError::Unauthorized("the session's user no longer exists".into())),
                Some((_, current)) if current != epoch => {
                    Err(ApiError::Unauthorized("this session has ended (a logout or a password change); log in again".into()))
                }
                Some((who, _)) => Ok(Caller::User(who)),
            };
        }
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| ApiError::Unauthorized("API tokens need the database, and this coordinator runs without one".into()))?;
        match store.authenticate(credential).await.map_err(super::catalog::store_error)? {
            Some(p) => Ok(Caller::User(p)),
            None => Err(ApiError::Unauthorized("unknown or revoked token".into())),
        }
    }

    /// The caller of an HTTP request.
    pub async fn caller(&self, req: &Request) -> Result<Caller, ApiError> {
        let credential = token(req)?;
        self.resolve(credential.as_deref()).await
    }

    /// Running code: anyone with a credential, anonymous callers only if allowed.
    pub fn may_execute<'a>(&self, caller: &'a Caller) -> Result<Option<&'a Principal>, ApiError> {
        match caller {
            Caller::Anonymous if self.config.allow_anonymous => Ok(None),
            Caller::Anonymous => Err(ApiError::Unauthorized(
                "running code needs a credential: send Authorization: Bearer <token> (anonymous runs are off here)".into(),
            )),
            Caller::User(p) => Ok(Some(p)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    Anonymous,
    User(Principal),
}

impl Caller {
    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Anonymous => None,
            Caller::User(p) => Some(p.role),
        }
    }
}

/// The token of the request, if any; a malformed Authorization header is an error.
pub(super) fn token(req: &Request) -> Result<Option<String>, ApiError> {
    if let Some(value) = req.headers().get("authorization") {
        let value = value.to_str().map_err(|_| ApiError::Unauthorized("the Authorization header is not text".into()))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::Unauthorized("Authorization must be \"Bearer <token>\"".into()))?;
        return Ok(Some(token.trim().to_owned()));
    }
    if let Some(value) = req.headers().get("x-auth-token") {
        let value = value.to_str().map_err(|_| ApiError::Unauthorized("the X-Auth-Token header is not text".into()))?;
        return Ok(Some(value.trim().to_owned()));
    }
    Ok(None)
}

/// The caller's principal if their role is at least `role`: 401 for anonymous, 403 for
/// a role below it.
pub fn require(caller: &Caller, role: Role) -> Result<&Principal, ApiError> {
    match caller {
        Caller::Anonymous => Err(ApiError::Unauthorized(format!(
            "this needs a token of role {role} or above: send Authorization: Bearer <token>"
        ))),
        Caller::User(p) if p.role >= role => Ok(p),
        Caller::User(p) => Err(ApiError::Forbidden(format!("this needs role {role} or above; the token's role is {}", p.role))),
    }
}

const MAX_AUTH_BODY_BYTES: usize = 4096;

async fn small_json<T: serde::de::DeserializeOwned>(req: &mut Request) -> Result<T, ApiError> {
    let body = req.payload_with_max_size(MAX_AUTH_BODY_BYTES).await.map_err(|e| match e {
        salvo::http::ParseError::PayloadTooLarge => ApiError::BodyTooLarge { limit: MAX_AUTH_BODY_BYTES },
        other => ApiError::BadBody(other.to_string()),
    })?;
    super::submit::decode_json(body)
}

async fn session(authn: &Authn, who: &Principal) -> Result<Value, ApiError> {
    let key = authn.config.jwt.as_ref().ok_or(ApiError::SessionsDisabled)?;
    // Issued in the user's current epoch (read afresh: a logout a moment ago counts).
    let epoch = match &authn.store {
        Some(store) => {
            let state = store.session_state(who.user_id).await.map_err(super::catalog::store_error)?;
            state.ok_or(ApiError::UserNotFound(who.user_id))?.1
        }
        None => 0,
    };
    let (token, expires) = key.issue(who, epoch);
    Ok(json!({
        "token": token,
        "tokenType": "Bearer",
        "expiresAt": expires,
        "user": { "id": who.user_id, "name": who.name, "role": who.role.as_str() },
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Login {
    /// An email, or a user name that only one user has.
    login: String,
    password: String,
}

/// `POST /api/auth/login`: `{login, password}` -> a session.
pub(super) async fn login(authn: &Authn, req: &mut Request) -> Result<(StatusCode, Value), ApiError> {
    let store = authn.store.as_ref().ok_or(ApiError::NoDatabase)?;
    let body: Login = small_json(req).await?;
    if authn.config.jwt.is_none() {
        return Err(ApiError::SessionsDisabled);
    }
    if body.password.len() > MAX_PASSWORD_BYTES || body.login.len() > 320 {
        return Err(ApiError::Unauthorized("wrong login or password".into()));
    }
    match store.login(body.login.trim(), &body.password).await.map_err(super::catalog::store_error)? {
        Some(who) => {
            tracing::info!(user = who.user_id, "login");
            Ok((StatusCode::OK, session(authn, &who).await?))
        }
        // One message for both: which logins exist is not for strangers to learn.
        None => Err(ApiError::Unauthorized("wrong login or password".into())),
    }
}

/// `POST /api/auth/session`: a session for the caller's credential (an API token
/// becomes a JWT; a session gets a fresh one).
pub(super) async fn exchange(authn: &Authn, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let who = require(caller, Role::User)?;
    Ok((StatusCode::OK, session(authn, who).await?))
}

/// `POST /api/auth/logout`: ends every login session of the caller, on every device
/// (API tokens stay valid: they are revoked one by one).
pub(super) async fn logout(authn: &Authn, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let store = authn.store.as_ref().ok_or(ApiError::NoDatabase)?;
    let who = require(caller, Role::User)?;
    if !store.end_sessions(who.user_id).await.map_err(super::catalog::store_error)? {
        return Err(ApiError::UserNotFound(who.user_id));
    }
    authn.sessions.forget(who.user_id);
    tracing::info!(user = who.user_id, "sessions ended");
    Ok((StatusCode::OK, json!({ "userId": who.user_id, "sessionsEnded": true })))
}

/// `GET /api/auth/me`.
pub(super) fn me(caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let who = require(caller, Role::User)?;
    Ok((StatusCode::OK, json!({ "id": who.user_id, "name": who.name, "role": who.role.as_str() })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewPassword {
    password: String,
    /// Someone else's: admins only.
    #[serde(default)]
    user_id: Option<i64>,
}

/// Checks the length rules of a password being set.
pub(super) fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES || password.contains('\0') {
        return Err(ApiError::InvalidField(format!(
            "password: {MIN_PASSWORD_CHARS} characters to {MAX_PASSWORD_BYTES} bytes, no NUL characters"
        )));
    }
    Ok(())
}

/// `PUT /api/auth/password`: `{password, userId?}` sets the caller's (or, for an admin,
/// another user's) login password.
pub(super) async fn set_password(authn: &Authn, req: &mut Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let store = authn.store.as_ref().ok_or(ApiError::NoDatabase)?;
    let who = require(caller, Role::User)?;
    let body: NewPassword = small_json(req).await?;
    let target = match body.user_id {
        Some(id) if id != who.user_id => require(caller, Role::Admin).map(|_| id)?,
        _ => who.user_id,
    };
    check_password(&body.password)?;
    if !store.set_password(target, &body.password).await.map_err(super::catalog::store_error)? {
        return Err(ApiError::UserNotFound(target));
    }
    // The user's sessions ended with the old password.
    authn.sessions.forget(target);
    tracing::info!(user = target, by = who.user_id, "password set");
    Ok((StatusCode::OK, json!({ "userId": target, "passwordSet": true })))
}
