//! Delivery reports: the agent tells posture what it actually delivered.
//!
//! OpenBao keeps no copy of a leaf certificate (`no_store`), and what it issued is not what is
//! deployed anyway. So each agent writes, to its own narrow entry in Warden's KV mount
//! (`warden/…/delivered/<identity>`, the only entry under `warden/` its policy may write: as
//! the entry's custom metadata, which posture reads for every identity in one scan, ADR 0036,
//! or as its data when it does not fit there), one small document: per certificate, identity certificate, signing key and database source, the
//! credential reference posture uses, serial, validity, a digest of the delivered files, when
//! it was delivered, how the last reload went, and the agent's own view (`fresh`, `stale`, ...).
//! Never a value: digests and metadata only. `warden_registry::posture::DeliveryReport` reads
//! exactly this shape (docs/registry.md).
//!
//! The report is rebuilt from local state every few seconds, and at once when a certificate
//! was delivered (no request), and written only when
//! it changed, so a quiet agent sends nothing; during an intermediate rotation it is written
//! once, when the agent's last certificate moved ([`hold_for_moves`]). A write that fails is retried with backoff; one
//! refused (a spec without purposes grants no such path) is retried rarely and logged once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_bao::Idempotent;

use super::board::{AgentStatus, Health, Shared};
use super::issuer_watch::IssuerBook;
use super::state::{StateDir, sha256_hex};

/// How often local state is looked at (no request unless something changed).
const LOOK_EVERY: Duration = Duration::from_secs(5);
/// After a refused write (no grant): try again this much later.
const REFUSED_RETRY: Duration = Duration::from_secs(600);
/// How long past the end of an issuer move's window a report is still held for certificates
/// that have not moved: a re-issue due at the very end takes a moment, and one that failed is
/// reported (as not fresh) anyway.
const HOLD_SLACK: time::Duration = time::Duration::seconds(30);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Item {
    credential: String,
    output: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_reload: Option<String>,
    state: &'static str,
    /// Why the last refresh failed (a purpose's refusal, an unreachable server), while the
    /// output is not fresh: posture shows it as the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Certificates: the key id of their issuer, so CA status counts each intermediate's live
    /// leaves (ADR 0029).
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
}

fn rfc(t: Option<OffsetDateTime>) -> Option<String> {
    t.and_then(|t| t.format(&Rfc3339).ok())
}

fn health(h: Health) -> &'static str {
    match h {
        Health::Pending => "pending",
        Health::Fresh => "fresh",
        Health::Stale => "stale",
        Health::Failed => "failed",
    }
}

/// The credential reference of each `signing_key` output (`<identity>/signing-key/<key>`), by
/// output name: what posture matches a reported signing key against.
pub(crate) type SigningRefs = BTreeMap<String, String>;

/// One digest over the per-file digests: changes whenever any delivered file does.
fn set_digest(files: &BTreeMap<String, String>) -> Option<String> {
    (!files.is_empty()).then(|| {
        let mut all = String::new();
        for (name, d) in files {
            all.push_str(name);
            all.push('\0');
            all.push_str(d);
            all.push('\n');
        }
        sha256_hex(all.as_bytes())
    })
}

fn reload_word(r: Option<super::state::ReloadRecord>) -> Option<String> {
    r.map(|r| if r.ok { "ok" } else { "failed" }.to_owned())
}

