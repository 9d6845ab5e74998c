//! Nodes: what a node author writes, and what the engine stores.
//!
//! An author writes a config struct with `#[derive(Node)]`, two [`Ports`]
//! structs, and an implementation of [`Run`]:
//!
//! ```
//! use ghostflow::prelude::*;
//!
//! /// Counts the words in a text.
//! #[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
//! #[node(input = Text, output = WordCount, category = "text")]
//! pub struct CountWords {
//!     /// Ignore words shorter than this.
//!     #[serde(default)]
//!     pub min_len: usize,
//! }
//!
//! /// Input of [`CountWords`].
//! #[derive(Ports)]
//! pub struct Text {
//!     /// The text to count.
//!     pub text: String,
//! }
//!
//! /// Output of [`CountWords`].
//! #[derive(Ports)]
//! pub struct WordCount {
//!     /// Number of words at least `min_len` long.
//!     pub words: u64,
//! }
//!
//! impl Run for CountWords {
//!     async fn run(&self, input: Text, _ctx: &Context) -> Result<WordCount, NodeError> {
//!         let words = input.text.split_whitespace().filter(|w| w.len() >= self.min_len).count();
//!         Ok(WordCount { words: words as u64 })
//!     }
//! }
//!
//! let spec = CountWords::spec();
//! assert_eq!(spec.type_name, "count_words");
//! assert_eq!(spec.description, "Counts the words in a text.");
//! assert_eq!(spec.inputs[0].name, "text");
//! ```
//!
//! The derive reads these `#[node(...)]` keys: `input` and `output` (the
//! ports structs, default `()`), `name` (the type name, default the struct
//! name in snake case), `version` (default `"1"`), `category` (default
//! `"general"`). The doc comment becomes the description.
//!
//! # Writing a node, step by step
//!
//! 1. **Config.** The struct you derive `Node` on is the node's configuration:
//!    what stays the same for every run (a URL, a threshold, a template). It
//!    needs `Serialize`, `Deserialize` and `JsonSchema` (its schema is shown in
//!    catalogs and checks configs loaded from documents). Field doc comments
//!    become schema descriptions.
//! 2. **Ports.** Inputs and outputs are structs with `#[derive(Ports)]`; each
//!    field is a port. Port types need `Clone + Serialize + Deserialize +
//!    JsonSchema + Debug + Send + Sync`. Use `Option<T>` for an optional input,
//!    or for an output that may stay empty (a branch not taken: every node
//!    that requires it is skipped). Use `()` for "no ports". Use `Arc<T>` for
//!    large values read by several nodes, so they are shared, not cloned.
//! 3. **Run.** `impl Run` with one `async fn run(&self, input, ctx)`. It may be
//!    called more than once (retries), so keep side effects idempotent or
//!    say so in the description.
//! 4. **Errors.** `?` turns any error into a *retryable* [`NodeError`]; return
//!    [`NodeError::permanent`] when retrying cannot help (bad input, 4xx), and
//!    add [`NodeError::with_retry_after`] when the peer said how long to wait.
//!    Whether and how often to retry is the flow's [`RetryPolicy`](crate::RetryPolicy),
//!    not the node's business.
//! 5. **Context.** [`Context`] gives the run and node ids, the attempt number,
//!    secrets ([`Context::secret`]; the value prints as `***`), progress
//!    events ([`Context::progress`], e.g. streamed tokens), and cancellation
//!    ([`Context::is_cancelled`], [`Context::cancellation_token`] for work you
//!    spawn). A cancelled or timed-out node's future is dropped at its next
//!    `.await`, so holding resources in RAII guards is enough to clean up.
//! 6. **Try it.** Put it in a one-node flow and run it:
//!
//! ```
//! # use ghostflow::prelude::*;
//! # /// Says hello.
//! # #[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
//! # #[node(input = Name, output = Greeting)]
//! # pub struct Hello {}
//! # /// A name.
//! # #[derive(Ports)]
//! # pub struct Name {
//! #     /// The name.
//! #     pub name: String,
//! # }
//! # /// A greeting.
//! # #[derive(Ports)]
//! # pub struct Greeting {
//! #     /// The greeting.
//! #     pub text: String,
//! # }
//! # impl Run for Hello {
//! #     async fn run(&self, input: Name, _: &Context) -> Result<Greeting, NodeError> {
//! #         Ok(Greeting { text: format!("hello {}", input.name) })
//! #     }
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ghostflow::Error> {
//! let mut b = Flow::builder("try-hello");
//! let name = b.input::<String>("name");
//! let hello = b.add("hello", Hello {});
//! b.connect(name, hello.inp().name);
//! b.output("text", hello.out().text);
//! let flow = b.build()?;
//! let outcome = Engine::new().run(&flow, Inputs::new().set("name", "Ada".to_string())).await?;
//! assert_eq!(outcome.output::<String>("text")?, "hello Ada");
//! # Ok(())
//! # }
//! ```

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use serde::Serialize;

use crate::context::Context;
use crate::error::NodeError;
use crate::port::{PortSpec, Ports};
use crate::value::Value;

/// The boxed future returned by [`ErasedNode::run`].
pub use futures::future::BoxFuture;

/// Everything the engine, the registry and tools know about a node type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSpec {
    /// Stable type name, such as `count_words`.
    pub type_name: String,
    /// Version of the node type.
    pub version: String,
    /// One-paragraph description, from the doc comment.
    pub description: String,
    /// Category for catalogs, such as `text` or `http`.
    pub category: String,
    /// JSON Schema of the configuration.
    pub config_schema: serde_json::Value,
    /// Input ports, in declaration order.
    pub inputs: Vec<PortSpec>,
    /// Output ports, in declaration order.
    pub outputs: Vec<PortSpec>,
}

