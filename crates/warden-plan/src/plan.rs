//! Reading live state and turning desired vs live into a list of changes, each with its reason.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde_json::{Value, json};
use warden_bao::Client;
use warden_spec::naming::META_MOUNT;

use crate::diff::{FieldDiff, diff};
use crate::error::Error;
use crate::object::{Desired, Kind, parse_id};
use crate::owned;

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The object does not exist.
    Create,
    /// The object exists and differs.
    Update,
    /// The object is owned by Warden and left the spec (`--prune`).
    Delete,
    /// The object exists in a form Warden will not replace (for example a mount of another
    /// type); apply refuses while there are conflicts.
    Conflict,
}

/// One planned change.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// What it does.
    pub action: Action,
    /// The object kind.
    pub kind: Kind,
    /// The object's API path.
    pub path: String,
    /// The identity it belongs to.
    pub identity: Option<String>,
    /// Why: "not present", "2 fields differ", "owned by Warden, no longer in the spec".
    pub reason: String,
    /// The differing fields of an update.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldDiff>,
    /// The body to write, as compact JSON: a fresh apply of 10,000 identities holds 40,000 of
    /// these until it writes them, and a JSON tree costs about 2.5× its text (ADR 0027).
    #[serde(skip)]
    pub(crate) body: Box<str>,
    #[serde(skip)]
    pub(crate) id: String,
    #[serde(skip)]
    pub(crate) password_file: Option<std::path::PathBuf>,
}

impl Change {
    /// Apply order ([`Kind::phase`], one later), except that a change to the operator policy
    /// itself goes first, in a phase of its own: the grants it adds are what the rest of the
    /// apply may need (an environment bootstrapped before a grant existed would otherwise be
    /// refused the very write that adds it, e.g. the planners' mount, ADR 0038).
    pub(crate) fn phase(&self) -> u8 {
        if self.action != Action::Delete && crate::operator::is_policy_path(&self.path) {
            0
        } else {
            self.kind.phase() + 1
        }
    }

    /// Whether the change runs before the ownership record can be written: mounts, auth
    /// backends (one of them holds the record) and the operator policy.
    pub(crate) fn before_record(&self) -> bool {
        self.action != Action::Delete && self.phase() <= 1
    }
}

/// The plan for one environment.
#[derive(Debug, Clone, Serialize)]
pub struct EnvPlan {
    /// Environment name.
    pub env: String,
    /// Changes in apply order.
    pub changes: Vec<Change>,
    /// Desired objects already as the spec wants them.
    pub unchanged: usize,
    /// Objects Warden created that left the spec, kept because `--prune` was not given.
    pub orphans: Vec<String>,
    /// Credentials no purpose governs (see [`crate::unpurposed`]); apply refuses while any
    /// remain. Filled in by the caller, which has the spec.
    pub unpurposed: Vec<String>,
    /// Which login read the environment (ADR 0038): `planner`, or `operator` with the reason
    /// the planner's was not used. Filled in by the caller, which logged in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[serde(skip)]
    pub(crate) owned: owned::Owned,
}

impl EnvPlan {
    /// Number of changes with `action`.
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }
}

