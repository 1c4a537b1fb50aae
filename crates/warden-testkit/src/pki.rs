//! PKI mounts on a dev server for tests of rotations: a root mount `pki` and an intermediate
//! mount `pki_int` holding several intermediates the root signed, as a rotation's overlap
//! leaves them.

use std::time::Duration;

use serde_json::json;
use warden_bao::{Client, Idempotent, KeyType, MountOptions};

/// Mount options whose maximum lease outlives a root and intermediates of years.
pub fn long_mount() -> MountOptions {
    MountOptions::default().with_max_lease_ttl(Duration::from_secs(87_600 * 3600))
}

/// Generates a key and a CSR named `cn` in `mount` and has the root in `pki` sign it; returns
/// the certificate (PEM). Panics on any failure: test setup.
pub async fn root_signed_intermediate(c: &Client, mount: &str, cn: &str) -> String {
    let csr = c
        .pki_generate_intermediate_csr(mount, cn, KeyType::EcP256)
        .await
        .expect("intermediate CSR");
    c.write(
        "pki/root/sign-intermediate",
        &json!({"csr": csr.csr_pem, "ttl": "8760h", "format": "pem"}),
        Idempotent::No,
    )
    .await
    .expect("sign the intermediate")
    .and_then(|s| s.data)
    .and_then(|d| d["certificate"].as_str().map(str::to_owned))
    .expect("the signed intermediate")
}

/// Enables `pki` with an internal root ("Root") and `pki_int` holding `n` intermediates that
/// root signed, each with its key; the first is the default. Returns their issuer ids, oldest
/// first. Panics on any failure: test setup.
pub async fn intermediates(c: &Client, n: usize) -> Vec<String> {
    c.enable_secrets_engine("pki", "pki", &long_mount())
        .await
        .expect("enable pki");
    c.write(
        "pki/root/generate/internal",
        &json!({"common_name": "Root", "ttl": "87000h"}),
        Idempotent::No,
    )
    .await
    .expect("root");
    c.enable_secrets_engine("pki_int", "pki", &long_mount())
        .await
        .expect("enable pki_int");
    let mut issuers = Vec::new();
    for _ in 0..n {
        let cert = root_signed_intermediate(c, "pki_int", "Int").await;
        let imported = c.pki_set_signed("pki_int", &cert).await.expect("import");
        issuers.push(imported.imported_issuers[0].clone());
    }
    if let Some(first) = issuers.first() {
        c.pki_set_default_issuer("pki_int", first)
            .await
            .expect("the first is the default");
    }
    issuers
}
