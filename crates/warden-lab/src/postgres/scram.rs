//! The SCRAM-SHA-256 verifier PostgreSQL stores for a password (RFC 5802/7677, the
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` form of `pg_authid`).
//!
//! Why: `CREATE ROLE … PASSWORD '<verifier>'` sets a password without the clear text ever
//! reaching the server, so it cannot surface in a server log line or `pg_stat_activity`;
//! psql's `\password` does the same.

use std::num::NonZeroU32;

use aws_lc_rs::{digest, hmac, pbkdf2, rand::SecureRandom as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// PostgreSQL's default `scram_iterations`.
const ITERATIONS: u32 = 4096;

/// The verifier of `password` with a fresh random salt.
pub(crate) fn verifier(password: &str) -> Result<String, aws_lc_rs::error::Unspecified> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut salt)?;
    Ok(verifier_with_salt(password, &salt))
}

fn verifier_with_salt(password: &str, salt: &[u8]) -> String {
    let mut salted = Zeroizing::new([0u8; 32]);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(ITERATIONS).expect("non-zero"),
        salt,
        password.as_bytes(),
        salted.as_mut(),
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, salted.as_ref());
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key.as_ref()),
        STANDARD.encode(server_key.as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same derivation done independently (Python's `hashlib.pbkdf2_hmac` and `hmac`);
    /// the lab's integration test proves PostgreSQL accepts it (the engine logs in with it).
    #[test]
    fn matches_an_independent_derivation() {
        let salt = STANDARD.decode("1ZUjvSl1Jhdn5jGPDANW8Q==").unwrap();
        assert_eq!(
            verifier_with_salt("pencil", &salt),
            "SCRAM-SHA-256$4096:1ZUjvSl1Jhdn5jGPDANW8Q==$CHNLJ2LO19v4ORjMfNLPLSZcIfHJPBZvTBBopAnrfYM=:Qhg92IpbiIK9kh+aYPOgHo3zXRfY9clZQ2Wvtgeo56A="
        );
    }

    #[test]
    fn salts_differ() {
        assert_ne!(verifier("x").unwrap(), verifier("x").unwrap());
    }
}