/// Reads what `desired` would touch (and the ownership record) and computes the changes.
/// Reads only: nothing is written.
///
/// `desired` may be lazy ([`crate::desired_objects`]): objects are taken a bounded number at a
/// time, each compared as soon as its live form is read, and both dropped unless they differ,
/// so memory holds the changes, neither the whole desired state nor a copy of the environment
/// (ADR 0014, ADR 0027).
pub async fn plan_env(
    client: &Client,
    env: &str,
    desired: impl IntoIterator<Item = Desired>,
    prune: bool,
    concurrency: usize,
) -> Result<EnvPlan, Error> {
    let live = Live::read(client, env).await?;
    let mut desired_ids: BTreeSet<String> = BTreeSet::new();
    // Policies are compared against one LIST of every policy's text, which takes the server
    // seconds at 10,000 policies. A policy waiting for it in a slot of the bounded run would
    // hold that slot: with one policy per identity, every slot fills with policies within a few
    // identities and the role reads stop until the LIST answers (1.6 s of a 9 s no-op at
    // 10,000 identities). So policies are set aside while the other objects are read, the
    // LIST runs beside them, and the policies that came while it ran are compared once it has
    // answered (those after it pass straight through). At most [`DEFERRED_POLICIES`] are held:
    // on a fresh environment nothing is read, so the run may take every object before the
    // LIST is even sent, and 10,000 bodies held twice were 20 MB. Items keep their input
    // position, so the outcome (the first error, the order of equal changes) does not depend
    // on which were set aside.
    let deferred: Mutex<Vec<(usize, Desired)>> = Mutex::default();
    let desired = desired
        .into_iter()
        .inspect(|d| {
            desired_ids.insert(d.id().0);
        })
        .enumerate()
        .filter_map(|(i, d)| {
            if d.kind != Kind::Policy || live.policies.initialized() {
                return Some((i, d));
            }
            let mut held = deferred.lock().unwrap_or_else(PoisonError::into_inner);
            if held.len() >= DEFERRED_POLICIES {
                // Bounded: past this they wait in the run's slots, as before.
                return Some((i, d));
            }
            held.push((i, d));
            None
        });
    let compare_one = |(i, d): (usize, Desired)| {
        let live = &live;
        async move { (i, compare_at(live, client, env, d).await) }
    };
    let mut compared = if concurrency > 1 {
        // The LIST is one request beside the run: the run gets one slot less, so no more
        // than `concurrency` are in flight.
        let (_, compared) = tokio::join!(
            live.policy_texts(client),
            warden_bao::bounded::run(desired, concurrency - 1, compare_one)
        );
        compared
    } else {
        // One request at a time: the LIST first, then nothing waits for it.
        live.policy_texts(client).await;
        warden_bao::bounded::run(desired, 1, compare_one).await
    };
    let deferred = deferred
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    // With the texts in hand these read nothing (or one by one where the LIST was refused).
    compared.extend(warden_bao::bounded::run(deferred, concurrency, compare_one).await);
    compared.sort_unstable_by_key(|(i, _)| *i);
    let mut changes = Vec::new();
    let mut unchanged = 0;
    for (_, c) in compared {
        match c? {
            None => unchanged += 1,
            Some(change) => changes.push(change),
        }
    }
    let gone = |path: &str| live.listed_absent(path);
    let orphans = orphans(&live.owned.ids, &desired_ids, prune, &gone, &mut changes);
    changes.sort_by_key(|c| match c.action {
        Action::Delete => (20 - c.phase(), c.path.clone()),
        _ => (c.phase(), c.path.clone()),
    });
    Ok(EnvPlan {
        env: env.to_owned(),
        changes,
        unchanged,
        orphans,
        unpurposed: Vec::new(),
        login: None,
        owned: live.owned,
    })
}

/// Reads `d`'s live form and compares: its change, or `None` when it is as the spec wants it.
async fn compare_at(
    live: &Live,
    client: &Client,
    env: &str,
    d: Desired,
) -> Result<Option<Change>, Error> {
    let current = live.current(client, env, &d).await?;
    let mut d = d;
    let version = registry_version(&d, current.as_ref());
    let outcome = match live_revocation(&mut d, current.as_ref()) {
        Some(conflict) => Some(conflict),
        None => compare(&d, current),
    };
    // A registry entry is rewritten only if it is still the version planned against: a
    // `revoke purpose` between plan and apply makes the write fail instead of being undone by
    // it (ADR 0032).
    if let (Some(v), Some((Action::Update, ..))) = (version, &outcome) {
        d.body["options"] = json!({ "cas": v });
    }
    Ok(outcome.map(|(action, reason, fields)| Change {
        action,
        kind: d.kind,
        id: d.id().0,
        body: d.body.to_string().into_boxed_str(),
        path: d.path,
        identity: d.identity,
        reason,
        fields,
        password_file: d.password_file,
    }))
}

