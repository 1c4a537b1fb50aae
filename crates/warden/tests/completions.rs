//! `warden completions` and `warden man` are generated from the clap definitions; these tests
//! walk the command tree (as clap itself prints it in `--help`) and check that every command
//! and subcommand is in the bash, zsh and fish scripts and in the manual pages, and that the
//! shells accept their scripts.

use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

fn warden(args: &[&str]) -> String {
    let out = Command::cargo_bin("warden")
        .expect("the warden binary")
        .args(args)
        .output()
        .expect("run warden");
    assert!(
        out.status.success(),
        "warden {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The subcommand names in a `--help` text: the lines of its `Commands:` section that start
/// with two spaces and a name (longer descriptions wrap onto more deeply indented lines).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path below `warden`, depth-first: `["ca"]`, `["ca", "init"]`, ….
fn command_tree() -> Vec<Vec<String>> {
    fn walk(path: &[String], all: &mut Vec<Vec<String>>) {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        for name in subcommands(&warden(&args)) {
            let mut sub = path.to_vec();
            sub.push(name);
            all.push(sub.clone());
            walk(&sub, all);
        }
    }
    let mut all = Vec::new();
    walk(&[], &mut all);
    all
}

fn is_installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Runs `shell -n` on `script` (syntax check, nothing executed).
fn syntax_check(shell: &str, script: &str, dir: &Path) {
    let path = dir.join(format!("warden.{shell}"));
    std::fs::write(&path, script).expect("write script");
    let out = Command::new(shell)
        .arg("-n")
        .arg(&path)
        .output()
        .expect("run the shell");
    assert!(
        out.status.success(),
        "{shell} -n rejects the completion script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn completions_and_man_pages_cover_every_command() {
    let tree = command_tree();
    // The walk must have found the tree, not an empty help text.
    for expected in [
        vec!["ca", "init"],
        vec!["lab", "up"],
        vec!["reveal", "open"],
        vec!["completions"],
        vec!["man"],
    ] {
        assert!(
            tree.iter().any(|p| *p == expected),
            "{expected:?} not in {tree:?}"
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    for shell in ["bash", "zsh", "fish"] {
        let script = warden(&["completions", shell]);
        for path in &tree {
            let name = path.last().expect("non-empty path");
            assert!(
                script.contains(name.as_str()),
                "the {shell} completion lacks `{}`",
                path.join(" ")
            );
        }
        if shell == "bash" || is_installed(shell) {
            syntax_check(shell, &script, dir.path());
        }
    }

    let man = warden(&["man"]);
    assert!(
        man.contains(".TH warden 1"),
        "not a manual page: {man:.200}"
    );
    for path in &tree {
        let page = format!("warden-{}", path.join("-"));
        assert!(
            man.contains(&format!(".TH {page} 1")),
            "`warden man` has no page for `{}`",
            path.join(" ")
        );
    }
    let pages = dir.path().join("man");
    std::fs::create_dir(&pages).expect("mkdir");
    warden(&["man", "--dir", pages.to_str().expect("UTF-8 path")]);
    for path in &tree {
        let file = pages.join(format!("warden-{}.1", path.join("-")));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            text.contains(path.last().expect("name")),
            "{}",
            file.display()
        );
    }
    assert!(pages.join("warden.1").is_file());
}
