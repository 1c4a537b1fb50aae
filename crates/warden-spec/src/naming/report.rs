//! How a delivery report travels as KV custom metadata (ADR 0036).
//!
//! An agent's report (JSON, docs/registry.md) is written as the `custom_metadata` of its own
//! entry, `warden/metadata/delivered/<identity>`, so that one `SCAN` of the folder's
//! `detailed-metadata` answers every identity's report at once instead of one read per
//! identity. OpenBao (like Vault) limits custom metadata to 64 keys of at most 128 bytes with
//! values of 1 to 512 bytes, each printable (a value with a non-breaking space or a DEL is
//! refused with a 400), so the compact JSON text is first made printable ASCII — every other
//! character written as a `\uXXXX` escape, which only ever occurs inside JSON strings — then
//! cut into consecutive slices `r00`, `r01`, …. A report that does not fit (more than 32 KiB)
//! is written as the entry's data instead, as before ADR 0036.

use std::collections::BTreeMap;

/// The most bytes in one custom-metadata value.
pub const REPORT_CHUNK_BYTES: usize = 512;
/// The most custom-metadata keys of one entry.
pub const REPORT_MAX_CHUNKS: usize = 64;

fn key(i: usize) -> String {
    format!("r{i:02}")
}

/// `json` (compact: no whitespace outside strings) as printable ASCII, cut into
/// custom-metadata entries `r00`…; `None` when it is empty or needs more than
/// [`REPORT_MAX_CHUNKS`] slices (write it as data).
pub fn report_to_metadata(json: &str) -> Option<BTreeMap<String, String>> {
    if json.is_empty() {
        return None;
    }
    let ascii = printable_ascii(json);
    let mut out = BTreeMap::new();
    let mut rest = ascii.as_str();
    while !rest.is_empty() {
        if out.len() == REPORT_MAX_CHUNKS {
            return None;
        }
        // ASCII: every byte is a character boundary.
        let (head, tail) = rest.split_at(rest.len().min(REPORT_CHUNK_BYTES));
        out.insert(key(out.len()), head.to_owned());
        rest = tail;
    }
    Some(out)
}

/// Every character outside printable ASCII (space to `~`) as JSON `\uXXXX` escapes (UTF-16,
/// surrogate pairs beyond the basic plane): the same JSON value, in characters OpenBao accepts
/// in custom metadata.
fn printable_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if (' '..='~').contains(&c) {
            out.push(c);
        } else {
            let mut units = [0_u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// The JSON text of a report written by [`report_to_metadata`]: the slices `r00`, `r01`, … in
/// order, up to the first missing one. `None` when there is no `r00` (no report in the
/// metadata: an older agent writes its report as data).
pub fn report_from_metadata(custom: &BTreeMap<String, String>) -> Option<String> {
    let mut text = String::new();
    for i in 0..REPORT_MAX_CHUNKS {
        match custom.get(&key(i)) {
            Some(part) => text.push_str(part),
            None => break,
        }
    }
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_in_slices_within_the_limits() {
        // Characters OpenBao refuses in custom metadata (a non-breaking space, DEL, a narrow
        // no-break space, beyond the basic plane) travel as escapes: the same JSON value.
        let json = format!(
            "{{\"error\":\"{}{}\"}}",
            "é→".repeat(300),
            "\u{a0}\u{7f}\u{202f}\u{1f600}"
        );
        let m = report_to_metadata(&json).expect("it fits");
        assert!(m.len() > 1);
        assert!(m.iter().all(|(k, v)| k.len() <= 128
            && !v.is_empty()
            && v.len() <= REPORT_CHUNK_BYTES
            && v.chars().all(|c| (' '..='~').contains(&c))));
        let back = report_from_metadata(&m).unwrap();
        assert!(back.contains("\\ud83d\\ude00"), "a surrogate pair");
        let parsed: BTreeMap<String, String> = serde_json::from_str(&back).unwrap();
        let original: BTreeMap<String, String> = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, original);
        // A small one is one slice; nothing is nothing.
        let small = report_to_metadata("{}").unwrap();
        assert_eq!(small.keys().collect::<Vec<_>>(), ["r00"]);
        assert!(report_to_metadata("").is_none());
        assert!(report_from_metadata(&BTreeMap::new()).is_none());
    }

    #[test]
    fn a_plain_ascii_report_is_unchanged() {
        let json = r#"{"reported_at":"2026-01-01T00:00:00Z","outputs":[]}"#;
        let m = report_to_metadata(json).unwrap();
        assert_eq!(report_from_metadata(&m).as_deref(), Some(json));
    }

    #[test]
    fn a_report_too_big_for_the_metadata_is_refused() {
        let fits = "x".repeat(REPORT_CHUNK_BYTES * REPORT_MAX_CHUNKS);
        assert_eq!(report_to_metadata(&fits).unwrap().len(), REPORT_MAX_CHUNKS);
        assert!(report_to_metadata(&format!("{fits}x")).is_none());
    }

    #[test]
    fn slices_are_read_in_order_up_to_the_first_gap() {
        let m: BTreeMap<String, String> = [("r00", "ab"), ("r01", "cd"), ("r03", "zz")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(report_from_metadata(&m).as_deref(), Some("abcd"));
    }
}
