//! Values that travel along edges.
//!
//! A [`Value`] is an `Arc` around a typed Rust value. Passing it to several
//! successors (fan-out) clones the `Arc`, never the payload. It is turned into
//! JSON only when something asks for JSON: a JSON-typed port, an event subscriber
//! that wants payloads, or a store that checkpoints outputs.
//!
//! When a node takes its input by value, the engine hands over the payload
//! without copying if no other node still holds it; otherwise the payload is
//! cloned for that consumer. Port types that are expensive to clone and read by
//! several nodes can be declared as `Arc<T>`, so every consumer shares one copy.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A type that can travel along an edge: cloneable, serializable, and shareable
/// between threads.
///
/// Implemented automatically for every type that satisfies the bounds.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as a port type",
    label = "port types must be `Clone + Debug + Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static`",
    note = "derive `Clone`, `Debug`, `Serialize`, `Deserialize` and `JsonSchema` for `{Self}`"
)]
pub trait PortValue:
    Clone + Serialize + DeserializeOwned + schemars::JsonSchema + fmt::Debug + Send + Sync + 'static
{
}

impl<T> PortValue for T where
    T: Clone
        + Serialize
        + DeserializeOwned
        + schemars::JsonSchema
        + fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// Object-safe view of a port value.
trait AnyValue: Any + Send + Sync {
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error>;
    fn type_name(&self) -> &'static str;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    fn as_any(&self) -> &dyn Any;
    fn into_any_arc(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<T: PortValue> AnyValue for T {
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any_arc(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// A value carried by an edge: a shared, type-erased port value.
///
/// Cloning a `Value` clones an `Arc`. Numbers and booleans (`u64`, `i64`,
/// `f64`, `bool`) are kept inline instead: copying them is cheaper than
/// sharing them, and they cost no allocation.
#[derive(Clone)]
pub struct Value(Repr);

#[derive(Clone)]
enum Repr {
    Shared(Arc<dyn AnyValue>),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
}

/// Why a [`Value`] could not be read as the requested type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a value of type `{expected}`, got `{found}`{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct ValueTypeError {
    /// The type that was asked for.
    pub expected: &'static str,
    /// The type that the value holds.
    pub found: &'static str,
    /// More detail, such as a JSON decoding error.
    pub detail: Option<String>,
}

/// Moves a `U` out as a `T` when they are the same type (no copy, no allocation).
fn cast<U: 'static, T: 'static>(value: U) -> Result<T, U> {
    let mut slot = Some(value);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<T>>() {
        Some(same) => Ok(same.take().expect("the slot was just filled")),
        None => Err(slot.expect("the slot is still full")),
    }
}

impl Value {
    /// Wraps a port value.
    pub fn new<T: PortValue>(value: T) -> Self {
        let value = match cast::<T, u64>(value) {
            Ok(n) => return Value(Repr::U64(n)),
            Err(value) => value,
        };
        let value = match cast::<T, i64>(value) {
            Ok(n) => return Value(Repr::I64(n)),
            Err(value) => value,
        };
        let value = match cast::<T, f64>(value) {
            Ok(n) => return Value(Repr::F64(n)),
            Err(value) => value,
        };
        match cast::<T, bool>(value) {
            Ok(b) => Value(Repr::Bool(b)),
            Err(value) => Value(Repr::Shared(Arc::new(value))),
        }
    }

    /// Wraps an already shared port value without copying it.
    pub fn from_arc<T: PortValue>(value: Arc<T>) -> Self {
        Value(Repr::Shared(value))
    }

    /// Wraps a JSON value. A typed consumer decodes it into its port type.
    pub fn json(value: serde_json::Value) -> Self {
        Value::new(value)
    }

    /// The payload as `&dyn Any`, wherever it lives.
    fn as_any(&self) -> &dyn Any {
        match &self.0 {
            Repr::Shared(shared) => shared.as_any(),
            Repr::U64(n) => n,
            Repr::I64(n) => n,
            Repr::F64(n) => n,
            Repr::Bool(b) => b,
        }
    }

    /// The Rust type name of the payload.
    pub fn type_name(&self) -> &'static str {
        match &self.0 {
            Repr::Shared(shared) => shared.type_name(),
            Repr::U64(_) => std::any::type_name::<u64>(),
            Repr::I64(_) => std::any::type_name::<i64>(),
            Repr::F64(_) => std::any::type_name::<f64>(),
            Repr::Bool(_) => std::any::type_name::<bool>(),
        }
    }

    /// Whether the payload is a `T`.
    pub fn is<T: 'static>(&self) -> bool {
        self.as_any().type_id() == TypeId::of::<T>()
    }

    /// Borrows the payload as a `T`, if it is one.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.as_any().downcast_ref::<T>()
    }

