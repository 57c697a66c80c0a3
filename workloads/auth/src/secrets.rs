//! Passwords (argon2), login tokens (JWT HS256) and API keys (random, stored
//! as SHA-256). Pure: no I/O.

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// An argon2id hash in PHC format (salt included).
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// True when `password` matches the stored hash; false for any mismatch or
/// unreadable hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so an unknown email
/// costs the same time as a wrong password.
pub fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0bXQ8Ykm8bWsa1wlsmZ2FFaTVRnmPIHlP9kmZ5KCSgc"
}

/// Claims of a login token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id, as a string (the JWT `sub` claim is a string).
    pub sub: String,
    pub email: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token could not be created: {0}")]
    Encode(String),
    #[error("invalid or expired token")]
    Invalid,
}

pub fn issue_token(
    secret: &str,
    user_id: i64,
    email: &str,
    now: i64,
    ttl_secs: i64,
) -> Result<String, TokenError> {
    let claims = Claims {
        sub: user_id.to_string(),
        email: email.to_owned(),
        iat: now,
        exp: now + ttl_secs,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| TokenError::Encode(e.to_string()))
}

/// Verifies signature, algorithm and expiry (no leeway).
impl Claims {
    pub fn user_id(&self) -> Result<i64, TokenError> {
        self.sub.parse().map_err(|_| TokenError::Invalid)
    }
}

pub fn verify_token(secret: &str, token: &str) -> Result<Claims, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map(|data| data.claims)
    .map_err(|_| TokenError::Invalid)
}

/// Prefix of every API key, so leaked keys are recognisable by scanners.
pub const KEY_PREFIX: &str = "trb_";

/// The operating system gave no random bytes.
#[derive(Debug, thiserror::Error)]
#[error("no random bytes from the operating system: {0}")]
pub struct RandomError(String);

/// A new API key: 256 bits from the operating system's random source,
/// URL-safe (43 characters after the prefix). Two UUIDv4 would carry 244:
/// each fixes 6 bits.
pub fn new_api_key() -> Result<String, RandomError> {
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| RandomError(e.to_string()))?;
    Ok(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// What is stored for a key: its SHA-256, hex. Keys are long and random, so
/// a fast hash is enough (and keeps validation fast).
pub fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The part of a key shown in lists.
pub fn key_display_prefix(key: &str) -> String {
    key.chars().take(KEY_PREFIX.len() + 6).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(!verify_password("anything", dummy_hash()));
        assert_ne!(h, hash_password("correct horse").unwrap(), "salted");
    }

    #[test]
    fn tokens_verify_and_expire() {
        let now = chrono::Utc::now().timestamp();
        let t = issue_token(SECRET, 7, "a@b.test", now, 60).unwrap();
        assert_eq!(verify_token(SECRET, &t).unwrap().user_id().unwrap(), 7);
        assert!(verify_token("another-secret-another-secret-xx", &t).is_err());
        let expired = issue_token(SECRET, 7, "a@b.test", now - 120, 60).unwrap();
        assert!(verify_token(SECRET, &expired).is_err());
        // Tampered payload: change the user id, keep the signature.
        let parts: Vec<&str> = t.split('.').collect();
        let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            serde_json::json!({"sub": "1", "email": "a@b.test", "iat": now, "exp": now + 60})
                .to_string(),
        );
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert!(verify_token(SECRET, &forged).is_err());
        assert!(verify_token(SECRET, "garbage").is_err());
    }

    #[test]
    fn api_keys_carry_256_random_bits() {
        // Over 200 keys, every one of the 256 bits is seen both set and
        // clear (a bit fixed by a format, as in UUIDv4, never is; a random
        // one stays constant with probability 2^-199).
        let decoded: Vec<Vec<u8>> = (0..200)
            .map(|_| {
                let key = new_api_key().unwrap();
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(&key[KEY_PREFIX.len()..])
                    .unwrap()
            })
            .collect();
        assert!(decoded.iter().all(|b| b.len() == 32));
        let fixed: Vec<usize> = (0..256)
            .filter(|bit| {
                let of = |k: &Vec<u8>| k[bit / 8] >> (bit % 8) & 1;
                decoded.iter().all(|k| of(k) == of(&decoded[0]))
            })
            .collect();
        assert!(fixed.is_empty(), "bits never varying: {fixed:?}");
    }

    #[test]
    fn api_keys_are_random_and_hashed() {
        let a = new_api_key().unwrap();
        let b = new_api_key().unwrap();
        assert_ne!(a, b);
        assert!(
            a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 43,
            "{a}"
        );
        assert_eq!(key_hash(&a).len(), 64);
        assert_ne!(key_hash(&a), key_hash(&b));
        assert!(!key_hash(&a).contains(&a[4..]));
        assert_eq!(key_display_prefix(&a).len(), 10);
    }
}
