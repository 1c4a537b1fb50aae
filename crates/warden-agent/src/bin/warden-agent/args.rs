//! The command line of `warden-agent`, parsed by hand: four flags do not need clap, and
//! leaving clap out keeps it out of the agent's binary and its resident memory.
//!
//! It accepts what `warden agent` accepts for running an agent — `--config FILE`, `--once`,
//! `--output text|json` (`-o`), `-v`/`-vv` (`--verbose`) — plus `--help` and `--version`, and
//! `exec --config FILE -- CMD ARGS…` (everything after `--` is the command, untouched), and
//! `doctor --config FILE` (the identity's checks, as `warden doctor --dir`).
//! `--flag=value` and `--flag value` are both fine. Anything else is a usage error (exit 2).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// The help text (`--help`).
pub(crate) const HELP: &str = "\
Run one identity's agent: log in with its own credential, deliver its certificates, secrets and
CA chains, renew them before they expire, reload only on real change.

Usage: warden-agent --config FILE [--once] [-v...] [--output text|json]
       warden-agent exec --config FILE [-v...] -- CMD [ARGS...]
       warden-agent doctor --config FILE [--output text|json]

exec: run CMD with the secrets of agent.toml's [[exec_env]] (purposes with delivery =
\"exec_env\") added to its environment only; restart it once when a value changes, forward
TERM/INT/QUIT/HUP/USR1/USR2 to it, and exit with its exit code (128 + signal if killed).

doctor: check this identity as `warden doctor` does (files, trust, certificate, TLS, login,
grants, agent, clock; docs/doctor.md); exit 1 when a check failed. Run it as the identity's user.

Options:
      --config FILE     the agent's config (agent.toml, written by `warden identity enroll`)
      --once            render every output once and exit; non-zero if anything failed
  -o, --output FORMAT   text (default) or json: the --once report as one JSON document
  -v, --verbose...      more logging on stderr (-v info, -vv debug); WARDEN_LOG overrides
  -h, --help            print this help
  -V, --version         print the version

The same agent as `warden agent --config FILE`; see docs/agent.md. SIGTERM or Ctrl-C stops it.
Exit codes: 0 success, 1 failure, 2 usage error; exec: the command's own code once it ran.
";

/// One line naming the usage, printed after a usage error.
pub(crate) const USAGE: &str =
    "Usage: warden-agent --config FILE [--once] [-v...] [--output text|json]
       warden-agent exec --config FILE [-v...] -- CMD [ARGS...]
       warden-agent doctor --config FILE [--output text|json]";

/// What was asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Run the agent.
    Run(RunArgs),
    /// `--help`.
    Help,
    /// `--version`.
    Version,
}

/// Arguments of a run.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RunArgs {
    /// `--config`.
    pub(crate) config: PathBuf,
    /// `--once`.
    pub(crate) once: bool,
    /// `--output json`.
    pub(crate) json: bool,
    /// How many `-v`.
    pub(crate) verbose: u8,
    /// `exec -- CMD ARGS…`: the command, exactly as given.
    pub(crate) exec: Option<Vec<OsString>>,
    /// `doctor`: check the identity instead of running the agent.
    pub(crate) doctor: bool,
}

