//! Users and their API tokens. `POST /api/users`: an admin creates a user (admin, setter
//! or user) and gets their first API token, which is shown this once and stored only as a
//! hash, and optionally a password for login sessions. Admins list users, change roles
//! and delete users (never their own role or account: a judge must keep an admin); a
//! user (or an admin for them) lists, creates and revokes their tokens.

use salvo::Request;
use salvo::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{self, Authn, Caller};
use super::catalog::store_error;
use super::dashboard::read_body;
use super::error::ApiError;
use super::submit::decode_json;
use crate::store::Store;
use crate::store::auth::Role;

const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewUser {
    name: String,
    #[serde(default)]
    email: Option<String>,
    role: String,
    /// For password login (sessions); without it the user has only the token.
    #[serde(default)]
    password: Option<String>,
}

pub(super) async fn create(store: &Store, req: &mut Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let admin = auth::require(caller, Role::Admin)?;
    let body = read_body(req, MAX_BODY_BYTES).await?;
    let new: NewUser = decode_json(body)?;
    let name = new.name.trim();
    if name.is_empty() || name.len() > 200 || name.contains('\0') {
        return Err(ApiError::InvalidField("name: 1-200 bytes, no NUL characters".into()));
    }
    if let Some(email) = &new.email
        && (email.len() > 320 || !email.contains('@') || email.contains('\0'))
    {
        return Err(ApiError::InvalidField(format!("email: {email:?} is not an email address")));
    }
    let role = Role::parse(&new.role)
        .ok_or_else(|| ApiError::InvalidField(format!("role: {:?} is not one of admin, setter, user", new.role)))?;
    if let Some(password) = &new.password {
        auth::check_password(password)?;
    }
    let id = store.create_user(name, new.email.as_deref(), role).await.map_err(store_error)?;
    if let Some(password) = &new.password {
        store.set_password(id, password).await.map_err(store_error)?;
    }
    let token = store.issue_token(id, &format!("issued by user {}", admin.user_id)).await.map_err(store_error)?;
    tracing::info!(user = id, %role, by = admin.user_id, "user created");
    Ok((StatusCode::CREATED, json!({ "id": id, "name": name, "email": new.email, "role": role.as_str(), "token": token })))
}

/// The `{id}` of the path, as a user id.
fn user_param(req: &Request) -> Result<i64, ApiError> {
    super::dashboard::id_param(req, "id")
}

/// The user a token route is about, if the caller may manage their tokens: their own,
/// or anyone's for an admin.
async fn token_owner(store: &Store, req: &Request, caller: &Caller) -> Result<i64, ApiError> {
    let who = auth::require(caller, Role::User)?;
    let id = user_param(req)?;
    if id != who.user_id {
        auth::require(caller, Role::Admin)?;
    }
    if store.session_state(id).await.map_err(store_error)?.is_none() {
        return Err(ApiError::UserNotFound(id));
    }
    Ok(id)
}

/// `GET /api/users`.
pub(super) async fn list(store: &Store, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    auth::require(caller, Role::Admin)?;
    let users = store.list_users().await.map_err(store_error)?;
    let users: Vec<Value> = users
        .iter()
        .map(|u| {
            json!({ "id": u.id, "name": u.name, "email": u.email, "role": u.role.as_str(), "hasPassword": u.has_password,
                "activeTokens": u.active_tokens, "createdAt": u.created_at })
        })
        .collect();
    Ok((StatusCode::OK, json!({ "users": users })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRole {
    role: String,
}

/// `PUT /api/users/{id}/role`: `{role}`.
pub(super) async fn set_role(authn: &Authn, store: &Store, req: &mut Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let admin = auth::require(caller, Role::Admin)?;
    let id = user_param(req)?;
    let body = read_body(req, MAX_BODY_BYTES).await?;
    let new: NewRole = decode_json(body)?;
    let role = Role::parse(&new.role)
        .ok_or_else(|| ApiError::InvalidField(format!("role: {:?} is not one of admin, setter, user", new.role)))?;
    if id == admin.user_id {
        return Err(ApiError::Conflict("an admin cannot change their own role: ask another admin".into()));
    }
    if !store.set_role(id, role).await.map_err(store_error)? {
        return Err(ApiError::UserNotFound(id));
    }
    authn.forget_user(id);
    tracing::info!(user = id, %role, by = admin.user_id, "role changed");
    Ok((StatusCode::OK, json!({ "id": id, "role": role.as_str() })))
}

/// `DELETE /api/users/{id}`: the user, their tokens and sessions; their runs stay in the
/// history without them.
pub(super) async fn delete(authn: &Authn, store: &Store, req: &Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let admin = auth::require(caller, Role::Admin)?;
    let id = user_param(req)?;
    if id == admin.user_id {
        return Err(ApiError::Conflict("an admin cannot delete their own account: ask another admin".into()));
    }
    if !store.delete_user(id).await.map_err(store_error)? {
        return Err(ApiError::UserNotFound(id));
    }
    authn.forget_user(id);
    tracing::info!(user = id, by = admin.user_id, "user deleted");
    Ok((StatusCode::OK, json!({ "deleted": id })))
}

/// `GET /api/users/{id}/tokens`.
pub(super) async fn tokens(store: &Store, req: &Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let id = token_owner(store, req, caller).await?;
    let tokens = store.list_tokens(id).await.map_err(store_error)?;
    let tokens: Vec<Value> = tokens
        .iter()
        .map(|t| json!({ "id": t.id, "label": t.label, "createdAt": t.created_at, "revokedAt": t.revoked_at }))
        .collect();
    Ok((StatusCode::OK, json!({ "userId": id, "tokens": tokens })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    #[serde(default)]
    label: String,
}

/// `POST /api/users/{id}/tokens`: `{label?}` -> the new token, shown this once.
pub(super) async fn issue_token(store: &Store, req: &mut Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let id = token_owner(store, req, caller).await?;
    let body = read_body(req, MAX_BODY_BYTES).await?;
    let new: NewToken = if body.is_empty() { NewToken { label: String::new() } } else { decode_json(body)? };
    if new.label.len() > 200 || new.label.contains('\0') {
        return Err(ApiError::InvalidField("label: at most 200 bytes, no NUL characters".into()));
    }
    let token = store.issue_token(id, &new.label).await.map_err(store_error)?;
    let token_id = store.token_id(&token).await.map_err(store_error)?;
    Ok((StatusCode::CREATED, json!({ "id": token_id, "userId": id, "label": new.label, "token": token })))
}

/// `DELETE /api/users/{id}/tokens/{tokenId}`. Not the token this request came with: a
/// client would lock itself out in the middle of what it is doing.
pub(super) async fn revoke_token(store: &Store, req: &Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let id = token_owner(store, req, caller).await?;
    let token_id = super::dashboard::id_param(req, "tokenId")?;
    if let Some(own) = auth::token(req)?
        && store.token_id(&own).await.map_err(store_error)? == Some(token_id)
    {
        return Err(ApiError::Conflict("this is the token of this request: revoke it with another credential".into()));
    }
    if !store.revoke_token(id, token_id).await.map_err(store_error)? {
        return Err(ApiError::TokenNotFound(token_id));
    }
    tracing::info!(user = id, token = token_id, "token revoked");
    Ok((StatusCode::OK, json!({ "revoked": token_id })))
}
