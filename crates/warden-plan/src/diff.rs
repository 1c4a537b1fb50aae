//! Comparing what the spec wants with what the server has, field by field, after normalising
//! the forms OpenBao answers in (numbers for durations, trimmed PEM, lists in any order).

use serde::Serialize;
use serde_json::Value;

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    /// The field name (dotted for nested fields).
    pub field: String,
    /// The live value (`null` when absent).
    pub from: Value,
    /// The desired value.
    pub to: Value,
}

/// The fields of `desired` that `live` does not match. Fields the server has but the spec does
/// not set are ignored: OpenBao fills in many defaults we do not manage.
pub(crate) fn diff(desired: &Value, live: &Value) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    diff_into("", desired, live, &mut out);
    out
}

fn diff_into(prefix: &str, desired: &Value, live: &Value, out: &mut Vec<FieldDiff>) {
    let Some(want) = desired.as_object() else {
        if !same(desired, live) {
            out.push(FieldDiff {
                field: prefix.to_owned(),
                from: live.clone(),
                to: desired.clone(),
            });
        }
        return;
    };
    for (key, want_v) in want {
        let field = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let have = live.get(key).unwrap_or(&Value::Null);
        if want_v.is_object() && have.is_object() {
            diff_into(&field, want_v, have, out);
        } else if !same(want_v, have) {
            out.push(FieldDiff {
                field,
                from: have.clone(),
                to: want_v.clone(),
            });
        }
    }
}

/// Equality up to the server's normal forms.
fn same(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::String(w), Value::String(h)) => w.trim() == h.trim(),
        (Value::Number(w), Value::Number(h)) => w.as_f64() == h.as_f64(),
        // A one-element list is sometimes answered as a scalar and the other way round.
        (Value::Array(w), h) if !h.is_array() && w.len() == 1 => same(&w[0], h),
        (Value::Array(w), Value::Array(h)) => {
            if w.len() != h.len() {
                return false;
            }
            let mut hs: Vec<&Value> = h.iter().collect();
            w.iter().all(|x| {
                if let Some(pos) = hs.iter().position(|y| same(x, y)) {
                    hs.remove(pos);
                    true
                } else {
                    false
                }
            })
        }
        (Value::Object(_), Value::Object(_)) => diff(want, have).is_empty(),
        // An empty desired list matches an absent or null field.
        (Value::Array(w), Value::Null) => w.is_empty(),
        (w, h) => w == h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ignores_extra_live_fields_and_order() {
        let want =
            json!({ "ttl": 86400, "allowed_domains": ["a", "b"], "claims": { "ref": ["x"] } });
        let have = json!({ "ttl": 86400.0, "allowed_domains": ["b", "a"], "other": 1, "claims": { "ref": "x", "y": 2 } });
        assert!(diff(&want, &have).is_empty(), "{:?}", diff(&want, &have));
    }

    #[test]
    fn reports_changed_and_missing_fields() {
        let want = json!({ "ttl": 3600, "key_type": "ec", "names": ["a"] });
        let have = json!({ "ttl": 86400, "names": ["a", "b"] });
        let d = diff(&want, &have);
        let fields: Vec<_> = d.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["key_type", "names", "ttl"]);
    }
}
