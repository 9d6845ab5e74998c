//! The engine: runs flows.
//!
//! [`Engine::run`] runs a flow to its [`Outcome`]; [`Engine::start`] returns
//! an [`Execution`] handle with a live event stream, cancellation and `wait`.
//!
//! Semantics:
//! - a node runs as soon as its last incoming edge has resolved; independent
//!   branches run concurrently; when a node finishes, one ready successor runs
//!   on the same task and the others go to the execution's ready queue, which
//!   extra tasks (at most one per runtime thread at a time) help drain when it
//!   grows, when a node has to wait, or when nodes run long; a node that
//!   waits (I/O, a timer) never holds up the others. A node that keeps its
//!   thread busy without awaiting (heavy synchronous computation) can delay
//!   the few ready nodes queued behind it until it ends; put such work in
//!   `tokio::task::spawn_blocking`, as anywhere in async Rust;
//! - a node whose *required* input stays empty (an `Option` output left `None`,
//!   or an upstream node that was skipped) is skipped, and so on downstream
//!   (dead-path elimination); optional inputs may stay empty, but a node
//!   whose connected inputs *all* stayed empty is skipped too (nothing
//!   reached it: every branch it listens to was not taken), so a join runs
//!   with whichever branch arrived and a node inside a branch stays off;
//! - each node has a retry policy, a per-attempt timeout and an on-error policy
//!   ([`NodePolicy`]), with defaults from the engine;
//! - a failure with on-error `fail`, or [`Execution::cancel`], cancels the
//!   execution: running nodes' futures are dropped, no node starts any more;
//! - concurrency limits: engine-wide, and per concurrency key (by default the
//!   node's type name), across all executions of the engine;
//! - every transition is reported to the engine's
//!   [`ExecutionStore`] and, as [`Event`](crate::Event)s,
//!   to its event sinks.
//!
//! The engine never creates a tokio runtime: call it from one.

mod exec;
mod guards;
mod resources;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::Semaphore;

pub(crate) use exec::RunShared;

use crate::context::{EnvSecrets, Secrets};
use crate::error::Error;
use crate::event::{EventSink, EventStream};
use crate::flow::Flow;
use crate::policy::{CircuitBreaker, NodePolicy, OnError, RateLimit, RetryPolicy};
use crate::store::{ExecutionStore, MemoryStore, NodeStatus};
use crate::value::{PortValue, Value};

/// Id of one execution (a UUIDv7: sortable by start time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RunId(uuid::Uuid);

impl RunId {
    /// A new UUIDv7 from the wall clock's milliseconds and 74 random bits
    /// (from a fast thread-local generator, seeded by the OS once; run ids
    /// need to be unique, not secret).
    pub(crate) fn at(now: SystemTime) -> Self {
        let millis = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let random = fastrand::u128(..).to_le_bytes();
        let mut bytes = [0u8; 10];
        bytes.copy_from_slice(&random[..10]);
        RunId(uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid())
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Runs flows. Cheap to clone; clones share limits, sinks and store.
#[derive(Clone)]
pub struct Engine(pub(crate) Arc<EngineInner>);

pub(crate) struct EngineInner {
    pub(crate) defaults: NodePolicy,
    pub(crate) global_limit: Option<Arc<Semaphore>>,
    pub(crate) key_limits: HashMap<String, Arc<Semaphore>>,
    pub(crate) sinks: Vec<Arc<dyn EventSink>>,
    pub(crate) store: Arc<dyn ExecutionStore>,
    pub(crate) secrets: Arc<dyn Secrets>,
    /// Rate buckets and circuit breakers, by key.
    pub(crate) guards: guards::Guards,
    /// Values shared by the nodes (clients, pools, settings), by type.
    pub(crate) resources: resources::Resources,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("defaults", &self.0.defaults)
            .field(
                "concurrency_limit",
                &self.0.global_limit.as_ref().map(|s| s.available_permits()),
            )
            .field("key_limits", &self.0.key_limits.keys().collect::<Vec<_>>())
            .field("sinks", &self.0.sinks.len())
            .field("store", &self.0.store)
            .finish()
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

impl Engine {
    /// An engine with default policies (no retry, no timeout, on-error
    /// `fail`), no concurrency limit, a [`MemoryStore`] and secrets from the
    /// environment.
    pub fn new() -> Self {
        Engine::builder().build()
    }

    /// Configures an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The engine's store.
    pub fn store(&self) -> &Arc<dyn ExecutionStore> {
        &self.0.store
    }

    /// The shared value of type `T` (given with
    /// [`EngineBuilder::resource`] or made by a node with
    /// [`Context::shared`](crate::Context::shared)).
    pub fn resource<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.0.resources.get()
    }

    /// Runs `flow` to completion.
    ///
    /// Dropping the returned future cancels the execution.
    ///
    /// # Errors
    /// [`Error::MissingInput`], [`Error::UnknownInput`] or
    /// [`Error::InputType`] before anything runs; [`Error::NodeFailed`] when a
    /// node fails with on-error `fail`; [`Error::Cancelled`].
    pub async fn run(&self, flow: &Flow, inputs: Inputs) -> Result<Outcome, Error> {
        exec::run_inline(self, flow, inputs).await
    }

    /// Starts `flow` and returns a handle on the execution.
    ///
    /// The execution keeps its events, so [`Execution::events`] sees all of
    /// them whenever it is called. Dropping the handle cancels the execution
    /// unless it was [detached](Execution::detach).
    ///
    /// # Errors
    /// [`Error::MissingInput`], [`Error::UnknownInput`] or [`Error::InputType`].
    pub fn start(&self, flow: &Flow, inputs: Inputs) -> Result<Execution, Error> {
        exec::start(self, flow, inputs)
    }
}

/// Configures an [`Engine`].
#[derive(Default)]
#[must_use]
pub struct EngineBuilder {
    defaults: NodePolicy,
    global_limit: Option<usize>,
    key_limits: HashMap<String, usize>,
    sinks: Vec<Arc<dyn EventSink>>,
    store: Option<Arc<dyn ExecutionStore>>,
    secrets: Option<Arc<dyn Secrets>>,
    resources: resources::Resources,
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("defaults", &self.defaults)
            .field("global_limit", &self.global_limit)
            .field("key_limits", &self.key_limits)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// Default retry policy of every node.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.defaults.retry = Some(retry);
        self
    }

    /// Default per-attempt timeout of every node.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.defaults.timeout = Some(timeout);
        self
    }

