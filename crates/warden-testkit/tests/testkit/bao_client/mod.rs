//! `warden-bao`'s client against a real OpenBao (`bao server -dev`, started per test by
//! [`warden_testkit::BaoDev`] on a free 127.0.0.1 port and killed on drop). One module per
//! concern.

mod support;

mod auth;
mod failover;
mod kv;
mod lifecycle;
mod mounts_pki;
mod retries;
mod tls;
mod wrapping;
