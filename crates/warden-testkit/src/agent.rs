//! A long-running agent process (`warden agent`, `warden-agent`) owned by one test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A spawned agent whose stdout and stderr go to a log file; killed (SIGKILL) and reaped when
/// dropped, so a panicking test leaves no process behind.
#[derive(Debug)]
pub struct RunningAgent {
    child: Child,
    log: PathBuf,
}

impl RunningAgent {
    /// Spawns `command` (typically [`Cli::command`](crate::cli::Cli::command) with `agent
    /// --config FILE`), stdin from `/dev/null`, both streams appended to `log`. Appending: a
    /// restarted agent's log follows the first run's, and a test can check both.
    pub fn spawn(mut command: Command, log: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open the agent log {}: {e}", log.display()));
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("duplicate the log handle"))
            .stderr(file);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", command.get_program()));
        Self {
            child,
            log: log.to_path_buf(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything it printed so far (empty if nothing).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics, with the log, if it has exited.
    #[track_caller]
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait on the agent") {
            panic!("the agent exited ({status}); log:\n{}", self.log());
        }
    }

    /// Sends SIGTERM and returns the exit status; panics, with the log, unless it stops within
    /// `limit`.
    #[track_caller]
    pub fn terminate(mut self, limit: Duration) -> ExitStatus {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).expect("send SIGTERM");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on the agent") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "the agent did not stop within {limit:?} after SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL now (what `Drop` does), for a test that simulates a crash.
    pub fn kill9(self) {
        drop(self);
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `identity`'s delivery report as JSON, wherever its agent wrote it: the entry's custom
/// metadata (ADR 0036), or its data (a report too big for the metadata, an older agent).
/// Panics when there is none — a test asks after the agent reported.
pub async fn delivery_report(client: &warden_bao::Client, identity: &str) -> serde_json::Value {
    let entry = warden_spec::naming::delivery_report(identity);
    if let Ok(md) = client
        .kv2(warden_spec::naming::META_MOUNT)
        .metadata(&entry.path)
        .await
        && let Some(text) = warden_spec::naming::report_from_metadata(&md.custom_metadata)
    {
        return serde_json::from_str(&text).expect("the report in the metadata is JSON");
    }
    client
        .read(&entry.data_path())
        .await
        .unwrap_or_else(|e| panic!("{identity}'s delivery report: {e}"))
        .data
        .expect("data")["data"]
        .clone()
}
