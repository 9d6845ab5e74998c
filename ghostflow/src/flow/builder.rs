//! The typed flow builder.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use std::collections::hash_map::Entry;

use super::{Edge, Endpoint, Flow, FlowInner, FlowNode, FlowPort, IdIndex, NodeFailure, Plan};
use crate::error::{Error, Problem};
use crate::node::{ErasedNode, Node, Run, TypedNode};
use crate::policy::NodePolicy;
use crate::port::{In, NodeIndex, Out, Port, Ports};
use crate::value::PortValue;

static NEXT_BUILDER: AtomicU64 = AtomicU64::new(1);

/// Builds a [`Flow`]: add nodes, connect typed ports, declare flow inputs and
/// outputs, then [`build`](FlowBuilder::build).
///
/// Mistakes that the type system cannot catch (duplicate ids, unconnected
/// required inputs, inputs connected twice, cycles) are collected and all
/// reported by `build`.
///
/// ```
/// use ghostflow::prelude::*;
///
/// /// Doubles a number.
/// #[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
/// #[node(input = N, output = N)]
/// pub struct Double;
///
/// /// A number.
/// #[derive(Ports)]
/// pub struct N {
///     /// The number.
///     pub n: u64,
/// }
///
/// impl Run for Double {
///     async fn run(&self, input: N, _ctx: &Context) -> Result<N, NodeError> {
///         Ok(N { n: input.n * 2 })
///     }
/// }
///
/// let mut b = Flow::builder("quadruple");
/// let n = b.input::<u64>("n");
/// let a = b.add("a", Double);
/// let c = b.add("c", Double);
/// b.connect(n, a.inp().n);
/// b.connect(a.out().n, c.inp().n);
/// b.output("n", c.out().n);
/// b.policy(&c).timeout(std::time::Duration::from_secs(5));
/// let flow = b.build().expect("valid flow");
/// assert_eq!(flow.nodes().len(), 2);
/// ```
pub struct FlowBuilder {
    id: u64,
    name: String,
    nodes: Vec<FlowNode>,
    /// Node ids, indexed as nodes are added: duplicates are found then, and
    /// the finished flow looks nodes up by id through it.
    index: IdIndex,
    /// Ids added more than once (each is reported once).
    duplicates: Vec<Arc<str>>,
    edges: Vec<Edge>,
    inputs: Vec<FlowPort>,
    outputs: Vec<FlowPort>,
    problems: Vec<Problem>,
    scratch: NodePolicy,
}

/// A node added to a [`FlowBuilder`]: gives typed handles on its ports.
pub struct NodeRef<N> {
    index: NodeIndex,
    builder: u64,
    _marker: PhantomData<fn() -> N>,
}

impl<N> Clone for NodeRef<N> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<N> Copy for NodeRef<N> {}

impl<N> fmt::Debug for NodeRef<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeRef")
            .field("index", &self.index.0)
            .field("type", &std::any::type_name::<N>())
            .finish()
    }
}

impl<N: Node> NodeRef<N> {
    /// Handles on the node's input ports.
    pub fn inp(&self) -> <N::Input as Ports>::Handles<In> {
        <N::Input as Ports>::handles::<In>(self.index, self.builder)
    }

    /// Handles on the node's output ports.
    pub fn out(&self) -> <N::Output as Ports>::Handles<Out> {
        <N::Output as Ports>::handles::<Out>(self.index, self.builder)
    }

    /// The node's `error` port: carries the failure when the node's on-error
    /// policy is [`Continue`](crate::OnError::Continue), stays empty otherwise.
    pub fn error(&self) -> Port<Out, NodeFailure> {
        Port::__new(self.index, <N::Output as Ports>::LEN as u16, self.builder)
    }

    /// The node's index in the flow.
    pub fn index(&self) -> NodeIndex {
        self.index
    }
}

