//! Users, roles and API tokens.
//!
//! A token is `jc_` + 64 hex digits (32 random bytes from the OS). Only its sha256 is
//! stored: with 256 random bits there is nothing to brute-force, so a slow password hash
//! would add cost and nothing else. Passwords (for login sessions) are people's, so they
//! get argon2id with a random salt, computed off the async runtime.

use std::fmt;
use std::path::Path;

use super::{Queries, Store, StoreError, sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    User,
    Setter,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Setter => "setter",
            Role::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "setter" => Some(Role::Setter),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is calling, once their token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    pub name: String,
    pub role: Role,
}

const TOKEN_PREFIX: &str = "jc_";

/// A fresh random token.
pub fn new_token() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| StoreError::Io { what: "reading", path: "the OS random source".into(), source: std::io::Error::other(e.to_string()) })?;
    Ok(format!("{TOKEN_PREFIX}{}", super::hex(&bytes)))
}

/// Passwords shorter than this are refused when set.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longer ones are refused too: argon2 hashes whatever it gets, and a megabyte of
/// password per login attempt is a cheap way to burn our CPU.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// An argon2id PHC string (`$argon2id$v=19$...`) of `password` with a fresh salt.
fn hash_password(password: &str) -> Result<String, StoreError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt)
        .map_err(|e| StoreError::Io { what: "reading", path: "the OS random source".into(), source: std::io::Error::other(e.to_string()) })?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| StoreError::Corrupt(format!("password salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Corrupt(format!("hashing a password: {e}")))
}

fn password_matches(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash of nothing in particular, checked when the user does not exist so that a
/// failed login takes as long whether or not the name is known.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password").unwrap_or_default())
}

/// A user as admins see them.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub email: Option<String>,
    pub role: Role,
    pub has_password: bool,
    pub created_at: String,
    pub active_tokens: i64,
}

