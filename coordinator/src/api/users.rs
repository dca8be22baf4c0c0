//! `POST /api/users`: an admin creates a user (admin, setter or user) and gets their
//! first API token, which is shown this once and stored only as a hash, and optionally a
//! password for login sessions.

use salvo::Request;
use salvo::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{self, Caller};
use super::catalog::store_error;
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
    let body = req.payload_with_max_size(MAX_BODY_BYTES).await.map_err(|e| match e {
        salvo::http::ParseError::PayloadTooLarge => ApiError::BodyTooLarge { limit: MAX_BODY_BYTES },
        other => ApiError::BadBody(other.to_string()),
    })?;
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
