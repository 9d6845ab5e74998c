//! Flows: graphs of configured nodes, built with [`FlowBuilder`].
//!
//! A [`Flow`] is validated and compiled once, by [`FlowBuilder::build`], into
//! a dense index-based plan; running it never re-validates. A `Flow` is cheap
//! to clone and can run many times, concurrently.

mod builder;
mod plan;

use std::fmt;
use std::sync::{Arc, OnceLock};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub(crate) use builder::valid_id;
pub use builder::{FlowBuilder, NodeRef};
pub(crate) use plan::{Plan, Target};

use crate::error::ErrorKind;
use crate::node::{ErasedNode, NodeSpec};
use crate::policy::NodePolicy;
use crate::port::NodeIndex;

/// One end of an edge: a port of a node, or of the flow's inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The node (for an edge source, possibly the flow's inputs).
    pub node: NodeIndex,
    /// The port's position in the node's input or output list.
    pub port: u16,
}

impl Endpoint {
    /// Whether this endpoint is one of the flow's own inputs.
    pub fn is_flow_input(&self) -> bool {
        self.node == NodeIndex::FLOW_INPUTS
    }
}

/// An edge from an output port to an input port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// The output port (or flow input).
    pub from: Endpoint,
    /// The input port.
    pub to: Endpoint,
}

/// A node instance in a flow.
#[derive(Debug, Clone)]
pub struct FlowNode {
    /// Unique id within the flow.
    pub id: Arc<str>,
    /// The configured node.
    pub node: Arc<dyn ErasedNode>,
    /// Its spec (shared by every instance of the type).
    pub spec: Arc<NodeSpec>,
    /// Policy overrides; `None` when there are none (most nodes), which
    /// keeps a node small.
    pub(crate) policy: Option<Box<NodePolicy>>,
}

/// The policy of a node without overrides.
static NO_OVERRIDES: NodePolicy = NodePolicy {
    retry: None,
    timeout: None,
    on_error: None,
    concurrency_key: None,
    rate_limit: None,
    circuit_breaker: None,
};

impl FlowNode {
    /// The node's policy overrides (unset fields fall back to the engine's
    /// defaults).
    pub fn policy(&self) -> &NodePolicy {
        self.policy.as_deref().unwrap_or(&NO_OVERRIDES)
    }

    /// Name of output port `port`; the last port is the implicit `error` port.
    pub fn output_name(&self, port: u16) -> &str {
        self.spec
            .outputs
            .get(port as usize)
            .map_or(ERROR_PORT, |p| p.name.as_str())
    }

    /// Name of input port `port`.
    pub fn input_name(&self, port: u16) -> &str {
        self.spec
            .inputs
            .get(port as usize)
            .map_or("?", |p| p.name.as_str())
    }

    /// Number of output slots, including the `error` port.
    pub(crate) fn output_len(&self) -> usize {
        self.spec.outputs.len() + 1
    }
}

/// Name of the implicit output port that carries a node's failure when its
/// on-error policy is [`OnError::Continue`](crate::OnError::Continue).
pub const ERROR_PORT: &str = "error";

/// A declared flow input or output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowPort {
    /// Its name.
    pub name: String,
    /// JSON Schema of its values.
    pub schema: serde_json::Value,
    /// Rust type of its values.
    pub type_name: String,
    /// For an input: the value used when a run does not give one (an input
    /// without a default is required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// What the input or output is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// For an output: the node port it reads.
    #[serde(skip)]
    pub source: Option<Endpoint>,
}

/// The value of a node's `error` port: why it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeFailure {
    /// The failed node's id.
    pub node: String,
    /// The last error message.
    pub message: String,
    /// Attempts made.
    pub attempts: u32,
    /// Whether the last error was retryable.
    pub retryable: bool,
}

impl NodeFailure {
    pub(crate) fn new(node: &str, message: &str, attempts: u32, kind: ErrorKind) -> Self {
        NodeFailure {
            node: node.to_owned(),
            message: message.to_owned(),
            attempts,
            retryable: kind == ErrorKind::Retryable,
        }
    }
}

/// Node indices by id. foldhash: fast on short ids, and seeded per process,
/// so a crafted document cannot make every id collide.
pub(crate) type IdIndex =
    std::collections::HashMap<Arc<str>, NodeIndex, foldhash::fast::RandomState>;

/// A validated, compiled flow. Cheap to clone.
#[derive(Clone)]
pub struct Flow(pub(crate) Arc<FlowInner>);

pub(crate) struct FlowInner {
    pub(crate) name: String,
    pub(crate) nodes: Vec<FlowNode>,
    /// Node index by id.
    pub(crate) index: IdIndex,
    pub(crate) edges: Vec<Edge>,
    pub(crate) inputs: Vec<FlowPort>,
    pub(crate) outputs: Vec<FlowPort>,
    pub(crate) plan: Plan,
    /// For each JSON-typed flow input, its schema compiled on first use
    /// (`None` inside when the schema admits anything or does not compile).
    pub(crate) input_checks: Box<[OnceLock<Option<jsonschema::Validator>>]>,
}

impl Flow {
    /// Starts building a flow named `name`.
    pub fn builder(name: impl Into<String>) -> FlowBuilder {
        FlowBuilder::new(name)
    }

    /// The flow's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The nodes, by index.
    pub fn nodes(&self) -> &[FlowNode] {
        &self.0.nodes
    }

    /// The node with id `id`.
    pub fn node(&self, id: &str) -> Option<&FlowNode> {
        let index = self.0.index.get(id)?;
        self.0.nodes.get(index.index())
    }

    /// The index of node `id`.
    pub fn node_index(&self, id: &str) -> Option<NodeIndex> {
        self.0.index.get(id).copied()
    }

    /// The edges, in the order they were added.
    pub fn edges(&self) -> &[Edge] {
        &self.0.edges
    }

    /// The declared flow inputs.
    pub fn inputs(&self) -> &[FlowPort] {
        &self.0.inputs
    }

    /// The declared flow outputs.
    pub fn outputs(&self) -> &[FlowPort] {
        &self.0.outputs
    }

    /// Checks a value given for JSON-typed flow input `position` against its
    /// schema; every problem found, as `path: message` lines.
    pub(crate) fn check_input(&self, position: usize, value: &serde_json::Value) -> Vec<String> {
        let (Some(port), Some(check)) = (
            self.0.inputs.get(position),
            self.0.input_checks.get(position),
        ) else {
            return Vec::new();
        };
        let validator = check.get_or_init(|| {
            let trivial = port
                .schema
                .as_object()
                .is_some_and(serde_json::Map::is_empty)
                || port.schema == serde_json::Value::Bool(true);
            if trivial {
                None
            } else {
                jsonschema::validator_for(&port.schema).ok()
            }
        });
        let Some(validator) = validator else {
            return Vec::new();
        };
        validator
            .iter_errors(value)
            .map(|e| {
                let at = crate::registry::pointer_to_path(e.instance_path().as_str());
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect()
    }

    /// Node indices in a topological order.
    pub fn topological_order(&self) -> impl Iterator<Item = NodeIndex> + '_ {
        self.0.plan.topo.iter().map(|&i| NodeIndex(i))
    }
}

impl fmt::Debug for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow")
            .field("name", &self.0.name)
            .field("nodes", &self.0.nodes.len())
            .field("edges", &self.0.edges.len())
            .finish()
    }
}
