//! Template outputs: a config file rendered from secrets with minijinja.
//!
//! # What a template can call
//!
//! | call                  | reads (through the identity's token)    | returns                      |
//! |-----------------------|-----------------------------------------|------------------------------|
//! | `kv(mount, path)`     | `<mount>/data/<path>` (KV v2)           | the secret's data map        |
//! | `kv1(mount, path)`    | `<mount>/<path>` (KV v1)                | the secret's data map        |
//! | `ca_chain(pki_mount)` | `<pki_mount>/cert/ca_chain`             | the chain, PEM               |
//! | `database(source)`    | the `[[database]]` source's lease       | `username`, `password`, `expires` |
//! | `x \| tojson`         |                                         | JSON text (minijinja's own)  |
//! | `x \| b64encode`      |                                         | standard base64 of a string  |
//!
//! `tojson` is minijinja's own: it writes `<`, `>`, `&` and `'` as `\u` escapes, which every
//! JSON (and YAML) reader decodes back to the same string.
//!
//! `database(source)` does not read OpenBao itself: it asks the agent's lease book
//! ([`RenderContext::databases`]), which issues credentials on first use and then hands every
//! template the same lease until it is re-issued (and re-renders the templates that used it
//! then). `expires` is the lease's end *as issued* (RFC 3339): renewals extend it without
//! changing the file, so the credentials work at least until then.
//!
//! The KV version is chosen by the function, not detected: detecting it means reading
//! `sys/internal/ui/mounts/<mount>`, which identity policies rightly do not grant.
//!
//! # Rules, because these files configure services
//!
//! * `UndefinedBehavior::Strict`: a missing key, a misspelt variable, a secret that does not
//!   exist — each is an error naming the template and line, never an empty string in a config
//!   file. A template may still opt in to a fallback explicitly (`x | default("...")`).
//! * No auto-escaping, whatever the file name: these are config files, not HTML.
//! * Fuel ([`FUEL`]) bounds the work and memory of one render, so a runaway loop fails instead
//!   of pinning a core; [`MAX_READS`] bounds how many secrets one render may read.
//! * No loader: `include`/`import`/`extends` cannot reach other files.
//!
//! # Why rendering runs in rounds
//!
//! minijinja calls functions synchronously while the client is async, and blocking the
//! runtime inside a function (`block_in_place`) would tie a worker thread to each template and
//! does not work on a current-thread runtime. Parsing the template to find the calls would
//! need minijinja's unstable AST and still miss calls whose arguments are computed. So the
//! functions *record* instead of fetching:
//!
//! 1. Render with an empty cache. Every `kv`/`kv1`/`ca_chain` call not yet fetched records its
//!    request and returns a placeholder that absorbs attribute access, iteration and the
//!    b64encode filter, so one pass collects every call it reaches. Output and errors of a pass
//!    that recorded anything are discarded: they were computed from placeholders.
//! 2. Fetch everything recorded, concurrently.
//! 3. Render again. A template whose calls depend on fetched values (a path read from
//!    another secret, a branch on a secret) may record more; repeat until a pass records
//!    nothing — that pass saw only real values, and its output or error is the result.
//!
//! A plain template takes exactly two passes and one round of concurrent reads; rounds are
//! capped at [`MAX_ROUNDS`]. Every render reads afresh: the cache lives for one render only,
//! so a rotated secret shows up on the next poll.
//!
//! # Secrets
//!
//! The rendered bytes are written into a `Zeroizing` buffer that wipes every buffer it
//! outgrows. Error messages carry the template name, line, the kind of error and the
//! *expression* (`cfg.password` is undefined), never values; as a second line of defence every
//! string read from a secret is redacted from error text before it leaves this module. What
//! cannot be wiped: the HTTP response body inside the client and minijinja's own string values
//! (`Arc<str>`) while a render runs — both are dropped as soon as the render returns.

use std::collections::BTreeSet;
use std::path::PathBuf;

use base64::Engine as _;
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, ErrorKind, State, UndefinedBehavior};
use zeroize::Zeroizing;

use secrecy::ExposeSecret;

use super::{DbCredentialsError, RenderContext, RenderError, Rendered, RenderedFile};

mod ledger;
mod request;

use ledger::{SecretBuf, Shared, is_pending};
use request::{Fetch, Fetched, KvVersion, Request};

