//! Email verification and password reset (issue #6, seed 001 "User"):
//! single-use tokens (`slv_…`, `slr_…`, 256 random bits) mailed to the
//! user's login email; only their SHA-256 is stored ([`AuthToken`]), with
//! an expiry (`API_VERIFY_EMAIL_TTL_SECS`, `API_PASSWORD_RESET_TTL_SECS`).
//! A token is spent atomically (`usedAt` set by the same update that
//! finds it unspent and unexpired), so a replay answers 400
//! `invalid_token`; issuing a new token spends the older ones.
//!
//! Asking for a reset answers 202 whether or not the email belongs to a
//! user (no account enumeration) and mails at most one token a minute per
//! user. A reset sets the new password, clears the lockout and ends every
//! session of the user. All of it is audited.

use axum::extract::State;
use axum::http::StatusCode;
use bson::{doc, oid::ObjectId, DateTime};
use schemas::mongo::{collections, AuthToken, Session, TokenPurpose, User};
use serde::Deserialize;
use utoipa::ToSchema;

use super::password::{hash_password, password_policy};
use crate::audit::{self, Entry, Meta};
use crate::auth::{generate_token, hash_key};
use crate::error::{ApiError, ErrorBody};
use crate::extract::Body;
use crate::mail::Outgoing;
use crate::state::AppState;
use crate::validate::email;

/// Least time between two reset emails to one user, ms.
const RESEND_INTERVAL_MS: i64 = 60_000;

/// `POST /v1/auth/verify-email` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The token from the email.
    pub token: String,
}

/// `POST /v1/auth/password-reset/request` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// Login email.
    pub email: String,
}

/// `POST /v1/auth/password-reset` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    /// The token from the email.
    pub token: String,
    /// New password, 12..=128 characters.
    #[schema(schema_with = crate::openapi::password)]
    pub new_password: String,
}

/// Stores a new token of `purpose` for `user` (spending its older ones)
/// and returns the token. Errors: MongoDB, randomness.
async fn issue(st: &AppState, user: &User, purpose: TokenPurpose, ttl_secs: u32) -> Result<String, ApiError> {
    let prefix = match purpose {
        TokenPurpose::VerifyEmail => "slv_",
        TokenPurpose::PasswordReset => "slr_",
    };
    let (token, token_hash) = generate_token(prefix)?;
    let now = DateTime::now();
    let tokens = st.mongo.collection::<AuthToken>(collections::AUTH_TOKENS);
    tokens
        .update_many(
            doc! { "userId": user.id, "purpose": crate::validate::wire(&purpose), "usedAt": { "$exists": false } },
            doc! { "$set": { "usedAt": now } },
        )
        .await?;
    let t = AuthToken {
        id: ObjectId::new(),
        token_hash,
        purpose,
        user_id: user.id,
        client_id: user.client_id,
        created_at: now,
        expires_at: DateTime::from_millis(now.timestamp_millis() + i64::from(ttl_secs) * 1000),
        used_at: None,
    };
    tokens.insert_one(&t).await?;
    Ok(token)
}

/// Spends `token` of `purpose`: the stored token if it was unspent and
/// unexpired, else 400 `invalid_token` naming the field. Under the token's
/// lock, since FerretDB's conditional update is not atomic (`api::lock`).
async fn spend(st: &AppState, token: &str, purpose: TokenPurpose) -> Result<AuthToken, ApiError> {
    let hash = hash_key(token.trim());
    let (ttl, wait) = (std::time::Duration::from_secs(10), std::time::Duration::from_secs(5));
    crate::lock::with_lock(st, format!("token:{hash}"), ttl, wait, || spend_locked(st, &hash, purpose)).await
}

