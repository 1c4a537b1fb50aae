//! The seal stanza of a node's server configuration, and the files a seal reads.
//!
//! Three seals (docs/openbao.md, "Auto-unseal"):
//! - [`Seal::Shamir`]: no stanza; the root key is split into shares held by custodians.
//! - [`Seal::Static`]: OpenBao's built-in `static` seal, a 32-byte key in an owner-only file on
//!   the node ([`write_static_key`] generates it).
//! - [`Seal::Transit`]: the `transit` seal against a *seal-keeper*, a separate small OpenBao
//!   that holds one transit key per sealed environment and is reached over mTLS.
//!
//! No secret is ever written into the stanza itself. OpenBao's seals read `token` and
//! `current_key` through `file://` paths (go-kms-wrapping's `ParsePaths`, verified against
//! 2.7.2), so the configuration names a file and the secret stays in that file. The
//! alternatives OpenBao offers (`VAULT_TRANSIT_SEAL_TOKEN`, `BAO_STATIC_SEAL_CURRENT_KEY`,
//! `VAULT_TOKEN`) put the secret in the server's environment, which Warden never does. The
//! file is read *without trimming*, so it must hold the secret and nothing else (no newline):
//! [`write_secret_file`] writes it that way.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::hcl_string;

/// Length of a static seal key in bytes (AES-256).
pub const STATIC_KEY_BYTES: usize = 32;

/// How a node's root key is protected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Seal {
    /// Shamir shares held by custodians (no seal stanza).
    #[default]
    Shamir,
    /// OpenBao's `static` seal: a key file on the node.
    Static(StaticSeal),
    /// OpenBao's `transit` seal against a seal-keeper.
    Transit(TransitSeal),
    /// A seal migration in progress: the new seal, and the old one rendered `disabled` when
    /// it is an auto-seal ([`Seal::render_migration`]).
    Migration {
        /// The seal being left.
        from: Box<Self>,
        /// The seal being adopted.
        to: Box<Self>,
    },
}

/// The `static` seal: one 32-byte key, named by an id that is stored with every value it
/// wraps (so a later key rotation can tell old from new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSeal {
    /// `current_key_id`: a permanent name for this key (e.g. `warden-prod-1`).
    pub key_id: String,
    /// The owner-only file holding the key as 64 hex characters ([`write_static_key`]).
    pub key_file: PathBuf,
    /// `disabled = "true"`: the old seal during a migration away from it.
    pub disabled: bool,
}

/// The `transit` seal: encrypt/decrypt the root key with one key of a seal-keeper's transit
/// engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitSeal {
    /// The seal-keeper's API address (`https://host:port`). OpenBao's transit seal takes one
    /// address; a highly available seal-keeper sits behind one name.
    pub address: String,
    /// The transit mount on the seal-keeper (`transit`).
    pub mount: String,
    /// The transit key, one per sealed environment.
    pub key_name: String,
    /// CA bundle that verifies the seal-keeper's server certificate.
    pub ca_file: PathBuf,
    /// Client certificate the seal-keeper's listener requires (mTLS).
    pub client_cert: PathBuf,
    /// Its private key (owner-only).
    pub client_key: PathBuf,
    /// Owner-only file holding the seal's token and nothing else ([`write_secret_file`]).
    pub token_file: PathBuf,
    /// `tls_server_name`, when the address does not match the certificate's names.
    pub server_name: Option<String>,
    /// `disabled = "true"`: the old seal during a migration away from it.
    pub disabled: bool,
}

/// Where a node keeps the files its seal reads: one directory, the same names in production
/// (`<config_dir>/seal/`) and in the lab (`envs/<env>/seal/`).
///
/// ```text
/// static.key              static seal key, 64 hex characters, no newline (0600)
/// keeper-ca.pem           trust anchor for the seal-keeper's listener
/// keeper-client.{crt,key} this environment's client certificate at the seal-keeper (key 0600)
/// keeper-token            the transit seal's periodic token, nothing else in it (0600)
/// keeper-token.accessor   its accessor (to check it is alive, or revoke it)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealFiles {
    dir: PathBuf,
}

impl SealFiles {
    /// The seal files in `dir`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The static seal key.
    pub fn static_key(&self) -> PathBuf {
        self.dir.join("static.key")
    }
    /// The seal-keeper's trust anchor.
    pub fn keeper_ca(&self) -> PathBuf {
        self.dir.join("keeper-ca.pem")
    }
    /// The client certificate at the seal-keeper.
    pub fn keeper_cert(&self) -> PathBuf {
        self.dir.join("keeper-client.crt")
    }
    /// Its key.
    pub fn keeper_key(&self) -> PathBuf {
        self.dir.join("keeper-client.key")
    }
    /// The seal token.
    pub fn token(&self) -> PathBuf {
        self.dir.join("keeper-token")
    }
    /// The seal token's accessor.
    pub fn accessor(&self) -> PathBuf {
        self.dir.join("keeper-token.accessor")
    }

