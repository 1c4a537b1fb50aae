//! The child process: started with the variables added to *its* environment only, signalled,
//! stopped with a grace period, and its end turned into an exit code.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use zeroize::Zeroizing;

/// Starts `argv` with the agent's environment plus `vars`. The variables go only into the
/// child's `envp` (`Command::env`): the agent's own environment is never touched, so
/// `/proc/<agent>/environ` never holds a value. Stdin, stdout and stderr are the agent's.
pub(crate) fn spawn(
    argv: &[OsString],
    vars: &BTreeMap<String, Zeroizing<String>>,
) -> std::io::Result<Child> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("no command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (name, value) in vars {
        cmd.env(name, value.as_str());
    }
    // A dropped handle (the agent ending early) must not kill the service behind its back:
    // every stop goes through `stop` with its grace period.
    cmd.kill_on_drop(false);
    cmd.spawn()
}

/// Sends `sig` to the child if it still runs (a reaped child's PID may belong to someone else
/// already: tokio forgets the PID once it reaped it, so this never signals a stranger).
pub(crate) fn send(child: &Child, sig: Signal) {
    let Some(pid) = child.id() else { return };
    let Ok(pid) = i32::try_from(pid) else { return };
    if let Err(e) = nix::sys::signal::kill(Pid::from_raw(pid), sig) {
        tracing::debug!(%sig, error = %e, "could not signal the child");
    }
}

/// SIGTERM, up to `grace` for it to end, then SIGKILL; returns how it ended.
pub(crate) async fn stop(child: &mut Child, grace: Duration) -> std::io::Result<ExitStatus> {
    send(child, Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            tracing::warn!(
                grace_s = grace.as_secs_f32(),
                "the child did not stop after SIGTERM: killing it"
            );
            send(child, Signal::SIGKILL);
            child.wait().await
        }
    }
}

/// The exit code the agent passes on: the child's own, or 128 + the signal that killed it
/// (what a shell reports: SIGTERM → 143, SIGKILL → 137).
pub(crate) fn exit_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code & 0xff).unwrap_or(1);
    }
    match status.signal() {
        Some(sig) => u8::try_from(128 + (sig & 0x7f)).unwrap_or(255),
        None => 1,
    }
}

/// The signals the agent forwards to its child: the ones a supervisor (systemd, a terminal, a
/// container runtime) sends to stop, reload or poke a service. Installed before the child
/// starts, so none of them takes the agent's default action (death) while it supervises.
pub(crate) struct Forwarded {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Forwarded {
    pub(crate) fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// The next signal the agent received.
    pub(crate) async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.quit.recv() => Signal::SIGQUIT,
            _ = self.hup.recv() => Signal::SIGHUP,
            _ = self.usr1.recv() => Signal::SIGUSR1,
            _ = self.usr2.recv() => Signal::SIGUSR2,
        }
    }
}

/// Signals that ask the service to stop: after forwarding one, the agent gives the child
/// `kill_timeout` before SIGKILL.
pub(crate) fn is_stop(sig: Signal) -> bool {
    matches!(sig, Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        // Killed by SIGTERM (15) / SIGKILL (9): raw wait status is the signal number.
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }

    #[tokio::test]
    async fn the_child_gets_the_variables_and_the_agent_does_not() {
        let mut vars = BTreeMap::new();
        vars.insert(
            "WARDEN_EXEC_UNIT_TEST".to_owned(),
            Zeroizing::new("v1".to_owned()),
        );
        let argv: Vec<OsString> = ["sh", "-c", "test \"$WARDEN_EXEC_UNIT_TEST\" = v1 && exit 3"]
            .iter()
            .map(OsString::from)
            .collect();
        let mut child = spawn(&argv, &vars).expect("spawn");
        assert_eq!(exit_code(child.wait().await.expect("wait")), 3);
        assert!(std::env::var_os("WARDEN_EXEC_UNIT_TEST").is_none());
    }

    #[tokio::test]
    async fn stop_kills_a_child_that_ignores_sigterm() {
        let argv: Vec<OsString> = ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]
            .iter()
            .map(OsString::from)
            .collect();
        let mut child = spawn(&argv, &BTreeMap::new()).expect("spawn");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = stop(&mut child, Duration::from_millis(300))
            .await
            .expect("stop");
        assert_eq!(exit_code(status), 137);
    }
}