    /// Whether two values share the same payload allocation. Inline numbers
    /// and booleans have none, so they never do.
    pub fn ptr_eq(&self, other: &Value) -> bool {
        match (&self.0, &other.0) {
            (Repr::Shared(a), Repr::Shared(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Serializes the payload to JSON.
    ///
    /// # Errors
    /// Fails if the payload's `Serialize` implementation fails (for example a
    /// map with non-string keys).
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        match &self.0 {
            Repr::Shared(shared) => shared.to_json(),
            Repr::U64(n) => Ok((*n).into()),
            Repr::I64(n) => Ok((*n).into()),
            Repr::F64(n) => serde_json::to_value(n),
            Repr::Bool(b) => Ok((*b).into()),
        }
    }

    /// Reads the payload as a `T`, taking it without a copy when this is the
    /// last reference, cloning it otherwise.
    ///
    /// A payload of another type goes through JSON: it is serialized and
    /// decoded as a `T`. So JSON-typed and typed ports connect, and so do
    /// types with the same JSON shape (a `u64` read as an `f64`, one struct
    /// read as another with the same fields); it fails when the shapes
    /// differ, with serde's reason.
    ///
    /// # Errors
    /// Fails when the payload is neither a `T` nor convertible through JSON.
    pub fn take<T: PortValue>(self) -> Result<T, ValueTypeError> {
        let found = self.type_name();
        let mismatch = |detail: Option<String>| ValueTypeError {
            expected: std::any::type_name::<T>(),
            found,
            detail,
        };
        let via_json = |value: &Value| -> Result<T, ValueTypeError> {
            match value.downcast_ref::<serde_json::Value>() {
                Some(json) => T::deserialize(json),
                None => {
                    let json = value.to_json().map_err(|e| mismatch(Some(e.to_string())))?;
                    T::deserialize(json)
                }
            }
            .map_err(|e| mismatch(Some(e.to_string())))
        };
        if !self.is::<T>() {
            return via_json(&self);
        }
        let shared = match self.0 {
            Repr::Shared(shared) => shared,
            Repr::U64(n) => return cast(n).map_err(|_| mismatch(None)),
            Repr::I64(n) => return cast(n).map_err(|_| mismatch(None)),
            Repr::F64(n) => return cast(n).map_err(|_| mismatch(None)),
            Repr::Bool(b) => return cast(b).map_err(|_| mismatch(None)),
        };
        match shared.into_any_arc().downcast::<T>() {
            Ok(arc) => Ok(Arc::try_unwrap(arc).unwrap_or_else(|shared| (*shared).clone())),
            Err(_) => Err(mismatch(None)),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Shared(shared) => shared.debug(f),
            Repr::U64(n) => fmt::Debug::fmt(n, f),
            Repr::I64(n) => fmt::Debug::fmt(n, f),
            Repr::F64(n) => fmt::Debug::fmt(n, f),
            Repr::Bool(b) => fmt::Debug::fmt(b, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_booleans_live_inline_and_keep_their_types() {
        let n = Value::new(7u64);
        assert!(n.is::<u64>() && !n.is::<i64>());
        assert_eq!(n.downcast_ref::<u64>(), Some(&7));
        assert_eq!(n.type_name(), "u64");
        assert!(!n.ptr_eq(&n.clone()));
        assert_eq!(n.clone().take::<u64>().unwrap(), 7);
        // Numbers of another type convert through JSON when they fit.
        assert_eq!(n.clone().take::<i64>().unwrap(), 7);
        assert_eq!(n.clone().take::<f64>().unwrap(), 7.0);
        let err = Value::new(-1i64).take::<u64>().unwrap_err();
        assert_eq!((err.expected, err.found), ("u64", "i64"));
        assert!(err.detail.is_some());
        assert_eq!(n.to_json().unwrap(), serde_json::json!(7));
        assert_eq!(Value::new(-3i64).take::<i64>().unwrap(), -3);
        assert_eq!(Value::new(0.5f64).take::<f64>().unwrap(), 0.5);
        assert!(Value::new(true).take::<bool>().unwrap());
        assert_eq!(
            Value::new(f64::NAN).to_json().unwrap(),
            serde_json::Value::Null
        );
        assert_eq!(format!("{:?}", Value::new(false)), "false");
        // Other types stay shared.
        let s = Value::new("x".to_string());
        assert!(s.ptr_eq(&s.clone()));
    }

    #[test]
    fn take_moves_the_last_reference_and_clones_shared_ones() {
        let v = Value::new(vec![1u32, 2, 3]);
        let w = v.clone();
        assert!(v.ptr_eq(&w));
        assert_eq!(v.take::<Vec<u32>>().unwrap(), vec![1, 2, 3]);
        assert_eq!(w.take::<Vec<u32>>().unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn json_payloads_decode_into_typed_ports_and_back() {
        let v = Value::json(serde_json::json!({"a": 1}));
        let m: std::collections::BTreeMap<String, u8> = v.take().unwrap();
        assert_eq!(m["a"], 1);
        let typed = Value::new(7u64);
        assert_eq!(
            typed.take::<serde_json::Value>().unwrap(),
            serde_json::json!(7)
        );
    }

    #[test]
    fn types_with_the_same_json_shape_convert() {
        #[derive(
            Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema, PartialEq,
        )]
        struct A {
            x: u32,
        }
        #[derive(
            Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema, PartialEq,
        )]
        struct B {
            x: u64,
        }
        assert_eq!(Value::new(A { x: 3 }).take::<B>().unwrap(), B { x: 3 });
        assert_eq!(
            Value::new(vec![1u8, 2]).take::<Vec<u64>>().unwrap(),
            vec![1, 2]
        );
    }

    #[test]
    fn mismatches_name_both_types() {
        let err = Value::new("x".to_string()).take::<u64>().unwrap_err();
        assert_eq!(err.expected, "u64");
        assert!(err.to_string().contains("alloc::string::String"), "{err}");
        let err = Value::json(serde_json::json!("x"))
            .take::<u64>()
            .unwrap_err();
        assert!(err.detail.is_some());
    }
}
