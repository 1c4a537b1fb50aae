//! The lab's listeners offer TLS 1.3 and, for TLS 1.2, only ECDHE suites with AEAD ciphers:
//! a client that asks for a CBC suite with a SHA-1 MAC is refused at the handshake. Checked
//! with `openssl s_client` against a real lab, presenting the operator certificate so the only
//! thing that can fail is the cipher negotiation.

use std::process::{Command, Stdio};

use warden_testkit::LabEnv;

/// `openssl s_client` to `port` with `extra` arguments; returns whether the handshake
/// completed, and what openssl said.
fn handshake(lab: &LabEnv, port: u16, extra: &[&str]) -> (bool, String) {
    let env = lab.lab().layout().env("test");
    let out = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(env.ca_bundle())
        .arg("-cert")
        .arg(env.operator_cert())
        .arg("-key")
        .arg(env.operator_key())
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_listeners_refuse_cbc_sha1_suites_and_accept_aead_ones() {
    let lab = LabEnv::start(&["test"]).await;
    let port = lab.lab().env("test").expect("test environment").api_port;

    for weak in ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA"] {
        let (ok, text) = handshake(&lab, port, &["-tls1_2", "-cipher", weak]);
        assert!(!ok, "TLS 1.2 with {weak} was accepted:\n{text}");
    }

    let aead = "ECDHE-ECDSA-AES128-GCM-SHA256";
    let (ok, text) = handshake(&lab, port, &["-tls1_2", "-cipher", aead]);
    assert!(ok, "TLS 1.2 with {aead} was refused:\n{text}");
    assert!(text.contains(aead), "{text}");

    let (ok, text) = handshake(&lab, port, &["-tls1_3"]);
    assert!(ok, "TLS 1.3 was refused:\n{text}");
    assert!(text.contains("TLSv1.3"), "{text}");
}
