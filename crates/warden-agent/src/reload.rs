//! Telling the service that its files changed: a command (argv, never a shell) or a signal to
//! the PID in a PID file. Runs only after a delivery that changed something.
//!
//! The command runs with a cleared environment (only `PATH`, `LANG` and `HOME` are passed on),
//! so nothing the agent inherited (an operator's `VAULT_TOKEN`, say) reaches it; stdin is
//! `/dev/null`; stdout and stderr are captured into the log, cut to a few KiB; after
//! [`TIMEOUT`] it is killed. The PID file is read at reload time, not at start, because the
//! service may have restarted since.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use time::OffsetDateTime;

use super::config::Reload;
use super::state::ReloadRecord;

/// How long a reload command may run.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a command's output is kept in the log and the state file.
const OUTPUT_LIMIT: usize = 4096;

/// Runs `reload` for `output` and says how it went. Never fails: a failed reload is recorded
/// and reported, and the delivery it follows stays in place.
pub async fn run(output: &str, reload: &Reload) -> ReloadRecord {
    run_with_timeout(output, reload, TIMEOUT).await
}

pub(crate) async fn run_with_timeout(
    output: &str,
    reload: &Reload,
    timeout: Duration,
) -> ReloadRecord {
    let at = OffsetDateTime::now_utc();
    let (ok, message) = match reload {
        Reload::Command(argv) => command(output, argv, timeout).await,
        Reload::Signal { pid_file, signal } => signal_pid(pid_file, *signal),
    };
    if ok {
        tracing::info!(output, result = %message, "reload done");
    } else {
        tracing::warn!(output, result = %message, "reload failed");
    }
    ReloadRecord { at, ok, message }
}

async fn command(output: &str, argv: &[String], timeout: Duration) -> (bool, String) {
    let Some((program, args)) = argv.split_first() else {
        return (false, "empty reload command".to_owned());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for var in ["PATH", "LANG", "HOME"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (false, format!("could not run {program}: {e}")),
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => (
            false,
            format!(
                "{program} did not finish within {}s and was killed",
                timeout.as_secs()
            ),
        ),
        Ok(Err(e)) => (false, format!("waiting for {program}: {e}")),
        Ok(Ok(out)) => {
            let stdout = clip(&out.stdout);
            let stderr = clip(&out.stderr);
            if !stdout.is_empty() || !stderr.is_empty() {
                tracing::info!(output, %stdout, %stderr, "reload command output");
            }
            let status = match out.status.code() {
                Some(c) => format!("exit {c}"),
                None => "killed by a signal".to_owned(),
            };
            let first_err = stderr.lines().next().unwrap_or("").trim();
            let message = if out.status.success() || first_err.is_empty() {
                status
            } else {
                format!("{status}: {first_err}")
            };
            (out.status.success(), message)
        }
    }
}

fn signal_pid(pid_file: &std::path::Path, signal: Signal) -> (bool, String) {
    let text = match read_pid_file(pid_file) {
        Ok(t) => t,
        Err(e) => return (false, format!("cannot read {}: {e}", pid_file.display())),
    };
    let pid: i32 = match text.trim().parse() {
        Ok(p) if p > 1 => p,
        _ => {
            return (
                false,
                format!("{} does not hold a usable PID", pid_file.display()),
            );
        }
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal) {
        Ok(()) => (true, format!("sent {signal} to {pid}")),
        Err(e) => (false, format!("could not send {signal} to {pid}: {e}")),
    }
}

/// Reads the PID file without following a symlink at its name and only if it is a regular
/// file: a link planted there must not choose which process the agent signals, and a FIFO must
/// not block it. (Whoever may write the file itself chooses the PID anyway; see the threat
/// model in docs/agent.md.)
fn read_pid_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut text = String::new();
    file.by_ref().take(64).read_to_string(&mut text)?;
    Ok(text)
}

fn clip(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(OUTPUT_LIMIT)]);
    text.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Reload {
        Reload::Command(a.iter().map(|s| (*s).to_owned()).collect())
    }

    #[tokio::test]
    async fn a_command_runs_without_a_shell_and_its_result_is_recorded() {
        let tmp = tempfile::tempdir().unwrap();
        let marker = tmp.path().join("m");
        // A `;` in an argument is just a character: no shell interprets it.
        let r = run(
            "o",
            &argv(&["touch", &format!("{};echo", marker.display())]),
        )
        .await;
        assert!(r.ok, "{}", r.message);
        assert!(tmp.path().join("m;echo").exists());
        assert!(!marker.exists());
        assert_eq!(r.message, "exit 0");

        let r = run("o", &argv(&["sh", "-c", "echo oops >&2; exit 3"])).await;
        assert!(!r.ok);
        assert_eq!(r.message, "exit 3: oops");

        let r = run("o", &argv(&["/nonexistent/reload"])).await;
        assert!(!r.ok);
        assert!(r.message.contains("could not run"), "{}", r.message);
    }

    #[tokio::test]
    async fn the_environment_is_not_passed_on() {
        // cargo sets CARGO_MANIFEST_DIR for the test process; the child must not see it.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let r = run(
            "o",
            &argv(&[
                "sh",
                "-c",
                "test -z \"$CARGO_MANIFEST_DIR\" && test -n \"$PATH\"",
            ]),
        )
        .await;
        assert!(r.ok, "{}", r.message);
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_at_the_timeout() {
        let started = std::time::Instant::now();
        let r = run_with_timeout("o", &argv(&["sleep", "30"]), Duration::from_millis(300)).await;
        assert!(!r.ok);
        assert!(r.message.contains("did not finish"), "{}", r.message);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_signal_goes_to_the_pid_read_from_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let pid_file = tmp.path().join("svc.pid");
        let mut child = tokio::process::Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        std::fs::write(&pid_file, format!("{}\n", child.id().unwrap())).unwrap();
        let reload = Reload::Signal {
            pid_file: pid_file.clone(),
            signal: Signal::SIGTERM,
        };
        let r = run("o", &reload).await;
        assert!(r.ok, "{}", r.message);
        let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .unwrap()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(15));

        std::fs::write(&pid_file, "garbage").unwrap();
        assert!(!run("o", &reload).await.ok);
        // A symlink at the PID file's name is not followed.
        let mut bystander = tokio::process::Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let real = tmp.path().join("real.pid");
        std::fs::write(&real, format!("{}\n", bystander.id().unwrap())).unwrap();
        std::fs::remove_file(&pid_file).unwrap();
        std::os::unix::fs::symlink(&real, &pid_file).unwrap();
        let r = run("o", &reload).await;
        assert!(!r.ok && r.message.contains("cannot read"), "{}", r.message);
        assert!(
            bystander.try_wait().unwrap().is_none(),
            "the bystander was signalled"
        );
        std::fs::remove_file(&pid_file).unwrap();
        let r = run("o", &reload).await;
        assert!(!r.ok && r.message.contains("cannot read"), "{}", r.message);
    }
}