/// A usage error: what was wrong with the command line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses the arguments after the program name. `--help` and `--version` win wherever they
/// appear, as with clap.
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut config: Option<PathBuf> = None;
    let mut once = false;
    let mut json = false;
    let mut verbose: u8 = 0;
    let mut help = false;
    let mut version = false;
    let mut exec = false;
    let mut doctor = false;
    let mut command: Option<Vec<OsString>> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // `--`: the rest is the command, passed on untouched (its own flags included).
        if arg == "--" {
            command = Some(args.by_ref().collect());
            break;
        }
        let Some(text) = arg.to_str() else {
            return Err(UsageError(format!(
                "unexpected argument `{}`",
                arg.to_string_lossy()
            )));
        };
        let (flag, inline) = match text.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (text, None),
        };
        // A value: inline (`--config=FILE`) or the next argument (`--config FILE`).
        let mut value = |name: &str| -> Result<OsString, UsageError> {
            match inline {
                Some(v) if !v.is_empty() => Ok(OsString::from(v)),
                Some(_) => Err(UsageError(format!("{name} needs a value"))),
                // `--config --once`: a flag where the value should be, as clap sees it.
                None => args
                    .next()
                    .filter(|v| {
                        !v.to_str()
                            .is_some_and(|s| s.len() > 1 && s.starts_with('-'))
                    })
                    .ok_or_else(|| UsageError(format!("{name} needs a value"))),
            }
        };
        match flag {
            "--config" => {
                let v = value("--config")?;
                if config.replace(PathBuf::from(v)).is_some() {
                    return Err(UsageError("--config given more than once".to_owned()));
                }
            }
            "--output" | "-o" => {
                let v = value("--output")?;
                json = match v.to_str() {
                    Some("json") => true,
                    Some("text") => false,
                    _ => {
                        return Err(UsageError(format!(
                            "--output must be `text` or `json`, not `{}`",
                            v.to_string_lossy()
                        )));
                    }
                };
            }
            "--once" if inline.is_none() => once = true,
            "--verbose" if inline.is_none() => verbose = verbose.saturating_add(1),
            "--help" | "-h" if inline.is_none() => help = true,
            "--version" | "-V" if inline.is_none() => version = true,
            // -v, -vv, -vvv.
            v if v.len() > 1 && v.starts_with('-') && v[1..].bytes().all(|b| b == b'v') => {
                verbose = verbose.saturating_add(u8::try_from(v.len() - 1).unwrap_or(u8::MAX));
            }
            "exec" if !exec && !doctor => exec = true,
            "doctor" if !exec && !doctor => doctor = true,
            "--once" | "--verbose" | "--help" | "--version" => {
                return Err(UsageError(format!("{flag} takes no value")));
            }
            other => {
                let what = if other.starts_with('-') {
                    "unknown option"
                } else {
                    "unexpected argument"
                };
                let mut msg = format!("{what} `{text}`");
                if matches!(other, "status" | "rotate") {
                    msg.push_str(
                        " (ask a running agent with `warden agent status|rotate --socket PATH`)",
                    );
                }
                return Err(UsageError(msg));
            }
        }
    }
    if help {
        return Ok(Command::Help);
    }
    if version {
        return Ok(Command::Version);
    }
    let config = config.ok_or_else(|| UsageError("--config FILE is required".to_owned()))?;
    if doctor && (once || command.is_some()) {
        return Err(UsageError(
            "doctor takes only --config and --output: warden-agent doctor --config FILE".to_owned(),
        ));
    }
    let exec = match (exec, command) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err(UsageError(
                "a command after `--` needs `exec`: warden-agent exec --config FILE -- CMD"
                    .to_owned(),
            ));
        }
        (true, None) => {
            return Err(UsageError(
                "exec needs the command after `--`: warden-agent exec --config FILE -- CMD"
                    .to_owned(),
            ));
        }
        (true, Some(c)) if c.is_empty() => {
            return Err(UsageError("exec needs a command after `--`".to_owned()));
        }
        (true, Some(_)) if once => {
            return Err(UsageError(
                "exec runs until its command exits: drop --once".to_owned(),
            ));
        }
        (true, Some(c)) => Some(c),
    };
    Ok(Command::Run(RunArgs {
        config,
        once,
        json,
        verbose,
        exec,
        doctor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    fn run(args: &[&str]) -> RunArgs {
        match p(args) {
            Ok(Command::Run(r)) => r,
            other => panic!("{args:?}: expected a run, got {other:?}"),
        }
    }

    #[test]
    fn doctor_takes_the_config_and_nothing_that_runs() {
        let r = run(&["doctor", "--config", "a.toml", "-o", "json"]);
        assert!(r.doctor && r.json && r.exec.is_none() && !r.once);
        assert!(!run(&["--config", "a.toml"]).doctor);
        assert!(p(&["doctor", "--config", "a.toml", "--once"]).is_err());
        assert!(p(&["doctor", "--config", "a.toml", "--", "x"]).is_err());
        assert!(p(&["doctor", "exec", "--config", "a.toml", "--", "x"]).is_err());
    }

    #[test]
    fn config_and_once_in_both_spellings() {
        let r = run(&["--config", "/etc/warden/agent.toml", "--once"]);
        assert_eq!(r.config, PathBuf::from("/etc/warden/agent.toml"));
        assert!(r.once);
        assert!(!r.json);
        assert_eq!(r.verbose, 0);
        let r = run(&["--once", "--config=a b.toml"]);
        assert_eq!(r.config, PathBuf::from("a b.toml"));
        assert!(r.once);
        assert!(!run(&["--config", "x"]).once);
    }

    #[test]
    fn output_and_verbosity() {
        let r = run(&["-o", "json", "--config", "x", "-vv", "--verbose"]);
        assert!(r.json);
        assert_eq!(r.verbose, 3);
        assert!(!run(&["--output=text", "--config", "x"]).json);
        assert_eq!(run(&["-v", "--config", "x"]).verbose, 1);
    }

    #[test]
    fn help_and_version_win() {
        assert_eq!(p(&["--help"]), Ok(Command::Help));
        assert_eq!(p(&["--config", "x", "-h"]), Ok(Command::Help));
        assert_eq!(p(&["-V"]), Ok(Command::Version));
        assert_eq!(
            p(&["--version", "--bogus-after"]).ok(),
            None,
            "bad args still fail"
        );
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        let err = |args: &[&str]| p(args).expect_err("usage error").0;
        assert_eq!(err(&[]), "--config FILE is required");
        assert_eq!(err(&["--once"]), "--config FILE is required");
        assert_eq!(err(&["--config"]), "--config needs a value");
        assert_eq!(err(&["--config="]), "--config needs a value");
        assert_eq!(err(&["--config", "--once"]), "--config needs a value");
        assert_eq!(
            err(&["--config", "a", "--config", "b"]),
            "--config given more than once"
        );
        assert_eq!(err(&["--conifg", "a"]), "unknown option `--conifg`");
        assert_eq!(err(&["agent.toml"]), "unexpected argument `agent.toml`");
        assert_eq!(
            err(&["--once=yes", "--config", "a"]),
            "--once takes no value"
        );
        assert_eq!(
            err(&["-o", "yaml", "--config", "a"]),
            "--output must be `text` or `json`, not `yaml`"
        );
        assert!(err(&["status"]).contains("warden agent status"));
        assert!(err(&["exec", "--config", "a"]).contains("after `--`"));
        assert!(err(&["exec", "--config", "a", "--"]).contains("needs a command"));
        assert!(err(&["--config", "a", "--", "x"]).contains("needs `exec`"));
        assert!(err(&["exec", "--once", "--config", "a", "--", "x"]).contains("--once"));
    }

    #[test]
    fn exec_takes_the_command_after_the_double_dash_untouched() {
        let r = run(&[
            "exec", "--config", "a.toml", "-v", "--", "sh", "-c", "exit 7", "--config",
        ]);
        assert_eq!(r.config, PathBuf::from("a.toml"));
        assert_eq!(r.verbose, 1);
        let cmd: Vec<String> = r
            .exec
            .expect("exec")
            .into_iter()
            .map(|a| a.into_string().expect("utf-8"))
            .collect();
        assert_eq!(cmd, ["sh", "-c", "exit 7", "--config"]);
        assert!(run(&["--config", "a"]).exec.is_none());
    }
}