/// Policies set aside while the LIST of every policy's text is out: at 10,000 identities
/// that LIST takes the server over a second, during which about 1,700 identities' roles are
/// read (a few KB each held).
const DEFERRED_POLICIES: usize = 4096;

/// The live KV version of a registry entry `d`, which its update is written against.
fn registry_version(d: &Desired, current: Option<&Value>) -> Option<u64> {
    if d.kind != Kind::Registry {
        return None;
    }
    current?.pointer("/metadata/version")?.as_u64()
}

/// What an environment holds beyond the objects read one by one.
struct Live {
    /// Secrets engines by path, in the shape they are written in.
    mounts: BTreeMap<String, Value>,
    /// Auth backends by path, in the shape they are written in.
    auths: BTreeMap<String, Value>,
    /// The objects Warden created (its ownership record).
    owned: owned::Owned,
    /// Names under each folder listed so far (`None`: the LIST was refused). A fresh
    /// environment's 40,000 objects are then one LIST per folder instead of 40,000 reads of
    /// objects that do not exist (issue 16).
    listings: Mutex<HashMap<String, Arc<Listing>>>,
    /// Every policy's text from one request (`None`: the server or the token has no such
    /// request): a re-plan at 10,000 identities reads its 10,000 policies at once.
    policies: tokio::sync::OnceCell<Option<HashMap<String, String>>>,
}

/// One folder's names, listed once by whichever object asks first.
type Listing = tokio::sync::OnceCell<Option<HashSet<String>>>;

impl Live {
    async fn read(client: &Client, env: &str) -> Result<Self, Error> {
        let bao = |what: &str| {
            let env = env.to_owned();
            let what = what.to_owned();
            move |source| Error::Bao { env, what, source }
        };
        let mounts = mount_table(
            client
                .list_mounts()
                .await
                .map_err(bao("list secrets engines"))?,
        );
        let auths = mount_table(
            client
                .list_auth()
                .await
                .map_err(bao("list auth backends"))?,
        );
        let owned = if mounts.contains_key(META_MOUNT) {
            owned::read(client, env).await?
        } else {
            owned::Owned::default()
        };
        Ok(Self {
            mounts,
            auths,
            owned,
            listings: Mutex::default(),
            policies: tokio::sync::OnceCell::new(),
        })
    }

    /// Every policy's text by (lower-case) name, read once for the whole plan.
    async fn policy_texts(&self, client: &Client) -> Option<&HashMap<String, String>> {
        self.policies
            .get_or_init(|| async {
                // Refused, failed or unknown to the server: each policy is read instead.
                let texts = client.list_policies_detailed().await.ok().flatten()?;
                Some(
                    texts
                        .into_iter()
                        .map(|(name, text)| (name.to_ascii_lowercase(), text))
                        .collect(),
                )
            })
            .await
            .as_ref()
    }

    /// Whether a LIST taken during this plan shows `path` absent (`false` where its folder was
    /// not listed, or the LIST was refused).
    fn listed_absent(&self, path: &str) -> bool {
        let Some((folder, name)) = path.rsplit_once('/') else {
            return false;
        };
        let listings = self.listings.lock().unwrap_or_else(PoisonError::into_inner);
        listings
            .get(folder)
            .and_then(|cell| cell.get())
            .and_then(Option::as_ref)
            .is_some_and(|names| !names.contains(&name.to_ascii_lowercase()))
    }

