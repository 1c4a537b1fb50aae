use super::*;
use crate::keys::{generate_key, make_csr};
use crate::root::tests::{NOW, new_ca, pass};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

fn snapshot(dir: &Path) -> BTreeMap<String, (u32, String)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                (
                    meta.permissions().mode(),
                    params::sha256_hex(&std::fs::read(e.path()).unwrap()),
                ),
            )
        })
        .collect()
}

fn next_opts() -> RootOptions {
    RootOptions {
        common_name: "Warden Offline Root CA 2".to_owned(),
        path_len: 2,
        ..RootOptions::default()
    }
}

/// Signs a constrained intermediate for `env` with the current root; returns its key and cert.
fn intermediate(ca: &CaDir, env: &str, dns: &str) -> (GeneratedKey, String) {
    let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let csr = make_csr(&key, &format!("Warden {env} PKI intermediate"), &[], &[]).unwrap();
    let mut req = IntermediateRequest::new(env);
    req.validity = Duration::days(365);
    req.permitted_dns = vec![dns.to_owned()];
    let signed = ca.sign_intermediate(&csr, &req, &pass(), NOW).unwrap();
    (key, signed.cert_pem)
}

/// Re-signs `current`, `env`'s vault-pki intermediate, from `csr` with the CA's passphrase at
/// [`NOW`]: the call the tests below make, all but the validity alike.
fn resign(
    ca: &CaDir,
    csr: &str,
    current: &str,
    env: &str,
    validity: Duration,
) -> Result<SignedIntermediate> {
    ca.resign_intermediate(csr, current, env, "vault-pki", validity, &pass(), NOW)
}