/// The largest template file read; templates are a few lines.
const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;

/// Execution budget of one render pass (minijinja fuel: about one unit per instruction and
/// per 64 bytes allocated, so roughly 6 MB of output). Config templates use a few hundred.
pub const FUEL: u64 = 100_000;

/// Most render passes one render may take (see "Why rendering runs in rounds").
pub const MAX_ROUNDS: usize = 8;

/// Most distinct secrets (and chains) one render may read: a loop that builds paths must not
/// become a request storm against OpenBao.
pub const MAX_READS: usize = 64;

/// A file rendered from a minijinja template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateOutput {
    /// Output name (as in `agent.toml`), used in every error.
    pub name: String,
    /// Where the template text comes from.
    pub source: TemplateSource,
    /// Name of the rendered file (the output path's file name).
    pub file_name: String,
    /// Permission bits of the rendered file.
    pub mode: u32,
}

/// Where a template's text comes from. Template text is configuration, not a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// A template file, read at every render so an edited template takes effect on the next
    /// poll without a restart. Errors name it by this path.
    File(PathBuf),
    /// The template text itself (`contents = "..."`). Errors name it `inline:<output>`.
    Inline(String),
}

impl TemplateOutput {
    /// The name errors use for this template: its path, or `inline:<output>`.
    pub fn template_name(&self) -> String {
        match &self.source {
            TemplateSource::File(path) => path.display().to_string(),
            TemplateSource::Inline(_) => format!("inline:{}", self.name),
        }
    }

    /// Renders the template, reading the secrets it calls for through `ctx.client`.
    ///
    /// Errors: [`RenderError::Template`] (with line) for syntax errors, undefined values,
    /// secrets that do not exist, exhausted fuel, or an unreadable template file;
    /// [`RenderError::Bao`] when OpenBao refuses or fails a read for another reason (sealed,
    /// unreachable, permission denied — the token may need a new login), so
    /// [`RenderError::is_transient`] can tell retries from mistakes.
    pub async fn render(&self, ctx: &RenderContext<'_>) -> Result<Rendered, RenderError> {
        let template = self.template_name();
        let source = self.load_source(&template).await?;
        let ledger = Shared::default();
        for _ in 0..MAX_ROUNDS {
            let (result, wanted) = render_pass(&template, &source, &ledger);
            if wanted.is_empty() {
                let contents = result.map_err(|e| self.template_error(&template, &e, &ledger))?;
                let database_generations = std::mem::take(&mut ledger.lock().database_generations);
                return Ok(Rendered {
                    files: vec![RenderedFile {
                        name: self.file_name.clone(),
                        contents,
                        mode: self.mode,
                    }],
                    database_generations,
                    ..Rendered::default()
                });
            }
            // This pass ran on placeholders: its output and errors mean nothing.
            drop(result);
            self.fetch(ctx, &template, wanted, &ledger).await?;
        }
        Err(RenderError::Template {
            output: self.name.clone(),
            template,
            line: 0,
            message: format!(
                "the secrets this template reads depend on each other more than {MAX_ROUNDS} levels deep"
            ),
        })
    }

    /// The OpenBao paths the template reads directly (`kv`, `kv1`, `ca_chain`), as its first
    /// render pass asks for them: what `warden doctor` checks the token may read. Reads whose
    /// path depends on another secret's value only show up in later passes and are not
    /// listed; `database()` sources are the `[[database]]` section's business. Reads nothing
    /// from OpenBao.
    pub async fn direct_reads(&self) -> Result<Vec<String>, RenderError> {
        let template = self.template_name();
        let source = self.load_source(&template).await?;
        let ledger = Shared::default();
        let (_, wanted) = render_pass(&template, &source, &ledger);
        Ok(wanted
            .iter()
            .filter(|r| !matches!(r, Request::Database { .. }))
            .map(Request::api_path)
            .collect())
    }

    async fn load_source(&self, template: &str) -> Result<String, RenderError> {
        match &self.source {
            TemplateSource::Inline(text) => Ok(text.clone()),
            // Like agent.toml: whoever can write a template picks which secrets its output
            // holds, and a FIFO at its name would hang this output forever.
            TemplateSource::File(path) => crate::config::read_trusted(path, MAX_TEMPLATE_BYTES)
                .map_err(|e| RenderError::Template {
                    output: self.name.clone(),
                    template: template.to_owned(),
                    line: 0,
                    message: format!("cannot use the template file: {e}"),
                }),
        }
    }

