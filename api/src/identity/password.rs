//! Passwords: the policy (12..=128 characters), argon2id hashing and
//! verification, both run off the async runtime (argon2 is deliberately
//! slow: ~19 MiB and tens of ms per call).

use std::sync::LazyLock;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::ApiError;

/// argon2 runs at once in this process: twice the cores. Each holds ~19 MiB
/// and a blocking thread; unbounded, a login flood exhausts both (issue #14).
static ARGON2_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| {
    Semaphore::new(2 * std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(2))
});

/// Longest wait for an argon2 slot before answering 503.
const SLOT_WAIT: Duration = Duration::from_secs(2);

/// A slot of [`ARGON2_SLOTS`], waited for [`SLOT_WAIT`] at most; 503
/// `unavailable` (`password hashing` busy) when none frees up.
async fn argon2_slot() -> Result<SemaphorePermit<'static>, ApiError> {
    match tokio::time::timeout(SLOT_WAIT, ARGON2_SLOTS.acquire()).await {
        Ok(Ok(p)) => Ok(p),
        _ => {
            tracing::warn!("password hashing saturated: request refused with 503");
            Err(ApiError::Unavailable { store: "password hashing", detail: "every argon2 slot busy".into() })
        }
    }
}

/// argon2id PHC string of `password` (default parameters, random salt),
/// computed off the async runtime in one of the process's argon2 slots.
/// Errors: 503 when no slot frees up within 2 s.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let _slot = argon2_slot().await?;
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

/// Whether `password` matches the PHC string `hash` (`false` for a
/// malformed hash), in one of the process's argon2 slots. Errors: 503 when
/// no slot frees up within 2 s.
pub async fn verify_password(password: String, hash: String) -> Result<bool, ApiError> {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let _slot = argon2_slot().await?;
    Ok(tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false))
}
