//! ACL policy text as OpenBao stores it: the mark that says Warden wrote a policy, and a reader
//! for the grants of any policy (Warden's own or hand-written). Pure, so the planner's lint,
//! the CLI and evidence collection read policies the same way without depending on each other.

/// First line of every policy Warden writes; how a human (and `lint`) sees ownership.
pub const MANAGED_MARK: &str = "# managed-by: warden";

/// One `path "…" { capabilities = […] }` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The path pattern.
    pub path: String,
    /// Its capabilities.
    pub capabilities: Vec<String>,
    /// When not empty, the only request parameters the grant allows (OpenBao's
    /// `allowed_parameters`, any value): e.g. an agent may set its report entry's
    /// `custom_metadata` but not its `max_versions` (ADR 0036).
    pub allowed_parameters: Vec<String>,
}

/// A grant of `caps` on `path`.
pub fn grant(path: String, caps: &[&str]) -> Grant {
    Grant {
        path,
        capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
        allowed_parameters: Vec::new(),
    }
}

impl Grant {
    /// The same grant, allowing only the request parameters `params`.
    pub fn only_parameters(mut self, params: &[&str]) -> Self {
        self.allowed_parameters = params.iter().map(|p| (*p).to_owned()).collect();
        self
    }
}

/// Writes a policy as Warden stores it: [`MANAGED_MARK`], one `# {comment}` line saying whose
/// policy it is, then one stanza per grant. The one writer of policy text, so every policy
/// Warden writes reads back through [`parse`] the same way.
pub fn render(comment: &str, grants: &[Grant]) -> String {
    let mut s = format!("{MANAGED_MARK}\n# {comment}\n");
    for g in grants {
        let caps = g
            .capabilities
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        // One line, after the capabilities: `parse` reads a block up to its first `}`.
        let params = if g.allowed_parameters.is_empty() {
            String::new()
        } else {
            let each = g
                .allowed_parameters
                .iter()
                .map(|p| format!("\"{p}\" = []"))
                .collect::<Vec<_>>()
                .join(", ");
            format!("  allowed_parameters = {{ {each} }}\n")
        };
        s.push_str(&format!(
            "\npath \"{}\" {{\n  capabilities = [{caps}]\n{params}}}\n",
            g.path
        ));
    }
    s
}

/// Reads the grants out of a policy's HCL. Handles the forms Warden and `bao policy write`
/// users write (one `path` block per grant, `capabilities` as a list); anything it cannot read
/// is returned in the error so the linter reports it instead of passing it silently.
pub fn parse(hcl: &str) -> Result<Vec<Grant>, String> {
    let mut out = Vec::new();
    let text: String = hcl
        .lines()
        .map(|l| match l.find('#') {
            Some(i) if !in_string(l, i) => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = text.as_str();
    while let Some(i) = rest.find("path") {
        let after = &rest[i + 4..];
        let after_ws = after.trim_start();
        if !after_ws.starts_with('"') {
            rest = after;
            continue;
        }
        let body = &after_ws[1..];
        let end = body.find('"').ok_or("unterminated path string")?;
        let path = body[..end].to_owned();
        let block_start = body[end..]
            .find('{')
            .ok_or_else(|| format!("no block after path \"{path}\""))?
            + end;
        let block_end = body[block_start..]
            .find('}')
            .ok_or_else(|| format!("unterminated block for \"{path}\""))?
            + block_start;
        let block = &body[block_start + 1..block_end];
        let caps = match block.find("capabilities") {
            Some(c) => {
                let list = &block[c..];
                let open = list
                    .find('[')
                    .ok_or_else(|| format!("capabilities of \"{path}\" are not a list"))?;
                let close = list
                    .find(']')
                    .ok_or_else(|| format!("capabilities of \"{path}\" are not closed"))?;
                list[open + 1..close]
                    .split(',')
                    .map(|c| c.trim().trim_matches('"').to_owned())
                    .filter(|c| !c.is_empty())
                    .collect()
            }
            None => Vec::new(),
        };
        // A parameter restriction only narrows a grant: the path and its capabilities are
        // what the linter and evidence judge.
        out.push(Grant {
            path,
            capabilities: caps,
            allowed_parameters: Vec::new(),
        });
        rest = &body[block_end + 1..];
    }
    Ok(out)
}

fn in_string(line: &str, idx: usize) -> bool {
    line[..idx].matches('"').count() % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_renders_and_hand_written_policies() {
        let hcl = r#"
# a comment with path "x" { }
path "kvv2/data/a/config" {
  capabilities = ["read"]
}
path "sys/*" { capabilities = ["sudo", "read"] }
"#;
        let g = parse(hcl).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].path, "kvv2/data/a/config");
        assert_eq!(g[1].capabilities, ["sudo", "read"]);
        // A grant limited to some parameters renders on one line and reads back.
        let text = render(
            "t",
            &[
                grant("warden/metadata/delivered/a".into(), &["update"])
                    .only_parameters(&["custom_metadata"]),
                grant("b".into(), &["read"]),
            ],
        );
        assert!(
            text.contains("  allowed_parameters = { \"custom_metadata\" = [] }\n}"),
            "{text}"
        );
        let g = parse(&text).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].capabilities, ["update"]);
        assert_eq!(g[1].path, "b");
    }
}
