//! Execution stores: where the engine reports the state of every execution.
//!
//! The engine keeps no hidden state: it reports every node transition (and
//! each node's outputs, the checkpoint) to an [`ExecutionStore`] as plain
//! data. [`MemoryStore`] is the default; a durable store implements the same
//! two traits.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;

use crate::RunId;
use crate::event::RunStatus;
use crate::value::Value;

/// The state of one node in one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Waiting for inputs.
    Pending,
    /// An attempt is running (or waiting for a retry).
    Running,
    /// Finished with outputs.
    Succeeded,
    /// Failed after its last attempt.
    Failed,
    /// Skipped (dead path, or on-error `skip`).
    Skipped,
    /// Stopped by cancellation while running.
    Cancelled,
    /// Never started because the execution ended first.
    NotRun,
}

impl NodeStatus {
    /// Whether the node reached a final state.
    pub fn is_final(self) -> bool {
        !matches!(self, NodeStatus::Pending | NodeStatus::Running)
    }
}

/// What is known about one node of one execution.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRecord {
    /// Current state.
    pub status: NodeStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// Total time spent in attempts (excluding retry delays).
    #[serde(rename = "busy_us", serialize_with = "ser_us")]
    pub busy: Duration,
    /// The last error message.
    pub error: Option<String>,
    /// The outputs, one slot per output port (the last is `error`), once succeeded.
    #[serde(skip)]
    pub outputs: Option<Arc<[Option<Value>]>>,
}

impl NodeRecord {
    pub(crate) fn pending() -> Self {
        NodeRecord {
            status: NodeStatus::Pending,
            attempts: 0,
            busy: Duration::ZERO,
            error: None,
            outputs: None,
        }
    }
}

/// The state of one execution, as plain data.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionState {
    /// The execution.
    pub run_id: RunId,
    /// The flow's name.
    pub flow: String,
    /// Overall status.
    pub status: RunStatus,
    /// When it started.
    #[serde(skip)]
    pub started: SystemTime,
    /// The error, if it failed.
    pub error: Option<String>,
    /// Node ids, by node index.
    pub node_ids: Vec<Arc<str>>,
    /// Node records, by node index.
    pub nodes: Vec<NodeRecord>,
    /// The flow inputs the execution was given.
    #[serde(skip)]
    pub inputs: Vec<(String, Value)>,
}

impl ExecutionState {
    /// The record of node `id`.
    pub fn node(&self, id: &str) -> Option<&NodeRecord> {
        let index = self.node_ids.iter().position(|n| &**n == id)?;
        self.nodes.get(index)
    }
}

/// Receives the transitions of one execution. Calls come from the executing
/// tasks, possibly in parallel; keep them quick.
pub trait ExecutionRecorder: Send + Sync + 'static {
    /// Node `index` changed.
    fn node_changed(&self, index: u32, record: &NodeRecord);
    /// The execution ended.
    fn finished(&self, status: RunStatus, error: Option<&str>);
}

/// Where executions are recorded.
pub trait ExecutionStore: Send + Sync + fmt::Debug + 'static {
    /// An execution starts; returns the recorder for its transitions.
    fn begin(&self, state: ExecutionState) -> Arc<dyn ExecutionRecorder>;
    /// The state of a recorded execution.
    fn load(&self, run_id: RunId) -> Option<ExecutionState>;

    /// Whether node outputs should be handed to [`ExecutionRecorder::node_changed`]
    /// (checkpoints). Keeping a reference to an output makes a typed consumer
    /// clone the payload instead of taking it, so stores that do not need
    /// outputs say no.
    fn keeps_outputs(&self) -> bool {
        false
    }
}

/// Keeps the most recent executions in memory (1,024 by default).
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug)]
struct MemoryInner {
    capacity: usize,
    keep_outputs: bool,
    order: VecDeque<RunId>,
    runs: HashMap<RunId, Arc<Mutex<ExecutionState>>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::with_capacity(1024)
    }
}

impl MemoryStore {
    /// A store keeping 1,024 executions.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store keeping the `capacity` most recent executions (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryStore {
            inner: Arc::new(Mutex::new(MemoryInner {
                capacity: capacity.max(1),
                keep_outputs: false,
                order: VecDeque::new(),
                runs: HashMap::new(),
            })),
        }
    }

    /// Also keeps every node's outputs (checkpoints), readable through
    /// [`NodeRecord::outputs`].
    #[must_use]
    pub fn with_outputs(self) -> Self {
        self.inner.lock().keep_outputs = true;
        self
    }

    /// Ids of the stored executions, oldest first.
    pub fn run_ids(&self) -> Vec<RunId> {
        self.inner.lock().order.iter().copied().collect()
    }
}

struct MemoryRecorder(Arc<Mutex<ExecutionState>>);

impl ExecutionRecorder for MemoryRecorder {
    fn node_changed(&self, index: u32, record: &NodeRecord) {
        if let Some(slot) = self.0.lock().nodes.get_mut(index as usize) {
            *slot = record.clone();
        }
    }

    fn finished(&self, status: RunStatus, error: Option<&str>) {
        let mut state = self.0.lock();
        state.status = status;
        state.error = error.map(str::to_owned);
    }
}

impl ExecutionStore for MemoryStore {
    fn begin(&self, state: ExecutionState) -> Arc<dyn ExecutionRecorder> {
        let run_id = state.run_id;
        let shared = Arc::new(Mutex::new(state));
        let mut inner = self.inner.lock();
        while inner.order.len() >= inner.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.runs.remove(&old);
            }
        }
        inner.order.push_back(run_id);
        inner.runs.insert(run_id, shared.clone());
        Arc::new(MemoryRecorder(shared))
    }

    fn keeps_outputs(&self) -> bool {
        self.inner.lock().keep_outputs
    }

    fn load(&self, run_id: RunId) -> Option<ExecutionState> {
        let run = self.inner.lock().runs.get(&run_id).cloned()?;
        let state = run.lock().clone();
        Some(state)
    }
}

fn ser_us<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros().min(u64::MAX as u128) as u64)
}
