//! Diagnostics that point at `file:line:col`, name the key, and suggest the right word.

use std::fmt;
use std::ops::Range;

/// One problem in a spec file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given to the parser.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key path (`apps.billing.environments`), when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it (for example "did you mean `prod`?").
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every problem found in a spec; validation does not stop at the first.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct SpecError {
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

fn render(diags: &[Diagnostic]) -> String {
    let mut s = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(&d.to_string());
    }
    s
}

/// Turns byte offsets into line/column and collects diagnostics. Shared by every TOML file
/// Warden reads (the platform spec, `agent.toml`), so their errors look the same.
pub struct Reporter<'a> {
    file: &'a str,
    text: &'a str,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Reporter<'a> {
    /// A reporter for `text`, named `file` in diagnostics.
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Self {
            file,
            text,
            diagnostics: Vec::new(),
        }
    }

    /// An error at `span` about `key`.
    pub fn error(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(span, Some(key.into()), message.into(), None);
    }

    /// An error at `span` about `key`, with a suggestion.
    pub fn error_help(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        self.push(span, Some(key.into()), message.into(), help);
    }

    /// Any diagnostic.
    pub fn push(
        &mut self,
        span: Range<usize>,
        key: Option<String>,
        message: String,
        help: Option<String>,
    ) {
        let (line, column) = line_col(self.text, span.start);
        self.diagnostics.push(Diagnostic {
            file: self.file.to_owned(),
            line,
            column,
            key,
            message,
            help,
        });
    }

    /// Whether nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// The diagnostics in file order.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.diagnostics.sort_by_key(|d| (d.line, d.column));
        self.diagnostics
    }

    pub(crate) fn finish(self) -> Result<(), SpecError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(SpecError {
                diagnostics: self.into_sorted(),
            })
        }
    }
}

/// 1-based line and column (in characters) of byte `offset`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(1) + 1;
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit && *d > 0)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "did you mean `x`?" or a list of the valid words.
pub fn did_you_mean(word: &str, candidates: &[&str]) -> Option<String> {
    match suggest(word, candidates.iter().copied()) {
        Some(s) => Some(format!("did you mean `{s}`?")),
        None if candidates.is_empty() => None,
        None => Some(format!(
            "expected one of: {}",
            candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" into "unknown key `x`" plus a
/// "did you mean" suggestion.
pub fn explain_toml_error(message: &str) -> (String, Option<String>) {
    let msg = message.trim().to_owned();
    let Some((field, tail)) = msg
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
    else {
        return (msg, None);
    };
    let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
    (
        format!("unknown key `{field}`"),
        did_you_mean(field, &expected),
    )
}

/// Optimal string alignment distance (Levenshtein with adjacent transpositions), which is what
/// makes `prdo` one edit from `prod`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_transpositions_and_typos() {
        assert_eq!(suggest("prdo", ["test", "prod"]), Some("prod"));
        assert_eq!(suggest("tset", ["test", "prod"]), Some("test"));
        assert_eq!(
            suggest("environmnets", ["environments", "secrets"]),
            Some("environments")
        );
        assert_eq!(suggest("zzzz", ["test", "prod"]), None);
    }

    #[test]
    fn line_and_column_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 8), (2, 3));
    }
}
