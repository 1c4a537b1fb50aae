//! The mTLS identity: renewed like a certificate output, checked before use, written key then
//! certificate through `<file>.next` staging copies.

use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use time::OffsetDateTime;
use warden_bao::ClientIdentity;
use zeroize::Zeroizing;

use super::{AuthError, Authenticator, IdentityCert};
use crate::board::Shared;
use crate::config::{KeyType, TlsIdentity};
use crate::output::RenderError;
use crate::output::certificate;
use crate::schedule;

impl Authenticator {
    /// The TLS identity certificate in use, if renewal is configured for it.
    pub(crate) fn identity_cert(&self) -> Option<IdentityCert> {
        let tls = self.cfg.tls_identity.as_ref()?;
        tls.renew_with.as_ref()?;
        let pem = std::fs::read_to_string(&tls.cert_file).ok()?;
        let leaf = warden_pki::parse_pem_bundle(&pem)
            .ok()?
            .into_iter()
            .next()?;
        Some(IdentityCert {
            serial: leaf.serial,
            not_before: leaf.not_before,
            not_after: leaf.not_after,
            issuer: leaf.authority_key_id,
        })
    }

    /// The PKI mount the identity is renewed from, if renewal is configured.
    pub(crate) fn identity_mount(&self) -> Option<&str> {
        let (mount, _) = self.cfg.tls_identity.as_ref()?.renew_with.as_ref()?;
        Some(mount)
    }

    /// Issues a new identity certificate, checks it, writes it and switches both clients to it.
    /// A certificate issued before whose check or write failed (disk full) is used again
    /// while it is not due, so retries do not issue one certificate each; nothing is issued
    /// while this host's clock is skewed.
    pub(crate) async fn renew_identity(
        &self,
        shared: &Shared,
        now: OffsetDateTime,
    ) -> Result<IdentityCert, AuthError> {
        let Some(TlsIdentity {
            cert_file,
            key_file,
            renew_with: Some((mount, role)),
        }) = &self.cfg.tls_identity
        else {
            return Err(AuthError::Identity {
                cert: PathBuf::new(),
                reason: "identity renewal is not configured".to_owned(),
            });
        };
        let held = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .filter(|h| h.reusable(shared));
        let issued = match held {
            Some(h) => {
                tracing::info!(serial = %h.leaf.serial, "writing the identity certificate already issued again");
                h
            }
            None => {
                skew_gate(shared, &self.client).await?;
                self.sign_identity(shared, key_file, mount, role).await?
            }
        };
        let result = self.install(shared, &issued, cert_file, key_file, now);
        if result.is_err() {
            *self.held.lock().unwrap_or_else(PoisonError::into_inner) = Some(issued);
        }
        result
    }

    /// Checks, writes and puts into use an issued identity.
    fn install(
        &self,
        shared: &Shared,
        issued: &Issued,
        cert_file: &Path,
        key_file: &Path,
        now: OffsetDateTime,
    ) -> Result<IdentityCert, AuthError> {
        if let Some(skew) =
            shared.skew_of_new_certificate(issued.leaf.not_before, issued.leaf.not_after, now)
        {
            return Err(AuthError::ClockSkew { skew });
        }
        let identity = check_identity(
            issued.chain.as_bytes(),
            issued.key_pem.as_bytes(),
            &self.identity_cn,
            &self.trust.pem(),
            now,
        )
        .map_err(|reason| AuthError::Identity {
            cert: cert_file.to_path_buf(),
            reason,
        })?;
        write_identity(
            cert_file,
            key_file,
            issued.chain.as_bytes(),
            issued.key_pem.as_bytes(),
        )
        .map_err(|source| AuthError::IdentityWrite { source })?;
        self.client
            .set_identity(Some(identity.clone()))
            .and_then(|()| self.login_client.set_identity(Some(identity.clone())))
            .map_err(|source| AuthError::Client {
                source: Box::new(source),
            })?;
        *self.tls.lock().unwrap_or_else(PoisonError::into_inner) = Some(identity);
        let leaf = issued.leaf.clone();
        tracing::info!(serial = %leaf.serial, not_after = %leaf.not_after, "mTLS identity renewed and in use");
        Ok(leaf)
    }

