//! The start-up contract (seed 004) and the AD-1 rule, read from the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `VAULT_INIT_TIMEOUT_SEC` | 120 | how long [`crate::SecretProvider::connect`] waits for OpenBao before it gives up |
//! | `VAULT_RETRY_INITIAL_MS` | 250 | first delay between start-up attempts |
//! | `VAULT_RETRY_MAX_MS` | 16000 | ceiling of the doubling delay |
//! | `VAULT_WATCH_INTERVAL_SEC` | 30 | time between two polls of a watched secret or signing key |
//!
//! Each may also be spelt `BAO_…`; as for the connection variables, `BAO_` wins. A value that is
//! not a whole number (or is zero) is refused with the variable's name rather than replaced by
//! the default: a typo must not silently turn a 3 s budget into 120 s.

use std::time::Duration;

use crate::error::Error;

/// Timing of start-up and watching. [`Settings::default`] is the seed's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// `VAULT_INIT_TIMEOUT_SEC`: start-up budget.
    pub init_timeout: Duration,
    /// `VAULT_RETRY_INITIAL_MS`: first backoff delay.
    pub retry_initial: Duration,
    /// `VAULT_RETRY_MAX_MS`: backoff ceiling.
    pub retry_max: Duration,
    /// `VAULT_WATCH_INTERVAL_SEC`: poll interval of watches.
    pub watch_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            init_timeout: Duration::from_secs(120),
            retry_initial: Duration::from_millis(250),
            retry_max: Duration::from_millis(16_000),
            watch_interval: Duration::from_secs(30),
        }
    }
}

impl Settings {
    /// Reads the process environment; see [`Settings::from_env_with`].
    pub fn from_env() -> Result<Self, Error> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// Reads the four variables through `lookup` (unset or empty: the default).
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let number = |name: &str| -> Result<Option<u64>, Error> {
            let found = [format!("BAO_{name}"), format!("VAULT_{name}")]
                .into_iter()
                .find_map(|var| {
                    lookup(&var)
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| (var, v))
                });
            let Some((var, value)) = found else {
                return Ok(None);
            };
            match value.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(Error::Setting {
                    variable: var,
                    value,
                    expected: "a whole number greater than zero",
                }),
            }
        };
        let d = Self::default();
        let s = Self {
            init_timeout: number("INIT_TIMEOUT_SEC")?.map_or(d.init_timeout, Duration::from_secs),
            retry_initial: number("RETRY_INITIAL_MS")?
                .map_or(d.retry_initial, Duration::from_millis),
            retry_max: number("RETRY_MAX_MS")?.map_or(d.retry_max, Duration::from_millis),
            watch_interval: number("WATCH_INTERVAL_SEC")?
                .map_or(d.watch_interval, Duration::from_secs),
        };
        if s.retry_max < s.retry_initial {
            return Err(Error::Setting {
                variable: "VAULT_RETRY_MAX_MS".to_owned(),
                value: s.retry_max.as_millis().to_string(),
                expected: "at least VAULT_RETRY_INITIAL_MS",
            });
        }
        Ok(s)
    }

    /// The start-up delays in order: `retry_initial` doubling up to `retry_max`, forever (the
    /// caller stops at the init timeout). No jitter: the log shows exactly what the contract
    /// says, and services restarted together are spread by their own start times.
    pub fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        let max = self.retry_max;
        std::iter::successors(Some(self.retry_initial), move |d| {
            Some(d.saturating_mul(2).min(max))
        })
    }
}

/// Suffixes of environment variable names that hold a secret by convention. AD-1: a service's
/// secrets come from OpenBao only, so a process started with one of these set is refused — the
/// value is never read, only the name is reported. Beyond the obvious ones, the names the big
/// frameworks and clouds use for their keys (`AWS_SECRET_ACCESS_KEY`, Django's `SECRET_KEY`,
/// Rails' `SECRET_KEY_BASE`, `STRIPE_SECRET_KEY`, `JWT_SIGNING_KEY`) and passphrases.
pub const SECRET_ENV_SUFFIXES: [&str; 17] = [
    "_SECRET",
    "_SECRET_ID",
    "_PASSWORD",
    "_PASSWD",
    "_PASS",
    "_PASSPHRASE",
    "_PRIVATE_KEY",
    "_API_KEY",
    "_APIKEY",
    "_TOKEN",
    "_SECRET_KEY",
    "_SECRET_KEY_BASE",
    "_ACCESS_KEY",
    "_SIGNING_KEY",
    "_ENCRYPTION_KEY",
    "_MASTER_KEY",
    "_UNSEAL_KEY",
];

/// Endings that make a name a *path* to a secret (`WARDEN_APPROLE_SECRET_ID_FILE`), which is
/// how secrets should be handed over, so never refused.
const PATH_ENDINGS: [&str; 3] = ["_FILE", "_PATH", "_DIR"];

