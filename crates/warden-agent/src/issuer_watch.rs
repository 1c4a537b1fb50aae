//! Noticing an intermediate rotation (ADR 0029): the default issuer of each PKI mount the agent
//! issues from, read every poll from the unauthenticated `<mount>/cert/ca`, and the moment its
//! key changed.
//!
//! A leaf whose issuer (AuthorityKeyIdentifier) is not the mount's default issuer is due at
//! `seen + window × u`, where `u ∈ [0, 1]` comes from the leaf's serial: every agent of a fleet
//! moves within the window (`[renewal] issuer_window`, rendered from the spec's
//! `[ca] reissue_window`), each at its own point, so a rotation is not a renewal storm, and a
//! restarted agent computes the same point for the same certificate. During the overlap both
//! issuers are trusted, so the leaf in use keeps working until then.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

use crate::board::Shared;
use crate::schedule;

/// The default issuer of one mount as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    key_id: String,
    since: OffsetDateTime,
}

/// The keys (SubjectKeyIdentifier, hex) of one mount's issuers as last read.
#[derive(Debug, Default)]
struct MountKeys {
    /// The issuer ids they were read for (sorted, joined): read again when the ids change.
    of: String,
    current: BTreeSet<String>,
    /// Keys the mount held and no longer does (an issuer retired), each with when that was
    /// seen.
    retired: BTreeMap<String, OffsetDateTime>,
}

/// Every watched mount's default issuer and issuer set.
#[derive(Debug)]
pub(crate) struct IssuerBook {
    mounts: Mutex<BTreeMap<String, Seen>>,
    /// Each mount's issuer ids, sorted and joined: an import or a retirement changes it.
    sets: Mutex<BTreeMap<String, String>>,
    /// Each mount's issuer keys, and the keys it held before that are gone.
    keys: Mutex<BTreeMap<String, MountKeys>>,
    /// Bumped whenever a default or a set changes, so certificate and CA-chain outputs look
    /// again at once instead of at their next poll.
    generation: tokio::sync::watch::Sender<u64>,
}

impl Default for IssuerBook {
    fn default() -> Self {
        Self {
            mounts: Mutex::default(),
            sets: Mutex::default(),
            keys: Mutex::default(),
            generation: tokio::sync::watch::channel(0).0,
        }
    }
}

impl IssuerBook {
    /// A receiver that changes whenever an issuer of a watched mount does.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Records `mount`'s issuer set; returns whether it changed from a known different one.
    pub(crate) fn observe_set(&self, mount: &str, ids: &[String]) -> bool {
        let mut ids = ids.to_vec();
        ids.sort();
        let joined = ids.join(",");
        let mut sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = sets.get(mount).is_some_and(|prev| *prev != joined);
        sets.insert(mount.to_owned(), joined);
        drop(sets);
        if changed {
            self.bump();
        }
        changed
    }

    /// Whether `mount`'s issuer keys must be read (again) for its issuer ids `ids` (sorted,
    /// joined): never read, or read for other ids.
    pub(crate) fn keys_stale(&self, mount: &str, ids: &str) -> bool {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.get(mount).is_none_or(|k| k.of != ids)
    }

    /// Records the keys of `mount`'s issuers (read for the issuer ids `ids`) at `now`: a key
    /// held before and gone now is retired from `now` on; one back again is not.
    pub(crate) fn observe_keys(
        &self,
        mount: &str,
        ids: &str,
        keys: BTreeSet<String>,
        now: OffsetDateTime,
    ) {
        let mut all = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = all.entry(mount.to_owned()).or_default();
        let before = entry.retired.len();
        let known = !entry.of.is_empty() || !entry.current.is_empty();
        if known {
            for gone in entry.current.difference(&keys) {
                entry.retired.entry(gone.clone()).or_insert(now);
            }
        }
        entry.retired.retain(|k, _| !keys.contains(k));
        let changed = entry.retired.len() != before;
        ids.clone_into(&mut entry.of);
        entry.current = keys;
        drop(all);
        if changed {
            self.bump();
        }
    }

    /// Records `key_id` as `mount`'s default issuer at `now`; the time only moves when the key
    /// does. Returns whether it changed from a known different key.
    pub(crate) fn observe(&self, mount: &str, key_id: &str, now: OffsetDateTime) -> bool {
        let mut m = self.mounts.lock().unwrap_or_else(PoisonError::into_inner);
        match m.get(mount) {
            Some(s) if s.key_id == key_id => false,
            prev => {
                let changed = prev.is_some();
                m.insert(
                    mount.to_owned(),
                    Seen {
                        key_id: key_id.to_owned(),
                        since: now,
                    },
                );
                drop(m);
                if changed {
                    self.bump();
                }
                changed
            }
        }
    }

