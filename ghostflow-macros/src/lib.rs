//! Derive macros for [GhostFlow](https://docs.rs/ghostflow) nodes and ports.
//!
//! Use them through the `ghostflow` crate, which re-exports them in its
//! prelude; the generated code refers to `::ghostflow` and to nothing else.
//!
//! - [`macro@Ports`] turns a struct with named fields into a set of ports, a
//!   node's inputs or outputs, and generates the typed handles that the flow
//!   builder connects.
//! - [`macro@Node`] turns a configuration type into a node type: its spec
//!   (name, version, description, category, config schema, ports) and the
//!   checks that it can run.
//!
//! Each derive runs the same passes, one module each: attribute parsing
//! (`attr`), the AST that keeps every `syn` node for error spans (`ast`),
//! validation (`valid`), then code generation (`expand`) or, when anything
//! was wrong, all errors at once plus a fallback that keeps the rest of the
//! crate compiling (`fallback`).
#![doc(test(attr(deny(warnings))))]

mod ast;
mod attr;
mod errors;
mod expand;
mod fallback;
mod text;
mod valid;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

use crate::errors::Failure;

/// Derives `ghostflow::Ports` for a struct whose fields are ports.
///
/// ```
/// use ghostflow::prelude::*;
///
/// /// Inputs of a greeting node.
/// #[derive(Ports)]
/// pub struct Greeting {
///     /// Who to greet.
///     pub name: String,
///     /// How many exclamation marks.
///     #[port(name = "bangs")]
///     pub emphasis: Option<u8>,
/// }
///
/// let specs = Greeting::port_specs();
/// assert_eq!((specs[0].name.as_str(), specs[0].required), ("name", true));
/// assert_eq!(specs[0].description.as_deref(), Some("Who to greet."));
/// assert_eq!((specs[1].name.as_str(), specs[1].required), ("bangs", false));
/// assert_eq!(<Greeting as Ports>::LEN, 2);
/// ```
///
/// Each field is one port, named after the field (without `r#`). A field of
/// type `Option<T>` (spelled `Option`, `std::option::Option` or
/// `core::option::Option`) is a port of `T` that is not required: an input
/// that may stay unconnected, or an output that may stay empty. Every port
/// type must be a `ghostflow::PortValue`; the error for one that is not points
/// at the field's type. The field's doc comment becomes the port's description.
///
/// Beside the struct, the derive generates a handle struct with the same
/// visibility, `{Name}Ports<D>` (`GreetingPorts<D>` above), with one
/// `ghostflow::Port<D, T>` per field, which the flow builder hands out. It is
/// `Clone`, `Copy` and `Debug` for every `D`.
///
/// Type parameters are allowed and must be port values
/// (`Extracted<T: PortValue> { value: T }`); lifetime parameters are not.
///
/// # Attributes
///
/// - `#[ports(handles = Name)]` on the struct names the handle struct.
/// - `#[port(name = "...")]` on a field names the port (ASCII letters, digits
///   and `_`).
#[proc_macro_derive(Ports, attributes(ports, port))]
pub fn derive_ports(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive_ports(&input)
        .unwrap_or_else(Failure::into_compile_error)
        .into()
}

/// Derives `ghostflow::Node` for a node's configuration type.
///
/// ```
/// use ghostflow::prelude::*;
///
/// /// Repeats a text.
/// ///
/// /// Joins the copies without a separator.
/// #[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
/// #[node(input = Text, output = Text, category = "text", version = "2")]
/// pub struct RepeatText {
///     /// How many copies.
///     pub times: usize,
/// }
///
/// /// A text.
/// #[derive(Ports)]
/// pub struct Text {
///     /// The text.
///     pub text: String,
/// }
///
/// impl Run for RepeatText {
///     async fn run(&self, input: Text, _ctx: &Context) -> Result<Text, NodeError> {
///         Ok(Text { text: input.text.repeat(self.times) })
///     }
/// }
///
/// let spec = RepeatText::spec();
/// assert_eq!(spec.type_name, "repeat_text");
/// assert_eq!(spec.version, "2");
/// assert_eq!(spec.category, "text");
/// assert_eq!(spec.description, "Repeats a text.\n\nJoins the copies without a separator.");
/// assert_eq!(spec.inputs[0].name, "text");
/// ```
///
/// The type is the node's configuration: it must implement `Serialize` and
/// `JsonSchema` (its schema is part of the spec) and `Run`. It may be a struct
/// or an enum, with type parameters but no lifetime parameters. For a
/// non-generic type, a missing `Run` implementation is reported on the type's
/// name; for a generic one, where the type is used as a node.
///
/// The doc comment becomes the description: lines are trimmed and joined with
/// spaces, and a blank line starts a new paragraph.
///
/// # Attributes
///
/// All keys of `#[node(...)]` are optional:
///
/// - `input = Type`, `output = Type`: the ports structs (`#[derive(Ports)]`),
///   `()` by default;
/// - `name = "..."`: the type name in flow documents, lowercase ASCII letters,
///   digits and `_`; by default the type's name in snake case
///   (`HTTPRequest` → `http_request`);
/// - `version = "..."`: `"1"` by default;
/// - `category = "..."`: `"general"` by default.
#[proc_macro_derive(Node, attributes(node))]
pub fn derive_node(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive_node(&input)
        .unwrap_or_else(Failure::into_compile_error)
        .into()
}