    /// Whether some backend is mounted where `path` lives (`sys/` always is): an auth backend
    /// for `auth/<mount>/…`, a secrets engine for anything else.
    fn is_mounted(&self, path: &str) -> bool {
        let (table, rest) = match path.strip_prefix("auth/") {
            Some(rest) => (&self.auths, rest),
            None if path.starts_with("sys/") => return true,
            None => (&self.mounts, path),
        };
        table.keys().any(|mount| {
            rest.strip_prefix(mount.as_str())
                .is_some_and(|tail| tail.starts_with('/'))
        })
    }

    /// Whether the object at `path` exists according to one LIST of its folder (taken once
    /// per folder and shared): `Some(false)` means it certainly does not, so it is not read.
    /// `None` (not a listed kind, or the LIST was refused) means "read it to know".
    async fn listed(&self, client: &Client, kind: Kind, path: &str) -> Option<bool> {
        if !matches!(
            kind,
            Kind::Policy
                | Kind::PkiRole
                | Kind::CertRole
                | Kind::AppRole
                | Kind::JwtRole
                | Kind::DatabaseRole
                | Kind::TransitKey
        ) {
            return None;
        }
        let (folder, name) = path.rsplit_once('/')?;
        let cell = Arc::clone(
            self.listings
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(folder.to_owned())
                .or_default(),
        );
        let names = cell
            .get_or_init(|| async {
                match client.list(folder).await {
                    // OpenBao stores policy names in lower case.
                    Ok(keys) => Some(keys.into_iter().map(|k| k.to_ascii_lowercase()).collect()),
                    // The backend is not mounted yet (it is in the plan): nothing under it.
                    Err(e) if e.is_unmounted() => Some(HashSet::new()),
                    // Refused or failed: read each object instead, as before.
                    Err(_) => None,
                }
            })
            .await;
        names
            .as_ref()
            .map(|n: &HashSet<String>| n.contains(&name.to_ascii_lowercase()))
    }

    /// The live form of `d`, or `None` where it does not exist: mounts from the tables read
    /// once, every other object read now.
    async fn current(
        &self,
        client: &Client,
        env: &str,
        d: &Desired,
    ) -> Result<Option<Value>, Error> {
        Ok(match d.kind {
            Kind::Mount => self
                .mounts
                .get(d.path.trim_start_matches("sys/mounts/"))
                .cloned(),
            Kind::Auth => self
                .auths
                .get(d.path.trim_start_matches("sys/auth/"))
                .cloned(),
            Kind::Policy if let Some(texts) = self.policy_texts(client).await => {
                let name = d.path.rsplit('/').next().unwrap_or_default();
                texts
                    .get(&name.to_ascii_lowercase())
                    .map(|text| json!({ "name": name, "policy": text }))
            }
            // Nothing exists under a backend that is not mounted, and reading there may be
            // refused rather than answered "not found" (a token whose policy predates the
            // backend, e.g. the planners' mount, ADR 0038).
            _ if !self.is_mounted(&d.path) => None,
            _ if self.listed(client, d.kind, &d.path).await == Some(false) => None,
            _ => match read_one(client, env, &d.path).await {
                Ok(v) => v.map(|v| normalize(d.kind, v)),
                // A planner role read by an operator whose policy predates the planners' mount
                // (written by an older Warden): unknown, so written (or deleted) again after
                // apply has brought the operator policy up to date in its first phase.
                Err(Error::Bao { source, .. })
                    if source.is_permission_denied() && crate::planner::is_role_path(&d.path) =>
                {
                    Some(Value::Null)
                }
                Err(e) => return Err(e),
            },
        })
    }
}

