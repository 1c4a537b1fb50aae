//! Random secrets for fixtures, from the kernel's CSPRNG (no RNG crate needed for 32 bytes).

use std::fmt::Write as _;
use std::io::{self, Read};

use secrecy::SecretString;
use zeroize::Zeroize;

/// 32 random bytes as 64 hex digits: a password that needs no quoting in a URL or a file.
pub(crate) fn hex_secret() -> io::Result<SecretString> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let mut hex = String::with_capacity(64);
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    bytes.zeroize();
    Ok(SecretString::from(hex))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    #[test]
    fn secrets_are_hex_and_differ() {
        let a = super::hex_secret().unwrap();
        let b = super::hex_secret().unwrap();
        assert_eq!(a.expose_secret().len(), 64);
        assert!(a.expose_secret().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
