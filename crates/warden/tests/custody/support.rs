//! What every custody test shares: the world (identities, spec, state), servers' clients,
//! and the secret scan's helpers.

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;

use serde_json::Value;
use warden_bao::{Client, ClientConfig};
use warden_custody::IdentityFile;
use warden_testkit::BareBao;
use warden_testkit::cli::{Cli, path_str, text};

/// The binary under test.
pub(crate) const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

pub(crate) const NAMES: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A test's world: custodians' identities, spec, state and output directories, and every
/// command run (argv, environment, output) for the scan at the end.
pub(crate) struct World {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) runs: Vec<(Vec<String>, Output)>,
}

impl World {
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("warden-custody-")
            .tempdir()
            .expect("temp dir");
        for d in ["ids", "state", "out"] {
            std::fs::create_dir(dir.path().join(d)).expect("mkdir");
        }
        Self {
            dir,
            runs: Vec::new(),
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Generates `name`'s identity (owner-only file) and returns the recipient.
    pub(crate) fn identity(&self, name: &str) -> String {
        let g = warden_custody::generate_identity();
        warden_testkit::files::write_private(&self.id_path(name), g.file_text.as_bytes());
        g.recipient
    }

    pub(crate) fn id_path(&self, name: &str) -> PathBuf {
        self.path(&format!("ids/{name}.key"))
    }

    pub(crate) fn open_id(&self, name: &str) -> IdentityFile {
        IdentityFile::read(&self.id_path(name)).expect("identity")
    }

    /// `ARGS --spec SPEC --state-dir STATE`.
    pub(crate) fn full_args(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        v.extend([
            "--spec".into(),
            path_str(&self.path("warden.toml")).into(),
            "--state-dir".into(),
            path_str(&self.path("state")).into(),
        ]);
        v
    }

    /// `warden ARGS --spec SPEC --state-dir STATE`.
    pub(crate) fn warden(&mut self, args: &[&str]) -> Output {
        let v = self.full_args(args);
        let started = std::time::Instant::now();
        let out = WARDEN.run(&v);
        // Figures for the report (never asserted): `cargo test -- --nocapture`.
        eprintln!(
            "figure: warden {} {}: {} ms",
            args[0],
            args.get(1).unwrap_or(&""),
            started.elapsed().as_millis()
        );
        self.runs.push((v, out.clone()));
        out
    }

    /// Like [`World::ok`] with `VAULT_TOKEN` set (an operator token, for the registry or the
    /// rotation endpoints).
    pub(crate) fn ok_with_token(&mut self, args: &[&str], token: &str) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let v = self.full_args(&a);
        let out = WARDEN.invoke(&v).env("VAULT_TOKEN", token).output();
        assert!(
            out.status.success(),
            "warden {args:?} failed:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// `unseal --env ENV --share SHARE --identity <name>'s`.
    pub(crate) fn unseal_args(&self, env: &str, share: &Path, name: &str) -> Vec<String> {
        let id = self.id_path(name);
        [
            "unseal",
            "--env",
            env,
            "--share",
            path_str(share),
            "--identity",
            path_str(&id),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    pub(crate) fn ok(&mut self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.warden(&a);
        assert!(
            out.status.success(),
            "warden {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// Runs a command that must be refused with `message` on stderr.
    pub(crate) fn refused(&mut self, args: &[&str], message: &str) -> String {
        let out = self.warden(args);
        let err = text(&out.stderr);
        assert!(
            !out.status.success(),
            "warden {args:?} was not refused:\n{}",
            text(&out.stdout)
        );
        assert!(
            err.contains(message),
            "warden {args:?}: expected {message:?} in:\n{err}"
        );
        assert!(
            err.contains("hint:"),
            "a refusal says what to do next:\n{err}"
        );
        err
    }
}

pub(crate) fn env_block(
    name: &str,
    addr: &str,
    ca: &Path,
    threshold: u8,
    custodians: &[(&str, String)],
) -> String {
    cluster_block(name, &[addr], ca, threshold, custodians)
}

/// An environment of one server (`address`) or, with several addresses, of a cluster
/// (`[[environments.<name>.nodes]]`, cluster addresses on free ports), with its custody.
pub(crate) fn cluster_block(
    name: &str,
    addrs: &[&str],
    ca: &Path,
    threshold: u8,
    custodians: &[(&str, String)],
) -> String {
    let mut s = format!("[environments.{name}]\n");
    if let [one] = addrs {
        s.push_str(&format!("address = \"{one}\"\n"));
    }
    s.push_str(&format!(
        "ca_cert = \"{}\"\ndomain = \"{name}.example.internal\"\n",
        ca.display()
    ));
    if addrs.len() > 1 {
        let ports = warden_lab::process::free_ports(addrs.len()).expect("free ports");
        for (i, (a, p)) in addrs.iter().zip(ports).enumerate() {
            s.push_str(&format!(
                "\n[[environments.{name}.nodes]]\nname = \"{name}-{}\"\naddress = \"{a}\"\ncluster_address = \"https://127.0.0.1:{p}\"\n",
                i + 1
            ));
        }
    }
    s.push_str(&format!(
        "\n[environments.{name}.custody]\nthreshold = {threshold}\n"
    ));
    for (c, r) in custodians {
        s.push_str(&format!(
            "\n[[environments.{name}.custody.custodians]]\nname = \"{c}\"\nrecipient = \"{r}\"\n"
        ));
    }
    s.push('\n');
    s
}

pub(crate) fn client(server: &BareBao) -> Client {
    let cfg = ClientConfig::from_address(server.addr())
        .expect("address")
        .with_ca_file(server.ca_path())
        .expect("ca");
    Client::new(cfg).expect("client")
}

/// The unseal progress the server reports (and that it is still sealed).
pub(crate) async fn progress(c: &Client) -> (bool, u8) {
    let s = c.seal_status().await.expect("seal status");
    (s.sealed, s.progress)
}

/// Every encoding of a share OpenBao returns: hex (as in `keys`) and base64 (`keys_base64`),
/// with and without padding.
pub(crate) fn encodings(share_hex: &str) -> Vec<String> {
    let bytes = hex::decode(share_hex).expect("hex share");
    vec![
        share_hex.to_owned(),
        share_hex.to_uppercase(),
        base64::engine::general_purpose::STANDARD.encode(&bytes),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes),
    ]
}

pub(crate) fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&p, out),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
