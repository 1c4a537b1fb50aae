//! Base64 (RFC 4648), the two alphabets OpenBao's APIs use: standard with padding (transit
//! `plaintext`, `input`) and URL-safe without padding (the parts of a JWT).
//!
//! Why a local codec rather than the `base64` crate: this crate needs four small functions,
//! and the buffers they fill hold plaintexts, so they are `Zeroizing` from the first byte —
//! with an external codec an intermediate `Vec` would be dropped unwiped.

use zeroize::Zeroizing;

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Standard alphabet with `=` padding.
pub(crate) fn encode(bytes: &[u8]) -> Zeroizing<String> {
    encode_with(bytes, STANDARD, true)
}

/// Decodes the standard alphabet; padding is optional, whitespace is not allowed.
pub(crate) fn decode(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    decode_with(text, STANDARD)
}

/// Decodes the URL-safe alphabet (JWT segments); padding is optional.
pub(crate) fn decode_url_safe(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    decode_with(text, URL_SAFE)
}

fn encode_with(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4));
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = chunk.len() + 1;
        for i in 0..4 {
            if i < symbols {
                let index = (n >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(alphabet[index as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

fn decode_with(text: &str, alphabet: &[u8; 64]) -> Option<Zeroizing<Vec<u8>>> {
    let trimmed = text.trim_end_matches('=');
    if text.len() - trimmed.len() > 2 {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(trimmed.len() / 4 * 3 + 2));
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in trimmed.as_bytes() {
        let value = alphabet.iter().position(|&a| a == c)?;
        acc = (acc << 6) | u32::try_from(value).ok()?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    // A single leftover symbol (6 bits) cannot encode a byte: the input was cut short.
    if bits >= 6 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vectors of RFC 4648 section 10.
    #[test]
    fn rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(encode(plain.as_bytes()).as_str(), encoded);
            assert_eq!(
                decode(encoded).expect("decodes").as_slice(),
                plain.as_bytes()
            );
            assert_eq!(
                decode(encoded.trim_end_matches('='))
                    .expect("unpadded decodes")
                    .as_slice(),
                plain.as_bytes()
            );
        }
    }

    #[test]
    fn round_trips_every_byte_and_length() {
        let all: Vec<u8> = (0..=255u8).collect();
        for len in 0..all.len() {
            let enc = encode(&all[..len]);
            assert_eq!(decode(&enc).expect("decodes").as_slice(), &all[..len]);
        }
    }

    #[test]
    fn url_safe_alphabet_and_garbage() {
        assert_eq!(
            decode_url_safe("-_8").expect("decodes").as_slice(),
            &[0xfb, 0xff]
        );
        assert!(decode("-_8").is_none(), "standard alphabet has no - or _");
        assert!(decode("Zm9v!").is_none());
        assert!(decode("Z").is_none(), "one symbol cannot carry a byte");
        assert!(decode("Zg===").is_none(), "at most two padding characters");
    }
}