    /// Reads every recorded request concurrently and files the results in the ledger. A read
    /// that failed because the thing does not exist is filed as a failure, to surface as an
    /// error *at the line that asked for it* in the next pass; any other failure ends the
    /// render now, with the client error kept for the runtime to classify.
    async fn fetch(
        &self,
        ctx: &RenderContext<'_>,
        template: &str,
        wanted: BTreeSet<Request>,
        ledger: &Shared,
    ) -> Result<(), RenderError> {
        let already = ledger.lock().fetched.len();
        if already + wanted.len() > MAX_READS {
            return Err(RenderError::Template {
                output: self.name.clone(),
                template: template.to_owned(),
                line: 0,
                message: format!(
                    "the template reads more than {MAX_READS} secrets in one render (a loop building paths?)"
                ),
            });
        }
        let (databases, wanted): (Vec<Request>, Vec<Request>) = wanted
            .into_iter()
            .partition(|r| matches!(r, Request::Database { .. }));
        for request in databases {
            let fetched = self.database(ctx, template, &request, ledger).await?;
            ledger.lock().fetched.insert(request, fetched);
        }
        let mut reads = tokio::task::JoinSet::new();
        for request in wanted {
            let client = ctx.client.clone();
            reads.spawn(async move {
                let result = request.read(&client).await;
                (request, result)
            });
        }
        while let Some(joined) = reads.join_next().await {
            let (request, result) = joined.map_err(|e| RenderError::Local {
                output: self.name.clone(),
                what: format!("read secrets for template {template}"),
                reason: e.to_string(),
            })?;
            let fetched = match result {
                Ok(Fetch::Found(found)) => {
                    let mut l = ledger.lock();
                    l.secret_strings.extend(found.secret_strings);
                    Fetched::Value(found.value)
                }
                Ok(Fetch::Missing(why)) => Fetched::Failed(format!("{}: {why}", request.call())),
                Err(e) if e.is_not_found() => Fetched::Failed(format!(
                    "{}: nothing at {}{}",
                    request.call(),
                    request.api_path(),
                    request.not_found_hint()
                )),
                // A path built from a secret value would carry it into the client error's
                // text, which cannot be redacted: report it the redacted way instead.
                Err(e) if ledger.lock().mentions_secret(&request.api_path()) => {
                    Fetched::Failed(format!(
                        "{}: reading {} failed (status {})",
                        request.call(),
                        request.api_path(),
                        e.status()
                            .map_or_else(|| "none".to_owned(), |c| c.to_string())
                    ))
                }
                Err(source) => {
                    return Err(RenderError::Bao {
                        output: self.name.clone(),
                        what: format!(
                            "template {template}: {} reads {}",
                            request.call(),
                            request.api_path()
                        ),
                        source: Box::new(source),
                    });
                }
            };
            ledger.lock().fetched.insert(request, fetched);
        }
        Ok(())
    }

    /// `database(source)`: the lease book's current credentials (issued on first use). An
    /// unknown source is a template error at the line that named it; a failure to issue is
    /// a client error the runtime classifies (sealed and unreachable are retried).
    async fn database(
        &self,
        ctx: &RenderContext<'_>,
        template: &str,
        request: &Request,
        ledger: &Shared,
    ) -> Result<Fetched, RenderError> {
        let Request::Database { source } = request else {
            return Ok(Fetched::Failed(format!(
                "{}: not a database call",
                request.call()
            )));
        };
        let Some(book) = ctx.databases else {
            return Ok(Fetched::Failed(format!(
                "{}: this agent declares no [[database]] sources (add one to agent.toml)",
                request.call()
            )));
        };
        match book.credentials(source, &self.name).await {
            Ok(creds) => {
                let mut l = ledger.lock();
                l.secret_strings
                    .push(Zeroizing::new(creds.password.expose_secret().to_owned()));
                l.secret_strings
                    .push(Zeroizing::new(creds.username.clone()));
                l.database_generations
                    .insert(source.clone(), creds.generation);
                let expires = creds
                    .expires
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                Ok(Fetched::Value(Value::from_pairs(vec![
                    (
                        Value::from("username"),
                        Value::from(creds.username.as_str()),
                    ),
                    (
                        Value::from("password"),
                        Value::from(creds.password.expose_secret()),
                    ),
                    (Value::from("expires"), Value::from(expires)),
                ])))
            }
            Err(e @ DbCredentialsError::UnknownSource { .. }) => {
                Ok(Fetched::Failed(format!("{}: {e}", request.call())))
            }
            Err(DbCredentialsError::Bao { path, source }) => Err(RenderError::Bao {
                output: self.name.clone(),
                what: format!(
                    "template {template}: {} issues credentials from {path}",
                    request.call()
                ),
                source,
            }),
        }
    }