    /// Default on-error policy of every node.
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.defaults.on_error = Some(on_error);
        self
    }

    /// Default rate limit of every node (see [`RateLimit`]).
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.defaults.rate_limit = Some(limit);
        self
    }

    /// Default circuit breaker of every node (see [`CircuitBreaker`]).
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.defaults.circuit_breaker = Some(breaker);
        self
    }

    /// At most `limit` nodes run at once, across all executions (at least one).
    pub fn concurrency_limit(mut self, limit: usize) -> Self {
        self.global_limit = Some(limit.max(1));
        self
    }

    /// At most `limit` nodes with concurrency key `key` (by default, nodes of
    /// type `key`) run at once, across all executions (at least one).
    pub fn limit(mut self, key: impl Into<String>, limit: usize) -> Self {
        self.key_limits.insert(key.into(), limit.max(1));
        self
    }

    /// Adds an event sink that sees every execution's events.
    pub fn event_sink(mut self, sink: impl EventSink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Uses `store` instead of a [`MemoryStore`].
    pub fn store(mut self, store: impl ExecutionStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Makes `value` available to every node, as [`Context::resource`]
    /// (one value per type; a second of the same type replaces the first).
    /// For settings and clients the application owns, such as an HTTP
    /// policy or a connection pool.
    ///
    /// [`Context::resource`]: crate::Context::resource
    pub fn resource<T: Send + Sync + 'static>(self, value: T) -> Self {
        self.resources.insert(Arc::new(value));
        self
    }

    /// As [`resource`](Self::resource), for a value already shared.
    pub fn resource_arc<T: Send + Sync + 'static>(self, value: Arc<T>) -> Self {
        self.resources.insert(value);
        self
    }

    /// The node registry, for nodes that load flow documents at run time
    /// (sub-flows): [`Context::registry`](crate::Context::registry).
    pub fn registry(self, registry: Arc<crate::Registry>) -> Self {
        self.resource_arc(registry)
    }

    /// Uses `secrets` instead of [`EnvSecrets`].
    pub fn secrets(mut self, secrets: impl Secrets) -> Self {
        self.secrets = Some(Arc::new(secrets));
        self
    }

    /// Builds the engine.
    pub fn build(self) -> Engine {
        Engine(Arc::new(EngineInner {
            defaults: self.defaults,
            global_limit: self.global_limit.map(|n| Arc::new(Semaphore::new(n))),
            key_limits: self
                .key_limits
                .into_iter()
                .map(|(k, n)| (k, Arc::new(Semaphore::new(n))))
                .collect(),
            sinks: self.sinks,
            store: self
                .store
                .unwrap_or_else(|| Arc::new(MemoryStore::default())),
            secrets: self
                .secrets
                .unwrap_or_else(|| Arc::new(EnvSecrets::default())),
            guards: guards::Guards::default(),
            resources: self.resources,
        }))
    }
}

/// The inputs of one execution, by flow input name.
#[derive(Debug, Clone, Default)]
pub struct Inputs(pub(crate) Vec<(String, Value)>);

impl Inputs {
    /// No inputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets input `name` to a typed value.
    #[must_use]
    pub fn set<T: PortValue>(self, name: impl Into<String>, value: T) -> Self {
        self.set_value(name, Value::new(value))
    }

    /// Sets input `name` to a [`Value`] (for example [`Value::json`]).
    #[must_use]
    pub fn set_value(mut self, name: impl Into<String>, value: Value) -> Self {
        let name = name.into();
        self.0.retain(|(n, _)| *n != name);
        self.0.push((name, value));
        self
    }

