//! The permission matrix: every identity's token tries every operation; each cell is compared
//! with what the identity model allows, and the whole table is printed as evidence.

use std::fmt::Write as _;

use serde_json::Value;
use warden_bao::{Client, Idempotent};

/// One request an identity may or may not be allowed to make.
pub(crate) enum Request {
    Read(String),
    List(String),
    Write(String, Value),
}

impl Request {
    fn describe(&self) -> String {
        match self {
            Self::Read(p) => format!("GET {p}"),
            Self::List(p) => format!("LIST {p}"),
            Self::Write(p, _) => format!("POST {p}"),
        }
    }
}

/// A column of the matrix.
pub(crate) struct Op {
    /// What it is, in words.
    pub(crate) label: &'static str,
    pub(crate) request: Request,
    /// The identities that must succeed; every other identity must be refused.
    pub(crate) allowed: Vec<&'static str>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 2xx.
    Ok,
    /// Refused: 403 for an operation, 400/403 or a refused handshake for a login.
    Denied(String),
    /// Anything else: neither allowed nor refused by policy (a malformed request, a 500...).
    Failed(String),
}

impl Outcome {
    fn cell(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied(_) => "denied",
            Self::Failed(_) => "ERROR",
        }
    }
}

/// Classifies the result of an operation: only 403 counts as "denied by policy".
pub(crate) fn classify<T>(r: &Result<T, warden_bao::Error>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) if e.is_permission_denied() => Outcome::Denied("403".into()),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Classifies the result of a login: OpenBao refuses a credential that does not match its
/// role with 400 (cert constraints, JWT claims, AppRole secret-id) or 403, and a listener
/// refuses a certificate from another environment's CA during the handshake.
pub(crate) fn classify_login<T>(r: &Result<T, warden_bao::Error>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) => match e.status() {
            Some(s @ (400 | 403)) => Outcome::Denied(format!(
                "{s}: {}",
                e.server_errors().first().map_or("", String::as_str)
            )),
            _ if e.is_tls() || e.status().is_none() => {
                Outcome::Denied(format!("no connection: {e}"))
            }
            _ => Outcome::Failed(e.to_string()),
        },
    }
}

async fn perform(client: &Client, request: &Request) -> Outcome {
    match request {
        Request::Read(p) => classify(&client.read(p).await),
        Request::List(p) => classify(&client.list(p).await),
        Request::Write(p, body) => classify(&client.write(p, body, Idempotent::No).await),
    }
}

/// Identities (rows) × operations (columns).
pub(crate) struct Matrix {
    rows: Vec<(String, Vec<Outcome>)>,
    ops: Vec<Op>,
}

impl Matrix {
    /// Runs every operation with every identity's client, one at a time (the order is the
    /// table's, so a write in one column is seen by the reads after it).
    pub(crate) async fn run(identities: &[(&str, &Client)], ops: Vec<Op>) -> Self {
        let mut rows = Vec::new();
        for (name, client) in identities {
            let mut cells = Vec::new();
            for op in &ops {
                cells.push(perform(client, &op.request).await);
            }
            rows.push(((*name).to_owned(), cells));
        }
        Self { rows, ops }
    }

    fn expected_ok(&self, identity: &str, col: usize) -> bool {
        self.ops[col].allowed.contains(&identity)
    }

    /// Every cell that differs from the identity model, with the server's answer.
    pub(crate) fn mismatches(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, cells) in &self.rows {
            for (col, outcome) in cells.iter().enumerate() {
                let want_ok = self.expected_ok(name, col);
                let good = match outcome {
                    Outcome::Ok => want_ok,
                    Outcome::Denied(_) => !want_ok,
                    Outcome::Failed(_) => false,
                };
                if !good {
                    out.push(format!(
                        "{name} × C{} ({}): expected {}, got {outcome:?}",
                        col + 1,
                        self.ops[col].request.describe(),
                        if want_ok { "ok" } else { "denied" }
                    ));
                }
            }
        }
        out
    }

    /// The table: `ok`/`denied` per cell, `!` after any cell that differs from the
    /// expectation, and a legend naming each column's request.
    pub(crate) fn render(&self) -> String {
        let name_w = self
            .rows
            .iter()
            .map(|(n, _)| n.len())
            .max()
            .unwrap_or(8)
            .max(8);
        let cell_w = 8;
        let mut s = String::new();
        let _ = write!(s, "{:<name_w$} |", "identity");
        for col in 0..self.ops.len() {
            let _ = write!(s, " {:<cell_w$}", format!("C{}", col + 1));
        }
        s.push('\n');
        s.push_str(&"-".repeat(name_w + 2 + (cell_w + 1) * self.ops.len()));
        s.push('\n');
        for (name, cells) in &self.rows {
            let _ = write!(s, "{name:<name_w$} |");
            for (col, outcome) in cells.iter().enumerate() {
                let want_ok = self.expected_ok(name, col);
                let good = matches!(
                    (outcome, want_ok),
                    (Outcome::Ok, true) | (Outcome::Denied(_), false)
                );
                let cell = format!("{}{}", outcome.cell(), if good { "" } else { "!" });
                let _ = write!(s, " {cell:<cell_w$}");
            }
            s.push('\n');
        }
        s.push_str("\nColumns (allowed for; everyone else must be denied):\n");
        for (col, op) in self.ops.iter().enumerate() {
            let allowed = if op.allowed.is_empty() {
                "nobody".to_owned()
            } else {
                op.allowed.join(", ")
            };
            let _ = writeln!(
                s,
                "  C{:<3} {:<44} {} [{allowed}]",
                col + 1,
                op.request.describe(),
                op.label
            );
        }
        s
    }
}

/// One attempt (a login, a certificate request) and whether it must succeed.
pub(crate) struct Case {
    pub(crate) label: String,
    pub(crate) expect_ok: bool,
    pub(crate) outcome: Outcome,
}

impl Case {
    pub(crate) fn good(&self) -> bool {
        matches!(
            (&self.outcome, self.expect_ok),
            (Outcome::Ok, true) | (Outcome::Denied(_), false)
        )
    }
}

/// A table of cases: expectation, result, and the server's reason for a refusal.
pub(crate) fn render_cases(header: &str, cases: &[Case]) -> String {
    let w = cases
        .iter()
        .map(|c| c.label.chars().count())
        .chain([header.len()])
        .max()
        .unwrap_or(10);
    let mut s = String::new();
    let _ = writeln!(s, "{header:<w$} | expect | got");
    s.push_str(&"-".repeat(w + 20));
    s.push('\n');
    for c in cases {
        let detail = match &c.outcome {
            Outcome::Ok => String::new(),
            Outcome::Denied(why) | Outcome::Failed(why) => format!(" ({why})"),
        };
        let _ = writeln!(
            s,
            "{:<w$} | {:<6} | {}{}{}",
            c.label,
            if c.expect_ok { "ok" } else { "denied" },
            c.outcome.cell(),
            if c.good() { "" } else { " !" },
            detail
        );
    }
    s
}

/// Classifies a request the policy allows but the PKI role must refuse: only a 400 from the
/// role's constraints counts (a 403 would mean the test never reached the role).
pub(crate) fn classify_role_refusal<T>(r: &Result<T, warden_bao::Error>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) if e.status() == Some(400) => Outcome::Denied(format!(
            "400: {}",
            e.server_errors().first().map_or("", String::as_str)
        )),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
