//! Logging in on first use with the connection's own certificate.
//!
//! An operator's client is built where no network call can be made (synchronous
//! configuration code in the CLI and the test harness), yet after bootstrap the root token is
//! gone and the operator's token comes from a cert-auth login. So a client can be told *how* to
//! log in ([`Client::login_with_cert_on_demand`]) and does it itself, once, right before the
//! first request that needs a token. Logins are serialised, so a burst of concurrent requests
//! (apply reads with several in flight) mints one token, not one each.

use crate::client::Client;
use crate::error::Result;

/// Where to log in: the cert-auth mount and the role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertLogin {
    pub(crate) mount: String,
    /// `None`: OpenBao tries every role of the mount whose constraints the certificate meets.
    pub(crate) role: Option<String>,
}

impl Client {
    /// Makes this client (and its clones) log in at `auth/<mount>/login` as `role` (or, with
    /// `None`, whichever role of the mount accepts the certificate) with the TLS client
    /// certificate it presents, the first time it needs a token and has none. An explicit token
    /// ([`Client::set_token`]) always wins; [`Client::clear_token`] makes the next request log
    /// in again.
    pub fn login_with_cert_on_demand<'a>(&self, mount: &str, role: impl Into<Option<&'a str>>) {
        *self
            .inner()
            .cert_login
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(CertLogin {
            mount: mount.trim_matches('/').to_owned(),
            role: role.into().map(str::to_owned),
        });
    }

    /// Whether this client logs in with its certificate when it needs a token.
    pub fn logs_in_on_demand(&self) -> bool {
        self.inner()
            .cert_login
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// Whether a request that needs a token can carry one: a token is set, or the client logs
    /// in with its certificate on first use.
    pub fn can_authenticate(&self) -> bool {
        self.has_token() || self.logs_in_on_demand()
    }

    /// The certificate login this client makes when it needs a token: its mount and role.
    pub fn cert_login(&self) -> Option<(String, Option<String>)> {
        self.inner()
            .cert_login
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|l| (l.mount.clone(), l.role.clone()))
    }

    /// Logs in now if the client has no token and logs in with its certificate, so a refused
    /// login is known here rather than at the first request that needs it.
    pub async fn log_in_now(&self) -> Result<()> {
        self.ensure_token().await
    }

    /// Logs in if a token is needed, none is set and a certificate login is configured.
    pub(crate) async fn ensure_token(&self) -> Result<()> {
        if self.has_token() {
            return Ok(());
        }
        let Some(login) = self
            .inner()
            .cert_login
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        else {
            return Ok(());
        };
        let _one_at_a_time = self.inner().login_lock.lock().await;
        if self.has_token() {
            return Ok(()); // another request logged in while this one waited
        }
        // Boxed: the login is itself a request sent through `send`, which calls this.
        let auth = Box::pin(self.login_cert(&login.mount, login.role.as_deref())).await?;
        self.set_token(auth.client_token);
        Ok(())
    }
}