    /// The seal of environment `env` of `kind` reading these files: the static key id
    /// `warden-<env>-1`, or the transit key `seal-<env>` on `keeper` (its address).
    pub fn seal(&self, kind: SealKind, env: &str, keeper: Option<&str>) -> Seal {
        match kind {
            SealKind::Shamir => Seal::Shamir,
            SealKind::Static => Seal::Static(StaticSeal {
                key_id: static_key_id(env),
                key_file: self.static_key(),
                disabled: false,
            }),
            SealKind::Transit => {
                let grant = crate::keeper::KeeperGrant::for_env(env);
                Seal::Transit(TransitSeal {
                    address: keeper.unwrap_or_default().to_owned(),
                    mount: grant.mount,
                    key_name: grant.key_name,
                    ca_file: self.keeper_ca(),
                    client_cert: self.keeper_cert(),
                    client_key: self.keeper_key(),
                    token_file: self.token(),
                    server_name: None,
                    disabled: false,
                })
            }
        }
    }
}

/// The static seal's key id for environment `env` (a permanent name stored with every value
/// the key wraps).
pub fn static_key_id(env: &str) -> String {
    format!("warden-{env}-1")
}

/// Why a seal cannot be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// A file the seal reads is not an absolute path (OpenBao runs in its own working
    /// directory, and `file://` needs an absolute path).
    #[error("the seal's {what} {path} must be an absolute path")]
    RelativePath {
        /// Which file.
        what: &'static str,
        /// The path given.
        path: PathBuf,
    },
    /// A path that cannot be written into a `file://` reference (not UTF-8, or with control
    /// characters).
    #[error("the seal's {what} {path} cannot be named in a file:// reference")]
    UnusablePath {
        /// Which file.
        what: &'static str,
        /// The path given.
        path: PathBuf,
    },
    /// A required setting is empty.
    #[error("the {seal} seal needs a non-empty {field}")]
    Missing {
        /// `static` or `transit`.
        seal: &'static str,
        /// The field.
        field: &'static str,
    },
    /// The transit address is not `https://`: the seal's token and the root key's ciphertext
    /// would cross the network in clear.
    #[error("the seal-keeper address {0:?} must start with https://")]
    NotHttps(String),
    /// Writing a key or token file failed.
    #[error(transparent)]
    Files(#[from] warden_files::Error),
}

/// The seal's kind, as OpenBao names it in `sys/seal-status` (`type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SealKind {
    /// Shamir shares.
    Shamir,
    /// A key file on the node.
    Static,
    /// A seal-keeper's transit key.
    Transit,
}

impl SealKind {
    /// OpenBao's name (`shamir`, `static`, `transit`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shamir => "shamir",
            Self::Static => "static",
            Self::Transit => "transit",
        }
    }

    /// An auto-unseal (the node unseals itself; recovery keys replace unseal shares).
    pub fn is_auto(self) -> bool {
        self != Self::Shamir
    }
}

impl fmt::Display for SealKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SealKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "shamir" => Ok(Self::Shamir),
            "static" => Ok(Self::Static),
            "transit" => Ok(Self::Transit),
            other => Err(format!(
                "unknown seal {other:?}: expected shamir, static or transit"
            )),
        }
    }
}

impl Seal {
    /// Which kind of seal this is.
    pub fn kind(&self) -> SealKind {
        match self {
            Self::Shamir => SealKind::Shamir,
            Self::Static(_) => SealKind::Static,
            Self::Transit(_) => SealKind::Transit,
            Self::Migration { to, .. } => to.kind(),
        }
    }

    /// The HCL stanza for this seal; empty for Shamir. Fails on settings OpenBao would reject
    /// at start or that would leak (a relative or unnameable file, plain HTTP).
    pub fn render(&self) -> Result<String, SealError> {
        match self {
            Self::Shamir => Ok(String::new()),
            Self::Static(s) => s.render(),
            Self::Transit(t) => t.render(),
            Self::Migration { from, to } => to.render_migration(from),
        }
    }

    /// The stanzas for migrating from `previous` to `self` (OpenBao's seal migration):
    /// Shamir → auto needs only the new seal; auto → Shamir needs the old seal marked
    /// `disabled`; auto → auto needs both. A node started with this configuration waits in
    /// migration mode for the old unseal shares (or recovery keys) with `migrate=true`.
    pub fn render_migration(&self, previous: &Self) -> Result<String, SealError> {
        let old = match previous {
            Self::Shamir | Self::Migration { .. } => String::new(),
            Self::Static(s) => StaticSeal {
                disabled: true,
                ..s.clone()
            }
            .render()?,
            Self::Transit(t) => TransitSeal {
                disabled: true,
                ..t.clone()
            }
            .render()?,
        };
        let new = match self {
            Self::Migration { to, .. } => to.render()?,
            other => other.render()?,
        };
        Ok(match (old.is_empty(), new.is_empty()) {
            (true, _) => new,
            (false, true) => old,
            (false, false) => format!("{old}\n{new}"),
        })
    }
}