async fn spend_locked(st: &AppState, hash: &str, purpose: TokenPurpose) -> Result<AuthToken, ApiError> {
    let now = DateTime::now();
    let filter = doc! {
        "tokenHash": hash,
        "purpose": crate::validate::wire(&purpose),
        "usedAt": { "$exists": false },
        "expiresAt": { "$gt": now },
    };
    st.mongo
        .collection::<AuthToken>(collections::AUTH_TOKENS)
        .find_one_and_update(filter, doc! { "$set": { "usedAt": now } })
        .await?
        .ok_or_else(|| ApiError::invalid("token", "unknown, expired or already used"))
}

/// Mails a verification token to `user` at `address` (its decrypted login email).
pub async fn send_verification(st: &AppState, user: &User, address: &str) -> Result<(), ApiError> {
    let token = issue(st, user, TokenPurpose::VerifyEmail, st.cfg.verify_email_ttl_secs).await?;
    let hours = st.cfg.verify_email_ttl_secs / 3600;
    let text = format!(
        "Hello {},\n\nconfirm your email address for Smartlinks:\n{}/verify-email?token={token}\n\nor send this token to POST /v1/auth/verify-email:\n{token}\n\nIt expires in {hours} h.\n",
        user.first_name,
        st.cfg.app_url.trim_end_matches('/')
    );
    let m = Outgoing {
        client_id: user.client_id,
        to: address.to_string(),
        subject: "Confirm your email".into(),
        template: "verify_email",
        text,
        attachments: Vec::new(),
        related: Some(("user", user.id)),
    };
    st.send_mail(m).await.map(|_| ())
}

/// Marks the token's user's email verified. 400 `invalid_request` (field
/// `token`) when unknown, expired or used.
#[utoipa::path(post, path = "/v1/auth/verify-email", tag = "users", request_body = TokenBody,
    responses((status = 204), (status = 400, body = ErrorBody)))]
pub async fn verify_email(
    State(st): State<AppState>,
    meta: Meta,
    Body(b): Body<TokenBody>,
) -> Result<StatusCode, ApiError> {
    let t = spend(&st, &b.token, TokenPurpose::VerifyEmail).await?;
    st.mongo
        .collection::<User>(collections::USERS)
        .update_one(
            doc! { "_id": t.user_id },
            doc! { "$set": { "auth.emailVerified": true, "updatedAt": DateTime::now() } },
        )
        .await?;
    let entry = Entry {
        client_id: Some(t.client_id),
        action: "verify_email",
        resource: "users",
        resource_id: Some(t.user_id.to_hex()),
        changes: Vec::new(),
        outcome: Ok(()),
    };
    audit::record(&st, None, &meta, entry).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mails a password-reset token if `email` belongs to an active user.
/// Always 202 (also for unknown emails), at once: the lookup, the token and
/// the email happen after the answer, so neither its time nor a mail
/// failure tells whether the account exists (issue #14). At most one email
/// a minute per user (requests for one address are handled one at a time).
#[utoipa::path(post, path = "/v1/auth/password-reset/request", tag = "users", request_body = ResetRequest,
    responses((status = 202), (status = 400, body = ErrorBody)))]
pub async fn request_reset(
    State(st): State<AppState>,
    meta: Meta,
    Body(b): Body<ResetRequest>,
) -> Result<StatusCode, ApiError> {
    let address = email("email", &b.email)?;
    st.pii()?;
    tokio::spawn(async move {
        if let Err(e) = send_reset(&st, &meta, address).await {
            tracing::warn!(error = %e, "password reset request not served");
        }
    });
    Ok(StatusCode::ACCEPTED)
}

/// The work of [`request_reset`] for `address`, under a lock on it.
async fn send_reset(st: &AppState, meta: &Meta, address: String) -> Result<(), ApiError> {
    let pii = st.pii()?;
    let index = pii.email_index(&address);
    let (ttl, wait) = (std::time::Duration::from_secs(60), std::time::Duration::from_secs(30));
    let name = format!("password-reset:{index}");
    crate::lock::with_lock(st, name, ttl, wait, || send_reset_locked(st, meta, address, &index)).await
}

