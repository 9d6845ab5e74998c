//! Keeping secrets out of what a run reports.
//!
//! Every secret value a run hands out (to a node through
//! [`Context::secret`](crate::Context::secret), or into a node's
//! configuration through an expression) is remembered by the run's
//! [`Redactor`], and replaced with `***` in error messages, the `error` port,
//! progress events and event payloads. A run that hands out no secret pays
//! one atomic load per report.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use crate::error::NodeError;

/// What a secret is replaced with.
pub(crate) const MASK: &str = "***";

/// The secret values one run has handed out.
#[derive(Debug, Default)]
pub(crate) struct Redactor {
    any: AtomicBool,
    /// Longest first, so that a secret containing another is masked whole.
    values: RwLock<Vec<Box<str>>>,
}

impl Redactor {
    /// Remembers a secret value (empty values are ignored: they would mask
    /// nothing and match everywhere).
    pub(crate) fn add(&self, value: &str) {
        if value.is_empty() {
            return;
        }
        let mut values = self.values.write();
        if !values.iter().any(|v| &**v == value) {
            values.push(value.into());
            values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
        self.any.store(true, Ordering::Release);
    }

    fn is_active(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// `text` with every known secret masked.
    pub(crate) fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.is_active() {
            return Cow::Borrowed(text);
        }
        let values = self.values.read();
        let mut out = Cow::Borrowed(text);
        for value in values.iter() {
            if out.contains(&**value) {
                out = Cow::Owned(out.replace(&**value, MASK));
            }
        }
        out
    }

    /// `error` with every known secret masked in its message.
    pub(crate) fn error(&self, error: NodeError) -> NodeError {
        if !self.is_active() {
            return error;
        }
        match self.text(error.message()) {
            Cow::Borrowed(_) => error,
            Cow::Owned(message) => error.with_message(message),
        }
    }

    /// Masks every known secret in the strings (and keys) of `value`.
    pub(crate) fn json(&self, value: &mut serde_json::Value) {
        if !self.is_active() {
            return;
        }
        let mut stack = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                serde_json::Value::String(s) => {
                    if let Cow::Owned(masked) = self.text(s) {
                        *s = masked;
                    }
                }
                serde_json::Value::Array(items) => stack.extend(items.iter_mut()),
                serde_json::Value::Object(map) => {
                    let keys: Vec<String> = map
                        .keys()
                        .filter(|k| matches!(self.text(k), Cow::Owned(_)))
                        .cloned()
                        .collect();
                    for key in keys {
                        if let Some(v) = map.remove(&key) {
                            map.insert(self.text(&key).into_owned(), v);
                        }
                    }
                    stack.extend(map.values_mut());
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_are_masked_everywhere_and_nothing_else_is() {
        let r = Redactor::default();
        assert_eq!(r.text("token sk-123"), "token sk-123");
        r.add("sk-123");
        r.add("sk-123456");
        r.add("");
        assert_eq!(r.text("a sk-123456 b sk-123"), "a *** b ***");
        let e = r.error(
            NodeError::permanent("401 for key sk-123")
                .with_retry_after(std::time::Duration::from_secs(1)),
        );
        assert_eq!(e.message(), "401 for key ***");
        assert!(!e.is_retryable());
        assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(1)));
        let mut v = serde_json::json!({"k": ["x sk-123", {"sk-123": 1}], "n": 5});
        r.json(&mut v);
        assert_eq!(v, serde_json::json!({"k": ["x ***", {"***": 1}], "n": 5}));
    }
}
