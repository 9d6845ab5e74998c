//! GhostFlow: an embeddable workflow and AI orchestration engine.
//!
//! Define flows in Rust with a typed builder, write custom nodes with
//! `#[derive(Node)]`, and run them on an async engine with retries, timeouts,
//! branching, concurrency limits, live events and a pluggable execution store.
//!
//! ```
//! use ghostflow::prelude::*;
//!
//! /// Adds one to a number.
//! #[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
//! #[node(input = Number, output = Number)]
//! pub struct AddOne {}
//!
//! /// A number.
//! #[derive(Ports)]
//! pub struct Number {
//!     /// The number.
//!     pub n: u64,
//! }
//!
//! impl Run for AddOne {
//!     async fn run(&self, input: Number, _ctx: &Context) -> Result<Number, NodeError> {
//!         Ok(Number { n: input.n + 1 })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ghostflow::Error> {
//! let mut b = Flow::builder("add-two");
//! let start = b.input::<u64>("n");
//! let first = b.add("first", AddOne {});
//! let second = b.add("second", AddOne {});
//! b.connect(start, first.inp().n);
//! b.connect(first.out().n, second.inp().n);
//! b.output("result", second.out().n);
//! let flow = b.build()?;
//!
//! let outcome = Engine::new().run(&flow, Inputs::new().set("n", 40u64)).await?;
//! assert_eq!(outcome.output::<u64>("result")?, 42);
//! # Ok(())
//! # }
//! ```
//!
//! Start with [`node`] (writing nodes), [`FlowBuilder`] (wiring them), and
//! [`Engine`] (running them). `ARCHITECTURE.md` in the repository describes
//! the life of a flow from definition to outcome.
#![doc(test(attr(deny(warnings))))]

pub mod context;
pub mod document;
pub mod engine;
pub mod error;
pub mod event;
pub mod expr;
pub mod flow;
pub mod node;
pub mod policy;
pub mod port;
mod redact;
pub mod registry;
pub mod store;
pub mod value;

pub use context::{Context, EnvSecrets, MapSecrets, Secret, Secrets};
pub use engine::{Engine, EngineBuilder, Execution, Inputs, NodeSummary, Outcome, RunId};
pub use error::{Error, ErrorKind, NodeError, Problem};
pub use event::{ChannelSink, Event, EventKind, EventSink, EventStream, RunStatus};
pub use flow::{Edge, Endpoint, Flow, FlowBuilder, FlowNode, FlowPort, NodeFailure, NodeRef};
pub use node::{ErasedNode, Node, NodeSpec, Run};
pub use policy::{CircuitBreaker, NodePolicy, OnError, RateLimit, RetryPolicy};
pub use port::{In, NodeIndex, Out, Port, PortSpec, Ports};
pub use registry::{ConfigError, LookupError, NodeType, Registry};
pub use store::{
    ExecutionRecorder, ExecutionState, ExecutionStore, MemoryStore, NodeRecord, NodeStatus,
};
pub use value::{PortValue, Value};

/// Derives [`Node`] for a configuration struct. See [`node`] for the attributes.
pub use ghostflow_macros::Node;
/// Derives [`Ports`] for a struct of ports. See [`port`] for the rules.
pub use ghostflow_macros::Ports;

/// The traits and types most flows and nodes need. `Node` and `Ports` are
/// both the traits and their derives.
pub mod prelude {
    pub use crate::{
        CircuitBreaker, Context, Engine, Error, Flow, FlowBuilder, Inputs, Node, NodeError,
        NodePolicy, OnError, Ports, RateLimit, RetryPolicy, Run,
    };
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}

/// Items used by code that the derives generate. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::error::NodeError;
    pub use crate::node::{Node, NodeSpec, Run};
    pub use crate::port::derive_support::{assert_port_value, take_optional, take_required};
    pub use crate::port::{Direction, NodeIndex, Port, PortError, PortSpec, Ports};
    pub use crate::value::{PortValue, Value};
    pub use ::core::option::Option;
    pub use ::core::result::Result;
    pub use ::schemars;
    pub use ::serde;
    pub use ::serde_json;
    pub use ::std::string::String;
    pub use ::std::vec::Vec;
}