async fn send_reset_locked(st: &AppState, meta: &Meta, address: String, index: &str) -> Result<(), ApiError> {
    let Some(user) = st
        .mongo
        .collection::<User>(collections::USERS)
        .find_one(doc! { "auth.emailIndex": index })
        .await?
        .filter(|u| u.is_active)
    else {
        return Ok(());
    };
    let since = DateTime::from_millis(DateTime::now().timestamp_millis() - RESEND_INTERVAL_MS);
    let recent = st
        .mongo
        .collection::<AuthToken>(collections::AUTH_TOKENS)
        .count_documents(doc! { "userId": user.id, "purpose": "password_reset", "createdAt": { "$gt": since } })
        .await?;
    // Every request an account got is audited, a refused one as `too_soon`.
    let outcome = if recent > 0 {
        Err("too_soon".to_string())
    } else {
        mail_reset(st, &user, address).await?;
        Ok(())
    };
    let entry = Entry {
        client_id: Some(user.client_id),
        action: "request_password_reset",
        resource: "users",
        resource_id: Some(user.id.to_hex()),
        changes: Vec::new(),
        outcome,
    };
    audit::record(st, None, meta, entry).await
}

/// Issues a reset token for `user` and mails it to `address`.
async fn mail_reset(st: &AppState, user: &User, address: String) -> Result<(), ApiError> {
    let token = issue(st, user, TokenPurpose::PasswordReset, st.cfg.password_reset_ttl_secs).await?;
    let minutes = st.cfg.password_reset_ttl_secs / 60;
    let text = format!(
        "Hello {},\n\nsomeone asked to reset your Smartlinks password. If it was you:\n{}/reset-password?token={token}\n\nor send this token with your new password to POST /v1/auth/password-reset:\n{token}\n\nIt expires in {minutes} min. If it was not you, ignore this email.\n",
        user.first_name,
        st.cfg.app_url.trim_end_matches('/')
    );
    let m = Outgoing {
        client_id: user.client_id,
        to: address,
        subject: "Reset your password".into(),
        template: "password_reset",
        text,
        attachments: Vec::new(),
        related: Some(("user", user.id)),
    };
    st.send_mail(m).await.map(|_| ())
}

/// Sets a new password with a reset token; clears the lockout and ends
/// every session of the user. 400 when the token is unknown, expired or
/// used, or the password breaks the rule.
#[utoipa::path(post, path = "/v1/auth/password-reset", tag = "users", request_body = ResetBody,
    responses((status = 204), (status = 400, body = ErrorBody)))]
pub async fn reset_password(
    State(st): State<AppState>,
    meta: Meta,
    Body(b): Body<ResetBody>,
) -> Result<StatusCode, ApiError> {
    password_policy("new_password", &b.new_password)?;
    let t = spend(&st, &b.token, TokenPurpose::PasswordReset).await?;
    let hash = hash_password(b.new_password).await?;
    let now = DateTime::now();
    st.mongo
        .collection::<User>(collections::USERS)
        .update_one(doc! { "_id": t.user_id }, doc! { "$set": { "auth.passwordHash": hash, "auth.loginAttempts": 0_i64, "updatedAt": now }, "$unset": { "auth.lockUntil": "" } })
        .await?;
    st.mongo
        .collection::<Session>(collections::SESSIONS)
        .update_many(
            doc! { "userId": t.user_id, "revokedAt": { "$exists": false } },
            doc! { "$set": { "revokedAt": now } },
        )
        .await?;
    let changes = vec![schemas::crm::FieldChange {
        field: "auth.passwordHash".into(),
        old: "[redacted]".into(),
        new: "[redacted]".into(),
    }];
    let entry = Entry {
        client_id: Some(t.client_id),
        action: "reset_password",
        resource: "users",
        resource_id: Some(t.user_id.to_hex()),
        changes,
        outcome: Ok(()),
    };
    audit::record(&st, None, &meta, entry).await?;
    Ok(StatusCode::NO_CONTENT)
}
