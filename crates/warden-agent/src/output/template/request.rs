//! What a template asks for: the reads its functions record, checked for clear errors, and
//! what each read produced.

use minijinja::ErrorKind;
use minijinja::value::Value;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum KvVersion {
    V1,
    V2,
}

/// One read a template asked for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Request {
    Kv {
        version: KvVersion,
        mount: String,
        path: String,
    },
    CaChain {
        mount: String,
    },
    /// A `[[database]]` source, answered by the lease book, not by a read.
    Database {
        source: String,
    },
}

impl Request {
    pub(super) fn kv(
        version: KvVersion,
        mount: &str,
        path: &str,
    ) -> Result<Self, minijinja::Error> {
        let func = match version {
            KvVersion::V1 => "kv1",
            KvVersion::V2 => "kv",
        };
        Ok(Self::Kv {
            version,
            mount: clean_segment(func, "mount", mount)?,
            path: clean_segment(func, "path", path)?,
        })
    }

    pub(super) fn ca_chain(mount: &str) -> Result<Self, minijinja::Error> {
        Ok(Self::CaChain {
            mount: clean_segment("ca_chain", "pki_mount", mount)?,
        })
    }

    pub(super) fn database(source: &str) -> Result<Self, minijinja::Error> {
        let s = source.trim();
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "database(): {source:?} is not a source name (the `name` of a [[database]] in agent.toml)"
                ),
            ));
        }
        Ok(Self::Database {
            source: s.to_owned(),
        })
    }

    /// How the template spelt the call, for messages.
    pub(super) fn call(&self) -> String {
        match self {
            Self::Kv {
                version: KvVersion::V2,
                mount,
                path,
            } => format!("kv({mount:?}, {path:?})"),
            Self::Kv {
                version: KvVersion::V1,
                mount,
                path,
            } => format!("kv1({mount:?}, {path:?})"),
            Self::CaChain { mount } => format!("ca_chain({mount:?})"),
            Self::Database { source } => format!("database({source:?})"),
        }
    }

    /// The API path read (relative to `/v1/`).
    pub(super) fn api_path(&self) -> String {
        match self {
            Self::Kv {
                version: KvVersion::V2,
                mount,
                path,
            } => format!("{mount}/data/{path}"),
            Self::Kv {
                version: KvVersion::V1,
                mount,
                path,
            } => format!("{mount}/{path}"),
            Self::CaChain { mount } => format!("{mount}/cert/ca_chain"),
            Self::Database { source } => format!("[[database]] {source}"),
        }
    }

    pub(super) fn not_found_hint(&self) -> &'static str {
        match self {
            Self::Kv {
                version: KvVersion::V2,
                ..
            } => " (kv() reads KV version 2 mounts; use kv1() for a version 1 mount)",
            Self::Kv {
                version: KvVersion::V1,
                ..
            } => " (kv1() reads KV version 1 mounts; use kv() for a version 2 mount)",
            Self::CaChain { .. } => " (is it a PKI mount?)",
            Self::Database { .. } => "",
        }
    }

    pub(super) async fn read(&self, client: &warden_bao::Client) -> warden_bao::Result<Fetch> {
        let path = self.api_path();
        match self {
            // Answered by the lease book (see `TemplateOutput::database`), never read here.
            Self::Database { source } => Ok(Fetch::Missing(format!(
                "database({source:?}) cannot be read directly"
            ))),
            Self::CaChain { .. } => {
                let pem = client.pki_ca_chain(self.mount()).await?;
                if pem.trim().is_empty() {
                    return Ok(Fetch::Missing(
                        "the PKI mount has no default issuer yet".to_owned(),
                    ));
                }
                Ok(Fetch::Found(Found {
                    value: Value::from(pem),
                    secret_strings: Vec::new(),
                }))
            }
            Self::Kv { version, .. } => {
                let secret = client.read(&path).await?;
                let data = match version {
                    // KV v2 wraps the secret: {"data": {...}, "metadata": {...}}. A deleted or
                    // destroyed version comes back with `data: null`.
                    KvVersion::V2 => secret
                        .data
                        .as_ref()
                        .and_then(|d| d.get("data"))
                        .filter(|d| !d.is_null()),
                    KvVersion::V1 => secret.data.as_ref(),
                };
                match data {
                    Some(serde_json::Value::Object(map)) => {
                        let mut secret_strings = Vec::new();
                        let value = json_to_value(
                            &serde_json::Value::Object(map.clone()),
                            &mut secret_strings,
                        );
                        Ok(Fetch::Found(Found {
                            value,
                            secret_strings,
                        }))
                    }
                    Some(_) => Ok(Fetch::Missing(format!(
                        "{path} holds no key/value map{}",
                        self.not_found_hint()
                    ))),
                    None if *version == KvVersion::V2 => Ok(Fetch::Missing(format!(
                        "the current version of {path} is deleted or destroyed"
                    ))),
                    None => Ok(Fetch::Missing(format!("{path} holds no data"))),
                }
            }
        }
    }

    pub(super) fn mount(&self) -> &str {
        match self {
            Self::Kv { mount, .. } | Self::CaChain { mount } => mount,
            Self::Database { source } => source,
        }
    }
}

/// Checks one path argument: no empty parts, no `.`/`..`, nothing that would change the URL's
/// meaning (`?`, `#`, `%`, whitespace). The policy is what guards access; this is for clear
/// errors instead of odd 404s.
pub(super) fn clean_segment(func: &str, arg: &str, raw: &str) -> Result<String, minijinja::Error> {
    let trimmed = raw.trim_matches('/');
    let bad = trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        || trimmed
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '%'));
    if bad {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "{func}(): {arg} {raw:?} is not a valid path (non-empty segments separated by '/', no '.', '..', '?', '#', '%' or spaces)"
            ),
        ));
    }
    Ok(trimmed.to_owned())
}

/// What a read produced.
pub(super) enum Fetch {
    Found(Found),
    /// The thing is not there (deleted version, no issuer, not a map): a template error.
    Missing(String),
}

pub(super) struct Found {
    pub(super) value: Value,
    /// Every string of the secret, to redact from error messages.
    pub(super) secret_strings: Vec<Zeroizing<String>>,
}

pub(super) enum Fetched {
    Value(Value),
    Failed(String),
}

/// Converts a secret's JSON into template values by hand (minijinja's serde support is an
/// extra feature), collecting its strings for redaction.
pub(super) fn json_to_value(
    json: &serde_json::Value,
    strings: &mut Vec<Zeroizing<String>>,
) -> Value {
    use serde_json::Value as J;
    match json {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => {
            strings.push(Zeroizing::new(s.clone()));
            Value::from(s.as_str())
        }
        J::Array(items) => items.iter().map(|v| json_to_value(v, strings)).collect(),
        J::Object(map) => Value::from_pairs(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), json_to_value(v, strings)))
                .collect::<Vec<_>>(),
        ),
    }
}
