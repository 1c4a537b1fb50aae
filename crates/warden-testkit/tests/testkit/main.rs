//! The testkit's one integration binary, against the real OpenBao and PostgreSQL it starts:
//!
//! * `harness` and `lab_env` check the fixtures themselves (ports owned, ready, cleaned up);
//! * `bao_client` drives `warden-bao`'s client against those servers. It lives here, not in
//!   `warden-bao`, because the testkit depends on `warden-bao` (the lab is built with it): a
//!   test of `warden-bao` that used the testkit would compile the client twice and make the
//!   two crates depend on each other.

mod bao_client;
mod harness;
mod lab_env;