/// A purpose revoked live by `warden revoke purpose` (its registry entry carries a
/// `revocation` object, ADR 0032). Apply never undoes that: the object is kept in what apply
/// writes, and while the spec still says `revoked = false` the entry is a conflict (apply
/// refuses) that says what to write. `None` for everything else.
fn live_revocation(
    d: &mut Desired,
    current: Option<&Value>,
) -> Option<(Action, String, Vec<FieldDiff>)> {
    if d.kind != Kind::Registry {
        return None;
    }
    let revocation = current?.pointer("/data/revocation")?.clone();
    if !revocation.is_object() {
        return None;
    }
    let wants_revoked = d.body.pointer("/data/revoked").and_then(Value::as_bool);
    if let Some(data) = d.body.get_mut("data") {
        data["revocation"] = revocation.clone();
    }
    if wants_revoked != Some(false) {
        return None;
    }
    let field = |k: &str| {
        revocation
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    let purpose = d
        .body
        .pointer("/data/purpose")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    Some((
        Action::Conflict,
        format!(
            "purpose `{purpose}` was revoked by `warden revoke purpose` at {} by {} ({}; record warden/revocations/{}), but the spec says revoked = false: write `revoked = true` in [purposes.{purpose}] (apply never undoes a revocation)",
            field("at"),
            field("by"),
            field("reason"),
            field("record"),
        ),
        vec![FieldDiff {
            field: "revoked".into(),
            from: Value::Bool(true),
            to: Value::Bool(false),
        }],
    ))
}

/// The change that brings `current` to `d`, with its reason and differing fields; `None` when
/// `current` is already as the spec wants it.
fn compare(d: &Desired, current: Option<Value>) -> Option<(Action, String, Vec<FieldDiff>)> {
    if d.body.is_null() {
        // An object that must not exist (a planner role whose operator role is gone).
        return current.map(|_| {
            (
                Action::Delete,
                "must not exist: no operator role of that name (ADR 0038)".to_owned(),
                Vec::new(),
            )
        });
    }
    let Some(live) = current else {
        return Some((Action::Create, "not present".to_owned(), Vec::new()));
    };
    let fields = diff(&d.body, &live);
    let describe = |fields: &[FieldDiff]| {
        fields
            .iter()
            .map(|f| format!("{} is {} (want {})", f.field, f.from, f.to))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if fields.is_empty() {
        None
    } else if d.kind == Kind::TransitKey {
        // A transit key's type is fixed and `exportable` cannot be turned off again; rewriting
        // would change nothing, so say so instead.
        Some((
            Action::Conflict,
            format!(
                "exists but {}; a transit key cannot be changed in place",
                describe(&fields)
            ),
            fields,
        ))
    } else if matches!(d.kind, Kind::Mount | Kind::Auth) {
        // Mounts are never replaced: that would destroy the data or credentials behind them.
        let what = describe(&fields);
        let fields_owned = fields
            .into_iter()
            .filter(|f| f.field != "description")
            .collect::<Vec<_>>();
        // Only the description differs: not ours, but compatible.
        (!fields_owned.is_empty())
            .then(|| (Action::Conflict, format!("exists but {what}"), fields_owned))
    } else if d.kind == Kind::RegistryPage {
        // A page is one long string; its diff would print hundreds of kilobytes. The entry's
        // own update shows the counts and checksum that changed.
        Some((
            Action::Update,
            "page content differs".to_owned(),
            Vec::new(),
        ))
    } else {
        let n = fields.len();
        Some((
            Action::Update,
            format!(
                "{n} field{} differ{}",
                if n == 1 { "" } else { "s" },
                if n == 1 { "s" } else { "" }
            ),
            fields,
        ))
    }
}

/// Objects Warden created that left the spec: deletions with `prune`, otherwise returned so
/// the plan can list them.
fn orphans(
    owned: &BTreeSet<String>,
    desired_ids: &BTreeSet<String>,
    prune: bool,
    gone: &dyn Fn(&str) -> bool,
    changes: &mut Vec<Change>,
) -> Vec<String> {
    let mut orphans = Vec::new();
    for id in owned.difference(desired_ids) {
        let Some((kind, path)) = parse_id(id) else {
            continue;
        };
        // Already removed (by `operator remove`, or by hand): nothing to keep or delete.
        if !kind.prunable() || gone(path) {
            continue;
        }
        if prune {
            changes.push(Change {
                action: Action::Delete,
                kind,
                path: path.to_owned(),
                identity: None,
                reason: "owned by Warden, no longer in the spec".to_owned(),
                fields: Vec::new(),
                body: "null".into(),
                id: id.clone(),
                password_file: None,
            });
        } else {
            orphans.push(id.clone());
        }
    }
    orphans
}

/// Brings a read-back object into the shape it is written in, so the field diff compares like
/// with like: a database connection answers with its connection fields nested under
/// `connection_details`.
fn normalize(kind: Kind, mut live: Value) -> Value {
    if kind == Kind::DatabaseConfig
        && let Some(details) = live.get("connection_details").cloned()
        && let (Some(obj), Some(d)) = (live.as_object_mut(), details.as_object())
    {
        for (k, v) in d {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
        // Write-only: OpenBao checks the connection when told to and never says so on a read.
        // Warden always asks for the check, so an answer without the field is as written
        // (otherwise every plan would show `verify_connection` drifting and rewrite it).
        obj.entry("verify_connection").or_insert(Value::Bool(true));
    }
    live
}

fn mount_table(table: BTreeMap<String, warden_bao::MountInfo>) -> BTreeMap<String, Value> {
    table
        .into_iter()
        .map(|(path, m)| {
            let mut v = json!({ "type": m.mount_type, "description": m.description });
            if !m.options.is_empty() {
                v["options"] = json!(m.options);
            }
            (path.trim_end_matches('/').to_owned(), v)
        })
        .collect()
}

/// Reads one object; `None` where it does not exist (or its backend is not mounted yet).
async fn read_one(client: &Client, env: &str, path: &str) -> Result<Option<Value>, Error> {
    match client.read(path).await {
        Ok(secret) => Ok(secret.data),
        Err(e) if e.is_not_found() || e.is_unmounted() => Ok(None),
        Err(source) => Err(Error::Bao {
            env: env.to_owned(),
            what: format!("read {path}"),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(revoked: bool) -> Desired {
        Desired {
            kind: Kind::Registry,
            path: "warden/data/registry/tls".into(),
            body: json!({ "data": { "purpose": "tls", "revoked": revoked, "owner": "o" } }),
            identity: None,
            password_file: None,
        }
    }

    fn live(revoked: bool, with_record: bool) -> Value {
        let mut data = json!({ "purpose": "tls", "revoked": revoked, "owner": "o" });
        if with_record {
            data["revocation"] =
                json!({ "record": "1-purpose-tls", "reason": "drill", "by": "alice", "at": "t" });
        }
        json!({ "data": data, "metadata": {} })
    }

    #[test]
    fn a_live_revocation_is_a_conflict_while_the_spec_says_otherwise() {
        let mut d = entry(false);
        let (action, reason, fields) =
            live_revocation(&mut d, Some(&live(true, true))).expect("a conflict");
        assert_eq!(action, Action::Conflict);
        assert!(
            reason.contains("revoked by `warden revoke purpose` at t by alice (drill")
                && reason.contains("write `revoked = true` in [purposes.tls]"),
            "{reason}"
        );
        assert_eq!(fields[0].field, "revoked");
    }

    #[test]
    fn once_the_spec_agrees_apply_keeps_the_record_and_changes_nothing() {
        let mut d = entry(true);
        assert!(live_revocation(&mut d, Some(&live(true, true))).is_none());
        assert_eq!(d.body["data"]["revocation"]["record"], "1-purpose-tls");
        assert!(compare(&d, Some(live(true, true))).is_none(), "no change");
        // Without a live record (revoked through the spec), nothing special happens.
        let mut d = entry(false);
        assert!(live_revocation(&mut d, Some(&live(false, false))).is_none());
        assert!(d.body["data"].get("revocation").is_none());
        // Other kinds are never touched.
        let mut other = entry(false);
        other.kind = Kind::RegistryPage;
        assert!(live_revocation(&mut other, Some(&live(true, true))).is_none());
    }
}