#[test]
fn a_rollover_links_both_roots_and_resigns_with_the_same_key_and_constraints() {
    let (_tmp, ca) = new_ca(&RootOptions::default());
    let (test_key, test_old) = intermediate(&ca, "test", "test.warden.internal");
    intermediate(&ca, "prod", "prod.warden.internal");
    let old_root = ca.root_pem().to_owned();

    let begun = ca.begin_rollover(&next_opts(), &pass(), NOW).unwrap();
    assert_eq!(begun.record.state, RolloverState::Begun);
    assert_eq!(begun.next_root.subject, "CN=Warden Offline Root CA 2");
    assert_eq!(
        std::fs::metadata(ca.dir().join(NEXT_ROOT_KEY))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // Cross certificates: each root's name and key, signed by the other.
    let cross_next = parse_one(&begun.cross_next_pem).unwrap();
    let next = parse_one(&begun.next_root_pem).unwrap();
    let old = parse_one(&old_root).unwrap();
    assert!(cross_next.is_signed_by(&old));
    assert_eq!(cross_next.info.subject, next.info.subject);
    assert_eq!(cross_next.info.subject_key_id, next.info.subject_key_id);
    let cross_current = parse_one(&begun.cross_current_pem).unwrap();
    assert!(cross_current.is_signed_by(&next));
    assert_eq!(cross_current.info.subject, old.info.subject);
    // The old intermediate reaches the next root through the cross certificate, as far as
    // the next root's path length allows: one more CA level than the current root's.
    let via = format!("{test_old}{}", begun.cross_current_pem);
    let r = crate::verify_chain(&via, Some(&begun.next_root_pem), NOW).unwrap();
    assert!(r.valid, "{:?}", r.problems);
    assert_eq!(ca.trusted_roots_pem().unwrap().len(), 2);
    // The root signs for test and prod only: the rollover's own signatures are not environments.
    assert_eq!(ca.environments_with("").unwrap(), ["", "prod", "test"]);

    // A second begin is refused and changes nothing.
    let before = snapshot(ca.dir());
    let e = ca.begin_rollover(&next_opts(), &pass(), NOW).unwrap_err();
    assert!(
        matches!(e, Error::RolloverOutOfOrder { step: "begin", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("is begun"), "{e}");
    assert_eq!(snapshot(ca.dir()), before);

    // Re-sign test's intermediate: same key, same subject, same constraints, new root.
    let csr = make_csr(&test_key, "Warden test PKI intermediate", &[], &[]).unwrap();
    let re = resign(&ca, &csr, &test_old, "test", Duration::days(300)).unwrap();
    let re_info = crate::parse_pem_bundle(&re.cert_pem).unwrap().remove(0);
    let old_info = crate::parse_pem_bundle(&test_old).unwrap().remove(0);
    assert_eq!(re_info.subject, old_info.subject);
    assert_eq!(re_info.subject_key_id, old_info.subject_key_id);
    assert_eq!(re_info.permitted_dns, ["test.warden.internal"]);
    assert_eq!(
        re.entry.signed_by.as_deref(),
        Some(next.info.sha256.as_str())
    );
    assert!(
        crate::verify_chain(&re.cert_pem, Some(&begun.next_root_pem), NOW)
            .unwrap()
            .valid
    );
    assert!(
        !crate::verify_chain(&re.cert_pem, Some(&old_root), NOW)
            .unwrap()
            .valid
    );
    // A leaf of the intermediate's key chains to either root.
    let issuer = crate::LocalIssuer::from_pem(&re.cert_pem, &test_key.private_key_pem()).unwrap();
    let leaf_key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let name = "billing.test.warden.internal".to_owned();
    let leaf = issuer
        .issue_server(
            &leaf_key.public_key_der(),
            &name,
            std::slice::from_ref(&name),
            &[],
            Duration::days(1),
            NOW,
        )
        .unwrap();
    let roots = ca.trusted_roots_pem().unwrap();
    for int in [&test_old, &re.cert_pem] {
        let leaf = crate::first_certificate(&leaf).unwrap();
        let chain = format!("{}\n{int}", leaf.trim_end());
        assert!(crate::verify_chain_any(&chain, &roots, NOW).unwrap().valid);
    }

    // With the current intermediate given, a CSR for another key is refused offline, and so is
    // a certificate the ledger does not record for the environment.
    let stranger = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let other_csr = make_csr(&stranger, "Warden test PKI intermediate", &[], &[]).unwrap();
    let before = snapshot(ca.dir());
    let e = resign(&ca, &other_csr, &test_old, "test", Duration::days(30)).unwrap_err();
    assert!(
        matches!(e, Error::BadCsr { .. }) && e.to_string().contains("another key"),
        "{e}"
    );
    let e = resign(&ca, &csr, &re.cert_pem, "prod", Duration::days(30)).unwrap_err();
    assert!(matches!(e, Error::BadCertificate { .. }), "{e}");
    assert_eq!(snapshot(ca.dir()), before);
    resign(&ca, &csr, &test_old, "test", Duration::days(30)).unwrap();

    // Nothing to re-sign for an environment the root never signed for.
    let e = resign(&ca, &csr, &test_old, "stage", Duration::days(30)).unwrap_err();
    assert!(matches!(e, Error::NothingToResign { .. }), "{e}");

    // Finish: the next root is the root; the old one is kept, retired.
    let dir = ca.dir().to_path_buf();
    // prod was never re-signed: promote says so and changes nothing, unless told why.
    let before = snapshot(&dir);
    let e = CaDir::finish_rollover(&dir, &pass(), None, NOW + Duration::days(1)).unwrap_err();
    assert!(
        matches!(e, Error::PromoteBeforeResigned { .. })
            && e.to_string().contains("prod vault-pki"),
        "{e}"
    );
    assert!(!e.to_string().contains("test vault-pki"), "{e}");
    // A wrong passphrase cannot promote a key it does not open.
    let e = CaDir::finish_rollover(
        &dir,
        &SecretString::from("wrong"),
        Some("prod moves by a new intermediate"),
        NOW + Duration::days(1),
    )
    .unwrap_err();
    assert!(matches!(e, Error::WrongPassphrase { .. }), "{e}");
    assert_eq!(snapshot(&dir), before);
    let done = CaDir::finish_rollover(
        &dir,
        &pass(),
        Some("prod moves by a new intermediate"),
        NOW + Duration::days(1),
    )
    .unwrap();
    let record = done.rollover().unwrap().unwrap();
    assert_eq!(record.promoted_without.len(), 1, "{record:?}");
    assert!(record.promoted_without[0].starts_with("prod vault-pki"));
    assert_eq!(
        record.forced_because.as_deref(),
        Some("prod moves by a new intermediate")
    );
    assert_eq!(done.root_info().sha256, next.info.sha256);
    assert_eq!(done.metadata().common_name, "Warden Offline Root CA 2");
    assert!(!dir.join(NEXT_ROOT_CERT).exists() && !dir.join(NEXT_ROOT_KEY).exists());
    let retired = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("retired-root-"))
        .count();
    assert_eq!(retired, 2);
    assert_eq!(
        done.rollover().unwrap().unwrap().state,
        RolloverState::Finished
    );
    assert_eq!(done.trusted_roots_pem().unwrap().len(), 1);
    // The new root signs with the same passphrase, under the same isolation rules.
    let (_, _) = intermediate(&done, "test", "test.warden.internal");
    let e = CaDir::finish_rollover(&dir, &pass(), None, NOW).unwrap_err();
    assert!(
        matches!(
            e,
            Error::RolloverOutOfOrder {
                step: "promote",
                ..
            }
        ),
        "{e}"
    );
    // The backup view still reads it as a sound CA.
    done.files().unwrap().check(&dir).unwrap();
}

/// ADR 0013 under both roots: each environment's re-signed intermediate keeps its own
/// constraints, and judged against the ledger neither reaches the other's names.
#[test]
fn resigned_intermediates_stay_isolated_under_the_next_root() {
    let (_tmp, ca) = new_ca(&RootOptions::default());
    let (test_key, test_old) = intermediate(&ca, "test", "test.warden.internal");
    let (prod_key, prod_old) = intermediate(&ca, "prod", "prod.warden.internal");
    ca.begin_rollover(&next_opts(), &pass(), NOW).unwrap();
    for (env, key, old) in [
        ("test", &test_key, &test_old),
        ("prod", &prod_key, &prod_old),
    ] {
        let csr = make_csr(key, &format!("Warden {env} PKI intermediate"), &[], &[]).unwrap();
        let re = resign(&ca, &csr, old, env, Duration::days(30)).unwrap();
        let certs = crate::parse_pem_bundle(&re.cert_pem).unwrap();
        assert_eq!(certs[0].permitted_dns, [format!("{env}.warden.internal")]);
        let iso = ca.isolation_of(&certs).unwrap();
        assert_eq!(iso.judged, 1);
        assert!(!iso.blocking(), "{env}: {:?}", iso.findings);
        let chain = format!("{}{}", re.cert_pem, ca.next_root_pem().unwrap().unwrap());
        assert!(
            crate::verify_chain_any(&chain, &ca.trusted_roots_pem().unwrap(), NOW)
                .unwrap()
                .valid
        );
    }
}

#[test]
fn rollover_refusals_change_nothing() {
    let (_tmp, ca) = new_ca(&RootOptions::default());
    let (key, current) = intermediate(&ca, "test", "test.warden.internal");
    let csr = make_csr(&key, "Warden test PKI intermediate", &[], &[]).unwrap();
    let before = snapshot(ca.dir());
    // Re-sign and finish before begin.
    let e = resign(&ca, &csr, &current, "test", Duration::days(30)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::RolloverOutOfOrder {
                step: "re-sign",
                ..
            }
        ),
        "{e}"
    );
    let e = CaDir::finish_rollover(ca.dir(), &pass(), None, NOW).unwrap_err();
    assert!(e.to_string().contains("the root rollover is none"), "{e}");
    // A wrong passphrase, the current root's own name.
    let e = ca
        .begin_rollover(&next_opts(), &SecretString::from("wrong"), NOW)
        .unwrap_err();
    assert!(matches!(e, Error::WrongPassphrase { .. }), "{e}");
    let e = ca
        .begin_rollover(&RootOptions::default(), &pass(), NOW)
        .unwrap_err();
    assert!(matches!(e, Error::InvalidField { .. }), "{e}");
    // An expired current root cannot vouch for the next one.
    let e = ca
        .begin_rollover(&next_opts(), &pass(), NOW + Duration::days(4000))
        .unwrap_err();
    assert!(matches!(e, Error::RootExpired { .. }), "{e}");
    assert_eq!(snapshot(ca.dir()), before);

    // During the rollover: a re-signed intermediate that would outlive the next root, and a
    // wrong passphrase, leave the directory as it was.
    ca.begin_rollover(&next_opts(), &pass(), NOW).unwrap();
    let before = snapshot(ca.dir());
    let e = resign(&ca, &csr, &current, "test", Duration::days(5000)).unwrap_err();
    assert!(matches!(e, Error::IntermediateOutlivesRoot { .. }), "{e}");
    let resign_with = |passphrase: &SecretString, now| {
        ca.resign_intermediate(
            &csr,
            &current,
            "test",
            "vault-pki",
            Duration::days(30),
            passphrase,
            now,
        )
    };
    let e = resign_with(&SecretString::from("wrong"), NOW).unwrap_err();
    assert!(matches!(e, Error::WrongPassphrase { .. }), "{e}");
    // An intermediate past its end is replaced, not re-signed.
    let e = resign_with(&pass(), NOW + Duration::days(400)).unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    assert_eq!(snapshot(ca.dir()), before);
}

#[test]
fn only_the_latest_intermediate_is_resigned() {
    // test's first intermediate was rotated out (say its key leaked): the next root must not
    // vouch for it, even with a CSR for its own key.
    let (_tmp, ca) = new_ca(&RootOptions::default());
    let (old_key, old) = intermediate(&ca, "test", "test.warden.internal");
    let (new_key, new) = intermediate(&ca, "test", "test.warden.internal");
    ca.begin_rollover(&next_opts(), &pass(), NOW).unwrap();
    let before = snapshot(ca.dir());
    let old_csr = make_csr(&old_key, "Warden test PKI intermediate", &[], &[]).unwrap();
    let e = resign(&ca, &old_csr, &old, "test", Duration::days(30)).unwrap_err();
    assert!(
        matches!(e, Error::BadCertificate { .. }) && e.to_string().contains("latest"),
        "{e}"
    );
    assert_eq!(snapshot(ca.dir()), before);
    let new_csr = make_csr(&new_key, "Warden test PKI intermediate", &[], &[]).unwrap();
    resign(&ca, &new_csr, &new, "test", Duration::days(30)).unwrap();
}

#[test]
fn an_interrupted_finish_completes_when_run_again() {
    let (_tmp, ca) = new_ca(&RootOptions::default());
    let begun = ca.begin_rollover(&next_opts(), &pass(), NOW).unwrap();
    let dir = ca.dir().to_path_buf();
    // Simulate a crash after the new root certificate landed but before ca.json followed.
    let mut record = read_record(&dir).unwrap().unwrap();
    record.state = RolloverState::Finishing;
    write_record(&dir, &record).unwrap();
    std::fs::write(dir.join(ROOT_CERT), &begun.next_root_pem).unwrap();
    assert!(CaDir::open(&dir).is_err());
    let done = CaDir::finish_rollover(&dir, &pass(), None, NOW).unwrap();
    assert_eq!(done.root_info().sha256, begun.next_root.sha256);
    // The key that now sits in root.key.p8 is the next root's.
    done.unlock(&pass()).unwrap();
}

/// `begin` killed after it wrote the next root's key but before `rollover.json`, or a record
/// edited to `finished` while the next root is still there: a new `begin` must not overwrite a
/// key that may already have signed something.
#[test]
fn a_new_begin_sets_an_unrecorded_next_root_aside_instead_of_overwriting_it() {
    let (_tmp, ca) = new_ca(&RootOptions::default());
    let first = ca.begin_rollover(&next_opts(), &pass(), NOW).unwrap();
    let dir = ca.dir().to_path_buf();
    let key_before = std::fs::read(dir.join(NEXT_ROOT_KEY)).unwrap();
    // The record never landed.
    std::fs::remove_file(dir.join(ROLLOVER)).unwrap();
    let second = ca
        .begin_rollover(&next_opts(), &pass(), NOW + Duration::SECOND)
        .unwrap();
    assert_ne!(first.next_root.sha256, second.next_root.sha256);
    let stamp = (NOW + Duration::SECOND).unix_timestamp();
    let kept = dir.join(format!("abandoned-next-root-{stamp}.key.p8"));
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        key_before,
        "the first key is kept"
    );
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(dir.join(format!("abandoned-next-root-{stamp}.crt"))).unwrap(),
        first.next_root_pem
    );
    // The key written for the next root is owner-only.
    assert_eq!(
        std::fs::metadata(dir.join(NEXT_ROOT_KEY))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

/// A `rollover.json` edited by hand: a clear refusal from every step, nothing written.
#[test]
fn a_hand_edited_rollover_record_is_refused_and_nothing_changes() {
    let (_tmp, ca) = new_ca(&RootOptions::default());
    ca.begin_rollover(&next_opts(), &pass(), NOW).unwrap();
    let dir = ca.dir().to_path_buf();
    let good: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(ROLLOVER)).unwrap()).unwrap();
    let edits: Vec<(&str, serde_json::Value)> = vec![
        ("state", serde_json::json!("promoted")),
        ("old_root_serial", serde_json::json!("../../escaped")),
        ("old_root_serial", serde_json::json!("ééééééééééééééééé")),
        ("old_root_serial", serde_json::json!("")),
        ("new_root_sha256", serde_json::json!("zz")),
        ("new_root_sha256", good["old_root_sha256"].clone()),
    ];
    for (field, value) in edits {
        let mut edited = good.clone();
        edited[field] = value.clone();
        std::fs::write(dir.join(ROLLOVER), serde_json::to_vec(&edited).unwrap()).unwrap();
        let before = snapshot(&dir);
        let e = CaDir::finish_rollover(&dir, &pass(), None, NOW).unwrap_err();
        assert!(
            matches!(e, Error::CorruptCaFile { .. }) && e.to_string().contains(ROLLOVER),
            "{field}={value}: {e}"
        );
        let e = ca.begin_rollover(&next_opts(), &pass(), NOW).unwrap_err();
        assert!(
            matches!(e, Error::CorruptCaFile { .. }),
            "{field}={value}: {e}"
        );
        assert_eq!(snapshot(&dir), before, "{field}={value}: nothing changed");
    }
    std::fs::write(dir.join(ROLLOVER), serde_json::to_vec(&good).unwrap()).unwrap();
    CaDir::finish_rollover(&dir, &pass(), None, NOW).unwrap();
}

