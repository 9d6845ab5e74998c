//! Flow documents: flows written as YAML or JSON, loaded through a
//! [`Registry`](crate::Registry) of node types, and written back.
//!
//! ```yaml
//! version: 1
//! name: greet
//! description: Greets someone.
//! inputs:
//!   name:
//!     schema: { type: string }
//!     default: world
//! nodes:
//!   - id: hello
//!     type: template
//!     config:
//!       template: "Hello {{ input.name }}!"
//!     timeout: 5s
//! outputs:
//!   text: hello.text
//! ```
//!
//! - [`Loader`] reads bytes or files and reports **every** problem it finds,
//!   each with its path (`nodes[2].config.url`) and, for YAML and JSON text,
//!   its line and column; [`LoadError`] prints them compiler-style.
//! - Node configurations may hold expressions (see [`crate::expr`]):
//!   `{{ input.x }}`, `{{ nodes.<id>.<port> }}`, `{{ secrets.NAME }}`, and
//!   `{{ env.NAME }}` when [`LoadOptions::env`] allows it. Reading
//!   `nodes.<id>.<port>` makes the node depend on that port, as an edge
//!   would: it waits for the value, and is skipped when the value is never
//!   produced. Such dependencies count for cycles.
//! - [`Document::from_flow`] writes any flow (built with the typed builder
//!   or loaded) as a document; [`Document::to_yaml`] and
//!   [`Document::to_json`] write it as text, in a stable order.
//! - [`json_schema`] is the JSON Schema of the format (`ghostflow schema`).

mod compat;
mod flowref;
pub mod load;
pub mod model;
pub mod source;
pub mod write;

pub use flowref::FlowRef;
pub use load::{DocProblem, LoadError, LoadOptions, Loaded, Loader};
pub use model::{
    CircuitBreakerDecl, Document, DurationText, EdgeDecl, InputDecl, NodeDecl, OnErrorDecl,
    Position, RateLimitDecl, RetryDecl, VERSION,
};
pub use source::{DocPath, Format, Limits, Location};

/// The JSON Schema of flow documents, version 1.
pub fn json_schema() -> serde_json::Value {
    schemars::SchemaGenerator::default()
        .into_root_schema_for::<Document>()
        .to_value()
}
