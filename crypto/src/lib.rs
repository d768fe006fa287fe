//! `crypto`: personal data and secrets at rest (issue #6, seed 001
//! "Chiffrement"; destination credentials, issue #19): AES-256-GCM
//! (RustCrypto `aes-gcm`) for emails, phones, addresses and TOTP secrets,
//! and a keyed hash (HMAC-SHA256, "blind index") for exact lookups and
//! uniqueness on emails without storing them in clear.
//!
//! - Ciphertexts are strings `enc:v2:{kid}:{base64(nonce ‖ ciphertext ‖ tag)}`
//!   with a random 96-bit nonce per value; `kid` names the key, so keys can
//!   rotate: new values use the first key of `API_PII_KEYS`, old values
//!   decrypt with the key they name.
//! - Each ciphertext is bound to its place, `{collection}/{record id}/{field}`
//!   ([`Field`]), as AES-GCM associated data (security review finding 17):
//!   one copied onto another record or field (a phone pasted over another
//!   tenant's email by someone who can write the database) no longer
//!   decrypts. Values moved between records are re-encrypted
//!   ([`Pii::rebind`]). `enc:v1:` values, written before the binding, are
//!   refused ([`CryptoError::Legacy`]) unless `API_PII_LEGACY_V1` is set
//!   ([`Pii::with_legacy_v1`]): a v1 value would decrypt wherever it is
//!   copied. `api rewrap-pii` rewrites them as v2, and
//!   values under an older key with the current one.
//! - The blind index is `hex(HMAC-SHA256(API_BLIND_INDEX_KEY, normalised value))`;
//!   emails are normalised by trimming and lowercasing.

use aes_gcm::aead::{Aead, KeyInit, Payload};
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
    /// A value written before ciphertexts were bound to their place
    /// (`enc:v1:`), refused: `api rewrap-pii` rewrites them.
    #[error("a personal-data value predates field binding (enc:v1); run `api rewrap-pii`")]
    Legacy,
    /// The OS has no randomness.
    #[error("no randomness: {0}")]
    Random(String),
}

/// The PII keys and the blind-index key.
#[derive(Clone)]
pub struct Pii {
    keys: Vec<(String, Aes256Gcm)>,
    index_key: Vec<u8>,
    /// `enc:v1:` values decrypt (without a binding).
    legacy_v1: bool,
}

impl std::fmt::Debug for Pii {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pii").field("key_ids", &self.keys.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>()).finish()
    }
}

/// Bound ciphertexts ([`Field`] as associated data).
const PREFIX: &str = "enc:v2:";
/// Ciphertexts written before the binding: no associated data.
const LEGACY_PREFIX: &str = "enc:v1:";

/// The place a ciphertext belongs to: a field of one record. Its
/// associated data is `{collection}/{id hex}/{name}`.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    /// The collection (`leads`, `users`...).
    pub collection: &'a str,
    /// The record's `_id`.
    pub id: bson::oid::ObjectId,
    /// The field (`email`, `phone`, `totp_secret`...).
    pub name: &'a str,
}

impl<'a> Field<'a> {
    /// Field `name` of record `id` in `collection`.
    pub fn new(collection: &'a str, id: bson::oid::ObjectId, name: &'a str) -> Self {
        Field { collection, id, name }
    }