    /// When a leaf of `mount` signed by `leaf_issuer` must be re-issued because the default
    /// issuer changed: `None` when it is the default's (or nothing is known); when its issuer
    /// was retired, since the retirement was seen (at once).
    pub(crate) fn due(
        &self,
        mount: &str,
        leaf_issuer: Option<&str>,
        serial: &str,
        window: Duration,
    ) -> Option<OffsetDateTime> {
        let leaf_issuer = leaf_issuer?;
        // Retired: proxies drop it from their chains, so the leaf fails handshakes until it
        // moves; it is due at once rather than at its point in the window.
        let retired = self
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(mount)
            .and_then(|k| k.retired.get(leaf_issuer).copied());
        let m = self.mounts.lock().unwrap_or_else(PoisonError::into_inner);
        // Never the default's leaves, whatever two reads a moment apart said: a new leaf would
        // be due again at once.
        if retired.is_some() && m.get(mount).is_none_or(|s| s.key_id != leaf_issuer) {
            return retired;
        }
        let seen = m.get(mount)?;
        (seen.key_id != leaf_issuer).then(|| spread(seen.since, window, serial))
    }
}

impl IssuerBook {
    /// While a certificate signed by `issuer` still has to move: `None` when `issuer` is the
    /// default of a watched mount (or no mount's default is known yet), else the end of the
    /// latest window that moves it (the newest default change plus `window`). The delivery
    /// report holds its write until then, so an agent reports an issuer move once for all its
    /// certificates instead of once per certificate (docs/agent.md#delivery-reports).
    pub(crate) fn move_pending(&self, issuer: &str, window: Duration) -> Option<OffsetDateTime> {
        let m = self.mounts.lock().unwrap_or_else(PoisonError::into_inner);
        if m.is_empty() || m.values().any(|s| s.key_id == issuer) {
            return None;
        }
        let since = m.values().map(|s| s.since).max()?;
        Some(
            since
                .checked_add(time::Duration::seconds_f64(window.as_secs_f64()))
                .unwrap_or(since),
        )
    }
}

/// `since + window × u`, `u ∈ [0, 1]` from the serial.
pub(crate) fn spread(since: OffsetDateTime, window: Duration, serial: &str) -> OffsetDateTime {
    let u = (schedule::serial_jitter(serial) + 1.0) / 2.0;
    // The window is bounded by the configuration's check; if the sum still overflows the
    // calendar, the re-issue is due at once rather than a panic.
    since
        .checked_add(time::Duration::seconds_f64(
            window.as_secs_f64() * u.clamp(0.0, 1.0),
        ))
        .unwrap_or(since)
}

