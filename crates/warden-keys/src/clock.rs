//! Time, injected: the workspace's one [`Clock`] (from `warden-pki`), re-exported where the
//! key providers and domain stores take it.

pub use warden_pki::{Clock, ManualClock, SystemClock};