    fn aad(&self) -> String {
        format!("{}/{}/{}", self.collection, self.id.to_hex(), self.name)
    }
}

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
        Ok(Pii { keys: parsed, index_key, legacy_v1: false })
    }

    /// These keys, reading `enc:v1:` values (unbound) too when `yes`.
    pub fn with_legacy_v1(mut self, yes: bool) -> Pii {
        self.legacy_v1 = yes;
        self
    }

    /// The id of the key new values are encrypted with (the first).
    pub fn current_key_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Whether `stored` is a ciphertext that is not bound under the current
    /// key: an `enc:v1:` value, or a bound one under another key id.
    pub fn needs_rewrap(&self, stored: &str) -> bool {
        let current = stored.strip_prefix(PREFIX).and_then(|r| r.strip_prefix(self.current_key_id()));
        stored.starts_with("enc:") && !current.is_some_and(|r| r.starts_with(':'))
    }

    /// How the values [`Pii::needs_rewrap`] finds begin, for the configured
    /// keys: `enc:v1:`, and `enc:v2:{kid}:` for each older key (values under
    /// a key no longer configured do not decrypt, so are not looked for).
    pub fn rewrap_prefixes(&self) -> Vec<String> {
        let older = self.keys.iter().skip(1).map(|(kid, _)| format!("{PREFIX}{kid}:"));
        std::iter::once(LEGACY_PREFIX.to_string()).chain(older).collect()
    }

    /// A fresh random key in the `kid:base64` form [`Pii::new`] reads.
    pub fn generate_key(kid: &str) -> Result<String, CryptoError> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| CryptoError::Random(e.to_string()))?;
        Ok(format!("{kid}:{}", B64.encode(k)))
    }

    /// Encrypts `plain` with the current key, bound to `at`.
    pub fn encrypt(&self, plain: &str, at: Field<'_>) -> Result<String, CryptoError> {
        let (kid, cipher) = &self.keys[0];
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| CryptoError::Random(e.to_string()))?;
        let aad = at.aad();
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad: aad.as_bytes() })
            .map_err(|_| CryptoError::Corrupt)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        Ok(format!("{PREFIX}{kid}:{}", B64.encode(blob)))
    }

    /// Decrypts a value [`Pii::encrypt`] made for `at`, with any configured
    /// key; [`CryptoError::Corrupt`] when it was made for another place
    /// (or altered). Legacy `enc:v1:` values: [`CryptoError::Legacy`],
    /// unless [`Pii::with_legacy_v1`] (then they decrypt unbound).
    pub fn decrypt(&self, stored: &str, at: Field<'_>) -> Result<String, CryptoError> {
        let (rest, aad) = match stored.strip_prefix(PREFIX) {
            Some(rest) => (rest, at.aad()),
            None if !self.legacy_v1 && stored.starts_with(LEGACY_PREFIX) => return Err(CryptoError::Legacy),
            None => (stored.strip_prefix(LEGACY_PREFIX).ok_or(CryptoError::Corrupt)?, String::new()),
        };
        let (kid, b64) = rest.split_once(':').ok_or(CryptoError::Corrupt)?;
        let (_, cipher) =
            self.keys.iter().find(|(k, _)| k == kid).ok_or_else(|| CryptoError::UnknownKey(kid.to_string()))?;
        let blob = B64.decode(b64).map_err(|_| CryptoError::Corrupt)?;
        if blob.len() < 12 + 16 {
            return Err(CryptoError::Corrupt);
        }
        let plain = cipher
            .decrypt(Nonce::from_slice(&blob[..12]), Payload { msg: &blob[12..], aad: aad.as_bytes() })
            .map_err(|_| CryptoError::Corrupt)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Corrupt)
    }

    /// `stored` (made for `from`) re-encrypted for `to`: a value copied
    /// onto another record or field.
    pub fn rebind(&self, stored: &str, from: Field<'_>, to: Field<'_>) -> Result<String, CryptoError> {
        self.encrypt(&self.decrypt(stored, from)?, to)
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

    fn at(name: &str) -> Field<'_> {
        Field::new("leads", bson::oid::ObjectId::from_bytes([1; 12]), name)
    }

    #[test]
    fn round_trips_with_random_nonces_and_refuses_tampering() {
        let p = pii();
        let a = p.encrypt("jiro@example.com", at("email")).unwrap();
        let b = p.encrypt("jiro@example.com", at("email")).unwrap();
        assert_ne!(a, b, "random nonce per value");
        assert!(a.starts_with("enc:v2:k1:") && !a.contains("jiro"));
        assert_eq!(p.decrypt(&a, at("email")).unwrap(), "jiro@example.com");
        let mut t = a.clone().into_bytes();
        let n = t.len() - 3;
        t[n] = if t[n] == b'A' { b'B' } else { b'A' };
        assert_eq!(p.decrypt(&String::from_utf8(t).unwrap(), at("email")), Err(CryptoError::Corrupt));
        assert_eq!(p.decrypt("plain", at("email")), Err(CryptoError::Corrupt));
    }

    #[test]
    fn values_to_rewrap_are_unbound_or_under_another_key() {
        let p =
            Pii::new(&format!("k1:{},old:{}", B64.encode([1u8; 32]), B64.encode([2u8; 32])), &B64.encode([7u8; 32]))
                .unwrap();
        assert!(p.needs_rewrap("enc:v1:k1:AAAA"));
        assert!(p.needs_rewrap("enc:v2:old:AAAA"));
        assert!(p.needs_rewrap("enc:v2:k10:AAAA"), "a key id that only starts like the current one");
        assert!(!p.needs_rewrap("enc:v2:k1:AAAA"));
        assert!(!p.needs_rewrap("placeholder"), "not a ciphertext");
        assert_eq!(p.rewrap_prefixes(), ["enc:v1:", "enc:v2:old:"]);
    }

    #[test]
    fn a_ciphertext_decrypts_only_at_its_own_record_and_field() {
        let p = pii();
        let a = p.encrypt("+33612345678", at("phone")).unwrap();
        assert_eq!(p.decrypt(&a, at("email")), Err(CryptoError::Corrupt), "another field");
        let other = Field::new("leads", bson::oid::ObjectId::from_bytes([2; 12]), "phone");
        assert_eq!(p.decrypt(&a, other), Err(CryptoError::Corrupt), "another record");
        assert_eq!(p.decrypt(&a, Field { collection: "contacts", ..at("phone") }), Err(CryptoError::Corrupt));
        let moved = p.rebind(&a, at("phone"), other).unwrap();
        assert_eq!(p.decrypt(&moved, other).unwrap(), "+33612345678");
        // A value written before the binding (v1: no associated data)
        // decrypts anywhere, so it is refused unless legacy reads are on.
        let (kid, cipher) = &p.keys[0];
        let nonce = [3u8; 12];
        let ct = cipher.encrypt(Nonce::from_slice(&nonce), b"legacy".as_ref()).unwrap();
        let v1 = format!("enc:v1:{kid}:{}", B64.encode([nonce.to_vec(), ct].concat()));
        assert_eq!(p.decrypt(&v1, at("email")), Err(CryptoError::Legacy));
        let legacy = p.clone().with_legacy_v1(true);
        assert_eq!(legacy.decrypt(&v1, at("email")).unwrap(), "legacy");
        assert_eq!(legacy.decrypt(&v1, other).unwrap(), "legacy", "unbound: why v1 is refused");
    }

    #[test]
    fn keys_rotate_by_id_and_blind_index_is_stable_and_keyed() {
        let old = Pii::generate_key("old").unwrap();
        let new = Pii::generate_key("new").unwrap();
        let idx = B64.encode([9u8; 32]);
        let before = Pii::new(&old, &idx).unwrap();
        let stored = before.encrypt("+33612345678", at("phone")).unwrap();
        let after = Pii::new(&format!("{new},{old}"), &idx).unwrap();
        assert_eq!(after.decrypt(&stored, at("phone")).unwrap(), "+33612345678", "old values still read");
        assert!(after.encrypt("x", at("phone")).unwrap().starts_with("enc:v2:new:"), "new values use the first key");
        assert_eq!(
            Pii::new(&new, &idx).unwrap().decrypt(&stored, at("phone")),
            Err(CryptoError::UnknownKey("old".into()))
        );
        assert_eq!(after.email_index(" Jiro@Example.com "), before.email_index("jiro@example.com"));
        let other = Pii::new(&old, &B64.encode([1u8; 32])).unwrap();
        assert_ne!(other.email_index("jiro@example.com"), before.email_index("jiro@example.com"));
        assert!(Pii::new("k:short", &idx).is_err());
        assert!(Pii::new(&old, "c2hvcnQ=").is_err());
    }
}