    /// A new key of the current key's type, and `<mount>/sign/<role>` for it.
    async fn sign_identity(
        &self,
        shared: &Shared,
        key_file: &Path,
        mount: &str,
        role: &str,
    ) -> Result<Issued, AuthError> {
        let sign_err = |source: RenderError| AuthError::IdentitySign {
            source: Box::new(source),
        };
        let key_type = std::fs::read_to_string(key_file)
            .ok()
            .and_then(|pem| warden_pki::GeneratedKey::from_pem(&pem).ok())
            .and_then(|k| k.algorithm())
            .map_or(KeyType::EcP256, |a| match a {
                warden_pki::KeyAlgorithm::EcdsaP384 => KeyType::EcP384,
                warden_pki::KeyAlgorithm::Rsa3072 => KeyType::Rsa3072,
                _ => KeyType::EcP256,
            });
        let local = |what: &str, reason: String| {
            sign_err(RenderError::Local {
                output: "identity".to_owned(),
                what: what.to_owned(),
                reason,
            })
        };
        let key = certificate::generate_key(key_type)
            .map_err(|e| local("generate the key", e.to_string()))?;
        shared.count_request();
        let signed = certificate::sign(
            &self.client,
            "identity",
            mount,
            role,
            &self.identity_cn,
            &[],
            None,
            &key,
        )
        .await
        .map_err(sign_err)?;
        let chain = format!("{}{}", signed.leaf_pem, signed.chain_pem);
        let leaf = warden_pki::parse_pem_bundle(&chain)
            .map_err(|e| local("read the issued certificate", e.to_string()))?
            .swap_remove(0);
        Ok(Issued {
            chain,
            key_pem: key.private_key_pem(),
            leaf: IdentityCert {
                serial: leaf.serial,
                not_before: leaf.not_before,
                not_after: leaf.not_after,
                issuer: leaf.authority_key_id,
            },
        })
    }
}

/// An identity certificate issued and not yet in use. Its key is wiped on drop and never
/// printed.
pub(super) struct Issued {
    chain: String,
    key_pem: Zeroizing<String>,
    leaf: IdentityCert,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("serial", &self.leaf.serial)
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// Still worth installing: not past its renewal point by the server's clock.
    fn reusable(&self, shared: &Shared) -> bool {
        let now = shared.trusted_now();
        schedule::cert_due(
            &shared.renewal,
            self.leaf.not_before,
            self.leaf.not_after,
            schedule::serial_jitter(&self.leaf.serial),
            now,
        ) > now
    }
}

/// Refuses to issue while this host's clock is skewed; asks the server for its time first
/// when it is not known yet or said the clock was off.
async fn skew_gate(shared: &Shared, client: &warden_bao::Client) -> Result<(), AuthError> {
    if shared.clock_skew().is_none() || shared.skewed().is_some() {
        shared.count_request();
        let _ = client.health().await;
    }
    match shared.skewed() {
        Some(skew) => Err(AuthError::ClockSkew { skew }),
        None => Ok(()),
    }
}