    /// Inputs from a JSON object: each member becomes a JSON input value.
    pub fn from_json(object: serde_json::Map<String, serde_json::Value>) -> Self {
        Inputs(
            object
                .into_iter()
                .map(|(k, v)| (k, Value::json(v)))
                .collect(),
        )
    }
}

/// What one node did in an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NodeSummary<'a> {
    /// Node id.
    pub id: &'a str,
    /// Final state.
    pub status: NodeStatus,
    /// Attempts made.
    pub attempts: u32,
    /// Time spent in attempts (not in retry delays or waiting for a
    /// concurrency slot). When one task runs several nodes in a row, the
    /// engine's bookkeeping between two of them, well under a microsecond,
    /// is counted in the second's time.
    #[serde(rename = "busy_us", serialize_with = "ser_us")]
    pub busy: Duration,
}

/// The result of a successful execution.
#[derive(Clone)]
pub struct Outcome {
    /// The finished execution: node results are read from it, not copied.
    pub(crate) run: Arc<RunShared>,
    /// One value per flow output, in declaration order.
    pub(crate) outputs: Vec<Option<Value>>,
    pub(crate) duration: Duration,
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome")
            .field("run_id", &self.run.run_id)
            .field("flow", &self.run.flow.name())
            .field("outputs", &self.outputs)
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

impl Outcome {
    /// The execution's id.
    pub fn run_id(&self) -> RunId {
        self.run.run_id
    }

    /// Wall time of the execution.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Flow output `name` as a `T`.
    ///
    /// # Errors
    /// [`Error::Output`] when there is no such output, it stayed empty (its
    /// branch was not taken), or it is not a `T`.
    pub fn output<T: PortValue>(&self, name: &str) -> Result<T, Error> {
        let fail = |reason: String| Error::Output {
            name: name.to_owned(),
            reason,
        };
        let (_, slot) = self
            .outputs()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| fail("the flow has no such output".into()))?;
        let value = slot
            .cloned()
            .ok_or_else(|| fail("empty: the branch that produces it was not taken".into()))?;
        value.take::<T>().map_err(|e| fail(e.to_string()))
    }

    /// Flow output `name` as a [`Value`]; `None` when absent or empty.
    pub fn output_value(&self, name: &str) -> Option<&Value> {
        self.outputs()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v)
    }

    /// Every flow output by name, in declaration order; `None` for an empty one.
    pub fn outputs(&self) -> impl ExactSizeIterator<Item = (&str, Option<&Value>)> + '_ {
        self.run
            .flow
            .outputs()
            .iter()
            .zip(&self.outputs)
            .map(|(port, value)| (port.name.as_str(), value.as_ref()))
    }

    /// What each node did, by node index.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = NodeSummary<'_>> + '_ {
        self.run.flow.nodes().iter().enumerate().map(|(i, node)| {
            let (status, attempts, busy) = self.run.node_result(i);
            NodeSummary {
                id: &node.id,
                status,
                attempts,
                busy,
            }
        })
    }

    /// The summary of node `id`.
    pub fn node(&self, id: &str) -> Option<NodeSummary<'_>> {
        self.nodes().find(|n| n.id == id)
    }

    /// The outputs as a JSON object (empty outputs are `null`).
    ///
    /// # Errors
    /// An output's `Serialize` implementation failed.
    pub fn outputs_json(&self) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
        self.outputs()
            .map(|(name, value)| {
                let json = match value {
                    Some(v) => v.to_json().map_err(|e| Error::Output {
                        name: name.to_owned(),
                        reason: e.to_string(),
                    })?,
                    None => serde_json::Value::Null,
                };
                Ok((name.to_owned(), json))
            })
            .collect()
    }
}

/// A handle on a running execution.
///
/// Dropping it cancels the execution, unless it was [detached](Self::detach).
pub struct Execution {
    pub(crate) shared: Arc<RunShared>,
    pub(crate) detached: bool,
}

impl fmt::Debug for Execution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Execution")
            .field("run_id", &self.shared.run_id)
            .field("flow", &self.shared.flow.name())
            .finish_non_exhaustive()
    }
}

impl Execution {
    /// The execution's id.
    pub fn run_id(&self) -> RunId {
        self.shared.run_id
    }

    /// The execution's events, from its first to its last, then the end of
    /// the stream.
    pub fn events(&self) -> EventStream {
        self.shared.events_log()
    }

    /// Cancels the execution: running nodes are stopped, no node starts any
    /// more, and [`wait`](Self::wait) returns [`Error::Cancelled`] (unless the
    /// execution had already ended).
    pub fn cancel(&self) {
        self.shared.cancel_by_user();
    }

    /// Waits for the end of the execution.
    ///
    /// # Errors
    /// As [`Engine::run`].
    pub async fn wait(mut self) -> Result<Outcome, Error> {
        let result = self.shared.wait().await;
        self.detached = true;
        result
    }

    /// Lets the execution go on without this handle.
    pub fn detach(mut self) {
        self.detached = true;
    }
}

impl Drop for Execution {
    fn drop(&mut self) {
        if !self.detached {
            self.shared.cancel_by_user();
        }
    }
}

fn ser_us<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros().min(u64::MAX as u128) as u64)
}
