//! `[environments.<env>.backup]`: recipients (age X25519, checked down to the bech32 checksum
//! like custodians'), the directory and the retention rule, so a backup that no one could open
//! is caught when the spec is read, not on the day it is needed.

use std::path::PathBuf;

use serde::Deserialize;

use super::custody::check_recipient;
use crate::diag::Reporter;
use crate::model::Backup;
use crate::raw::S;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackup {
    #[serde(default)]
    pub(crate) recipients: Vec<S<String>>,
    pub(crate) dir: S<String>,
    pub(crate) keep: Option<S<u32>>,
    pub(crate) max_age: Option<S<String>>,
    pub(crate) every: Option<S<String>>,
    pub(crate) drill_every: Option<S<String>>,
}

pub(super) fn backup(
    raw: Option<&S<RawBackup>>,
    env_key: &str,
    r: &mut Reporter<'_>,
) -> Option<Backup> {
    let raw = raw?;
    let key = format!("{env_key}.backup");
    let b = raw.get_ref();
    let mut ok = true;
    let mut recipients = Vec::new();
    for (i, rec) in b.recipients.iter().enumerate() {
        let text = rec.get_ref().trim().to_owned();
        if let Err(why) = check_recipient(&text) {
            r.error_help(
                rec.span(),
                format!("{key}.recipients[{i}]"),
                format!("`{text}` is not an age recipient: {why}"),
                Some("paste the `age1…` public key that `age-keygen` printed (never the AGE-SECRET-KEY line)".into()),
            );
            ok = false;
        } else if recipients.contains(&text) {
            r.error(
                rec.span(),
                format!("{key}.recipients[{i}]"),
                "this recipient is listed twice",
            );
            ok = false;
        } else {
            recipients.push(text);
        }
    }
    if b.recipients.is_empty() {
        r.error_help(
            raw.span(),
            format!("{key}.recipients"),
            "no recipients: a backup nobody can open is no backup",
            Some("list the age recipients (`age1…`) of the people who may restore".into()),
        );
        ok = false;
    }
    let dir = b.dir.get_ref().trim();
    if dir.is_empty() {
        r.error(b.dir.span(), format!("{key}.dir"), "the directory is empty");
        ok = false;
    }
    if let Some(k) = &b.keep
        && *k.get_ref() == 0
    {
        r.error_help(
            k.span(),
            format!("{key}.keep"),
            "keep = 0 would delete every backup",
            Some("keep at least 1, or leave `keep` out for no count limit".into()),
        );
        ok = false;
    }
    let max_age = match &b.max_age {
        None => None,
        Some(m) => match crate::parse_duration(m.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                r.error(m.span(), format!("{key}.max_age"), e.to_string());
                ok = false;
                None
            }
        },
    };
    // Schedules: at least a second (nothing Warden schedules is finer), parsed by the one
    // duration grammar.
    let mut schedule = |raw: &Option<S<String>>, field: &str| match raw {
        None => None,
        Some(m) => match crate::parse_duration(m.get_ref()) {
            Ok(d) if d.as_secs() == 0 => {
                r.error_help(
                    m.span(),
                    format!("{key}.{field}"),
                    "a schedule of zero would run without pause",
                    Some(format!(
                        "write a period such as `{field} = \"1d\"`, or leave it out"
                    )),
                );
                ok = false;
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                r.error(m.span(), format!("{key}.{field}"), e.to_string());
                ok = false;
                None
            }
        },
    };
    let every = schedule(&b.every, "every");
    let drill_every = schedule(&b.drill_every, "drill_every");
    ok.then(|| Backup {
        recipients,
        dir: PathBuf::from(dir),
        keep: b.keep.as_ref().map(|k| *k.get_ref()),
        max_age,
        every,
        drill_every,
    })
}
