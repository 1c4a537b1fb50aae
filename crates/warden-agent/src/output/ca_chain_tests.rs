//! CA chain bundles: every shape of chain checked without a server (certificates made in code),
//! then the real thing from a `bao server -dev` PKI hierarchy.

use serde_json::json;
use time::{Duration, OffsetDateTime};
use warden_bao::{Client, ClientConfig, Idempotent, MountOptions, RetryPolicy};
use warden_testkit::BaoDev;

use super::*;

// ---- certificates made in code ------------------------------------------------------------

struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

fn ca_params(name: &str, from: OffsetDateTime, to: OffsetDateTime) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(1));
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    p.not_before = from;
    p.not_after = to;
    p
}

fn root(name: &str) -> Ca {
    let now = OffsetDateTime::now_utc();
    let mut params = ca_params(name, now - Duration::hours(1), now + Duration::days(3650));
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().expect("key");
    let pem = params.self_signed(&key).expect("self-sign").pem();
    Ca { params, key, pem }
}

fn intermediate(name: &str, parent: &Ca, from: OffsetDateTime, to: OffsetDateTime) -> Ca {
    let params = ca_params(name, from, to);
    let key = rcgen::KeyPair::generate().expect("key");
    let issuer = rcgen::Issuer::from_params(&parent.params, &parent.key);
    let pem = params.signed_by(&key, &issuer).expect("sign").pem();
    Ca { params, key, pem }
}

fn valid_intermediate(name: &str, parent: &Ca) -> Ca {
    let now = OffsetDateTime::now_utc();
    intermediate(
        name,
        parent,
        now - Duration::hours(1),
        now + Duration::days(365),
    )
}

fn output(full_chain: bool) -> CaChainOutput {
    CaChainOutput {
        name: "ca".into(),
        pki_mount: "pki_int".into(),
        full_chain,
        file_name: "chain.pem".into(),
        mode: 0o644,
    }
}

fn subjects(pem: &str) -> Vec<String> {
    warden_pki::parse_pem_bundle(pem)
        .expect("bundle")
        .into_iter()
        .map(|c| c.subject)
        .collect()
}