/// A write that fails during promote (a full disk; here a directory planted at a staging
/// name) must leave the current root usable, and promote must complete when run again.
#[test]
fn a_failed_write_during_promote_leaves_the_current_root_usable() {
    let (_tmp, ca) = new_ca(&RootOptions::default());
    let old_sha = ca.root_info().sha256;
    let begun = ca.begin_rollover(&next_opts(), &pass(), NOW).unwrap();
    let dir = ca.dir().to_path_buf();
    for blocked in [PROMOTE_KEY, PROMOTE_CERT, PROMOTE_META] {
        std::fs::create_dir(dir.join(blocked)).unwrap();
        CaDir::finish_rollover(&dir, &pass(), None, NOW).unwrap_err();
        let still = CaDir::open(&dir).unwrap();
        assert_eq!(still.root_info().sha256, old_sha, "{blocked}");
        still.unlock(&pass()).unwrap();
        let (_, cert) = intermediate(&still, "test", "test.warden.internal");
        assert!(!cert.is_empty());
        std::fs::remove_dir(dir.join(blocked)).unwrap();
        for s in [PROMOTE_KEY, PROMOTE_CERT, PROMOTE_META] {
            assert!(!dir.join(s).exists(), "{blocked}: staged {s} cleaned up");
        }
    }
    let done = CaDir::finish_rollover(&dir, &pass(), None, NOW).unwrap();
    assert_eq!(done.root_info().sha256, begun.next_root.sha256);
    done.unlock(&pass()).unwrap();
    assert_eq!(
        std::fs::metadata(dir.join(ROOT_KEY))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}
