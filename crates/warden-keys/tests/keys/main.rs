//! `warden-keys` against a real OpenBao (`bao server -dev`, one per test, killed on drop): the
//! rotation timeline with a short grace and a settable clock, check-and-set between concurrent
//! writers, the watcher through rotations, a seal and a dead server, and domain certificate
//! renewal through a real PKI mount, RS256 keys checked by an independent JWT library, and
//! declared token lifetimes outlasting a short grace. One binary, one module per concern.

mod support;

mod acme;
mod domain;
mod rotation;
mod rs256;
mod watch;
