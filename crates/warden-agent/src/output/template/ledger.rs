//! The per-render ledger: what the passes of one render asked for and got, the placeholder a
//! recording pass sees, and the output buffer that leaves no copy behind.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{ErrorKind, State};
use zeroize::Zeroizing;

use super::request::{Fetched, Request};

#[derive(Default)]
pub(super) struct Ledger {
    pub(super) fetched: BTreeMap<Request, Fetched>,
    /// Asked for in the current pass and not fetched yet.
    pub(super) wanted: BTreeSet<Request>,
    /// Strings read from secrets (redacted from error text), longest first when used.
    pub(super) secret_strings: Vec<Zeroizing<String>>,
    /// Database sources read, with the generation of the credentials handed out.
    pub(super) database_generations: BTreeMap<String, u64>,
}

impl Ledger {
    /// Secret strings long enough to redact: shorter ones would blank out ordinary words
    /// without protecting much.
    pub(super) fn redactable(&self) -> impl Iterator<Item = &str> {
        self.secret_strings
            .iter()
            .map(|s| s.as_str())
            .filter(|s| s.chars().count() >= 4)
    }

    pub(super) fn mentions_secret(&self, text: &str) -> bool {
        self.redactable().any(|s| text.contains(s))
    }

    /// Replaces every redactable secret string in `message`.
    pub(super) fn redact(&self, message: String) -> String {
        let mut secrets: Vec<&str> = self.redactable().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut message = Zeroizing::new(message);
        for s in secrets {
            if message.contains(s) {
                message = Zeroizing::new(message.replace(s, "<redacted>"));
            }
        }
        std::mem::take(&mut *message)
    }
}

/// Shared between the functions bound into the environment and the render loop.
#[derive(Clone, Default)]
pub(super) struct Shared(Arc<Mutex<Ledger>>);

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // A panic while holding the lock cannot leave the ledger inconsistent in a way that
        // matters: at worst a request is fetched again.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn lookup(&self, request: Request) -> Result<Value, minijinja::Error> {
        let mut ledger = self.lock();
        match ledger.fetched.get(&request) {
            Some(Fetched::Value(v)) => Ok(v.clone()),
            Some(Fetched::Failed(message)) => Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                message.clone(),
            )),
            None => {
                ledger.wanted.insert(request);
                Ok(Value::from_object(Pending))
            }
        }
    }
}

/// The stand-in a recording pass gets for a value not fetched yet: any attribute or item is
/// another placeholder, it iterates as empty, is false, and renders as nothing, so the pass can
/// run on and record every other call it reaches.
#[derive(Debug)]
pub(super) struct Pending;

impl Object for Pending {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        Some(Value::from_object(Self))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Empty
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        _method: &str,
        _args: &[Value],
    ) -> Result<Value, minijinja::Error> {
        Ok(Value::from_object(Self))
    }

    fn render(self: &Arc<Self>, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

pub(super) fn is_pending(value: &Value) -> bool {
    value.downcast_object_ref::<Pending>().is_some()
}

/// Output buffer that never leaves a copy behind: when it must grow it moves into a bigger
/// zeroizing buffer and wipes the old one, which `Vec`'s own reallocation would not.
#[derive(Default)]
pub(super) struct SecretBuf(pub(super) Zeroizing<Vec<u8>>);

impl io::Write for SecretBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let need = self.0.len() + buf.len();
        if need > self.0.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                need.max(self.0.capacity() * 2).max(1024),
            ));
            bigger.extend_from_slice(&self.0);
            self.0 = bigger;
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