/// The report items for `status`, with certificate details from the state files.
fn items(
    status: &AgentStatus,
    states: &StateDir,
    signing: &SigningRefs,
    now: OffsetDateTime,
) -> Vec<Item> {
    let id = &status.identity;
    let mut out = Vec::new();
    if let (Some(serial), Some(na)) = (&status.auth.identity_serial, status.auth.identity_not_after)
    {
        out.push(Item {
            credential: format!("{id}/identity-cert"),
            output: "identity".to_owned(),
            serial: Some(serial.clone()),
            issued_at: rfc(status.auth.identity_not_before),
            expires_at: rfc(Some(na)),
            digest: None,
            delivered_at: None,
            last_reload: None,
            // The same words as the outputs: usable but failing to renew is `stale`.
            error: status.auth.identity_error.clone(),
            issuer: status.auth.identity_issuer.clone(),
            state: if na <= now {
                "failed"
            } else if status.auth.identity_error.is_some() {
                "stale"
            } else {
                "fresh"
            },
        });
    }
    for o in status.outputs.iter().filter(|o| o.kind == "certificate") {
        let st = states.load(&o.name).unwrap_or_default();
        let digest = set_digest(&st.files);
        out.push(Item {
            credential: format!("{id}/certificate"),
            output: o.name.clone(),
            serial: o.serial.clone().or(st.serial),
            issued_at: rfc(st.not_before),
            expires_at: rfc(o.not_after.or(st.not_after)),
            digest,
            delivered_at: rfc(st.delivered_at),
            last_reload: reload_word(st.last_reload),
            state: health(o.health),
            error: (o.health != Health::Fresh)
                .then(|| o.last_error.clone())
                .flatten(),
            issuer: o.issuer.clone(),
        });
    }
    // A signing key as files: the `kid` on disk and when its version was rotated in.
    for o in status.outputs.iter().filter(|o| o.kind == "signing_key") {
        let Some(credential) = signing.get(&o.name) else {
            continue;
        };
        let st = states.load(&o.name).unwrap_or_default();
        out.push(Item {
            credential: credential.clone(),
            output: o.name.clone(),
            serial: o.serial.clone().or(st.serial),
            issued_at: rfc(st.not_before),
            expires_at: None,
            digest: set_digest(&st.files),
            delivered_at: rfc(st.delivered_at),
            last_reload: reload_word(st.last_reload),
            state: health(o.health),
            error: (o.health != Health::Fresh)
                .then(|| o.last_error.clone())
                .flatten(),
            issuer: None,
        });
    }
    for d in &status.databases {
        out.push(Item {
            credential: format!("{id}/database/{}", d.name),
            output: d.name.clone(),
            serial: None,
            issued_at: rfc(d.issued_at),
            expires_at: rfc(d.expires),
            digest: None,
            delivered_at: rfc(d.issued_at),
            last_reload: None,
            state: health(d.health),
            error: None,
            issuer: None,
        });
    }
    out
}

/// Whether a changed report may wait, and until when: during an issuer move (ADR 0029) every
/// certificate is re-issued within the window, each at its own point. Writing a report at each
/// one would cost the server a write per certificate on top of its sign; held while every
/// difference from the report last sent is a certificate that moved to a current default
/// issuer and another certificate still has to move, the agent writes one report when its last
/// certificate moved (or the window ended). Anything else (a certificate renewed in place, a
/// failure, a reload that failed, a credential added or gone, a state that is not fresh) is
/// written at once.
fn hold_for_moves(
    sent: &[Item],
    current: &[Item],
    book: &IssuerBook,
    window: Duration,
) -> Option<OffsetDateTime> {
    if sent.len() != current.len() || current.iter().any(|i| i.state != "fresh") {
        return None;
    }
    let pending = |i: &Item| {
        i.issuer
            .as_deref()
            .and_then(|k| book.move_pending(k, window))
    };
    let until = current.iter().filter_map(pending).max()?;
    for now in current {
        let before = sent
            .iter()
            .find(|s| s.credential == now.credential && s.output == now.output)?;
        // A move whose reload failed leaves the service on the old certificate: a failure.
        let reload_failed = now.last_reload.as_deref() == Some("failed");
        let moved = now.issuer.is_some()
            && now.issuer != before.issuer
            && pending(now).is_none()
            && !reload_failed;
        if before != now && !moved {
            return None;
        }
    }
    Some(until + HOLD_SLACK)
}

fn report_path(shared: &Shared) -> String {
    warden_spec::naming::delivery_report(shared.identity_name()).data_path()
}

