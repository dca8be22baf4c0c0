//! Who is calling: an API token from `Authorization: Bearer <token>` or `X-Auth-Token`
//! (what Judge0 clients send), checked against the store.
//!
//! No token means anonymous, which may read the catalog. A token that is present but
//! unknown or revoked is refused (401) even where anonymous access would do: a client
//! with a typo in its token should hear about it, not silently get less.

use salvo::Request;

use super::error::ApiError;
use crate::store::Store;
use crate::store::auth::{Principal, Role};

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
fn token(req: &Request) -> Result<Option<String>, ApiError> {
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

pub async fn caller(store: &Store, req: &Request) -> Result<Caller, ApiError> {
    let Some(token) = token(req)? else { return Ok(Caller::Anonymous) };
    match store.authenticate(&token).await.map_err(super::catalog::store_error)? {
        Some(p) => Ok(Caller::User(p)),
        None => Err(ApiError::Unauthorized("unknown or revoked token".into())),
    }
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