/// Reads `mount`'s issuers and default issuer once and records them; the keys of its issuers
/// only when its issuer ids changed (an import or a retirement), so a quiet poll stays two
/// requests.
pub(crate) async fn look(shared: &Shared, mount: &str) {
    if let Ok(list) = shared.client.pki_read_issuers(mount).await {
        let mut ids: Vec<String> = list.into_iter().map(|i| i.id).collect();
        if shared.issuers.observe_set(mount, &ids) {
            tracing::info!(
                mount,
                issuers = ids.len(),
                "the PKI mount's issuers changed"
            );
        }
        ids.sort();
        let joined = ids.join(",");
        if shared.issuers.keys_stale(mount, &joined) {
            // A failed read is tried again at the next look (the ids still differ).
            if let Ok(issuers) = shared.client.pki_issuer_certificates(mount).await {
                // Every issuer's key, or nothing recorded: a key left out would look retired.
                // (A certificate without one cannot be named by a leaf's issuer anyway.)
                let keys: Option<Vec<Option<String>>> = issuers
                    .iter()
                    .map(|i| {
                        let first = warden_pki::parse_pem_bundle(&i.certificate)
                            .ok()?
                            .into_iter()
                            .next()?;
                        Some(first.subject_key_id)
                    })
                    .collect();
                if let Some(keys) = keys {
                    let keys = keys.into_iter().flatten().collect();
                    shared
                        .issuers
                        .observe_keys(mount, &joined, keys, shared.trusted_now());
                }
            }
        }
    }
    match shared.client.pki_ca_cert(mount).await {
        Ok(pem) if !pem.trim().is_empty() => {
            let key = warden_pki::parse_pem_bundle(&pem)
                .ok()
                .and_then(|v| v.into_iter().next())
                .and_then(|i| i.subject_key_id);
            if let Some(key) = key
                && shared.issuers.observe(mount, &key, shared.trusted_now())
            {
                tracing::info!(mount, issuer = %key, window_s = shared.renewal.issuer_window.as_secs(), "the default issuer changed: certificates from the old one will be re-issued within the window");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(mount, error = %e, "could not read the default issuer"),
    }
}

/// How often the mounts are looked at: often enough that every agent sees a change within a
/// quarter of the reissue window (`ca rotate-intermediate activate` waits that long between
/// trusting the new issuer and making it the default, so proxies' chains hold it before any
/// leaf moves to it), and never more than once a second, like `poll`: a window of a few
/// seconds in `agent.toml` (a typo, a test value) must not turn every agent of a fleet into a
/// loop of requests against OpenBao.
fn watch_period(poll: Duration, window: Duration) -> Duration {
    poll.min(window / 4).max(Duration::from_secs(1))
}

/// Runs until the agent stops: looks at every mount each poll.
pub(crate) async fn run(shared: Arc<Shared>, mounts: Vec<String>) {
    if mounts.is_empty() {
        return;
    }
    let mut shutdown = shared.shutdown_signal();
    loop {
        if shared.stopping() {
            return;
        }
        // A look waits on OpenBao; a frozen server must not hold the agent's stop (the exec
        // supervisor waits for every task before it exits with the command's code).
        let looks = async {
            for m in &mounts {
                look(&shared, m).await;
            }
        };
        tokio::select! {
            () = looks => {}
            _ = shutdown.changed() => return,
        }
        if shared.stopping() {
            return;
        }
        let period = watch_period(shared.renewal.poll, shared.renewal.issuer_window);
        let wait = schedule::poll_delay(period, schedule::random_unit());
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if shared.stopping() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_issuer_makes_old_leaves_due_within_the_window_spread_by_serial() {
        let book = IssuerBook::default();
        let t0 = time::macros::datetime!(2030-01-01 00:00 UTC);
        assert!(!book.observe("pki", "aa", t0));
        assert_eq!(
            book.due("pki", Some("aa"), "01", Duration::from_secs(60)),
            None
        );
        // Same key again: no change, the time stays.
        assert!(!book.observe("pki", "aa", t0 + time::Duration::minutes(5)));
        let t1 = t0 + time::Duration::hours(1);
        assert!(book.observe("pki", "bb", t1));
        let window = Duration::from_secs(600);
        let mut dues = Vec::new();
        for serial in ["01", "02", "03", "04", "05", "06", "07", "08"] {
            let d = book.due("pki", Some("aa"), serial, window).unwrap();
            assert!(d >= t1 && d <= t1 + time::Duration::seconds(600), "{d}");
            // Stable for the same certificate.
            assert_eq!(book.due("pki", Some("aa"), serial, window), Some(d));
            dues.push(d);
        }
        dues.sort();
        dues.dedup();
        assert!(dues.len() >= 6, "spread, not one instant: {dues:?}");
        assert_eq!(book.due("pki", Some("bb"), "01", window), None);
        assert_eq!(book.due("other", Some("aa"), "01", window), None);
        assert_eq!(book.due("pki", None, "01", window), None);
    }

    #[test]
    fn a_move_is_pending_until_the_window_of_the_newest_change_ends() {
        let book = IssuerBook::default();
        let window = Duration::from_secs(600);
        // Nothing seen yet: nothing to wait for.
        assert_eq!(book.move_pending("aa", window), None);
        let t0 = time::macros::datetime!(2030-01-01 00:00 UTC);
        book.observe("pki", "aa", t0);
        assert_eq!(book.move_pending("aa", window), None);
        let t1 = t0 + time::Duration::hours(1);
        book.observe("pki", "bb", t1);
        assert_eq!(
            book.move_pending("aa", window),
            Some(t1 + time::Duration::seconds(600))
        );
        assert_eq!(book.move_pending("bb", window), None);
        // The default of another watched mount is not pending either.
        book.observe("other", "cc", t1);
        assert_eq!(book.move_pending("cc", window), None);
    }

    /// An issuer retired early (`rotate-intermediate retire --force` before the window ended):
    /// proxies drop it from their chains at their next look, so a leaf it signed fails every
    /// handshake until it moves. It is due at once, not at its point in the window; a key
    /// that was never seen in the mount (a new default the watch has not read yet) is not.
    #[test]
    fn a_leaf_of_a_retired_issuer_is_due_at_once() {
        let book = IssuerBook::default();
        let window = Duration::from_secs(3600);
        let t0 = time::macros::datetime!(2030-01-01 00:00 UTC);
        book.observe_keys("pki", "a,b", ["aa".into(), "bb".into()].into(), t0);
        book.observe("pki", "aa", t0);
        let t1 = t0 + time::Duration::minutes(1);
        book.observe("pki", "bb", t1);
        let spread: Vec<_> = ["01", "02", "03"]
            .iter()
            .map(|s| book.due("pki", Some("aa"), s, window).unwrap())
            .collect();
        assert!(spread.iter().any(|d| *d > t1 + time::Duration::minutes(5)));
        let rx = book.subscribe();
        let t2 = t1 + time::Duration::minutes(1);
        assert!(book.keys_stale("pki", "b"));
        book.observe_keys("pki", "b", ["bb".into()].into(), t2);
        assert!(!book.keys_stale("pki", "b"));
        assert!(rx.has_changed().unwrap(), "the outputs look again");
        for s in ["01", "02", "03"] {
            assert_eq!(book.due("pki", Some("aa"), s, window), Some(t2), "{s}");
        }
        // A key the mount never held as far as the watch saw: the window as before, never an
        // immediate re-issue (a leaf of a new default read before the watch saw it).
        book.observe("pki", "cc", t2);
        assert!(
            book.due("pki", Some("dd"), "01", window)
                .is_some_and(|d| d >= t2)
        );
        assert_eq!(book.due("pki", Some("cc"), "01", window), None);
        // Imported again: no longer retired.
        book.observe_keys("pki", "a,b", ["aa".into(), "bb".into()].into(), t2);
        assert!(
            ["01", "02", "03"]
                .iter()
                .any(|s| book.due("pki", Some("aa"), s, window) != Some(t2))
        );
    }

    struct NoDatabases;
    impl crate::board::DatabaseStatuses for NoDatabases {
        fn statuses(&self, _: OffsetDateTime) -> Vec<crate::board::DatabaseStatus> {
            Vec::new()
        }
    }

    /// The same against real OpenBao: the watch reads the mount's issuer keys, and a leaf of
    /// an intermediate deleted before its window ended is due at once; a leaf of the old
    /// default that is still in the mount keeps its point in the window.
    #[tokio::test]
    async fn an_issuer_retired_early_on_a_real_mount_makes_its_leaves_due_at_once() {
        use serde_json::json;
        use warden_bao::Idempotent;
        let dev = warden_testkit::BaoDev::start().await;
        let c = dev.root_client();
        let issuers = warden_testkit::pki::intermediates(&c, 2).await;
        let (old, new) = (&issuers[0], &issuers[1]);
        c.write(
            "pki_int/roles/r",
            &json!({"allow_any_name": true}),
            Idempotent::Yes,
        )
        .await
        .expect("role");
        let leaf = c
            .write(
                "pki_int/issue/r",
                &json!({"common_name": "a.test"}),
                Idempotent::No,
            )
            .await
            .expect("issue")
            .and_then(|s| s.data)
            .and_then(|d| d["certificate"].as_str().map(str::to_owned))
            .expect("leaf");
        let leaf = warden_pki::parse_pem_bundle(&leaf).expect("parse")[0].clone();
        let aki = leaf.authority_key_id.clone().expect("an issuer key id");
        let shared = Shared::new(
            c.clone(),
            crate::config::RenewalConfig::default(),
            Arc::new(crate::trust::TrustFile::new(None, String::new())),
            Arc::new(warden_pki::SystemClock),
            "agent".into(),
            Vec::new(),
            Arc::new(NoDatabases),
        );
        let window = Duration::from_secs(3600);
        let due = || {
            shared
                .issuers
                .due("pki_int", Some(&aki), &leaf.serial, window)
        };
        look(&shared, "pki_int").await;
        assert_eq!(due(), None, "the default's leaf");
        // Activate: a point in the window (the serial decides where).
        c.pki_set_default_issuer("pki_int", new).await.expect("new");
        let activated = OffsetDateTime::now_utc();
        look(&shared, "pki_int").await;
        let planned = due().expect("due in the window");
        assert!(planned >= activated - time::Duration::seconds(5));
        // Retired early: at once.
        c.pki_delete_issuer("pki_int", old).await.expect("retire");
        look(&shared, "pki_int").await;
        let now = OffsetDateTime::now_utc();
        let at_once = due().expect("still due");
        assert!(at_once <= now, "due at {at_once}, now {now}");
        assert!(at_once <= planned);
    }

    #[test]
    fn the_mounts_are_looked_at_within_a_quarter_window_but_at_most_once_a_second() {
        let s = Duration::from_secs;
        assert_eq!(watch_period(s(300), s(3600)), s(300));
        assert_eq!(watch_period(s(300), s(40)), s(10));
        assert_eq!(watch_period(s(1), s(3600)), s(1));
        assert_eq!(watch_period(s(300), s(1)), s(1), "a one-second window");
        assert_eq!(watch_period(s(5), s(2)), s(1));
    }

    #[test]
    fn a_changed_issuer_set_wakes_subscribers() {
        let book = IssuerBook::default();
        let rx = book.subscribe();
        assert!(!book.observe_set("pki", &["b".into(), "a".into()]));
        assert!(!book.observe_set("pki", &["a".into(), "b".into()]));
        assert!(!rx.has_changed().unwrap());
        assert!(book.observe_set("pki", &["a".into(), "b".into(), "c".into()]));
        assert!(rx.has_changed().unwrap());
    }
}
