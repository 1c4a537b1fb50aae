//! Base64 (RFC 4648), the two alphabets OpenBao's APIs use: standard with padding (transit
//! `plaintext`, `input`) and URL-safe without padding (the parts of a JWT).
//!
//! A thin layer over the `base64` crate whose only job is where the bytes land: the buffers
//! hold plaintexts, so they are `Zeroizing` and sized up front, so the codec never reallocates
//! (which would drop an unwiped copy).

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use zeroize::Zeroizing;

/// Encodes with padding; decodes with or without it.
const CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, CONFIG);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, CONFIG);

/// Standard alphabet with `=` padding.
pub(crate) fn encode(bytes: &[u8]) -> Zeroizing<String> {
    let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    let mut out = Zeroizing::new(String::with_capacity(len));
    STANDARD.encode_string(bytes, &mut out);
    out
}

/// Decodes the standard alphabet; padding is optional, whitespace is not allowed.
pub(crate) fn decode(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    decode_with(&STANDARD, text)
}

/// Decodes the URL-safe alphabet (JWT segments); padding is optional.
pub(crate) fn decode_url_safe(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    decode_with(&URL_SAFE, text)
}

fn decode_with(engine: &GeneralPurpose, text: &str) -> Option<Zeroizing<Vec<u8>>> {
    // The estimate is an upper bound, so decoding never grows the buffer.
    let mut out = Zeroizing::new(Vec::with_capacity(
        base64::decoded_len_estimate(text.len()) + 3,
    ));
    engine.decode_vec(text, &mut out).ok()?;
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
