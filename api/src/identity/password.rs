//! Passwords: the policy (12..=128 characters), argon2id hashing and
//! verification, both run off the async runtime (argon2 is deliberately
//! slow: ~19 MiB and tens of ms per call).

use crate::error::ApiError;

/// argon2id PHC string of `password` (default parameters, random salt),
/// computed off the async runtime.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await
    .map_err(|e| ApiError::Unavailable { store: "password hashing", detail: e.to_string() })?
    .map_err(|e| ApiError::Unavailable { store: "password hashing", detail: e.to_string() })
}

/// The password rule: 12..=128 characters.
pub fn password_policy(field: &str, v: &str) -> Result<(), ApiError> {
    if (12..=128).contains(&v.chars().count()) {
        Ok(())
    } else {
        Err(ApiError::invalid(field, "must have 12 to 128 characters"))
    }
}

/// A valid argon2id hash of a random password: verified against when the
/// email is unknown, so both cases take the same time.
pub const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3xa8mUS8UvJAsc84gH7Ewc7gvYwR4mLDB/C7dRbNPZY";

/// Whether `password` matches the PHC string `hash`; `false` for a
/// malformed hash.
pub async fn verify_password(password: String, hash: String) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}
