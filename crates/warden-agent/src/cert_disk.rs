//! A certificate output as it is on disk, checked at every poll like a template is.
//!
//! The live set (`<dir>` → `<dir>.d/<version>`) must be there, complete, with the configured
//! modes and owner, its key must fit its certificate and its chain must verify to the trust
//! anchor. Drift that the delivered material can undo — the symlink or a file removed, a mode
//! widened, an owner changed — is repaired by delivering the same material again as a new
//! version (the live version directory is never rewritten in place: a reader could see a mix),
//! without a request to OpenBao and without a reload (the content did not change). Anything
//! else needs a new certificate, and the verdict says whether what is on disk can still serve
//! meanwhile (`stale`) or not (`failed`).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::config::CertificateOutput;
use super::deliver::{self, Expected, Ownership};
use super::output::certificate::{CERT, CHAIN, FULLCHAIN, KEY};
use super::output::{Rendered, RenderedFile};

const SET: [&str; 4] = [CERT, KEY, CHAIN, FULLCHAIN];

/// The facts of a certificate that scheduling and status need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leaf {
    pub(crate) serial: String,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
    /// The issuer's key id (AuthorityKeyIdentifier, hex).
    pub(crate) issuer: Option<String>,
}

impl Leaf {
    /// The leaf of a rendered or read set (`cert.pem`).
    pub(crate) fn of(files: &[RenderedFile]) -> Option<Self> {
        let cert = files.iter().find(|f| f.name == CERT)?;
        let text = std::str::from_utf8(&cert.contents).ok()?;
        let c = warden_pki::parse_pem_bundle(text)
            .ok()?
            .into_iter()
            .next()?;
        Some(Self {
            serial: c.serial,
            not_before: c.not_before,
            not_after: c.not_after,
            issuer: c.authority_key_id,
        })
    }
}

/// What is on disk.
#[derive(Debug)]
pub(crate) enum OnDisk {
    /// The live set is complete and checks, with the configured modes and owner.
    Good(Leaf),
    /// It had drifted and was put back from the delivered material: what was wrong.
    Repaired(Leaf, String),
    /// Usable (the key fits, not expired) but it has to be replaced: why.
    Usable(Leaf, String),
    /// Nothing usable: why.
    Unusable(String),
}

/// What a check needs to know.
pub(crate) struct Check<'a> {
    pub(crate) output: &'a str,
    /// The identity directory every path is resolved from without following symlinks.
    pub(crate) root: &'a Path,
    pub(crate) spec: &'a CertificateOutput,
    pub(crate) owner: Ownership,
    pub(crate) trust_anchor_pem: &'a str,
    /// Now, by the server's clock when this host's is skewed.
    pub(crate) now: OffsetDateTime,
    /// The digests of what was last delivered (`state/<output>.json`), to find it again.
    pub(crate) delivered: &'a BTreeMap<String, String>,
}

impl Check<'_> {
    /// Looks at the set, repairs what the delivered material can repair, and says what is
    /// there.
    pub(crate) fn run(&self) -> OnDisk {
        let dir = &self.spec.dir;
        match deliver::read_set(self.root, dir, &SET, self.owner) {
            Some(files) => self.judge_live(&files),
            None => self.restore_missing(),
        }
    }

    fn verify(&self, files: &[RenderedFile]) -> Result<(), deliver::DeliverError> {
        deliver::verify_certificate_set(
            self.output,
            files,
            self.trust_anchor_pem,
            Expected {
                common_name: &self.spec.common_name,
                sans: &self.spec.sans,
            },
            self.now,
        )
    }

    fn judge_live(&self, files: &[RenderedFile]) -> OnDisk {
        let Some(leaf) = Leaf::of(files) else {
            return OnDisk::Unusable(format!("{CERT} does not parse"));
        };
        if let Err(e) = self.verify(files) {
            let key_fits = warden_bao::ClientIdentity::from_pem(
                get(files, CERT).to_vec(),
                Zeroizing::new(get(files, KEY).to_vec()),
            )
            .is_ok();
            return if key_fits && leaf.not_after > self.now {
                OnDisk::Usable(leaf, e.to_string())
            } else {
                OnDisk::Unusable(e.to_string())
            };
        }
        let drift = self.drift(files);
        if drift.is_empty() {
            return OnDisk::Good(leaf);
        }
        self.repair(files, leaf, drift.join(", "))
    }

    /// Modes and owner that differ from the configuration.
    fn drift(&self, files: &[RenderedFile]) -> Vec<String> {
        let mut out = Vec::new();
        for f in files {
            let want = self.mode_of(&f.name);
            if f.mode != want {
                out.push(format!("{} mode {:04o} (wants {want:04o})", f.name, f.mode));
            }
            let Ok(meta) = std::fs::metadata(self.spec.dir.join(&f.name)) else {
                continue;
            };
            if self.owner.uid.is_some_and(|u| u != meta.uid())
                || self.owner.gid.is_some_and(|g| g != meta.gid())
            {
                out.push(format!("{} owner {}:{}", f.name, meta.uid(), meta.gid()));
            }
        }
        out
    }

    fn mode_of(&self, file: &str) -> u32 {
        if file == KEY {
            self.spec.key_mode
        } else {
            self.spec.mode
        }
    }

    /// The live set is missing or incomplete: the delivered version, if it is still in
    /// `<dir>.d/`, is published again.
    fn restore_missing(&self) -> OnDisk {
        let dir = &self.spec.dir;
        let missing = format!("{} is missing or incomplete", dir.display());
        if self.delivered.is_empty() {
            return OnDisk::Unusable(missing);
        }
        for (_, files) in deliver::read_versions(self.root, dir, &SET, self.owner) {
            let rendered = Rendered {
                files,
                ..Rendered::default()
            };
            if &deliver::digests(&rendered) != self.delivered
                || self.verify(&rendered.files).is_err()
            {
                continue;
            }
            let Some(leaf) = Leaf::of(&rendered.files) else {
                continue;
            };
            return self.repair(&rendered.files, leaf, missing);
        }
        OnDisk::Unusable(missing)
    }

    /// Delivers `files` again with the configured modes, as a new version.
    fn repair(&self, files: &[RenderedFile], leaf: Leaf, what: String) -> OnDisk {
        let fixed: Vec<RenderedFile> = files
            .iter()
            .map(|f| RenderedFile {
                name: f.name.clone(),
                contents: f.contents.clone(),
                mode: self.mode_of(&f.name),
            })
            .collect();
        let live = std::fs::read_link(&self.spec.dir)
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()));
        // Two names per serial, used in turn, so the live directory is never the one written.
        let version = if live.as_deref() == Some(leaf.serial.as_str()) {
            format!("{}-r", leaf.serial)
        } else {
            leaf.serial.clone()
        };
        match deliver::deliver_set(
            self.output,
            self.root,
            &self.spec.dir,
            &version,
            &fixed,
            self.owner,
        ) {
            Ok(_) => OnDisk::Repaired(leaf, what),
            Err(e) => OnDisk::Usable(leaf, format!("{what}; repairing it failed: {e}")),
        }
    }
}

