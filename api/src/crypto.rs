//! Personal data at rest (issue #6, seed 001 "Chiffrement"): AES-256-GCM
//! (RustCrypto `aes-gcm`) for emails, phones, addresses and TOTP secrets,
//! and a keyed hash (HMAC-SHA256, "blind index") for exact lookups and
//! uniqueness on emails without storing them in clear.
//!
//! - Ciphertexts are strings `enc:v1:{kid}:{base64(nonce ‖ ciphertext ‖ tag)}`
//!   with a random 96-bit nonce per value; `kid` names the key, so keys can
//!   rotate: new values use the first key of `API_PII_KEYS`, old values
//!   decrypt with the key they name.
//! - The blind index is `hex(HMAC-SHA256(API_BLIND_INDEX_KEY, normalised value))`;
//!   emails are normalised by trimming and lowercasing.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Errors of key parsing and decryption.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// `API_PII_KEYS` or `API_BLIND_INDEX_KEY` is malformed.
    #[error("bad key configuration: {0}")]
    BadConfig(String),
    /// A stored value names a key id that is not configured.
    #[error("unknown key id {0}")]
    UnknownKey(String),
    /// A stored value is not a ciphertext or does not authenticate.
    #[error("ciphertext does not decrypt")]
    Corrupt,
    /// The OS has no randomness.
    #[error("no randomness: {0}")]
    Random(String),
}

/// The PII keys and the blind-index key.
#[derive(Clone)]
pub struct Pii {
    keys: Vec<(String, Aes256Gcm)>,
    index_key: Vec<u8>,
}

impl std::fmt::Debug for Pii {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pii").field("key_ids", &self.keys.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>()).finish()
    }
}

const PREFIX: &str = "enc:v1:";

impl Pii {
    /// Parses `keys` (`kid:base64(32 bytes)[,kid:base64(32 bytes)...]`,
    /// the first encrypts) and `index_key` (base64, at least 32 bytes).
    pub fn new(keys: &str, index_key: &str) -> Result<Pii, CryptoError> {
        let mut parsed = Vec::new();
        for part in keys.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kid, b64) =
                part.split_once(':').ok_or_else(|| CryptoError::BadConfig("expected kid:base64key".into()))?;
            if kid.is_empty() || !kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(CryptoError::BadConfig(format!("key id {kid:?}: letters, digits, '-', '_'")));
            }
            let raw = B64.decode(b64).map_err(|e| CryptoError::BadConfig(format!("key {kid}: {e}")))?;
            let cipher = Aes256Gcm::new_from_slice(&raw)
                .map_err(|_| CryptoError::BadConfig(format!("key {kid}: must be 32 bytes")))?;
            parsed.push((kid.to_string(), cipher));
        }
        if parsed.is_empty() {
            return Err(CryptoError::BadConfig("no PII key".into()));
        }
        let index_key =
            B64.decode(index_key.trim()).map_err(|e| CryptoError::BadConfig(format!("blind index key: {e}")))?;
        if index_key.len() < 32 {
            return Err(CryptoError::BadConfig("blind index key: at least 32 bytes".into()));
        }
        Ok(Pii { keys: parsed, index_key })
    }

    /// A fresh random key in the `kid:base64` form [`Pii::new`] reads.
    pub fn generate_key(kid: &str) -> Result<String, CryptoError> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| CryptoError::Random(e.to_string()))?;
        Ok(format!("{kid}:{}", B64.encode(k)))
    }

    /// Encrypts `plain` with the current key.
    pub fn encrypt(&self, plain: &str) -> Result<String, CryptoError> {
        let (kid, cipher) = &self.keys[0];
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| CryptoError::Random(e.to_string()))?;
        let ct = cipher.encrypt(Nonce::from_slice(&nonce), plain.as_bytes()).map_err(|_| CryptoError::Corrupt)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        Ok(format!("{PREFIX}{kid}:{}", B64.encode(blob)))
    }

    /// Decrypts a value made by [`Pii::encrypt`] with any configured key.
    pub fn decrypt(&self, stored: &str) -> Result<String, CryptoError> {
        let rest = stored.strip_prefix(PREFIX).ok_or(CryptoError::Corrupt)?;
        let (kid, b64) = rest.split_once(':').ok_or(CryptoError::Corrupt)?;
        let (_, cipher) =
            self.keys.iter().find(|(k, _)| k == kid).ok_or_else(|| CryptoError::UnknownKey(kid.to_string()))?;
        let blob = B64.decode(b64).map_err(|_| CryptoError::Corrupt)?;
        if blob.len() < 12 + 16 {
            return Err(CryptoError::Corrupt);
        }
        let plain = cipher.decrypt(Nonce::from_slice(&blob[..12]), &blob[12..]).map_err(|_| CryptoError::Corrupt)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Corrupt)
    }

    /// The blind index of an email: HMAC-SHA256 of its trimmed lowercase form, hex.
    pub fn email_index(&self, email: &str) -> String {
        self.index(&email.trim().to_lowercase())
    }

    /// The blind index of an already normalised value.
    pub fn index(&self, value: &str) -> String {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.index_key) else { return String::new() };
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pii() -> Pii {
        let k1 = Pii::generate_key("k1").unwrap();
        Pii::new(&k1, &B64.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn round_trips_with_random_nonces_and_refuses_tampering() {
        let p = pii();
        let a = p.encrypt("jiro@example.com").unwrap();
        let b = p.encrypt("jiro@example.com").unwrap();
        assert_ne!(a, b, "random nonce per value");
        assert!(a.starts_with("enc:v1:k1:") && !a.contains("jiro"));
        assert_eq!(p.decrypt(&a).unwrap(), "jiro@example.com");
        let mut t = a.clone().into_bytes();
        let n = t.len() - 3;
        t[n] = if t[n] == b'A' { b'B' } else { b'A' };
        assert_eq!(p.decrypt(&String::from_utf8(t).unwrap()), Err(CryptoError::Corrupt));
        assert_eq!(p.decrypt("plain"), Err(CryptoError::Corrupt));
    }

    #[test]
    fn keys_rotate_by_id_and_blind_index_is_stable_and_keyed() {
        let old = Pii::generate_key("old").unwrap();
        let new = Pii::generate_key("new").unwrap();
        let idx = B64.encode([9u8; 32]);
        let before = Pii::new(&old, &idx).unwrap();
        let stored = before.encrypt("+33612345678").unwrap();
        let after = Pii::new(&format!("{new},{old}"), &idx).unwrap();
        assert_eq!(after.decrypt(&stored).unwrap(), "+33612345678", "old values still read");
        assert!(after.encrypt("x").unwrap().starts_with("enc:v1:new:"), "new values use the first key");
        assert_eq!(Pii::new(&new, &idx).unwrap().decrypt(&stored), Err(CryptoError::UnknownKey("old".into())));
        assert_eq!(after.email_index(" Jiro@Example.com "), before.email_index("jiro@example.com"));
        let other = Pii::new(&old, &B64.encode([1u8; 32])).unwrap();
        assert_ne!(other.email_index("jiro@example.com"), before.email_index("jiro@example.com"));
        assert!(Pii::new("k:short", &idx).is_err());
        assert!(Pii::new(&old, "c2hvcnQ=").is_err());
    }
}