/// An API token as its owner and admins see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    pub id: i64,
    pub label: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl Store {
    /// Sets (or replaces) a user's login password. The caller checks the length rules.
    pub async fn set_password(&self, user_id: i64, password: &str) -> Result<bool, StoreError> {
        let password = password.to_owned();
        let phc = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| StoreError::Corrupt(format!("password hashing task: {e}")))??;
        let client = self.client().await?;
        // A new password ends the sessions made with the old one (see `end_sessions`).
        let n = client
            .execute("UPDATE users SET password_hash = $2, session_epoch = session_epoch + 1 WHERE id = $1", &[&user_id, &phc])
            .await?;
        Ok(n == 1)
    }

    /// Ends every login session (JWT) of the user issued so far: each carries the epoch
    /// it was issued in, and this raises it. False if there is no such user.
    pub async fn end_sessions(&self, user_id: i64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client.execute("UPDATE users SET session_epoch = session_epoch + 1 WHERE id = $1", &[&user_id]).await? == 1)
    }

    /// The user as a session must find them: their current name, role and session
    /// epoch; None if the user is gone.
    pub async fn session_state(&self, user_id: i64) -> Result<Option<(Principal, u32)>, StoreError> {
        let client = self.client().await?;
        let Some(row) = client.query_opt("SELECT name, role, session_epoch FROM users WHERE id = $1", &[&user_id]).await?
        else {
            return Ok(None);
        };
        let role: String = row.try_get(1)?;
        let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("user role {role:?}")))?;
        let epoch: i32 = row.try_get(2)?;
        Ok(Some((Principal { user_id, name: row.try_get(0)?, role }, u32::try_from(epoch).unwrap_or(0))))
    }

    /// The user whose email, or else unique name, is `login`, if `password` is theirs.
    pub async fn login(&self, login: &str, password: &str) -> Result<Option<Principal>, StoreError> {
        let client = self.client().await?;
        // An email wins over a name; a name shared by several users logs nobody in.
        let rows = client
            .query(
                "SELECT id, name, role, password_hash FROM users WHERE email = $1
                 UNION ALL
                 SELECT id, name, role, password_hash FROM users WHERE name = $1 AND NOT EXISTS
                     (SELECT 1 FROM users WHERE email = $1)
                 LIMIT 2",
                &[&login],
            )
            .await?;
        drop(client);
        let found = match rows.as_slice() {
            [row] => {
                let phc: Option<String> = row.try_get(3)?;
                let role: String = row.try_get(2)?;
                let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("user role {role:?}")))?;
                Some((Principal { user_id: row.try_get(0)?, name: row.try_get(1)?, role }, phc))
            }
            _ => None,
        };
        let phc = found.as_ref().and_then(|(_, phc)| phc.clone()).unwrap_or_else(|| decoy_hash().to_owned());
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || password_matches(&password, &phc))
            .await
            .map_err(|e| StoreError::Corrupt(format!("password check task: {e}")))?;
        Ok(match found {
            Some((principal, Some(_))) if ok => Some(principal),
            _ => None,
        })
    }

    pub async fn create_user(&self, name: &str, email: Option<&str>, role: Role) -> Result<i64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("INSERT INTO users (name, email, role) VALUES ($1, $2, $3) RETURNING id", &[&name, &email, &role.as_str()])
            .await
            .map_err(StoreError::from)
            .map_err(|e| if e.is_unique_violation() { StoreError::Conflict(format!("a user with email {}", email.unwrap_or_default())) } else { e })?;
        Ok(row.try_get(0)?)
    }

    /// Issues a new token for `user_id` and returns it; it is not stored in the clear.
    pub async fn issue_token(&self, user_id: i64, label: &str) -> Result<String, StoreError> {
        let token = new_token()?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO api_tokens (user_id, token_sha256, label) VALUES ($1, $2, $3)",
                &[&user_id, &&sha256(token.as_bytes())[..], &label],
            )
            .await?;
        Ok(token)
    }

    /// Every user, by id.
    pub async fn list_users(&self) -> Result<Vec<UserRow>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT u.id, u.name, u.email, u.role, u.password_hash IS NOT NULL, {},
                         (SELECT count(*) FROM api_tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL)
                     FROM users u ORDER BY u.id",
                    super::ts!("u.created_at")
                ),
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let role: String = r.try_get(3)?;
                Ok(UserRow {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    email: r.try_get(2)?,
                    role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("user role {role:?}")))?,
                    has_password: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                    active_tokens: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Gives a user another role; false if there is no such user. Their tokens and
    /// sessions carry the new role from the next request (sessions: see `session_state`).
    pub async fn set_role(&self, user_id: i64, role: Role) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client.execute("UPDATE users SET role = $2 WHERE id = $1", &[&user_id, &role.as_str()]).await? == 1)
    }

    /// Deletes a user with their tokens (their history keeps its rows, user unset).
    pub async fn delete_user(&self, user_id: i64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client.execute("DELETE FROM users WHERE id = $1", &[&user_id]).await? == 1)
    }

    /// A user's API tokens (never the tokens themselves, which are not kept), by id.
    pub async fn list_tokens(&self, user_id: i64) -> Result<Vec<TokenRow>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT id, label, {}, {} FROM api_tokens WHERE user_id = $1 ORDER BY id",
                    super::ts!("created_at"),
                    super::ts!("revoked_at")
                ),
                &[&user_id],
            )
            .await?;
        rows.iter()
            .map(|r| Ok(TokenRow { id: r.try_get(0)?, label: r.try_get(1)?, created_at: r.try_get(2)?, revoked_at: r.try_get(3)? }))
            .collect()
    }

    /// Revokes one of a user's tokens; false if it is not theirs or already revoked.
    pub async fn revoke_token(&self, user_id: i64, token_id: i64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
                &[&token_id, &user_id],
            )
            .await?
            == 1)
    }

    /// The id of the unrevoked token `token`, if it is one.
    pub async fn token_id(&self, token: &str) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id FROM api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
                &[&&sha256(token.as_bytes())[..]],
            )
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// A user and a token in one go (tests, and the admin's first token).
    pub async fn create_user_with_token(&self, name: &str, role: Role) -> Result<(i64, String), StoreError> {
        let id = self.create_user(name, None, role).await?;
        let token = self.issue_token(id, "created with the user").await?;
        Ok((id, token))
    }

    /// The owner of a valid, unrevoked token. Tokens of the wrong shape are refused
    /// without a query.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() != TOKEN_PREFIX.len() + 64 {
            return Ok(None);
        }
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT u.id, u.name, u.role FROM api_tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.token_sha256 = $1 AND t.revoked_at IS NULL",
                &[&&sha256(token.as_bytes())[..]],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get(2)?;
        let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("user role {role:?}")))?;
        Ok(Some(Principal { user_id: row.try_get(0)?, name: row.try_get(1)?, role }))
    }

    /// On the first start of a database (no admin yet): creates the admin user and a
    /// token, writes it to `token_file` (0600) and returns it. Later starts return None.
    /// Several coordinators starting together create one admin: the check and the insert
    /// run under a transaction-level advisory lock.
    pub async fn ensure_admin(&self, token_file: &Path) -> Result<Option<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&0x6a75_6467_655f_6164_i64]).await?;
        let exists = tx.query_opt("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1", &[]).await?.is_some();
        if exists {
            return Ok(None);
        }
        let token = new_token()?;
        let row = tx.query_one("INSERT INTO users (name, role) VALUES ('admin', 'admin') RETURNING id", &[]).await?;
        let id: i64 = row.try_get(0)?;
        tx.execute(
            "INSERT INTO api_tokens (user_id, token_sha256, label) VALUES ($1, $2, 'first start')",
            &[&id, &&sha256(token.as_bytes())[..]],
        )
        .await?;
        // The file first: a committed admin whose token nobody has would lock everyone out.
        write_secret(token_file, &format!("{token}\n"))?;
        tx.commit().await?;
        Ok(Some(token))
    }
}

/// Writes through a temporary file created 0600 and renamed into place.
fn write_secret(path: &Path, contents: &str) -> Result<(), StoreError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |what, source| StoreError::Io { what, path: path.to_owned(), source };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("creating", e))?;
    f.write_all(contents.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| io("writing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("renaming into", e))
}