impl NodeSpec {
    /// The input port named `name`.
    pub fn input(&self, name: &str) -> Option<&PortSpec> {
        self.inputs.iter().find(|p| p.name == name)
    }

    /// The output port named `name`.
    pub fn output(&self, name: &str) -> Option<&PortSpec> {
        self.outputs.iter().find(|p| p.name == name)
    }
}

/// A node type: its configuration (`Self`) and its ports.
///
/// Derive it with `#[derive(Node)]`; implement [`Run`] by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a node",
    label = "not a node",
    note = "add `#[derive(Node)]` to `{Self}` and implement `Run` for it"
)]
pub trait Node: Send + Sync + 'static {
    /// Input ports.
    type Input: Ports;
    /// Output ports.
    type Output: Ports;

    /// The spec of this node type.
    fn spec() -> NodeSpec;

    /// The node's configuration as JSON, for documents and tools.
    ///
    /// # Errors
    /// The configuration's `Serialize` implementation failed.
    fn config_json(&self) -> Result<serde_json::Value, serde_json::Error>;
}

/// The work a node does: one async function from its inputs to its outputs.
///
/// Return [`NodeError::retryable`] for failures worth retrying (the default
/// for errors converted with `?`) and [`NodeError::permanent`] for the rest.
#[diagnostic::on_unimplemented(
    message = "the node `{Self}` has no `Run` implementation",
    label = "`Run` is not implemented for `{Self}`",
    note = "add `impl Run for {Self} {{ async fn run(&self, input: ..., ctx: &Context) -> Result<..., NodeError> {{ ... }} }}`"
)]
pub trait Run: Node {
    /// Runs the node once. Called again for each retry attempt.
    fn run(
        &self,
        input: Self::Input,
        ctx: &Context,
    ) -> impl Future<Output = Result<Self::Output, NodeError>> + Send;

    /// Whether this node runs as soon as the first of its inputs arrives
    /// (a race), instead of once all of them have resolved; what arrives
    /// later is ignored. For nodes whose inputs are all optional, such as a
    /// "first to arrive" merge. Read once, when the flow is compiled.
    fn eager(&self) -> bool {
        false
    }

    /// Whether nodes of this type mostly wait for flows they run through
    /// [`Context::engine`] (a sub-flow, a for-each, an agent's tools). Such
    /// a node takes no slot of the engine-wide concurrency limit, so that
    /// the nodes of the flows it runs can have them (with a limit of one, it
    /// would otherwise wait forever for its own slot); the limit of its
    /// concurrency key still applies. A property of the type, so that the
    /// engine knows it before a configuration with expressions is rendered.
    const RUNS_FLOWS: bool = false;
}

/// The object-safe form of a node, as the engine stores it.
///
/// Implemented for every [`Run`] type; a registry of dynamically configured
/// nodes can implement it directly.
pub trait ErasedNode: Send + Sync + fmt::Debug + 'static {
    /// The node's spec.
    fn spec(&self) -> Arc<NodeSpec>;

    /// Runs the node on one slot per input port, returning one slot per output port.
    fn run<'a>(
        &'a self,
        inputs: Vec<Option<Value>>,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Vec<Option<Value>>, NodeError>>;

    /// The node's configuration as JSON.
    ///
    /// # Errors
    /// The configuration could not be serialized.
    fn config_json(&self) -> Result<serde_json::Value, serde_json::Error>;

    /// Whether the node runs on its first arriving input (see [`Run::eager`]).
    fn eager(&self) -> bool {
        false
    }

    /// Whether the node mostly waits for flows it runs (see
    /// [`Run::RUNS_FLOWS`]).
    fn runs_flows(&self) -> bool {
        false
    }
}

/// Wraps a typed node as an [`ErasedNode`].
pub(crate) struct TypedNode<N> {
    node: N,
    spec: Arc<NodeSpec>,
}

impl<N: Run> TypedNode<N> {
    pub(crate) fn new(node: N) -> Self {
        TypedNode {
            node,
            spec: spec_of::<N>(),
        }
    }
}

/// The spec of node type `N`, computed once per type and shared by every
/// instance (generating the JSON Schemas is the costly part of adding a node).
pub(crate) fn spec_of<N: Node>() -> Arc<NodeSpec> {
    static SPECS: OnceLock<RwLock<HashMap<TypeId, Arc<NodeSpec>>>> = OnceLock::new();
    let specs = SPECS.get_or_init(Default::default);
    if let Some(spec) = specs.read().get(&TypeId::of::<N>()) {
        return spec.clone();
    }
    let spec = Arc::new(N::spec());
    specs
        .write()
        .entry(TypeId::of::<N>())
        .or_insert(spec)
        .clone()
}

impl<N> fmt::Debug for TypedNode<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedNode")
            .field("type", &self.spec.type_name)
            .finish_non_exhaustive()
    }
}

impl<N: Run> ErasedNode for TypedNode<N> {
    fn spec(&self) -> Arc<NodeSpec> {
        self.spec.clone()
    }

    fn run<'a>(
        &'a self,
        mut inputs: Vec<Option<Value>>,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Vec<Option<Value>>, NodeError>> {
        Box::pin(async move {
            let input = N::Input::from_values(&mut inputs).map_err(NodeError::from_port)?;
            // The emptied vector carries the outputs: one allocation less per node.
            inputs.clear();
            let output = self.node.run(input, ctx).await?;
            output.into_values(&mut inputs);
            Ok(inputs)
        })
    }

    fn config_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        self.node.config_json()
    }

    fn eager(&self) -> bool {
        self.node.eager()
    }

    fn runs_flows(&self) -> bool {
        N::RUNS_FLOWS
    }
}
