//! Root tokens from custody: the ceremony's bootstrap root token (opened in memory by one
//! custodian), and a fresh one generated from a quorum of shares for break-glass
//! (`sys/generate-root` with an OTP, decoded in memory). What is done with the token (an
//! orphan, time-boxed token, then revoking this one) is `warden_registry::break_glass`.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use warden_bao::Client;

use crate::envelope;
use crate::error::Error;
use crate::identity::IdentityFile;
use crate::ledger::{Ledger, StateDir, now_rfc3339};
use crate::unseal::open_quorum;

/// A root token generated from shares, and whose shares made it. Revoke it as soon as it has
/// served; `Debug` does not print it.
pub struct GeneratedRoot {
    /// The token (zeroized on drop).
    pub token: SecretString,
    /// The custodians whose shares were used, in the order given.
    pub custodians: Vec<String>,
    /// Why the ledger could not record them as verified, if it could not (the token is good
    /// either way; revoke it as planned and tell the operator).
    pub ledger_error: Option<Box<Error>>,
}

impl std::fmt::Debug for GeneratedRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedRoot")
            .field("token", &"...")
            .field("custodians", &self.custodians)
            .field("ledger_error", &self.ledger_error)
            .finish()
    }
}

/// Opens the bootstrap root token the ceremony sealed to the custodians (`file`), in memory.
pub fn open_bootstrap_token(
    file: &Path,
    env: &str,
    identity: &IdentityFile,
) -> Result<SecretString, Error> {
    envelope::open_root_token(file, env, identity)
}

/// Generates a root token on `node` from `pairs` (share file, identity): every share is opened
/// and checked against the ledger before the first request. Refuses when another generation is
/// under way (it would be someone else's). Marks the custodians verified in the ledger.
pub async fn generate(
    node: &Client,
    state: &StateDir,
    env: &str,
    pairs: &[(PathBuf, IdentityFile)],
) -> Result<GeneratedRoot, Error> {
    let mut ledger = Ledger::load(state, env)?;
    let shares = open_quorum(&ledger, pairs)?;
    let status = node
        .generate_root_status()
        .await
        .map_err(Error::bao(env, "read the root generation status"))?;
    if status.attempt.started {
        return Err(Error::InProgress {
            env: env.to_owned(),
            what: "root generation",
            nonce: status.attempt.nonce,
        });
    }
    let attempt = node
        .generate_root_start()
        .await
        .map_err(Error::bao(env, "start a root generation"))?;
    let otp = attempt.otp.clone().ok_or_else(|| {
        Error::bao(env, "start a root generation")(warden_bao::Error::Decode {
            path: "sys/generate-root/attempt".to_owned(),
            source: serde::de::Error::custom("the server returned no OTP"),
        })
    })?;
    let mut last = attempt.clone();
    for (_, share) in &shares {
        last = match node
            .generate_root_update(share.secret(), &attempt.attempt.nonce)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let _ = node.generate_root_cancel().await;
                return Err(Error::bao(env, "submit a share to the root generation")(e));
            }
        };
        if last.attempt.complete {
            break;
        }
    }
    if !last.attempt.complete {
        let _ = node.generate_root_cancel().await;
        return Err(Error::Incomplete {
            env: env.to_owned(),
            what: "root generation",
            progress: last.attempt.progress,
            required: last.attempt.required,
        });
    }
    let token = warden_bao::decode_root_token(&last.encoded_token, &otp)
        .map_err(Error::bao(env, "decode the generated root token"))?;
    let custodians: Vec<String> = shares.iter().map(|(c, _)| c.clone()).collect();
    Ok(finish(&mut ledger, state, token, custodians))
}

/// Marks the custodians verified and hands the token over. From here a root token exists on
/// the server and only the caller can revoke it, so nothing may fail any more: a ledger that
/// cannot be saved (full disk, a refused state directory) is reported beside the token, never
/// instead of it (an error here once dropped the live root token unrevoked).
fn finish(
    ledger: &mut Ledger,
    state: &StateDir,
    token: SecretString,
    custodians: Vec<String>,
) -> GeneratedRoot {
    let now = now_rfc3339();
    for c in &custodians {
        ledger.mark_verified(c, &now);
    }
    let ledger_error = ledger.save(state).err().map(Box::new);
    GeneratedRoot {
        token,
        custodians,
        ledger_error,
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    /// Red-team regression: the root token had been generated (it exists on the server) when
    /// saving the ledger failed, and the error dropped the token before anyone could revoke it.
    #[test]
    fn a_ledger_that_cannot_be_saved_does_not_lose_the_generated_root() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tmp");
        let state = StateDir::new(dir.path().join("state"));
        let mut ledger = Ledger {
            version: 1,
            environment: "prod".to_owned(),
            shares: 1,
            threshold: 1,
            generation: 1,
            created_at: now_rfc3339(),
            root_token_file: None,
            kind: crate::ShareKind::Unseal,
            entries: Vec::new(),
        };
        ledger.save(&state).expect("first save");
        // Someone opens the state directory to everyone: the save is refused now.
        std::fs::set_permissions(state.root(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let root = finish(
            &mut ledger,
            &state,
            SecretString::from("s.generated-root".to_owned()),
            vec!["alice".to_owned()],
        );
        assert_eq!(root.token.expose_secret(), "s.generated-root");
        assert!(root.ledger_error.is_some(), "the failure is reported");
    }
}