fn invalid_reason(err: RenderError) -> String {
    match err {
        RenderError::Invalid { output, reason } => {
            assert_eq!(output, "ca");
            reason
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[test]
fn full_chain_appends_the_anchor_to_an_intermediate_only_chain() {
    let r = root("Root");
    let i = valid_intermediate("Inter", &r);
    let b = output(true).build(&i.pem, &r.pem, now()).expect("builds");
    assert_eq!(subjects(&b.text), ["CN=Inter", "CN=Root"]);
    assert!(b.text.ends_with("-----END CERTIFICATE-----\n"));
    assert_eq!(b.issuing.subject, "CN=Inter");
    let report = warden_pki::verify_chain(&b.text, None, now()).expect("parse");
    assert!(report.valid, "self-contained: {:?}", report.problems);

    // Without full_chain: the intermediate alone.
    let b = output(false).build(&i.pem, &r.pem, now()).expect("builds");
    assert_eq!(subjects(&b.text), ["CN=Inter"]);
}

#[test]
fn a_root_sent_by_openbao_gives_the_same_bytes() {
    let r = root("Root");
    let i = valid_intermediate("Inter", &r);
    // Server formatting (CRLF, blank lines, indentation) does not change the output either.
    let messy = format!("\r\n{}\r\n\r\n  {}", i.pem.replace('\n', "\r\n"), r.pem);
    for full in [true, false] {
        let plain = output(full).build(&i.pem, &r.pem, now()).expect("plain");
        let with_root = output(full)
            .build(&format!("{}{}", i.pem, r.pem), &r.pem, now())
            .expect("with root");
        let from_messy = output(full).build(&messy, &r.pem, now()).expect("messy");
        assert_eq!(plain.text, with_root.text, "full_chain={full}");
        assert_eq!(plain.text, from_messy.text, "full_chain={full}");
    }
}

#[test]
fn two_level_intermediates_keep_their_order() {
    let r = root("Root");
    let i1 = valid_intermediate("Inter 1", &r);
    let i2 = valid_intermediate("Inter 2", &i1);
    let b = output(true)
        .build(&format!("{}{}", i2.pem, i1.pem), &r.pem, now())
        .expect("builds");
    assert_eq!(subjects(&b.text), ["CN=Inter 2", "CN=Inter 1", "CN=Root"]);
    let reason = invalid_reason(
        output(true)
            .build(&format!("{}{}", i1.pem, i2.pem), &r.pem, now())
            .unwrap_err(),
    );
    assert!(reason.contains("wrong order"), "{reason}");
}

#[test]
fn an_intermediate_from_another_root_is_refused() {
    let ours = root("Our Root");
    let theirs = root("Their Root");
    let i = valid_intermediate("Inter", &theirs);
    let reason = invalid_reason(output(true).build(&i.pem, &ours.pem, now()).unwrap_err());
    assert!(
        reason.starts_with("intermediate only — cannot build the full chain for validation"),
        "{reason}"
    );
    let reason = invalid_reason(output(false).build(&i.pem, &ours.pem, now()).unwrap_err());
    assert!(
        reason.contains("does not verify against the trust anchor"),
        "{reason}"
    );
    // OpenBao sending the foreign root along does not make it trusted.
    let reason = invalid_reason(
        output(true)
            .build(&format!("{}{}", i.pem, theirs.pem), &ours.pem, now())
            .unwrap_err(),
    );
    assert!(reason.contains("not the trusted root"), "{reason}");
}

#[test]
fn any_anchor_of_a_multi_root_trust_file_may_validate() {
    let old = root("Old Root");
    let new = root("New Root");
    let i = valid_intermediate("Inter", &new);
    let anchors = format!("{}{}", old.pem, new.pem);
    let b = output(true).build(&i.pem, &anchors, now()).expect("builds");
    assert_eq!(subjects(&b.text), ["CN=Inter", "CN=New Root"]);
    let stranger = root("Stranger");
    let j = valid_intermediate("Inter", &stranger);
    let reason = invalid_reason(output(true).build(&j.pem, &anchors, now()).unwrap_err());
    assert!(
        reason.contains("Old Root"),
        "the first anchor's refusal: {reason}"
    );
}

#[test]
fn expired_or_empty_or_garbage_chains_are_refused() {
    let r = root("Root");
    let t = now();
    let old = intermediate("Old", &r, t - Duration::days(30), t - Duration::days(1));
    let reason = invalid_reason(output(false).build(&old.pem, &r.pem, t).unwrap_err());
    assert!(reason.contains("CN=Old expired at"), "{reason}");

    let reason = invalid_reason(output(true).build("  \n", &r.pem, t).unwrap_err());
    assert!(reason.contains("pki_int has no default issuer"), "{reason}");

    let reason = invalid_reason(
        output(true)
            .build(
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                &r.pem,
                t,
            )
            .unwrap_err(),
    );
    assert!(reason.contains("is not a certificate bundle"), "{reason}");

    // The mount's issuer being the root itself: nothing intermediate to deliver.
    let reason = invalid_reason(output(true).build(&r.pem, &r.pem, t).unwrap_err());
    assert!(reason.contains("is a root CA itself"), "{reason}");

    // A broken trust anchor is a local problem, not OpenBao's.
    let i = valid_intermediate("Inter", &r);
    assert!(matches!(
        output(true).build(&i.pem, "not a pem", t),
        Err(RenderError::Local { .. })
    ));
}

// ---- against OpenBao -----------------------------------------------------------------------

fn root_client(dev: &BaoDev) -> Client {
    Client::new(
        ClientConfig::from_address(dev.addr())
            .expect("address")
            .with_token(dev.root_token().clone())
            .with_retry(RetryPolicy::no_retries()),
    )
    .expect("client")
}

/// `pki` holds a root; `mount` gets an intermediate signed by it, imported with or without the
/// root in the `set-signed` bundle. Returns the root PEM (the trust anchor).
async fn hierarchy(c: &Client, mount: &str, include_root: bool) -> String {
    if !c.list_mounts().await.expect("mounts").contains_key("pki/") {
        c.enable_secrets_engine(
            "pki",
            "pki",
            &MountOptions::default()
                .with_max_lease_ttl(std::time::Duration::from_secs(87600 * 3600)),
        )
        .await
        .expect("mount pki");
        c.write(
            "pki/root/generate/internal",
            &json!({"common_name": "Dev Root", "ttl": "87000h"}),
            Idempotent::No,
        )
        .await
        .expect("root");
    }
    let root = c.pki_ca_chain("pki").await.expect("root pem");
    c.enable_secrets_engine(mount, "pki", &MountOptions::default())
        .await
        .expect("mount");
    let csr = c
        .write(
            &format!("{mount}/intermediate/generate/internal"),
            &json!({"common_name": format!("{mount} Intermediate")}),
            Idempotent::No,
        )
        .await
        .expect("csr")
        .and_then(|s| s.data)
        .and_then(|d| d["csr"].as_str().map(str::to_owned))
        .expect("csr field");
    let cert = c
        .write(
            "pki/root/sign-intermediate",
            &json!({"csr": csr, "ttl": "8760h", "format": "pem"}),
            Idempotent::No,
        )
        .await
        .expect("sign")
        .and_then(|s| s.data)
        .and_then(|d| d["certificate"].as_str().map(str::to_owned))
        .expect("certificate field");
    let bundle = if include_root {
        format!("{}\n{}", cert.trim_end(), root.trim_end())
    } else {
        cert
    };
    c.pki_set_signed(mount, &bundle).await.expect("set-signed");
    root
}

fn ctx<'a>(client: &'a Client, anchor: &'a str) -> RenderContext<'a> {
    RenderContext {
        client,
        trust_anchor_pem: anchor,
        now: OffsetDateTime::now_utc(),
        databases: None,
    }
}

#[tokio::test]
async fn chains_from_openbao_with_and_without_the_root() {
    let dev = BaoDev::start().await;
    let c = root_client(&dev);
    let anchor = hierarchy(&c, "pki_int", false).await;
    hierarchy(&c, "pki_int2", true).await;
    // The premise: OpenBao sends the root only when it was imported with the intermediate.
    assert_eq!(
        subjects(&c.pki_ca_chain("pki_int").await.expect("chain")).len(),
        1
    );
    assert_eq!(
        subjects(&c.pki_ca_chain("pki_int2").await.expect("chain")).len(),
        2
    );

    for mount in ["pki_int", "pki_int2"] {
        let full = CaChainOutput {
            pki_mount: mount.into(),
            ..output(true)
        };
        let r = full.render(&ctx(&c, &anchor)).await.expect("full chain");
        let text = std::str::from_utf8(&r.files[0].contents).expect("utf-8");
        assert_eq!(
            subjects(text),
            [format!("CN={mount} Intermediate"), "CN=Dev Root".to_owned()]
        );
        assert_eq!(
            (r.files[0].name.as_str(), r.files[0].mode),
            ("chain.pem", 0o644)
        );
        let report = warden_pki::verify_chain(text, Some(&anchor), OffsetDateTime::now_utc())
            .expect("parse");
        assert!(report.valid, "{:?}", report.problems);
        assert_eq!(r.serial.as_deref(), Some(report.certs[0].serial.as_str()));
        assert_eq!(r.not_after, Some(report.certs[0].not_after));

        let only = CaChainOutput {
            full_chain: false,
            ..full
        };
        let r = only
            .render(&ctx(&c, &anchor))
            .await
            .expect("intermediate only");
        let text = std::str::from_utf8(&r.files[0].contents).expect("utf-8");
        assert_eq!(subjects(text), [format!("CN={mount} Intermediate")]);
    }

    // Another environment's root is not ours: nothing is delivered.
    let stranger = root("Stranger");
    let err = output(true)
        .render(&ctx(&c, &stranger.pem))
        .await
        .unwrap_err();
    assert!(invalid_reason(err).starts_with("intermediate only — cannot build the full chain"),);

    // A mount without an issuer, and no mount at all.
    c.enable_secrets_engine("pki_empty", "pki", &MountOptions::default())
        .await
        .expect("mount");
    let empty = CaChainOutput {
        pki_mount: "pki_empty".into(),
        ..output(true)
    };
    let reason = invalid_reason(empty.render(&ctx(&c, &anchor)).await.unwrap_err());
    assert!(reason.contains("no default issuer"), "{reason}");
    let missing = CaChainOutput {
        pki_mount: "nope".into(),
        ..output(true)
    };
    match missing.render(&ctx(&c, &anchor)).await.unwrap_err() {
        RenderError::Bao { what, source, .. } => {
            assert_eq!(what, "read nope/cert/ca_chain");
            assert!(source.is_not_found(), "{source:?}");
        }
        other => panic!("expected a client error, got {other:?}"),
    }
}

/// A root rollover (ADR 0030) as OpenBao holds it: one intermediate key, signed by root A and
/// again by root B, both in the mount. A full chain holds each intermediate that verifies
/// against a root of the trust file, then those roots; an intermediate whose root the file
/// lacks is left out, and a mount left with none the file trusts is refused.
#[tokio::test]
async fn a_root_rollover_delivers_each_chain_the_trust_file_verifies() {
    let dev = BaoDev::start().await;
    let c = root_client(&dev);
    let ttl =
        MountOptions::default().with_max_lease_ttl(std::time::Duration::from_secs(87600 * 3600));
    let mut roots = Vec::new();
    for (mount, cn) in [("pki_a", "Root A"), ("pki_b", "Root B")] {
        c.enable_secrets_engine(mount, "pki", &ttl)
            .await
            .expect("mount");
        c.write(
            &format!("{mount}/root/generate/internal"),
            &json!({"common_name": cn, "ttl": "87000h"}),
            Idempotent::No,
        )
        .await
        .expect("root");
        roots.push(c.pki_ca_chain(mount).await.expect("root pem"));
    }
    let (root_a, root_b) = (roots[0].clone(), roots[1].clone());
    c.enable_secrets_engine("pki_roll", "pki", &MountOptions::default())
        .await
        .expect("mount");
    let first = c
        .pki_generate_intermediate_csr("pki_roll", "Roll Intermediate", warden_bao::KeyType::EcP256)
        .await
        .expect("csr");
    let sign = |root_mount: &'static str, csr: String| {
        let c = &c;
        async move {
            c.write(
                &format!("{root_mount}/root/sign-intermediate"),
                &json!({"csr": csr, "ttl": "8760h", "format": "pem", "use_csr_values": true}),
                Idempotent::No,
            )
            .await
            .expect("sign")
            .and_then(|s| s.data)
            .and_then(|d| d["certificate"].as_str().map(str::to_owned))
            .expect("certificate field")
        }
    };
    let int_a = sign("pki_a", first.csr_pem).await;
    c.pki_set_signed(
        "pki_roll",
        &format!("{}\n{}", int_a.trim_end(), root_a.trim_end()),
    )
    .await
    .expect("import A");
    let again = c
        .pki_existing_key_csr("pki_roll", "Roll Intermediate", &first.key_id)
        .await
        .expect("existing-key csr");
    let int_b = sign("pki_b", again.csr_pem).await;
    let imported = c
        .pki_set_signed(
            "pki_roll",
            &format!("{}\n{}", int_b.trim_end(), root_b.trim_end()),
        )
        .await
        .expect("import B");
    let int_b_id = imported
        .mapping
        .iter()
        .find(|(_, k)| **k == first.key_id)
        .map(|(i, _)| i.clone())
        .expect("B's intermediate maps to the same key");

    let full = CaChainOutput {
        pki_mount: "pki_roll".into(),
        ..output(true)
    };
    let render = |anchor: String| {
        let full = full.clone();
        let c = &c;
        async move { full.render(&ctx(c, &anchor)).await }
    };
    let text = |r: Rendered| String::from_utf8(r.files[0].contents.to_vec()).expect("utf-8");
    let both = text(
        render(format!("{root_a}\n{root_b}"))
            .await
            .expect("both roots"),
    );
    assert_eq!(
        subjects(&both),
        [
            "CN=Roll Intermediate",
            "CN=Roll Intermediate",
            "CN=Root A",
            "CN=Root B"
        ]
    );
    let only_a = text(render(root_a.clone()).await.expect("root A only"));
    assert_eq!(subjects(&only_a), ["CN=Roll Intermediate", "CN=Root A"]);
    assert!(only_a.contains(int_a.trim()));
    let only_b = text(render(root_b.clone()).await.expect("root B only"));
    assert_eq!(subjects(&only_b), ["CN=Roll Intermediate", "CN=Root B"]);
    assert!(only_b.contains(int_b.trim()));

    // The rollover finished: B's intermediate is the default, A's and root A are gone.
    c.pki_set_default_issuer("pki_roll", &int_b_id)
        .await
        .expect("default");
    for i in c
        .pki_issuer_certificates("pki_roll")
        .await
        .expect("issuers")
    {
        if i.id != int_b_id && !i.certificate.contains(root_b.trim()) {
            c.pki_delete_issuer("pki_roll", &i.id)
                .await
                .expect("delete");
        }
    }
    let after = text(render(format!("{root_a}\n{root_b}")).await.expect("after"));
    assert_eq!(subjects(&after), ["CN=Roll Intermediate", "CN=Root B"]);
    let err = render(root_a)
        .await
        .expect_err("a trust file with only the old root");
    assert!(matches!(err, RenderError::Invalid { .. }), "{err}");
}
