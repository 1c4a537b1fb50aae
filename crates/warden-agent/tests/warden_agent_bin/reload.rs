//! Test 5 of `warden_agent_bin`: a reload that failed (the service was down, its reload
//! command broken for a while) is run again until it works, although nothing new is delivered:
//! until then the service runs on what it had before — a certificate that will expire, a
//! password that will be retired — and the output is not `fresh`.

use serde_json::{Value, json};
use warden_testkit::LabEnv;
use warden_testkit::cli::{path_str, text};
use warden_testkit::files::line_count;

use super::{AGENT, apply_and_enroll, both, read, write_billing_config, write_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_is_run_again_until_it_works() {
    let lab = LabEnv::start(&["test"]).await;
    let root = tempfile::tempdir().expect("tempdir");
    let dir = apply_and_enroll(&lab, root.path()).await;
    write_billing_config(&lab, &json!({ "user": "reload-test" })).await;
    let address = lab.lab().env("test").expect("test env").address();
    let (reloads, config_reloads) = (dir.join("reloads.log"), dir.join("config-reloads.log"));
    let up = dir.join("service-up");
    // Both reloads work only once the service is up.
    let config = write_config(&dir, &address, &reloads);
    let text_of = read(&config)
        .replace(
            "\"echo reload >> ",
            &format!("\"test -e '{}' && echo reload >> ", path_str(&up)),
        )
        .replace(
            "mode     = \"0600\"",
            &format!(
                "mode     = \"0600\"\nreload   = [\"/bin/sh\", \"-c\", \"test -e '{}' && echo reload >> '{}'\"]",
                path_str(&up),
                path_str(&config_reloads)
            ),
        );
    std::fs::write(&config, text_of).expect("config");
    let once = || AGENT.run(&["--config", path_str(&config), "--once", "--output", "json"]);
    let health = |out: &std::process::Output, name: &str| -> String {
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("one JSON document ({e}):\n{}", both(out)));
        doc["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {doc}"))["health"]
            .as_str()
            .expect("health")
            .to_owned()
    };

    // (1) Delivered, but the service is down: the reloads fail; neither output is fresh.
    let out = once();
    assert!(!out.status.success(), "{}", both(&out));
    for name in ["tls", "config"] {
        assert_eq!(health(&out, name), "stale", "{name}: {}", both(&out));
    }
    assert_eq!(line_count(&reloads) + line_count(&config_reloads), 0);

    // (2) The service is up: the next run reloads both, though nothing new was delivered.
    std::fs::write(&up, b"").expect("up");
    let out = once();
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(line_count(&reloads), 1, "{}", text(&out.stderr));
    assert_eq!(line_count(&config_reloads), 1, "{}", text(&out.stderr));
    for name in ["tls", "config"] {
        assert_eq!(health(&out, name), "fresh", "{name}");
    }

    // (3) Nothing pending any more: no reload.
    let out = once();
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(line_count(&reloads) + line_count(&config_reloads), 2);
}
