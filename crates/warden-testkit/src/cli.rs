//! Running a Warden binary (`warden`, `warden-agent`) the way an operator's shell would, minus
//! anything in the developer's environment that could point it at another server.
//!
//! The testkit cannot find the binary by itself: Cargo only tells the package that builds it
//! (through `CARGO_BIN_EXE_<name>`, set while compiling that package's integration tests). So
//! each test binary names it once, and every run goes through the same clean environment and
//! time limit:
//!
//! ```ignore
//! use warden_testkit::cli::Cli;
//! const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));
//! let out = WARDEN.ok(&["--version"]);
//! assert!(warden_testkit::cli::text(&out.stdout).starts_with("warden"));
//! ```

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// Variables that would point a binary somewhere else than the servers under test, or change
/// what it prints. Every run starts with them removed; a test that needs one sets it
/// explicitly ([`Invocation::env`]).
pub const FOREIGN_ENV: [&str; 22] = [
    "WARDEN_LAB_DIR",
    "WARDEN_SPEC",
    "WARDEN_TOKEN_FILE",
    "WARDEN_CA_DIR",
    "WARDEN_CA_PASSPHRASE",
    "WARDEN_LOG",
    "RUST_LOG",
    "VAULT_ADDR",
    "BAO_ADDR",
    "VAULT_TOKEN",
    "BAO_TOKEN",
    "VAULT_CACERT",
    "BAO_CACERT",
    "BAO_CAPATH",
    "VAULT_CLIENT_CERT",
    "VAULT_CLIENT_KEY",
    "BAO_CLIENT_CERT",
    "BAO_CLIENT_KEY",
    "VAULT_NAMESPACE",
    "BAO_NAMESPACE",
    "VAULT_SKIP_VERIFY",
    "VAULT_CLIENT_TIMEOUT",
];

/// A hung command fails its test instead of stalling the suite. `warden lab up` with agents
/// is the slowest call (well under a minute on a loaded 2-core machine).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(240);

/// One binary under test. `Copy` and `const`-constructible, so a test binary declares it once:
/// `const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));`.
#[derive(Debug, Clone, Copy)]
pub struct Cli {
    bin: &'static str,
    timeout: Duration,
}

impl Cli {
    /// The binary at `bin` (pass `env!("CARGO_BIN_EXE_<name>")`), with a 240 s limit per run.
    pub const fn new(bin: &'static str) -> Self {
        Self {
            bin,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same binary with another limit per run.
    pub const fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    /// Path of the binary.
    pub fn bin(&self) -> &Path {
        Path::new(self.bin)
    }

    /// `BIN ARGS` as a [`Command`] with the clean environment (no [`FOREIGN_ENV`], `NO_COLOR`
    /// set) and stdin from `/dev/null`, for callers that spawn it themselves (a long-running
    /// agent, a streamed child). No time limit applies to it.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(self.bin);
        cmd.args(args).env("NO_COLOR", "1").stdin(Stdio::null());
        for var in FOREIGN_ENV {
            cmd.env_remove(var);
        }
        cmd
    }

    /// `BIN ARGS`, to adjust (variables, stdin, directory) before running it.
    pub fn invoke<S: AsRef<OsStr>>(&self, args: &[S]) -> Invocation {
        Invocation {
            cmd: self.command(args),
            args: args
                .iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect(),
            stdin: None,
            timeout: self.timeout,
        }
    }

    /// Runs `BIN ARGS` to completion, whatever its exit code.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.invoke(args).output()
    }

    /// Runs `BIN ARGS` and fails the test, with both streams, unless it succeeds.
    #[track_caller]
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let run = self.invoke(args);
        let shown = run.args.clone();
        let out = run.output();
        assert!(
            out.status.success(),
            "{shown:?} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }
}

/// One run being prepared: [`Cli::invoke`] plus variables, stdin or a working directory.
#[derive(Debug)]
pub struct Invocation {
    cmd: Command,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Invocation {
    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_string_lossy().into_owned());
        self.cmd.arg(arg);
        self
    }

    /// Sets a variable (also one of [`FOREIGN_ENV`], on purpose).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Removes one more variable.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.cmd.env_remove(key);
        self
    }

    /// Runs in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Feeds `input` on stdin (then closes it).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// The command line, for messages.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Runs to completion, whatever the exit code. Panics if the binary cannot start or does
    /// not finish within the limit (the child is killed first).
    #[track_caller]
    pub fn output(self) -> Output {
        self.try_output().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`output`](Self::output) without panicking, for clean-up code that runs in `Drop`.
    pub fn try_output(mut self) -> Result<Output, String> {
        if self.stdin.is_some() {
            self.cmd.stdin(Stdio::piped());
        }
        let mut child = self
            .cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {:?}: {e}", self.cmd.get_program()))?;
        if let (Some(input), Some(mut pipe)) = (self.stdin.take(), child.stdin.take()) {
            // A thread: a child that prints before reading would otherwise deadlock with us.
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(self.timeout) {
            Ok(out) => out.map_err(|e| format!("wait for {:?}: {e}", self.args)),
            Err(_) => {
                // The waiter has not reaped it (it would have answered): the pid is still ours.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                Err(format!(
                    "{:?} did not finish within {:?}",
                    self.args, self.timeout
                ))
            }
        }
    }

    /// Runs to completion and keeps the streams as text, with the command line for messages.
    pub fn run(self) -> Run {
        let args = self.args.clone();
        Run::new(args, &self.output())
    }
}

/// A finished run as text, with assertions that print the whole run when they fail.
#[derive(Debug, Clone)]
pub struct Run {
    /// The arguments (without the binary).
    pub args: Vec<String>,
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Stdout, lossy UTF-8.
    pub stdout: String,
    /// Stderr, lossy UTF-8.
    pub stderr: String,
}

impl Run {
    /// `out` of the run of `args`.
    pub fn new(args: Vec<String>, out: &Output) -> Self {
        Self {
            args,
            code: out.status.code(),
            stdout: text(&out.stdout),
            stderr: text(&out.stderr),
        }
    }

    /// Panics with the whole run unless it exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "{:?}: expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics with the whole run unless it succeeded.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    /// Stdout as JSON; panics with the whole run if it is not.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "{:?}: stdout is not JSON ({e})\n--- stdout\n{}\n--- stderr\n{}",
                self.args, self.stdout, self.stderr
            )
        })
    }

    /// Both streams, stdout first.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics if `needle` appears in either stream.
    #[track_caller]
    pub fn never_shows(&self, needle: &str) -> &Self {
        assert!(
            !self.all().contains(needle),
            "{:?} printed {needle:?}:\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless `needle` appears in stderr.
    #[track_caller]
    pub fn says(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "{:?}: stderr lacks {needle:?}:\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Lossy UTF-8 of command output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A path as `&str` for argv; panics on a non-UTF-8 path (tests only make UTF-8 ones).
pub fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
}

/// `ARGS --spec SPEC --lab LAB --env test`: a command on environment `test` of a lab, as owned
/// strings (see [`refs`] for the `&str` slice [`Cli::run`] and [`Cli::ok`] take).
pub fn on_lab(args: &[&str], spec: &Path, lab: &Path) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    v.extend([
        "--spec".into(),
        path_str(spec).into(),
        "--lab".into(),
        path_str(lab).into(),
        "--env".into(),
        "test".into(),
    ]);
    v
}

/// The strings of `v` as `&str`s.
pub fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
