//! `[environments.<env>.custody]`: the threshold and the custodians, each with an age recipient
//! checked down to its bech32 checksum, so a recipient with a typo is caught when the spec is
//! read, not at the ceremony.

use serde::Deserialize;

use crate::diag::Reporter;
use crate::model::{CustodianSpec, Custody, Slug};
use crate::raw::S;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCustody {
    pub(crate) threshold: S<u8>,
    #[serde(default)]
    pub(crate) custodians: Vec<S<RawCustodian>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCustodian {
    pub(crate) name: S<String>,
    pub(crate) recipient: S<String>,
}

/// Checks an age X25519 recipient: `age1` + bech32, valid checksum, 32 bytes of key.
pub(crate) fn check_recipient(text: &str) -> Result<(), String> {
    let (hrp, data) = bech32::decode(text).map_err(|e| format!("not bech32 ({e})"))?;
    if hrp.as_str() != "age" {
        return Err(format!(
            "the prefix is `{}1`, an age recipient starts with `age1`",
            hrp.as_str()
        ));
    }
    if data.len() != 32 {
        return Err(format!(
            "it holds {} bytes, an X25519 key is 32",
            data.len()
        ));
    }
    Ok(())
}

pub(super) fn custody(
    raw: Option<&S<RawCustody>>,
    env_key: &str,
    r: &mut Reporter<'_>,
) -> Option<Custody> {
    let raw = raw?;
    let key = format!("{env_key}.custody");
    let c = raw.get_ref();
    let mut ok = true;
    let mut custodians: Vec<CustodianSpec> = Vec::new();
    for (i, entry) in c.custodians.iter().enumerate() {
        let e = entry.get_ref();
        let ckey = format!("{key}.custodians[{i}]");
        let name = match Slug::parse(e.name.get_ref()) {
            Ok(n) => n,
            Err(msg) => {
                r.error(e.name.span(), format!("{ckey}.name"), msg);
                ok = false;
                continue;
            }
        };
        if custodians.iter().any(|x| x.name == name) {
            r.error(
                e.name.span(),
                format!("{ckey}.name"),
                format!("custodian `{name}` is listed twice"),
            );
            ok = false;
        }
        let recipient = e.recipient.get_ref().trim().to_owned();
        if let Err(why) = check_recipient(&recipient) {
            r.error_help(
                e.recipient.span(),
                format!("{ckey}.recipient"),
                format!("`{recipient}` is not an age recipient: {why}"),
                Some("paste the `age1…` public key that `age-keygen` printed for this custodian (never the AGE-SECRET-KEY line)".into()),
            );
            ok = false;
        }
        custodians.push(CustodianSpec { name, recipient });
    }
    let n = c.custodians.len();
    let t = *c.threshold.get_ref();
    if n == 0 {
        r.error_help(
            raw.span(),
            key,
            "no custodians",
            Some(
                "add [[environments.<env>.custody.custodians]] entries with name and recipient"
                    .into(),
            ),
        );
        ok = false;
    } else if t == 0 || usize::from(t) > n || (n > 1 && t < 2) {
        r.error_help(
            c.threshold.span(),
            format!("{key}.threshold"),
            format!("threshold {t} with {n} custodians"),
            Some(format!(
                "use 2..={n}: one custodian alone must never be able to unseal"
            )),
        );
        ok = false;
    }
    ok.then_some(Custody {
        threshold: t,
        custodians,
    })
}

#[cfg(test)]
mod tests {
    use super::check_recipient;

    #[test]
    fn recipients_are_checked_down_to_the_checksum() {
        let good = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        assert_eq!(check_recipient(good), Ok(()));
        let typo = good.replace("ql3z", "ql3y");
        assert!(check_recipient(&typo).is_err());
        assert!(check_recipient("ssh-ed25519 AAAA").is_err());
        assert!(check_recipient("AGE-SECRET-KEY-1QQQ").is_err());
    }
}
