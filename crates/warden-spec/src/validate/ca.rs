//! `[ca]` → [`CaPolicy`]: lifetimes that nest (an intermediate inside the root), a rotation
//! point strictly inside a CA's life, and an overlap that ends before the old intermediate
//! does — otherwise the "overlap" would be a gap in trust.

use toml::Spanned;

use crate::diag::Reporter;
use crate::model::{CaPolicy, Fraction, Ttl};
use crate::raw::RawCa;

fn ttl(t: Option<&Spanned<String>>, key: &str, default: Ttl, r: &mut Reporter<'_>) -> Ttl {
    let Some(t) = t else { return default };
    match Ttl::parse(t.get_ref()) {
        Ok(v) if v.as_secs() > 0 => v,
        Ok(_) => {
            r.error(t.span(), key, "must be longer than zero");
            default
        }
        Err(e) => {
            r.error(t.span(), key, e);
            default
        }
    }
}

pub(super) fn policy(raw: Option<&Spanned<RawCa>>, r: &mut Reporter<'_>) -> CaPolicy {
    let d = CaPolicy::default();
    let Some(raw) = raw else { return d };
    let span = raw.span();
    let raw = raw.get_ref();
    let mut p = CaPolicy {
        root_lifetime: ttl(
            raw.root_lifetime.as_ref(),
            "ca.root_lifetime",
            d.root_lifetime,
            r,
        ),
        intermediate_lifetime: ttl(
            raw.intermediate_lifetime.as_ref(),
            "ca.intermediate_lifetime",
            d.intermediate_lifetime,
            r,
        ),
        rotate_at: d.rotate_at,
        overlap: ttl(raw.overlap.as_ref(), "ca.overlap", d.overlap, r),
        reissue_window: ttl(
            raw.reissue_window.as_ref(),
            "ca.reissue_window",
            d.reissue_window,
            r,
        ),
        reissue_rate: None,
    };
    if let Some(v) = &raw.reissue_rate {
        match u32::try_from(*v.get_ref()) {
            Ok(n) if n > 0 => p.reissue_rate = Some(n),
            _ => r.error_help(
                v.span(),
                "ca.reissue_rate",
                format!("{} is not a number of certificates a minute", v.get_ref()),
                Some("write e.g. `reissue_rate = 150`: at most 150 re-issues a minute during a rotation".into()),
            ),
        }
    }
    if let Some(f) = &raw.rotate_at {
        let v = *f.get_ref();
        if let Some(frac) = Fraction::new(v) {
            p.rotate_at = frac;
        } else {
            r.error_help(
                f.span(),
                "ca.rotate_at",
                format!("{v} is not a fraction of a lifetime strictly between 0 and 1"),
                Some("write e.g. `rotate_at = 0.66`: rotate once two thirds of a CA's life have passed".into()),
            );
        }
    }
    if p.intermediate_lifetime >= p.root_lifetime {
        r.error_help(
            span.clone(),
            "ca.intermediate_lifetime",
            "an intermediate must end before the root that signs it",
            Some("shorten intermediate_lifetime or lengthen root_lifetime".into()),
        );
    }
    // The old intermediate is replaced at `rotate_at` of its life; the overlap must end while it
    // is still valid, or leaves that have not moved yet stop verifying mid-overlap.
    let life = p.intermediate_lifetime.as_secs();
    let left = life - p.rotate_at.of(life);
    if p.overlap.as_secs() > left {
        r.error_help(
            span.clone(),
            "ca.overlap",
            format!(
                "the overlap ({}) outlasts what is left of an intermediate once it is due for rotation ({})",
                crate::format_duration(p.overlap.0),
                crate::format_duration(std::time::Duration::from_secs(left)),
            ),
            Some("shorten overlap, or rotate earlier (a smaller rotate_at)".into()),
        );
    }
    if p.reissue_window >= p.overlap {
        r.error_help(
            span,
            "ca.reissue_window",
            "agents must move to the new issuer well within the overlap",
            Some("make reissue_window shorter than overlap".into()),
        );
    }
    p
}
