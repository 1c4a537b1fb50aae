//! Issue 18: the operator's certificate and key are nobody else's transport. Containers,
//! pipelines and Kubernetes workloads reach the mTLS-only listener with their host's or
//! runner's own transport certificate (ADR 0010); a test, doc or example that hands them the
//! operator's would hide exactly the gap the issue was about. This scans the sources a reader
//! copies from — tests, the testkit, docs, examples — for the two shapes that did it:
//!
//! - prose that makes the operator's certificate a transport ("the operator's serves as
//!   transport", "rides on the operator's transport certificate"), unless it says the
//!   opposite ("never", "not", "no longer");
//! - a file that loads the operator's certificate (`operator_cert()`) and also logs in by
//!   AppRole or JWT, or writes an agent config for those methods.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the workspace root")
        .to_path_buf()
}

fn files(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let path = e.path();
        let name = e.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            files(&path, exts, out);
        } else if path
            .extension()
            .is_some_and(|x| exts.iter().any(|e| x == *e))
        {
            out.push(path);
        }
    }
}

/// What a reader copies from: every crate's tests, the testkit, the docs and the examples.
fn scanned() -> Vec<PathBuf> {
    let root = workspace();
    let mut out = Vec::new();
    files(&root.join("docs"), &["md"], &mut out);
    files(&root.join("examples"), &["toml", "md"], &mut out);
    let crates = root.join("crates");
    for c in std::fs::read_dir(&crates)
        .expect("crates/")
        .filter_map(Result::ok)
    {
        files(&c.path().join("tests"), &["rs"], &mut out);
    }
    files(&crates.join("warden-testkit/src"), &["rs"], &mut out);
    out.push(root.join("README.md"));
    out
}

/// A line that makes the operator's certificate someone's transport: the operator's
/// certificate and "transport" within a short phrase of each other, not denied.
fn operator_as_transport(line: &str) -> bool {
    const NEAR: usize = 80;
    let l = line.to_lowercase();
    let at = |needle: &str| -> Vec<usize> { l.match_indices(needle).map(|(i, _)| i).collect() };
    let operator: Vec<usize> = ["operator's", "operator cert", "operator_cert"]
        .iter()
        .flat_map(|n| at(n))
        .collect();
    let near = at("transport")
        .iter()
        .any(|t| operator.iter().any(|o| t.abs_diff(*o) < NEAR));
    let denies = ["never", "not ", "no longer", "nobody", "isn't"]
        .iter()
        .any(|w| l.contains(w));
    near && !denies
}

/// A file that loads the operator's certificate and logs a workload in.
fn operator_cert_for_workloads(text: &str) -> bool {
    let squashed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    text.contains("operator_cert()")
        && [
            "login_approle(",
            "login_jwt(",
            "method = \"approle\"",
            "method = \"jwt\"",
            "\"auth/approle/login\"",
            "\"auth/jwt/login\"",
        ]
        .iter()
        .any(|p| squashed.contains(p))
}

#[test]
fn issue_18_no_operator_key_is_another_identitys_transport() {
    let this = Path::new(file!()).file_name().expect("this file");
    let mut found = Vec::new();
    let all = scanned();
    assert!(all.len() > 20, "the scan found too few files: {all:?}");
    for path in all {
        if path.file_name() == Some(this) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            if operator_as_transport(line) {
                found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
            }
        }
        if operator_cert_for_workloads(&text) {
            found.push(format!(
                "{}: loads operator_cert() and logs a container or pipeline in",
                path.display()
            ));
        }
    }
    assert!(
        found.is_empty(),
        "the operator's certificate is used as another identity's transport (ADR 0010: use `warden transport issue` / `EnvAccess::transport_client`):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_recognises_both_shapes() {
    assert!(operator_as_transport(
        "// identity certificate of its own, so the operator's serves as transport only"
    ));
    assert!(!operator_as_transport(
        "a lab's operator certificate is never anyone else's transport"
    ));
    assert!(!operator_as_transport(
        "operator identities (key and CSR on the operator's machine, approval, list, removal) and a real environment's bootstrap (root token used once, then revoked); transport certificates"
    ));
    assert!(operator_cert_for_workloads(
        "cert = layout.operator_cert();\nmethod            = \"approle\"\n"
    ));
    assert!(!operator_cert_for_workloads(
        "cert = layout.operator_cert();\nmethod = \"cert\"\n"
    ));
}