/// Writes the report as the custom metadata of the identity's entry (ADR 0036: posture reads
/// every identity's in one scan), or as its data when it does not fit there or the metadata
/// write is refused (a policy applied before ADR 0036: 403; a mount or entry that requires
/// check-and-set on metadata: 400). `via_data` holds the login generation of such a refusal:
/// later writes go straight to the data path until the agent logs in again (a new token may
/// carry the grant).
async fn write(
    shared: &Shared,
    path: &str,
    items: &[Item],
    trust_roots: Option<&[String]>,
    now: OffsetDateTime,
    via_data: &mut Option<u64>,
) -> Result<(), warden_bao::Error> {
    let mut data = serde_json::json!({
        "reported_at": rfc(Some(now)),
        "outputs": items,
        // The window this agent spreads re-issues over after an issuer change: activate
        // checks the fleet's real windows against `[ca] reissue_rate` (ADR 0035).
        "issuer_window_s": shared.renewal.issuer_window.as_secs(),
    });
    // Which roots the trust file holds: posture lists agents behind a root rollover (ADR 0030).
    if let Some(roots) = trust_roots {
        data["trust_roots"] = serde_json::json!(roots);
    }
    // And which the connection to OpenBao trusts (the file as of its last re-read that could anchor one).
    if let Some(roots) = shared.trust.connection_root_digests() {
        data["tls_roots"] = serde_json::json!(roots);
    }
    if via_data.is_some_and(|g| g != shared.token_generation()) {
        *via_data = None;
    }
    if via_data.is_none()
        && let Some(chunks) = serde_json::to_string(&data)
            .ok()
            .as_deref()
            .and_then(warden_spec::naming::report_to_metadata)
    {
        let metadata_path =
            warden_spec::naming::delivery_report(shared.identity_name()).metadata_path();
        shared.count_request();
        match shared
            .client
            .write(
                &metadata_path,
                &serde_json::json!({ "custom_metadata": chunks }),
                Idempotent::Yes,
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.is_permission_denied() || e.status() == Some(400) => {
                tracing::warn!(path = %metadata_path, error = %e, "the delivery report cannot be written as metadata (a policy applied before ADR 0036, or check-and-set required on metadata); writing it as data");
                *via_data = Some(shared.token_generation());
            }
            Err(e) => return Err(e),
        }
    }
    let body = serde_json::json!({ "data": data });
    shared.count_request();
    shared
        .client
        .write(path, &body, Idempotent::Yes)
        .await
        .map(drop)
}

/// `--once`: one report after rendering (best effort: a refusal or failure is logged).
pub(crate) async fn write_once(shared: &Shared, states: &StateDir, signing: &SigningRefs) {
    let now = shared.now();
    let current = items(
        &shared.status_snapshot(),
        states,
        signing,
        shared.trusted_now(),
    );
    if current.is_empty() {
        return;
    }
    let roots = shared.trust.root_digests();
    if let Err(e) = write(
        shared,
        &report_path(shared),
        &current,
        roots.as_deref(),
        now,
        &mut None,
    )
    .await
    {
        tracing::info!(error = %e, "delivery report not written");
    }
}

