//! Secrets engines beyond PKI and KV: databases with dynamic credentials, transit keys, signing
//! keys rotated in KV v2, and domain certificates kept in KV v2.

use std::path::PathBuf;

use super::{KeyType, Slug, Ttl};
use crate::naming;

/// A PostgreSQL server the database engine issues dynamic credentials for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    /// Connection name (`[databases.<name>]`), the engine's `config/<name>`.
    pub name: Slug,
    /// Environments whose engine connects to it.
    pub environments: Vec<Slug>,
    /// `postgresql://{{username}}:{{password}}@host:port/db?sslmode=…`; the placeholders stay
    /// literal, OpenBao fills them in.
    pub connection_url: String,
    /// The engine's own login. Its password is read from `password_file` at apply time, sent to
    /// the engine only, and rotated with `rotate-root` right after, so the file goes stale.
    pub username: String,
    /// Where apply reads the engine's initial password (never argv or environment).
    pub password_file: PathBuf,
    /// Lease lifetime of a dynamic credential.
    pub default_ttl: Ttl,
    /// Longest a dynamic credential may be renewed to.
    pub max_ttl: Ttl,
}

/// What a transit key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitKeyType {
    /// Symmetric encryption (`aes256-gcm96`).
    Aes256Gcm96,
    /// Signing with Ed25519.
    Ed25519,
    /// Signing with ECDSA P-256.
    EcdsaP256,
}

impl TransitKeyType {
    /// Spec spellings, which are OpenBao's.
    pub const NAMES: [&'static str; 3] = ["aes256-gcm96", "ed25519", "ecdsa-p256"];

    /// The type spelled `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "aes256-gcm96" => Self::Aes256Gcm96,
            "ed25519" => Self::Ed25519,
            "ecdsa-p256" => Self::EcdsaP256,
            _ => return None,
        })
    }

    /// OpenBao's name for it.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Whether the key signs (otherwise it encrypts).
    pub fn signs(self) -> bool {
        !matches!(self, Self::Aes256Gcm96)
    }
}

/// A transit key an app uses as a service; the key never leaves OpenBao.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitKey {
    /// Short name; the key is `transit/keys/<app>-<name>`.
    pub name: Slug,
    /// Encrypts or signs.
    pub key_type: TransitKeyType,
}

impl TransitKey {
    /// The key's name in the transit mount for `app`.
    pub fn key_name(&self, app: &Slug) -> String {
        naming::transit_key_name(app, self.name.as_str())
    }
}

/// Algorithm of a rotated signing key kept in KV v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// ECDSA P-256 with SHA-256 (JWS `ES256`).
    Es256,
    /// Ed25519 (JWS `EdDSA`).
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (JWS `RS256`); the modulus size is the key's
    /// [`SigningKey::rsa_bits`] (2048 or 3072).
    Rs256,
}

impl SigningAlgorithm {
    /// Spec spellings.
    pub const NAMES: [&'static str; 3] = ["es256", "eddsa", "rs256"];

    /// The algorithm spelled `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "es256" => Self::Es256,
            "eddsa" => Self::EdDsa,
            "rs256" => Self::Rs256,
            _ => return None,
        })
    }

    /// The spec spelling.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The JWS `alg` value.
    pub fn jws_alg(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }
}

/// RSA modulus sizes a signing key may have: 2048 (the default) and 3072 bits. Smaller is
/// too weak, larger only slows every signature down for no JWT verifier's benefit.
pub const RSA_BITS: [u32; 2] = [2048, 3072];

/// A signing key that an app reads from KV v2 and that rotates dual-key, so that
/// signatures made just before a rotation still verify: every rotation is a new KV version; the
/// previous one stays valid for `grace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// Short name; stored at `<kv>/<kv_prefix>/signing/<name>` ([`naming::signing_key`]).
    pub name: Slug,
    /// Algorithm.
    pub algorithm: SigningAlgorithm,
    /// How long the previous key keeps verifying after a rotation (default 24h).
    pub grace: Ttl,
    /// How often it should rotate (default 90d).
    pub interval: Ttl,
    /// RSA modulus size in bits (one of [`RSA_BITS`]): `Some` exactly when `algorithm` is
    /// [`SigningAlgorithm::Rs256`] (default 2048).
    pub rsa_bits: Option<u32>,
    /// The longest lifetime (`exp - now` at signing) of a token this key signs, when declared.
    /// The previous version then verifies until at least the rotation plus this lifetime, and
    /// validation refuses a `grace` shorter than it.
    pub max_token_lifetime: Option<Ttl>,
}

/// A domain TLS certificate kept in KV v2 with its expiry, renewed a configurable
/// time before it expires and written as a new version with check-and-set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainCert {
    /// The DNS name.
    pub domain: String,
    /// `domain` with dots as dashes: names the PKI role and the purpose reference.
    pub slug: Slug,
    /// Environments it lives in.
    pub environments: Vec<Slug>,
    /// The app that reads it.
    pub app: Slug,
    /// Lifetime of each issued certificate.
    pub ttl: Ttl,
    /// Renew when less than this remains (default 30d).
    pub renew_before: Ttl,
    /// Key type.
    pub key_type: KeyType,
    /// Who signs it: the environment's PKI role (the default) or an ACME CA.
    pub issuer: DomainIssuer,
}

/// Who issues a domain certificate (`issuer = "pki" | "acme"`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DomainIssuer {
    /// `<pki>/sign/domain-<slug>` with Warden's own token (the default).
    #[default]
    Pki,
    /// An RFC 8555 CA, through the http-01 challenge Warden answers itself.
    Acme(AcmeSettings),
}

impl DomainIssuer {
    /// `pki` or `acme`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pki => "pki",
            Self::Acme(_) => "acme",
        }
    }
}

/// `[domains."<name>".acme]` (ADR 0031).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The CA's directory URL; `None`: the environment's own OpenBao, at the domain's PKI role
    /// (`<addr>/v1/<pki>/roles/domain-<slug>/acme/directory`, [`naming::acme_directory_path`]).
    pub directory: Option<String>,
    /// Account contacts (`mailto:` URLs), sent when the account is created.
    pub contact: Vec<String>,
    /// Where Warden answers the http-01 challenge (default `127.0.0.1:80`): the CA connects
    /// to port 80 of the address the domain resolves to.
    pub listen: std::net::SocketAddr,
    /// How long the CA may take to validate before Warden gives up (default 2m).
    pub challenge_timeout: Ttl,
}

impl DomainCert {
    /// KV path (inside the KV v2 mount): `domains/<domain>/cert`.
    pub fn kv_path(&self) -> String {
        naming::domain_cert_path(&self.domain)
    }

    /// PKI role that issues it: `domain-<slug>`.
    pub fn pki_role(&self) -> String {
        naming::domain_pki_role(&self.slug)
    }
}