    fn template_error(
        &self,
        template: &str,
        err: &minijinja::Error,
        ledger: &Shared,
    ) -> RenderError {
        let mut message = match (err.kind(), err.detail()) {
            // Our own functions' failures read best without minijinja's prefix.
            (ErrorKind::InvalidOperation, Some(detail))
                if CALL_PREFIXES.iter().any(|p| detail.starts_with(p)) =>
            {
                detail.to_owned()
            }
            (kind, Some(detail)) => format!("{kind}: {detail}"),
            (kind, None) => kind.to_string(),
        };
        match err.kind() {
            ErrorKind::UndefinedError => message.push_str(
                " — a key missing from a secret, or a variable or attribute that does not exist (strict mode renders nothing as empty)",
            ),
            ErrorKind::OutOfFuel => message.push_str(&format!(
                " — the template exceeded its budget of {FUEL} (a loop that is too large?)"
            )),
            _ => {}
        }
        RenderError::Template {
            output: self.name.clone(),
            template: template.to_owned(),
            line: err.line().unwrap_or(0),
            message: ledger.lock().redact(message),
        }
    }
}

/// Prefixes of the messages our own functions fail with (see [`Request::call`]).
const CALL_PREFIXES: [&str; 4] = ["kv(", "kv1(", "ca_chain(", "database("];

/// Renders one pass. Returns the output (or the engine's error) and what the pass asked for
/// that is not fetched yet. Synchronous and self-contained, so no minijinja value lives across
/// an `.await` (they are not all `Send`).
fn render_pass(
    template: &str,
    source: &str,
    ledger: &Shared,
) -> (
    Result<Zeroizing<Vec<u8>>, minijinja::Error>,
    BTreeSet<Request>,
) {
    ledger.lock().wanted.clear();
    let env = environment(ledger);
    let result = env
        .template_from_named_str(template, source)
        .and_then(|tmpl| {
            let mut out = SecretBuf::default();
            tmpl.render_captured_to((), &mut out).map(drop)?;
            Ok(out.0)
        });
    let wanted = std::mem::take(&mut ledger.lock().wanted);
    (result, wanted)
}

/// The environment every template renders in: strict, unescaped, fuelled, no loader, and our
/// functions bound to this render's ledger.
fn environment(ledger: &Shared) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(FUEL));
    // Debug mode lets minijinja name the expression that was undefined (`cfg.pasword`). It
    // also attaches variable values to the error object, which this module never formats
    // (only kind, detail and line are read).
    env.set_debug(true);
    // Config files usually end in a newline; Jinja's default would eat it.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    let l = ledger.clone();
    env.add_function("kv", move |mount: &str, path: &str| {
        l.lookup(Request::kv(KvVersion::V2, mount, path)?)
    });
    let l = ledger.clone();
    env.add_function("kv1", move |mount: &str, path: &str| {
        l.lookup(Request::kv(KvVersion::V1, mount, path)?)
    });
    let l = ledger.clone();
    env.add_function("ca_chain", move |mount: &str| {
        l.lookup(Request::ca_chain(mount)?)
    });
    let l = ledger.clone();
    env.add_function("database", move |source: &str| {
        l.lookup(Request::database(source)?)
    });
    env.add_filter("b64encode", b64encode);
    env
}

fn b64encode(_state: &State<'_, '_>, value: Value) -> Result<Value, minijinja::Error> {
    if is_pending(&value) {
        return Ok(value);
    }
    match value.as_bytes() {
        Some(bytes) => Ok(Value::from(
            base64::engine::general_purpose::STANDARD.encode(bytes),
        )),
        None => Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("b64encode needs a string, got {}", value.kind()),
        )),
    }
}

#[cfg(test)]
mod tests;
