//! The bytes an evidence signature covers: JSON with object keys sorted by their UTF-8 bytes,
//! no whitespace, strings escaped the way `serde_json` escapes them (`"`, `\`, control
//! characters; everything else as UTF-8), integers in decimal. Keys are sorted here, not by
//! relying on `serde_json`'s map type, so the result does not depend on whether some crate
//! in the build turned on its `preserve_order` feature.
//!
//! Reading is strict: a duplicated key is an error, not "last one wins", so two readers can
//! never see different content in the same signed packet.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The canonical bytes of `value`.
pub fn to_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(v, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                scalar(&Value::String(k.clone()), out);
                out.push(b':');
                write(&map[k], out);
            }
            out.push(b'}');
        }
        other => scalar(other, out),
    }
}

fn scalar(value: &Value, out: &mut Vec<u8>) {
    // Writing a scalar into a Vec cannot fail.
    serde_json::to_writer(&mut *out, value).expect("serialising a JSON scalar into memory");
}

/// Parses `bytes` as JSON, refusing duplicated object keys. Errors carry serde_json's line
/// and column.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict::deserialize(&mut de)?.0;
    de.end()?;
    Ok(v)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth_without_whitespace() {
        let v = json!({ "b": [ { "z": 1, "a": null } ], "a": "x", "B": true });
        assert_eq!(
            String::from_utf8(to_bytes(&v)).expect("utf-8"),
            r#"{"B":true,"a":"x","b":[{"a":null,"z":1}]}"#
        );
    }

    #[test]
    fn the_same_content_in_any_order_or_layout_gives_the_same_bytes() {
        let a = parse_strict(br#"{"x": {"q": 1, "p": [1, 2]}, "w": "\u00e9"}"#).expect("a");
        let b =
            parse_strict("{\"w\":\"é\",\n  \"x\":{\"p\":[1,2],\"q\":1}}".as_bytes()).expect("b");
        assert_eq!(to_bytes(&a), to_bytes(&b));
        assert_eq!(
            to_bytes(&a),
            r#"{"w":"é","x":{"p":[1,2],"q":1}}"#.as_bytes()
        );
    }

    #[test]
    fn strings_are_escaped_minimally_and_deterministically() {
        let v = json!({ "s": "a\"b\\c\nd\u{1}/é" });
        assert_eq!(
            String::from_utf8(to_bytes(&v)).expect("utf-8"),
            r#"{"s":"a\"b\\c\nd\u0001/é"}"#
        );
        // Keys sort by bytes: "Z" (0x5a) < "a" (0x61) < "é" (0xc3 0xa9).
        let k = json!({ "é": 1, "a": 2, "Z": 3 });
        assert_eq!(to_bytes(&k), r#"{"Z":3,"a":2,"é":1}"#.as_bytes());
    }

    #[test]
    fn duplicate_keys_and_trailing_garbage_are_refused() {
        let e = parse_strict(br#"{"a":1,"b":{"c":1,"c":2}}"#).expect_err("duplicate");
        assert!(e.to_string().contains("duplicate key `c`"), "{e}");
        assert!(parse_strict(br#"{"a":1} x"#).is_err());
        assert!(parse_strict(b"").is_err());
        assert_eq!(
            parse_strict(b"[1,\"x\",null]").expect("ok"),
            json!([1, "x", null])
        );
    }
}