impl StaticSeal {
    fn render(&self) -> Result<String, SealError> {
        if self.key_id.trim().is_empty() {
            return Err(SealError::Missing {
                seal: "static",
                field: "key id",
            });
        }
        let key = file_ref("key file", &self.key_file)?;
        let mut s = String::from("seal \"static\" {\n");
        line(&mut s, "current_key_id", &self.key_id);
        line(&mut s, "current_key", &key);
        if self.disabled {
            line(&mut s, "disabled", "true");
        }
        s.push_str("}\n");
        Ok(s)
    }
}

impl TransitSeal {
    fn render(&self) -> Result<String, SealError> {
        for (field, v) in [
            ("address", &self.address),
            ("mount", &self.mount),
            ("key name", &self.key_name),
        ] {
            if v.trim().is_empty() {
                return Err(SealError::Missing {
                    seal: "transit",
                    field,
                });
            }
        }
        if !self.address.starts_with("https://") {
            return Err(SealError::NotHttps(self.address.clone()));
        }
        let token = file_ref("token file", &self.token_file)?;
        let mut s = String::from("seal \"transit\" {\n");
        line(&mut s, "address", &self.address);
        line(&mut s, "token", &token);
        line(
            &mut s,
            "mount_path",
            &format!("{}/", self.mount.trim_matches('/')),
        );
        line(&mut s, "key_name", &self.key_name);
        line(&mut s, "tls_ca_cert", path_str("CA file", &self.ca_file)?);
        line(
            &mut s,
            "tls_client_cert",
            path_str("client certificate", &self.client_cert)?,
        );
        line(
            &mut s,
            "tls_client_key",
            path_str("client key", &self.client_key)?,
        );
        if let Some(name) = &self.server_name {
            line(&mut s, "tls_server_name", name);
        }
        // The seal keeps its periodic token alive (renew-self at about two thirds of its
        // period); leaving renewal on is what makes a periodic token the right kind.
        line(&mut s, "disable_renewal", "false");
        if self.disabled {
            line(&mut s, "disabled", "true");
        }
        s.push_str("}\n");
        Ok(s)
    }
}

fn line(s: &mut String, key: &str, value: &str) {
    s.push_str(&format!("  {key:<15} = {}\n", hcl_string(value)));
}

fn path_str<'a>(what: &'static str, path: &'a Path) -> Result<&'a str, SealError> {
    if !path.is_absolute() {
        return Err(SealError::RelativePath {
            what,
            path: path.to_path_buf(),
        });
    }
    match path.to_str() {
        Some(s) if !s.chars().any(char::is_control) => Ok(s),
        _ => Err(SealError::UnusablePath {
            what,
            path: path.to_path_buf(),
        }),
    }
}

/// `file:///abs/path`: OpenBao reads the value from that file.
fn file_ref(what: &'static str, path: &Path) -> Result<String, SealError> {
    Ok(format!("file://{}", path_str(what, path)?))
}

/// Writes `secret` owner-only and atomically, with nothing around it: OpenBao reads seal
/// `file://` values untrimmed, so a trailing newline would become part of the token or key.
pub fn write_secret_file(path: &Path, secret: &[u8]) -> Result<(), SealError> {
    warden_files::write_atomic(path, secret, warden_files::Mode::OwnerOnly)?;
    Ok(())
}