/// Runs until the agent stops: writes the report whenever it changes.
pub(crate) async fn run(shared: Arc<Shared>, states: StateDir, signing: SigningRefs) {
    let path = report_path(&shared);
    let mut sent: Option<(Vec<Item>, Option<Vec<String>>)> = None;
    let mut wait = LOOK_EVERY;
    let mut failures: u32 = 0;
    let mut via_data: Option<u64> = None;
    let mut shutdown = shared.shutdown_signal();
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            // A backoff after a failed write is not cut short by a delivery.
            () = shared.report_nudged(), if failures == 0 => {}
            _ = shutdown.changed() => return,
        }
        if shared.stopping() {
            return;
        }
        wait = LOOK_EVERY;
        if shared.token_generation() == 0 {
            continue; // not logged in yet
        }
        let now = shared.now();
        let current = items(
            &shared.status_snapshot(),
            &states,
            &signing,
            shared.trusted_now(),
        );
        let roots = shared.trust.root_digests();
        if current.is_empty()
            || sent
                .as_ref()
                .is_some_and(|(i, r)| *i == current && *r == roots)
        {
            continue;
        }
        if let Some((sent_items, sent_roots)) = &sent
            && *sent_roots == roots
            && let Some(until) = hold_for_moves(
                sent_items,
                &current,
                &shared.issuers,
                shared.renewal.issuer_window,
            )
            && shared.trusted_now() < until
        {
            tracing::debug!(until = %until, "delivery report held: other certificates still move to the new issuer");
            continue;
        }
        match write(
            &shared,
            &path,
            &current,
            roots.as_deref(),
            now,
            &mut via_data,
        )
        .await
        {
            Ok(_) => {
                tracing::debug!(path = %path, "delivery report written");
                sent = Some((current, roots));
                failures = 0;
            }
            Err(e) if e.is_permission_denied() => {
                if failures == 0 {
                    tracing::info!(path = %path, "this identity may not write a delivery report (a spec with purposes grants it); posture will show its certificates as unknown");
                }
                failures = failures.saturating_add(1);
                wait = REFUSED_RETRY;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let backoff = LOOK_EVERY.saturating_mul(1 << failures.min(6));
                // Posture keeps showing the last report it has: say so once it lasts.
                if failures == 3 {
                    tracing::warn!(error = %e, retry_in_s = backoff.as_secs(), "the delivery report could not be written three times in a row; posture shows the last one written until it is");
                } else {
                    tracing::debug!(error = %e, retry_in_s = backoff.as_secs(), "delivery report not written");
                }
                wait = backoff;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(output: &str, serial: &str, issuer: &str) -> Item {
        Item {
            credential: format!("app/{output}"),
            output: output.to_owned(),
            serial: Some(serial.to_owned()),
            issued_at: None,
            expires_at: None,
            digest: Some(format!("d-{serial}")),
            delivered_at: None,
            last_reload: None,
            state: "fresh",
            error: None,
            issuer: Some(issuer.to_owned()),
        }
    }

    #[test]
    fn an_issuer_move_is_reported_once_when_the_last_certificate_moved() {
        let book = IssuerBook::default();
        let window = Duration::from_secs(300);
        let t0 = time::macros::datetime!(2030-01-01 00:00 UTC);
        book.observe("pki", "old", t0);
        let sent = vec![cert("identity", "1", "old"), cert("tls", "2", "old")];
        // The default changes: the leaf moved, the identity has not yet.
        let t1 = t0 + time::Duration::hours(1);
        book.observe("pki", "new", t1);
        let one_moved = vec![cert("identity", "1", "old"), cert("tls", "3", "new")];
        let until = t1 + time::Duration::seconds(300) + HOLD_SLACK;
        assert_eq!(
            hold_for_moves(&sent, &one_moved, &book, window),
            Some(until)
        );
        // Both moved: written.
        let both = vec![cert("identity", "4", "new"), cert("tls", "3", "new")];
        assert_eq!(hold_for_moves(&sent, &both, &book, window), None);
        // A failure while moving is written at once.
        let mut failing = one_moved.clone();
        failing[1].state = "stale";
        assert_eq!(hold_for_moves(&sent, &failing, &book, window), None);
        // A renewal in place (same issuer) is not a move: written at once.
        let renewed = vec![cert("identity", "5", "old"), cert("tls", "2", "old")];
        assert_eq!(hold_for_moves(&sent, &renewed, &book, window), None);
        // A credential added or gone: written at once.
        assert_eq!(hold_for_moves(&sent, &one_moved[..1], &book, window), None);
        let mut other = one_moved;
        other[1].output = "other".into();
        assert_eq!(hold_for_moves(&sent, &other, &book, window), None);
        // No move pending (nothing seen changing): nothing is held.
        let quiet = IssuerBook::default();
        quiet.observe("pki", "new", t1);
        assert_eq!(hold_for_moves(&sent, &both, &quiet, window), None);
    }

    /// A certificate moved to the new issuer but its service's reload failed: the service
    /// still presents the old one. That is a failure, written at once, not held to the end
    /// of the window like a clean move.
    #[test]
    fn a_move_whose_reload_failed_is_reported_at_once() {
        let book = IssuerBook::default();
        let window = Duration::from_secs(300);
        let t0 = time::macros::datetime!(2030-01-01 00:00 UTC);
        book.observe("pki", "old", t0);
        let sent = vec![cert("identity", "1", "old"), cert("tls", "2", "old")];
        book.observe("pki", "new", t0 + time::Duration::hours(1));
        let mut moved = vec![cert("identity", "1", "old"), cert("tls", "3", "new")];
        moved[1].last_reload = Some("ok".into());
        assert!(hold_for_moves(&sent, &moved, &book, window).is_some());
        moved[1].last_reload = Some("failed".into());
        assert_eq!(hold_for_moves(&sent, &moved, &book, window), None);
    }

    #[test]
    fn health_names_are_the_posture_vocabulary() {
        assert_eq!(health(Health::Fresh), "fresh");
        assert_eq!(health(Health::Stale), "stale");
        assert_eq!(health(Health::Failed), "failed");
        assert_eq!(health(Health::Pending), "pending");
    }
}