fn get<'a>(files: &'a [RenderedFile], name: &str) -> &'a [u8] {
    files
        .iter()
        .find(|f| f.name == name)
        .map_or(&[][..], |f| &f.contents[..])
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::KeyType;

    use crate::deliver::verify::tests::{Pki, leaf_set, pki};

    fn set(pki: &Pki) -> Vec<RenderedFile> {
        leaf_set(pki, &["a.test"], 3)
    }

    fn spec(dir: &Path) -> CertificateOutput {
        CertificateOutput {
            pki_mount: "pki_int".into(),
            role: "a".into(),
            common_name: "a.test".into(),
            sans: vec![],
            ttl: None,
            key_type: KeyType::EcP256,
            dir: dir.to_path_buf(),
            mode: 0o644,
            key_mode: 0o600,
            purpose: None,
        }
    }

    fn check(
        spec: &CertificateOutput,
        anchor: &str,
        delivered: &BTreeMap<String, String>,
    ) -> OnDisk {
        Check {
            output: "tls",
            root: spec
                .dir
                .parent()
                .expect("the test's output directory has a parent"),
            spec,
            owner: Ownership::default(),
            trust_anchor_pem: anchor,
            now: OffsetDateTime::now_utc(),
            delivered,
        }
        .run()
    }

    #[test]
    fn drift_is_repaired_from_the_delivered_version_and_the_rest_is_judged() {
        let pki = pki();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tls");
        let spec = spec(&dir);
        let files = set(&pki);
        let serial = Leaf::of(&files).unwrap().serial;
        deliver::deliver_set(
            "tls",
            tmp.path(),
            &dir,
            &serial,
            &files,
            Ownership::default(),
        )
        .unwrap();
        let delivered: BTreeMap<String, String> = files
            .iter()
            .map(|f| (f.name.clone(), crate::state::sha256_hex(&f.contents)))
            .collect();
        let good = |v: &OnDisk| matches!(v, OnDisk::Good(l) if l.serial == serial);
        let repaired = |v: &OnDisk| matches!(v, OnDisk::Repaired(l, _) if l.serial == serial);
        assert!(good(&check(&spec, pki.root.cert_pem(), &delivered)));

        // A widened key: the same files again as the other version name, modes as configured.
        let key = dir.join(KEY);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let v = check(&spec, pki.root.cert_pem(), &delivered);
        assert!(repaired(&v), "{v:?}");
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            std::fs::read_link(&dir)
                .unwrap()
                .ends_with(format!("{serial}-r"))
        );
        assert!(good(&check(&spec, pki.root.cert_pem(), &delivered)));
        // Once more: back to the first name, never the live directory.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(repaired(&check(&spec, pki.root.cert_pem(), &delivered)));
        assert!(std::fs::read_link(&dir).unwrap().ends_with(&serial));

        // The symlink removed: pointed at the delivered version again.
        std::fs::remove_file(&dir).unwrap();
        let v = check(&spec, pki.root.cert_pem(), &delivered);
        assert!(repaired(&v), "{v:?}");
        assert!(good(&check(&spec, pki.root.cert_pem(), &delivered)));

        // A chain that does not verify to the anchor: usable, but to be replaced.
        let stranger = self::pki();
        let v = check(&spec, stranger.root.cert_pem(), &delivered);
        assert!(
            matches!(&v, OnDisk::Usable(_, why) if why.contains("trust anchor")),
            "{v:?}"
        );

        // Everything gone: nothing usable, and nothing to repair from.
        std::fs::remove_file(&dir).unwrap();
        std::fs::remove_dir_all(tmp.path().join("tls.d")).unwrap();
        let v = check(&spec, pki.root.cert_pem(), &delivered);
        assert!(
            matches!(&v, OnDisk::Unusable(why) if why.contains("missing")),
            "{v:?}"
        );
    }
}