impl fmt::Debug for FlowBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowBuilder")
            .field("name", &self.name)
            .field("nodes", &self.nodes.len())
            .field("edges", &self.edges.len())
            .finish_non_exhaustive()
    }
}

impl FlowBuilder {
    /// An empty builder for a flow named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        FlowBuilder {
            id: NEXT_BUILDER.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            nodes: Vec::new(),
            index: IdIndex::default(),
            duplicates: Vec::new(),
            edges: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            problems: Vec::new(),
            scratch: NodePolicy::default(),
        }
    }

    /// Adds a typed node under `id`.
    pub fn add<N: Run>(&mut self, id: impl Into<String>, node: N) -> NodeRef<N> {
        let index = self.add_erased(id, Arc::new(TypedNode::new(node)));
        NodeRef {
            index,
            builder: self.id,
            _marker: PhantomData,
        }
    }

    /// Adds a type-erased node (for nodes created from documents or at run time).
    pub fn add_erased(&mut self, id: impl Into<String>, node: Arc<dyn ErasedNode>) -> NodeIndex {
        let index = NodeIndex(self.nodes.len() as u32);
        let spec = node.spec();
        let id: Arc<str> = Arc::from(id.into());
        if !valid_id(&id) {
            self.problems
                .push(Problem::InvalidId { id: id.to_string() });
        }
        match self.index.entry(id.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(index);
            }
            Entry::Occupied(_) => {
                if !self.duplicates.contains(&id) {
                    self.problems
                        .push(Problem::DuplicateId { id: id.to_string() });
                    self.duplicates.push(id.clone());
                }
            }
        }
        self.nodes.push(FlowNode {
            id,
            node,
            spec,
            policy: None,
        });
        index
    }

    /// Declares a required flow input named `name`, and returns it as an
    /// output port to connect to node inputs.
    pub fn input<T: PortValue>(&mut self, name: impl Into<String>) -> Port<Out, T> {
        let position = self.inputs.len() as u16;
        self.inputs.push(FlowPort {
            name: name.into(),
            schema: schema_of::<T>(),
            type_name: std::any::type_name::<T>().to_owned(),
            default: None,
            description: None,
            source: None,
        });
        Port::__new(NodeIndex::FLOW_INPUTS, position, self.id)
    }

    /// Declares a flow input of JSON values described by `schema` (for
    /// flows built from documents), optionally with a default value that
    /// makes it optional. Returns its endpoint, to connect with
    /// [`connect_erased`](Self::connect_erased).
    pub fn input_json(
        &mut self,
        name: impl Into<String>,
        schema: serde_json::Value,
        default: Option<serde_json::Value>,
        description: Option<String>,
    ) -> Endpoint {
        let position = self.inputs.len() as u16;
        self.inputs.push(FlowPort {
            name: name.into(),
            schema,
            type_name: std::any::type_name::<serde_json::Value>().to_owned(),
            default,
            description,
            source: None,
        });
        Endpoint {
            node: NodeIndex::FLOW_INPUTS,
            port: position,
        }
    }

    /// Sets the default value of the flow input at `position` (see
    /// [`input_json`](Self::input_json)).
    pub fn input_default(&mut self, position: u16, default: serde_json::Value) {
        if let Some(input) = self.inputs.get_mut(position as usize) {
            input.default = Some(default);
        }
    }

    /// Declares a flow output named `name`, read from `from`.
    pub fn output<T: PortValue>(&mut self, name: impl Into<String>, from: Port<Out, T>) {
        let name = name.into();
        if from.builder != self.id {
            self.problems.push(Problem::ForeignPort {
                context: format!("flow output `{name}`"),
            });
            return;
        }
        self.outputs.push(FlowPort {
            name,
            schema: schema_of::<T>(),
            type_name: std::any::type_name::<T>().to_owned(),
            default: None,
            description: None,
            source: Some(Endpoint {
                node: from.node,
                port: from.port,
            }),
        });
    }

    /// Declares a flow output named `name`, read from an endpoint by index
    /// (for flows built from documents). Its schema is the port's.
    pub fn output_erased(&mut self, name: impl Into<String>, from: Endpoint) {
        let port = self
            .nodes
            .get(from.node.index())
            .and_then(|n| n.spec.outputs.get(from.port as usize));
        let (schema, type_name) = match port {
            Some(port) => (port.schema.clone(), port.type_name.clone()),
            None => (serde_json::Value::Null, String::new()),
        };
        self.outputs.push(FlowPort {
            name: name.into(),
            schema,
            type_name,
            default: None,
            description: None,
            source: Some(from),
        });
    }

    /// Connects an output port to an input port of the same type.
    pub fn connect<T>(&mut self, from: Port<Out, T>, to: Port<In, T>) {
        if from.builder != self.id || to.builder != self.id {
            self.problems.push(Problem::ForeignPort {
                context: "connect".to_owned(),
            });
            return;
        }
        self.connect_erased(
            Endpoint {
                node: from.node,
                port: from.port,
            },
            Endpoint {
                node: to.node,
                port: to.port,
            },
        );
    }

    /// Connects two endpoints by index, without compile-time type checks.
    /// Out-of-range endpoints are reported by [`build`](Self::build).
    pub fn connect_erased(&mut self, from: Endpoint, to: Endpoint) {
        self.edges.push(Edge { from, to });
    }

    /// The policy overrides of a node, to change in place.
    pub fn policy<N>(&mut self, node: &NodeRef<N>) -> &mut NodePolicy {
        if node.builder != self.id {
            self.problems.push(Problem::ForeignPort {
                context: "policy".to_owned(),
            });
            return &mut self.scratch;
        }
        self.policy_at(node.index)
    }

    /// The policy overrides of the node at `index`.
    pub fn policy_at(&mut self, index: NodeIndex) -> &mut NodePolicy {
        match self.nodes.get_mut(index.index()) {
            Some(node) => node.policy.get_or_insert_with(Box::default),
            None => &mut self.scratch,
        }
    }

    /// The nodes added so far.
    pub fn nodes(&self) -> &[FlowNode] {
        &self.nodes
    }

    /// The index of the node added under `id` (the first, if several were).
    pub fn node_index(&self, id: &str) -> Option<NodeIndex> {
        self.index.get(id).copied()
    }

    /// Validates the flow and compiles it.
    ///
    /// # Errors
    /// [`Error::Invalid`] with every problem found: duplicate or invalid ids,
    /// unconnected required inputs, inputs connected twice, cycles, duplicate
    /// flow input or output names, out-of-range endpoints.
    pub fn build(self) -> Result<Flow, Error> {
        let mut problems = self.problems;
        let plan = Plan::compile(&self.nodes, &self.edges, &self.inputs, &self.outputs);
        let plan = match plan {
            Ok(plan) if problems.is_empty() => plan,
            Ok(_) => {
                return Err(Error::Invalid {
                    flow: self.name,
                    problems,
                });
            }
            Err(more) => {
                problems.extend(more);
                return Err(Error::Invalid {
                    flow: self.name,
                    problems,
                });
            }
        };
        let input_checks = self.inputs.iter().map(|_| OnceLock::new()).collect();
        Ok(Flow(Arc::new(FlowInner {
            name: self.name,
            input_checks,
            nodes: self.nodes,
            index: self.index,
            edges: self.edges,
            inputs: self.inputs,
            outputs: self.outputs,
            plan,
        })))
    }
}

/// Whether `id` may name a node: letters, digits, `_` and `-`, not empty.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn schema_of<T: schemars::JsonSchema>() -> serde_json::Value {
    schemars::SchemaGenerator::default()
        .into_root_schema_for::<T>()
        .to_value()
}

impl<N> From<NodeRef<N>> for NodeIndex {
    fn from(node: NodeRef<N>) -> Self {
        node.index
    }
}
