//! Ports: the typed inputs and outputs of a node.
//!
//! A node's inputs and its outputs are each one struct whose fields are the
//! ports, with `#[derive(Ports)]`:
//!
//! ```
//! use ghostflow::prelude::*;
//!
//! /// Inputs of a greeting node.
//! #[derive(Ports)]
//! pub struct Greeting {
//!     /// Who to greet.
//!     pub name: String,
//!     /// How many exclamation marks; optional, so it may stay unconnected.
//!     pub emphasis: Option<u8>,
//! }
//!
//! let specs = Greeting::port_specs();
//! assert_eq!(specs[0].name, "name");
//! assert!(specs[0].required);
//! assert!(!specs[1].required);
//! ```
//!
//! An `Option<T>` field is an optional input, or an output that may stay empty.
//! An empty output is how a branch is *not taken*: every node that requires it
//! is skipped. The derive also generates a handle struct (`GreetingPorts<D>`)
//! with one [`Port`] per field, used by the [`FlowBuilder`](crate::FlowBuilder)
//! to connect ports with compile-time type checks.

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;

use crate::value::{Value, ValueTypeError};

/// Marker for input ports.
#[derive(Debug, Clone, Copy)]
pub enum In {}

/// Marker for output ports.
#[derive(Debug, Clone, Copy)]
pub enum Out {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::In {}
    impl Sealed for super::Out {}
}

/// Direction of a port: [`In`] or [`Out`].
pub trait Direction: sealed::Sealed + 'static {}
impl Direction for In {}
impl Direction for Out {}

/// Index of a node inside one flow under construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeIndex(pub(crate) u32);

impl NodeIndex {
    /// Pseudo node standing for the flow's own inputs.
    pub(crate) const FLOW_INPUTS: NodeIndex = NodeIndex(u32::MAX);

    /// The position of the node in the flow.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A typed handle on one port of one node, used to connect ports in the
/// [`FlowBuilder`](crate::FlowBuilder).
///
/// `D` is [`In`] or [`Out`]; `T` is the type of the values that the port
/// carries (for an `Option<T>` field, `T`). Connecting an output of type `A`
/// to an input of type `B` does not compile unless `A` and `B` are the same.
pub struct Port<D, T> {
    pub(crate) node: NodeIndex,
    pub(crate) port: u16,
    pub(crate) builder: u64,
    _marker: PhantomData<fn() -> (D, T)>,
}

impl<D, T> Port<D, T> {
    #[doc(hidden)]
    pub fn __new(node: NodeIndex, port: u16, builder: u64) -> Self {
        Port {
            node,
            port,
            builder,
            _marker: PhantomData,
        }
    }

    /// The node this port belongs to.
    pub fn node(&self) -> NodeIndex {
        self.node
    }

    /// The position of the port in its node's input or output list.
    pub fn position(&self) -> usize {
        self.port as usize
    }
}

impl<D, T> Clone for Port<D, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<D, T> Copy for Port<D, T> {}

impl<D, T> fmt::Debug for Port<D, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Port")
            .field("node", &self.node.0)
            .field("port", &self.port)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

/// Description of one port: name, JSON Schema of its values, and whether it
/// must be connected (inputs) or may stay empty (outputs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortSpec {
    /// Field name of the port.
    pub name: String,
    /// Description, from the field's doc comment.
    pub description: Option<String>,
    /// JSON Schema of the values.
    pub schema: serde_json::Value,
    /// For an input: must be connected. For an output: always has a value on success.
    pub required: bool,
    /// Rust type of the values, for error messages.
    pub type_name: String,
}

impl PortSpec {
    /// Builds the spec of a port carrying `T`.
    pub fn of<T: schemars::JsonSchema>(
        name: &str,
        description: Option<&str>,
        required: bool,
    ) -> Self {
        PortSpec {
            name: name.to_owned(),
            description: description.map(str::to_owned),
            schema: schemars::SchemaGenerator::default()
                .into_root_schema_for::<T>()
                .to_value(),
            required,
            type_name: std::any::type_name::<T>().to_owned(),
        }
    }
}

/// Why the values arriving at a node could not become its input struct.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// A required port received no value.
    #[error("input port `{port}` has no value")]
    Missing {
        /// The port's name.
        port: &'static str,
    },
    /// A port received a value of the wrong type.
    #[error("input port `{port}`: {source}")]
    Type {
        /// The port's name.
        port: &'static str,
        /// What was expected and found.
        source: ValueTypeError,
    },
}

/// A set of ports: a node's input struct or output struct.
///
/// Derive it with `#[derive(Ports)]`; the unit type `()` stands for "no ports".
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a set of ports",
    label = "not a ports struct",
    note = "add `#[derive(Ports)]` to `{Self}`, or use `()` for a node without ports"
)]
pub trait Ports: Sized + Send + 'static {
    /// One [`Port`] handle per field, for the flow builder.
    type Handles<D: Direction>;

    /// Number of ports.
    const LEN: usize;

    /// The specs of the ports, in field order.
    fn port_specs() -> Vec<PortSpec>;

    /// Handles for the ports of node `node`.
    #[doc(hidden)]
    fn handles<D: Direction>(node: NodeIndex, builder: u64) -> Self::Handles<D>;

    /// Builds the struct from one slot per port (in field order), taking the values.
    ///
    /// # Errors
    /// A required slot is empty, or a value has the wrong type.
    fn from_values(slots: &mut [Option<Value>]) -> Result<Self, PortError>;

    /// Appends one slot per port (in field order); `None` for an empty optional port.
    fn into_values(self, out: &mut Vec<Option<Value>>);
}

impl Ports for () {
    type Handles<D: Direction> = ();
    const LEN: usize = 0;
    fn port_specs() -> Vec<PortSpec> {
        Vec::new()
    }
    fn handles<D: Direction>(_: NodeIndex, _: u64) -> Self::Handles<D> {}
    fn from_values(_: &mut [Option<Value>]) -> Result<Self, PortError> {
        Ok(())
    }
    fn into_values(self, _: &mut Vec<Option<Value>>) {}
}

/// Helpers the derive expands to.
#[doc(hidden)]
pub mod derive_support {
    use super::*;
    use crate::value::PortValue;

    /// Takes the required input slot `index`.
    pub fn take_required<T: PortValue>(
        slots: &mut [Option<Value>],
        index: usize,
        port: &'static str,
    ) -> Result<T, PortError> {
        slots
            .get_mut(index)
            .and_then(Option::take)
            .ok_or(PortError::Missing { port })?
            .take::<T>()
            .map_err(|source| PortError::Type { port, source })
    }

    /// Takes the optional input slot `index`.
    pub fn take_optional<T: PortValue>(
        slots: &mut [Option<Value>],
        index: usize,
        port: &'static str,
    ) -> Result<Option<T>, PortError> {
        slots
            .get_mut(index)
            .and_then(Option::take)
            .map(|v| {
                v.take::<T>()
                    .map_err(|source| PortError::Type { port, source })
            })
            .transpose()
    }

    /// Asserts at compile time that a field type can be a port.
    pub const fn assert_port_value<T: PortValue>() {}
}
