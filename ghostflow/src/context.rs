//! What a running node can see: ids, attempt, cancellation, secrets, progress.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::RunId;
use crate::engine::RunShared;
use crate::error::NodeError;
use crate::event::EventKind;

/// Handed to [`Run::run`](crate::Run::run) on every attempt.
pub struct Context {
    pub(crate) run: Arc<RunShared>,
    /// The node and attempt being run. The engine reuses one context for the
    /// nodes that one task runs one after the other, and sets these before
    /// each attempt; a node only sees its own values.
    node_index: AtomicU32,
    attempt: AtomicU32,
}

impl Context {
    pub(crate) fn new(run: Arc<RunShared>) -> Self {
        Context {
            run,
            node_index: AtomicU32::new(0),
            attempt: AtomicU32::new(0),
        }
    }

    /// Points the context at `attempt` of node `index`.
    pub(crate) fn set_node(&self, index: u32, attempt: u32) {
        self.node_index.store(index, Ordering::Relaxed);
        self.attempt.store(attempt, Ordering::Relaxed);
    }

    fn index(&self) -> u32 {
        self.node_index.load(Ordering::Relaxed)
    }

    /// Id of the execution.
    pub fn run_id(&self) -> RunId {
        self.run.run_id
    }

    /// Id of this node in its flow.
    pub fn node_id(&self) -> &str {
        &self.run.node(self.index()).id
    }

    /// The attempt number, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt.load(Ordering::Relaxed)
    }

    /// Whether the execution was cancelled (or failed elsewhere). The engine
    /// drops a cancelled node's future at its next `.await`; long synchronous
    /// loops can check this to stop sooner.
    pub fn is_cancelled(&self) -> bool {
        self.run.is_cancelled()
    }

    /// Resolves when the execution is cancelled.
    pub async fn cancelled(&self) {
        self.run.cancelled().await
    }

    /// A token that is cancelled with the execution, to hand to spawned work.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.run.token().child_token()
    }

    /// Reads a secret.
    ///
    /// # Errors
    /// A permanent error naming the node and the secret when the provider
    /// does not have it.
    pub fn secret(&self, name: &str) -> Result<Secret, NodeError> {
        let secret = self.run.secrets.get(name).ok_or_else(|| {
            NodeError::permanent(format!(
                "node `{}`: secret `{name}` is not set",
                self.node_id()
            ))
        })?;
        // From now on this run masks the value in errors and events.
        self.run.redactor.add(secret.expose());
        Ok(secret)
    }

    /// The value of type `T` the application gave the engine with
    /// [`EngineBuilder::resource`](crate::EngineBuilder::resource), such as
    /// settings or a client it owns.
    pub fn resource<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.run.engine.resources.get()
    }

    /// The engine's shared value of type `T`, made by `init` the first time
    /// any node of the engine asks: one HTTP client or one pool of
    /// connections for every node of every execution. Use a type of your
    /// own (a newtype) so that nodes of different families do not collide.
    pub fn shared<T: Send + Sync + 'static>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        self.run.engine.resources.get_or_init(init)
    }

    /// The engine running this node, to run other flows (sub-flows) with
    /// the same policies, store, secrets and resources. Dropping such a
    /// run's future cancels it, so a cancelled node cancels its sub-flows.
    pub fn engine(&self) -> crate::Engine {
        crate::Engine(self.run.engine.clone())
    }

    /// The node registry given with
    /// [`EngineBuilder::registry`](crate::EngineBuilder::registry), for
    /// nodes that load flow documents.
    pub fn registry(&self) -> Option<Arc<crate::Registry>> {
        self.resource()
    }

    /// The engine's secrets provider, for configuration expressions.
    pub(crate) fn secrets(&self) -> &dyn Secrets {
        &*self.run.secrets
    }

    /// Masks `value` in everything this run reports from now on.
    pub(crate) fn redact(&self, value: &str) {
        self.run.redactor.add(value);
    }

    /// Emits a progress event (for example a streamed LLM token) on the
    /// execution's event stream. Free when nobody listens.
    pub fn progress(&self, data: impl Serialize) {
        let emitter = &self.run.emitter;
        if emitter.is_active() {
            let mut data = serde_json::to_value(data).unwrap_or_else(|e| {
                serde_json::Value::String(format!("<progress not serializable: {e}>"))
            });
            self.run.redactor.json(&mut data);
            let index = self.index();
            emitter.emit(|| EventKind::NodeProgress {
                node: self.run.node(index).id.clone(),
                index,
                data,
            });
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("run_id", &self.run.run_id)
            .field("node_id", &self.node_id())
            .field("attempt", &self.attempt())
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// A secret value. Its `Debug` and `Display` print `***`, so it does not leak
/// into logs or errors by accident; [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where secrets come from.
pub trait Secrets: Send + Sync + fmt::Debug + 'static {
    /// The secret `name`, if known.
    fn get(&self, name: &str) -> Option<Secret>;
}

/// Secrets from environment variables (the default), optionally under a prefix:
/// with prefix `GHOSTFLOW_`, secret `API_KEY` is variable `GHOSTFLOW_API_KEY`.
#[derive(Debug, Clone, Default)]
pub struct EnvSecrets {
    prefix: String,
}

impl EnvSecrets {
    /// Reads variables named `{prefix}{NAME}`.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        EnvSecrets {
            prefix: prefix.into(),
        }
    }
}

impl Secrets for EnvSecrets {
    fn get(&self, name: &str) -> Option<Secret> {
        std::env::var(format!("{}{name}", self.prefix))
            .ok()
            .map(Secret::new)
    }
}

/// Secrets from a fixed map, for tests and embedding applications.
#[derive(Debug, Clone, Default)]
pub struct MapSecrets(HashMap<String, Secret>);

impl MapSecrets {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Arc<str>>) -> Self {
        self.0.insert(name.into(), Secret::new(value));
        self
    }
}

impl Secrets for MapSecrets {
    fn get(&self, name: &str) -> Option<Secret> {
        self.0.get(name).cloned()
    }
}