/// The AD-1 rule: the names (never the values) of variables in `names` that look like a secret
/// handed over in the environment. A name matches when, upper-cased, it ends with one of
/// [`SECRET_ENV_SUFFIXES`] or is one of them without the underscore (`SECRET`, `PASSWORD`,
/// `TOKEN`, `SECRET_KEY`…). That includes `VAULT_TOKEN`/`BAO_TOKEN`: the provider logs in as the
/// service's own identity (certificate or AppRole files), never with a token from the
/// environment. Names ending in `_FILE`, `_PATH` or `_DIR` (where a secret is, e.g.
/// `WARDEN_APPROLE_SECRET_ID_FILE`) do not match.
pub fn secret_env_names<I, S>(names: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut found: Vec<String> = names
        .into_iter()
        .filter(|n| {
            let upper = n.as_ref().to_ascii_uppercase();
            !PATH_ENDINGS.iter().any(|e| upper.ends_with(e))
                && SECRET_ENV_SUFFIXES
                    .iter()
                    .any(|s| upper.ends_with(s) || upper == s[1..])
        })
        .map(|n| n.as_ref().to_owned())
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Refuses the process environment if it carries a secret ([`secret_env_names`]).
pub fn refuse_secret_env() -> Result<(), Error> {
    let names = secret_env_names(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()));
    if names.is_empty() {
        Ok(())
    } else {
        Err(Error::SecretInEnvironment { names })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_are_the_seed_contract() {
        let s = Settings::from_env_with(env(&[])).expect("defaults");
        assert_eq!(s, Settings::default());
        assert_eq!(s.init_timeout, Duration::from_secs(120));
        let ms: Vec<u128> = s.backoff().take(9).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 8000, 16000, 16000, 16000]);
        assert_eq!(s.watch_interval, Duration::from_secs(30));
    }

    #[test]
    fn variables_are_read_and_bao_wins() {
        let s = Settings::from_env_with(env(&[
            ("VAULT_INIT_TIMEOUT_SEC", "3"),
            ("VAULT_RETRY_INITIAL_MS", "100"),
            ("BAO_RETRY_INITIAL_MS", "50"),
            ("VAULT_RETRY_MAX_MS", "300"),
            ("VAULT_WATCH_INTERVAL_SEC", "1"),
        ]))
        .expect("settings");
        assert_eq!(s.init_timeout, Duration::from_secs(3));
        let ms: Vec<u128> = s.backoff().take(5).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [50, 100, 200, 300, 300]);
        assert_eq!(s.watch_interval, Duration::from_secs(1));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("VAULT_INIT_TIMEOUT_SEC", "3s"),
            ("VAULT_RETRY_MAX_MS", "0"),
            ("BAO_WATCH_INTERVAL_SEC", "-1"),
        ] {
            let err = Settings::from_env_with(env(&[(var, value)])).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
        let err = Settings::from_env_with(env(&[
            ("VAULT_RETRY_INITIAL_MS", "500"),
            ("VAULT_RETRY_MAX_MS", "100"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("VAULT_RETRY_MAX_MS"), "{err}");
    }

    /// Red team (issue 17): the names real frameworks and clouds give their keys were let
    /// through (`AWS_SECRET_ACCESS_KEY`, Django's `SECRET_KEY`, a passphrase, `DB_PASS`).
    #[test]
    fn framework_and_cloud_key_names_are_secrets_too() {
        let names = [
            "AWS_SECRET_ACCESS_KEY",
            "SECRET_KEY",
            "SECRET_KEY_BASE",
            "STRIPE_SECRET_KEY",
            "JWT_SIGNING_KEY",
            "APP_ENCRYPTION_KEY",
            "WARDEN_CA_PASSPHRASE",
            "DB_PASS",
            "SENDGRID_APIKEY",
        ];
        assert_eq!(secret_env_names(names).len(), names.len());
        // Paths to them are how secrets should come.
        assert!(secret_env_names(["AWS_SECRET_ACCESS_KEY_FILE", "SIGNING_KEY_PATH"]).is_empty());
    }

    #[test]
    fn secret_looking_names_are_found_and_file_paths_are_not() {
        let names = secret_env_names([
            "PATH",
            "VAULT_ADDR",
            "VAULT_TOKEN",
            "db_password",
            "JWT_PRIVATE_KEY",
            "APPROLE_SECRET_ID",
            "WARDEN_APPROLE_SECRET_ID_FILE",
            "VAULT_CLIENT_KEY",
            "SECRET",
            "HOME",
            "PWD",
            "TOKEN_CACHE_DIR",
        ]);
        assert_eq!(
            names,
            [
                "APPROLE_SECRET_ID",
                "JWT_PRIVATE_KEY",
                "SECRET",
                "VAULT_TOKEN",
                "db_password"
            ]
        );
    }
}
