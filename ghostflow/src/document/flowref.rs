//! A flow that a node runs (a sub-flow), named in its configuration.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::load::{LoadError, LoadOptions, Loader};
use super::model::Document;
use crate::flow::Flow;
use crate::registry::Registry;

/// A flow to run from a node: the path of a document (in documents,
/// relative to the document that names it; the loader makes it absolute
/// and checks the sub-flow at load time), or the document itself, inline.
///
/// A config field of this type should carry the `x-flow` mark in its schema
/// (`#[schemars(extend("x-flow" = true))]`), so that the loader resolves and
/// checks it. Marks count at any depth (a field of a list's items too), and
/// so does `x-node`, for a node declaration `{ type, config }` inside a
/// config (an agent's tool): the loader checks its type and its config as
/// it checks a document's nodes, and leaves the field that holds either out
/// of expression rendering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FlowRef {
    /// A document's path.
    Path(String),
    /// A document, inline.
    Inline(Box<Document>),
}

/// A path, or an object that the loader reads as a flow document. The
/// document's own schema is not embedded: it is large, its `$id` would
/// change how the references inside it resolve, and the loader checks an
/// inline document with located messages anyway.
impl JsonSchema for FlowRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FlowRef".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A flow document's path (relative to the document that names it), or a flow document inline.",
            "anyOf": [
                { "type": "string", "minLength": 1 },
                { "type": "object", "required": ["version", "name", "nodes"] }
            ]
        })
    }
}

impl FlowRef {
    /// The flow of a [`Flow`] built in Rust, as an inline document.
    ///
    /// # Errors
    /// A node's configuration does not serialize.
    pub fn from_flow(flow: &Flow) -> Result<FlowRef, crate::Error> {
        Document::from_flow(flow).map(|d| FlowRef::Inline(Box::new(d)))
    }

    /// Loads the flow through `registry`.
    ///
    /// # Errors
    /// Every problem of the document, located.
    pub fn load(&self, registry: &Registry, options: LoadOptions) -> Result<Flow, LoadError> {
        let loader = Loader::with_options(registry, options);
        match self {
            FlowRef::Path(path) => loader.load_path(Path::new(path)),
            FlowRef::Inline(document) => loader.load_document((**document).clone()),
        }
        .map(|loaded| loaded.flow)
    }

    /// How this reference reads in messages: the path, or the inline
    /// document's name.
    pub fn describe(&self) -> String {
        match self {
            FlowRef::Path(path) => format!("`{path}`"),
            FlowRef::Inline(document) => format!("`{}` (inline)", document.name),
        }
    }
}