/// Checks a TLS identity: parses, the key fits, the leaf names `cn`, the chain verifies to a
/// trust anchor at `now`.
pub(crate) fn check_identity(
    chain_pem: &[u8],
    key_pem: &[u8],
    cn: &str,
    trust_anchor_pem: &str,
    now: OffsetDateTime,
) -> Result<ClientIdentity, String> {
    let identity = ClientIdentity::from_pem(chain_pem.to_vec(), Zeroizing::new(key_pem.to_vec()))
        .map_err(|e| e.to_string())?;
    let text =
        std::str::from_utf8(chain_pem).map_err(|_| "the certificate is not text".to_owned())?;
    match warden_pki::common_name(text) {
        Some(got) if got == cn => {}
        other => {
            return Err(format!(
                "it names {:?}, not the pinned {cn}",
                other.unwrap_or_default()
            ));
        }
    }
    let anchors = certificate::pem_blocks(trust_anchor_pem);
    let mut problems = Vec::new();
    for anchor in &anchors {
        match warden_pki::verify_chain(text, Some(anchor), now) {
            Ok(r) if r.valid => return Ok(identity),
            Ok(r) => problems.extend(r.problems.iter().map(ToString::to_string)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    Err(format!(
        "it does not verify to the trust anchor: {}",
        problems.join("; ")
    ))
}

/// `<file>.next` next to `file`.
fn staged(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    file.with_file_name(name)
}

/// The directory holding `file`, reached from the directory above it (the identity
/// directory) without following a symlink and checked by the ownership rule of
/// `warden_files::Dir`, with the file's name. The identity's key is written, renamed and
/// removed only through it: an `identity/` that is a symlink, or that another user owns or can
/// write, could otherwise send a root agent's fresh key (and its overwrite of whatever sits at
/// `client.key` there) to a directory that user chose.
pub(super) fn identity_dir(
    file: &Path,
) -> Result<(warden_files::Dir, String), warden_files::Error> {
    let bad = || warden_files::Error::BadName {
        path: file.to_path_buf(),
        name: file.display().to_string(),
    };
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(bad)?
        .to_owned();
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let trusted = warden_files::Trusted::process;
    let dir = match (
        parent.parent().filter(|g| !g.as_os_str().is_empty()),
        parent.file_name(),
    ) {
        (Some(holder), Some(last)) => {
            warden_files::Dir::open_root(holder, trusted())?.open(Path::new(last))?
        }
        _ => warden_files::Dir::open_root(parent, trusted())?,
    };
    Ok((dir, name))
}

/// `<name>.next`.
fn staged_name(name: &str) -> String {
    format!("{name}.next")
}

/// Stages both files, then replaces key and certificate, then drops the staging copies; all
/// through the checked directory handles of [`identity_dir`].
fn write_identity(
    cert_file: &Path,
    key_file: &Path,
    chain: &[u8],
    key: &[u8],
) -> Result<(), warden_files::Error> {
    use warden_files::Mode;
    let (key_dir, key_name) = identity_dir(key_file)?;
    let (cert_dir, cert_name) = identity_dir(cert_file)?;
    key_dir.write(&staged_name(&key_name), key, Mode::OwnerOnly, None)?;
    cert_dir.write(&staged_name(&cert_name), chain, Mode::Public, None)?;
    key_dir.write(&key_name, key, Mode::OwnerOnly, None)?;
    cert_dir.write(&cert_name, chain, Mode::Public, None)?;
    let _ = key_dir.remove_file(&staged_name(&key_name));
    let _ = cert_dir.remove_file(&staged_name(&cert_name));
    Ok(())
}

/// Removes `<file>.next` through the checked directory; nothing when it cannot be reached.
fn drop_staged(file: &Path) {
    if let Ok((dir, name)) = identity_dir(file) {
        let _ = dir.remove_file(&staged_name(&name));
    }
}

/// Loads the TLS identity at start. If the pair on disk does not fit together but a staged
/// pair (`.next`) does, a renewal was interrupted between the two writes: the staged pair is
/// installed, completing it.
pub(crate) fn load_identity(tls: &TlsIdentity) -> Result<ClientIdentity, AuthError> {
    let read = |what, p: &Path| {
        std::fs::read(p)
            .map(Zeroizing::new)
            .map_err(|source| AuthError::Credential {
                what,
                path: p.to_path_buf(),
                source,
            })
    };
    let bad = |reason: String| AuthError::Identity {
        cert: tls.cert_file.clone(),
        reason,
    };
    let cert = read("TLS certificate", &tls.cert_file)?;
    let key = read("TLS key", &tls.key_file)?;
    match ClientIdentity::from_pem(cert.to_vec(), key) {
        Ok(id) => {
            drop_staged(&tls.key_file);
            drop_staged(&tls.cert_file);
            Ok(id)
        }
        Err(first) => {
            let (Ok(sc), Ok(sk)) = (
                read("TLS certificate", &staged(&tls.cert_file)),
                read("TLS key", &staged(&tls.key_file)),
            ) else {
                return Err(bad(first.to_string()));
            };
            let id = ClientIdentity::from_pem(sc.to_vec(), sk.clone())
                .map_err(|_| bad(first.to_string()))?;
            write_identity(&tls.cert_file, &tls.key_file, &sc, &sk)
                .map_err(|e| bad(e.to_string()))?;
            tracing::warn!(cert = %tls.cert_file.display(), "completed an interrupted identity renewal");
            Ok(id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_names_sit_next_to_the_file() {
        assert_eq!(
            staged(Path::new("/id/identity/client.key")),
            Path::new("/id/identity/client.key.next")
        );
    }

    fn issue(issuer: &warden_pki::LocalIssuer, cn: &str) -> (String, Zeroizing<String>) {
        let key = warden_pki::generate_key(warden_pki::KeyAlgorithm::EcdsaP256).unwrap();
        let leaf = issuer
            .issue_client(
                &key.public_key_der(),
                cn,
                time::Duration::days(30),
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        (format!("{}\n", leaf.trim()), key.private_key_pem())
    }

    fn ca() -> warden_pki::LocalIssuer {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "ca");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
        p.not_after = OffsetDateTime::now_utc() + time::Duration::days(3650);
        let cert = p.self_signed(&key).unwrap();
        warden_pki::LocalIssuer::from_pem(&cert.pem(), &key.serialize_pem()).unwrap()
    }

    #[test]
    fn an_identity_is_checked_for_key_name_and_anchor() {
        let ca = ca();
        let now = OffsetDateTime::now_utc();
        let (cert, key) = issue(&ca, "a.identity");
        check_identity(
            cert.as_bytes(),
            key.as_bytes(),
            "a.identity",
            ca.cert_pem(),
            now,
        )
        .unwrap();
        let e = check_identity(
            cert.as_bytes(),
            key.as_bytes(),
            "b.identity",
            ca.cert_pem(),
            now,
        )
        .unwrap_err();
        assert!(e.contains("not the pinned"), "{e}");
        let (_, other_key) = issue(&ca, "a.identity");
        assert!(
            check_identity(
                cert.as_bytes(),
                other_key.as_bytes(),
                "a.identity",
                ca.cert_pem(),
                now
            )
            .is_err()
        );
        let stranger = self::ca();
        let e = check_identity(
            cert.as_bytes(),
            key.as_bytes(),
            "a.identity",
            stranger.cert_pem(),
            now,
        )
        .unwrap_err();
        assert!(e.contains("trust anchor"), "{e}");
    }

    /// The renewed key is written only through a checked `identity/`: a symlink there, or a
    /// directory another user can write, is refused and nothing lands where it pointed.
    #[test]
    fn a_renewed_identity_is_never_written_through_a_symlink_or_foreign_directory() {
        use std::os::unix::fs::PermissionsExt;
        let ca = ca();
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(
            elsewhere.join("client.crt"),
            b"another service's certificate",
        )
        .unwrap();
        let root = tmp.path().join("billing");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("identity")).unwrap();
        let cert_file = root.join("identity/client.crt");
        let key_file = root.join("identity/client.key");
        let (cert, key) = issue(&ca, "a");
        let e = write_identity(&cert_file, &key_file, cert.as_bytes(), key.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        let mut left: Vec<_> = std::fs::read_dir(&elsewhere)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["client.crt"]);
        assert_eq!(
            std::fs::read(elsewhere.join("client.crt")).unwrap(),
            b"another service's certificate"
        );

        std::fs::remove_file(root.join("identity")).unwrap();
        std::fs::create_dir(root.join("identity")).unwrap();
        std::fs::set_permissions(
            root.join("identity"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let e = write_identity(&cert_file, &key_file, cert.as_bytes(), key.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("writable by other users"), "{e}");
        assert!(!key_file.exists());

        std::fs::set_permissions(
            root.join("identity"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        write_identity(&cert_file, &key_file, cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(std::fs::read_to_string(&cert_file).unwrap(), cert);
        assert!(!staged(&cert_file).exists() && !staged(&key_file).exists());
    }

    #[test]
    fn an_interrupted_identity_write_is_completed_at_start() {
        let ca = ca();
        let tmp = tempfile::tempdir().unwrap();
        let tls = TlsIdentity {
            cert_file: tmp.path().join("client.crt"),
            key_file: tmp.path().join("client.key"),
            renew_with: None,
        };
        let (old_cert, old_key) = issue(&ca, "a");
        let (new_cert, new_key) = issue(&ca, "a");
        write_identity(
            &tls.cert_file,
            &tls.key_file,
            old_cert.as_bytes(),
            old_key.as_bytes(),
        )
        .unwrap();
        load_identity(&tls).unwrap();
        // The crash: both staged, the key replaced, the certificate not yet.
        warden_files::write_atomic(
            &staged(&tls.key_file),
            new_key.as_bytes(),
            warden_files::Mode::OwnerOnly,
        )
        .unwrap();
        warden_files::write_atomic(
            &staged(&tls.cert_file),
            new_cert.as_bytes(),
            warden_files::Mode::Public,
        )
        .unwrap();
        warden_files::write_atomic(
            &tls.key_file,
            new_key.as_bytes(),
            warden_files::Mode::OwnerOnly,
        )
        .unwrap();
        load_identity(&tls).unwrap();
        assert_eq!(std::fs::read_to_string(&tls.cert_file).unwrap(), new_cert);
        assert!(!staged(&tls.cert_file).exists() && !staged(&tls.key_file).exists());
        // A mismatch with nothing staged is an error naming the file.
        warden_files::write_atomic(
            &tls.key_file,
            old_key.as_bytes(),
            warden_files::Mode::OwnerOnly,
        )
        .unwrap();
        let e = load_identity(&tls).unwrap_err();
        assert!(e.to_string().contains("client.crt"), "{e}");
    }
}
