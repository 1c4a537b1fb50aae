//! The auth task: logs in, keeps the token alive, renews the identity, until shutdown.

use std::sync::Arc;
use std::time::Duration;

use super::{Authenticator, TokenGrant};
use crate::board::Shared;
use crate::schedule::{self, Backoff, to_std};

/// The auth task: logs in, keeps the token alive, renews the identity, until shutdown.
pub(crate) async fn run(auth: Arc<Authenticator>, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown_signal();
    // An intermediate rotation moves the identity's due point (ADR 0029): recomputed at once
    // when the issuer watch sees a change, not at the next recheck — otherwise every agent that
    // started together renews at the same recheck, a burst the window was meant to spread.
    let mut issuers = shared.issuers.subscribe();
    let mut login_backoff = Backoff::default();
    'login: loop {
        if shared.stopping() {
            return;
        }
        let grant = match auth.login(&shared).await {
            Ok(g) => g,
            Err(e) => {
                let wait = login_backoff.fail(schedule::random_unit());
                tracing::warn!(error = %e, retry_in_s = wait.as_secs_f32(), "login failed");
                shared.auth_error(&e);
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue 'login,
                    _ = shutdown.changed() => return,
                }
            }
        };
        login_backoff.reset();
        let original_ttl = grant.ttl;
        let mut expires = tokio::time::Instant::now() + grant.ttl;
        shared.logged_in(&grant, auth.policies_ok(&grant.policies));
        let mut renew_at = renew_point(&grant);
        let mut renew_backoff = Backoff::default();
        let mut identity_at = identity_due(&auth, &shared);
        let mut identity_backoff = Backoff::default();
        let mut identity_failing = false;
        loop {
            // Looked at again each poll: an issuer change (ADR 0029) can bring renewal forward.
            let recheck = tokio::time::Instant::now()
                + shared.renewal.poll.min(shared.renewal.issuer_window / 4);
            let wake = [renew_at, identity_at, Some(recheck)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let hinted = tokio::select! {
                () = tokio::time::sleep_until(wake) => false,
                () = shared.relogin_hint() => true,
                Ok(()) = issuers.changed() => false,
                _ = shutdown.changed() => return,
            };
            if hinted {
                // An output was refused: is it the token?
                match auth.lookup(&shared).await {
                    Err(e) if e.token_refused() => {
                        tracing::info!("the token is no longer accepted; logging in again");
                        continue 'login;
                    }
                    _ => continue,
                }
            }
            // Recomputed before `now` is taken: a certificate due at once is due *now*.
            if !identity_failing {
                identity_at = identity_due(&auth, &shared);
            }
            let now = tokio::time::Instant::now();
            if identity_at.is_some_and(|t| t <= now) {
                match auth.renew_identity(&shared, shared.now()).await {
                    Ok(cert) => {
                        identity_backoff.reset();
                        identity_failing = false;
                        shared.identity_renewed(&cert);
                        identity_at = identity_due(&auth, &shared);
                    }
                    Err(e) => {
                        let wait = identity_backoff.fail(schedule::random_unit());
                        tracing::warn!(error = %e, retry_in_s = wait.as_secs_f32(), "identity renewal failed");
                        shared.identity_error(&e);
                        identity_failing = true;
                        identity_at = Some(now + wait);
                    }
                }
            }
            if renew_at.is_some_and(|t| t <= now) {
                if !grant.renewable {
                    continue 'login;
                }
                match auth.renew(&shared).await {
                    Ok(g) if g.ttl * 3 >= original_ttl && !g.ttl.is_zero() => {
                        renew_backoff.reset();
                        expires = tokio::time::Instant::now() + g.ttl;
                        renew_at = renew_point(&g);
                        shared.token_renewed(&g);
                    }
                    Ok(_) => {
                        tracing::info!("the token is near its maximum lifetime; logging in again");
                        continue 'login;
                    }
                    Err(e) if e.token_refused() => {
                        tracing::info!(error = %e, "the token was refused; logging in again");
                        continue 'login;
                    }
                    Err(e) => {
                        shared.auth_error(&e);
                        if tokio::time::Instant::now() >= expires {
                            continue 'login;
                        }
                        let wait = renew_backoff.fail(schedule::random_unit());
                        renew_at = Some((tokio::time::Instant::now() + wait).min(expires));
                    }
                }
            }
        }
    }
}

/// 2/3 of the token's TTL from now; `None` for a token that does not expire.
fn renew_point(grant: &TokenGrant) -> Option<tokio::time::Instant> {
    (!grant.ttl.is_zero()).then(|| tokio::time::Instant::now() + grant.ttl * 2 / 3)
}

/// When the identity is due for renewal (`None` when renewal is not configured).
fn identity_due(auth: &Authenticator, shared: &Shared) -> Option<tokio::time::Instant> {
    let cert = auth.identity_cert()?;
    shared.identity_known(&cert);
    let now = shared.now();
    let mut due = schedule::cert_due(
        &shared.renewal,
        cert.not_before,
        cert.not_after,
        schedule::serial_jitter(&cert.serial),
        now,
    );
    if let Some(mount) = auth.identity_mount()
        && let Some(moved) = shared.issuers.due(
            mount,
            cert.issuer.as_deref(),
            &cert.serial,
            shared.renewal.issuer_window,
        )
    {
        due = due.min(moved.max(now));
    }
    Some(tokio::time::Instant::now() + to_std(due - now))
}