/// Generates a fresh 32-byte static seal key and writes it to `path` as 64 hex characters,
/// owner-only. Refuses nothing: the caller decides whether an existing key may be replaced
/// (replacing the key of an initialised node makes its data unreadable).
pub fn write_static_key(path: &Path) -> Result<(), SealError> {
    let mut key = Zeroizing::new([0u8; STATIC_KEY_BYTES]);
    aws_lc_rs::rand::fill(key.as_mut()).expect("system RNG");
    let hex = Zeroizing::new(hex::encode(key.as_ref()));
    write_secret_file(path, hex.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transit() -> TransitSeal {
        TransitSeal {
            address: "https://127.0.0.1:8300".into(),
            mount: "transit".into(),
            key_name: "seal-prod".into(),
            ca_file: "/etc/warden/seal/ca.pem".into(),
            client_cert: "/etc/warden/seal/client.crt".into(),
            client_key: "/etc/warden/seal/client.key".into(),
            token_file: "/etc/warden/seal/token".into(),
            server_name: None,
            disabled: false,
        }
    }

    fn static_seal() -> StaticSeal {
        StaticSeal {
            key_id: "warden-prod-1".into(),
            key_file: "/etc/warden/seal/static.key".into(),
            disabled: false,
        }
    }

    #[test]
    fn shamir_has_no_stanza() {
        assert_eq!(Seal::Shamir.render().unwrap(), "");
        assert_eq!(Seal::Shamir.kind(), SealKind::Shamir);
    }

    #[test]
    fn transit_names_its_token_file_never_a_token() {
        let s = Seal::Transit(transit()).render().unwrap();
        assert!(s.starts_with("seal \"transit\" {\n"), "{s}");
        for want in [
            r#"address         = "https://127.0.0.1:8300""#,
            r#"token           = "file:///etc/warden/seal/token""#,
            r#"mount_path      = "transit/""#,
            r#"key_name        = "seal-prod""#,
            r#"tls_ca_cert     = "/etc/warden/seal/ca.pem""#,
            r#"tls_client_cert = "/etc/warden/seal/client.crt""#,
            r#"tls_client_key  = "/etc/warden/seal/client.key""#,
            r#"disable_renewal = "false""#,
        ] {
            assert!(s.contains(want), "missing {want} in\n{s}");
        }
        assert!(!s.contains("disabled "), "{s}");
        assert!(s.trim_end().ends_with('}'));
    }

    #[test]
    fn static_names_its_key_file() {
        let s = Seal::Static(static_seal()).render().unwrap();
        assert_eq!(
            s,
            "seal \"static\" {\n  current_key_id  = \"warden-prod-1\"\n  current_key     = \"file:///etc/warden/seal/static.key\"\n}\n"
        );
    }

    #[test]
    fn migration_renders_the_old_seal_disabled() {
        // Shamir → transit: the new stanza only.
        let to_transit = Seal::Transit(transit());
        assert_eq!(
            to_transit.render_migration(&Seal::Shamir).unwrap(),
            to_transit.render().unwrap()
        );
        // transit → Shamir: the old stanza, disabled.
        let back = Seal::Shamir.render_migration(&to_transit).unwrap();
        assert!(back.contains("seal \"transit\""), "{back}");
        assert!(back.contains(r#"disabled        = "true""#), "{back}");
        // static → transit: both, the old one disabled.
        let both = to_transit
            .render_migration(&Seal::Static(static_seal()))
            .unwrap();
        let (old, new) = both.split_once("\n\n").expect("two stanzas");
        assert!(old.starts_with("seal \"static\"") && old.contains("disabled"));
        assert!(new.starts_with("seal \"transit\"") && !new.contains("disabled "));
        // The same, as the one seal a node configuration carries.
        let migrating = Seal::Migration {
            from: Box::new(Seal::Static(static_seal())),
            to: Box::new(to_transit),
        };
        assert_eq!(migrating.render().unwrap(), both);
        assert_eq!(migrating.kind(), SealKind::Transit);
    }

    #[test]
    fn bad_settings_are_refused_with_what_and_where() {
        let mut t = transit();
        t.token_file = "seal/token".into();
        let e = Seal::Transit(t).render().unwrap_err();
        assert_eq!(
            e.to_string(),
            "the seal's token file seal/token must be an absolute path"
        );
        let mut t = transit();
        t.address = "http://127.0.0.1:8300".into();
        assert!(matches!(
            Seal::Transit(t).render(),
            Err(SealError::NotHttps(_))
        ));
        let mut t = transit();
        t.key_name = " ".into();
        assert!(matches!(
            Seal::Transit(t).render(),
            Err(SealError::Missing {
                field: "key name",
                ..
            })
        ));
        let mut s = static_seal();
        s.key_file = "/etc/a\nb".into();
        assert!(matches!(
            Seal::Static(s).render(),
            Err(SealError::UnusablePath { .. })
        ));
    }

    #[test]
    fn quotes_in_values_stay_inside_the_string() {
        let mut s = static_seal();
        s.key_id = "a\"} seal \"x".into();
        let out = Seal::Static(s).render().unwrap();
        assert!(out.contains(r#""a\"} seal \"x""#), "{out}");
    }

    #[test]
    fn static_key_is_64_hex_owner_only_without_newline() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("static.key");
        write_static_key(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 64);
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        write_static_key(&path).unwrap();
        assert_ne!(std::fs::read_to_string(&path).unwrap(), text, "fresh key");
    }

    #[test]
    fn seal_kind_parses_and_prints_openbao_names() {
        for k in [SealKind::Shamir, SealKind::Static, SealKind::Transit] {
            assert_eq!(k.as_str().parse::<SealKind>().unwrap(), k);
        }
        assert!("awskms".parse::<SealKind>().is_err());
        assert!(SealKind::Transit.is_auto() && !SealKind::Shamir.is_auto());
    }
}
