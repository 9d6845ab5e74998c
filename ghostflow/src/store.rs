//! Execution stores: where the engine reports the state of every execution.
//!
//! The engine keeps no hidden state: it reports every node transition (and
//! each node's outputs, the checkpoint) to an [`ExecutionStore`] as plain
//! data. [`MemoryStore`] is the default; a durable store implements the same
//! two traits.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;

use crate::RunId;
use crate::event::RunStatus;
use crate::flow::Flow;
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

/// What a store is told when an execution starts.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ExecutionStart<'a> {
    /// The execution.
    pub run_id: RunId,
    /// The flow it runs: its name, node ids and specs. A store that needs
    /// them later can keep a clone (cheap: a `Flow` is shared).
    pub flow: &'a Flow,
    /// When it started.
    pub started: SystemTime,
    /// The flow inputs, by name.
    pub inputs: &'a [(String, Value)],
}

/// Receives the transitions of one execution. Calls come from the executing
/// tasks, possibly in parallel, on the engine's hot path: keep them quick.
pub trait ExecutionRecorder: Send + Sync + 'static {
    /// Node `index` changed.
    fn node_changed(&self, index: u32, record: &NodeRecord);
    /// The execution ended.
    fn finished(&self, status: RunStatus, error: Option<&str>);
}

/// Where executions are recorded.
pub trait ExecutionStore: Send + Sync + fmt::Debug + 'static {
    /// An execution starts; returns the recorder for its transitions. Every
    /// node is pending until the recorder hears otherwise.
    fn begin(&self, start: &ExecutionStart<'_>) -> Arc<dyn ExecutionRecorder>;
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

/// Keeps the most recent executions in memory: by default up to 1,024
/// executions and 1,048,576 node records in all (about 16 MiB), whichever
/// limit is reached first; the oldest execution goes first. The most recent
/// execution is always kept, whatever its size.
///
/// Recording a transition is a few atomic stores; only errors and (with
/// [`with_outputs`](Self::with_outputs)) outputs take a lock.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
    keep_outputs: Arc<AtomicBool>,
}

#[derive(Debug)]
struct MemoryInner {
    capacity: usize,
    max_nodes: usize,
    nodes: usize,
    order: VecDeque<RunId>,
    runs: HashMap<RunId, Arc<MemoryRun>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::with_capacity(1024)
    }
}

impl MemoryStore {
    /// A store keeping 1,024 executions and 1,048,576 node records.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store keeping the `capacity` most recent executions (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryStore {
            inner: Arc::new(Mutex::new(MemoryInner {
                capacity: capacity.max(1),
                max_nodes: 1 << 20,
                nodes: 0,
                order: VecDeque::new(),
                runs: HashMap::new(),
            })),
            keep_outputs: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Keeps at most `max` node records over all stored executions (the most
    /// recent execution is kept even when it alone has more).
    #[must_use]
    pub fn with_max_node_records(self, max: usize) -> Self {
        self.inner.lock().max_nodes = max;
        self
    }

    /// Also keeps every node's outputs (checkpoints), readable through
    /// [`NodeRecord::outputs`].
    #[must_use]
    pub fn with_outputs(self) -> Self {
        self.keep_outputs.store(true, Ordering::Relaxed);
        self
    }

    /// Ids of the stored executions, oldest first.
    pub fn run_ids(&self) -> Vec<RunId> {
        self.inner.lock().order.iter().copied().collect()
    }
}

/// One execution in a [`MemoryStore`].
#[derive(Debug)]
struct MemoryRun {
    run_id: RunId,
    flow: Flow,
    started: SystemTime,
    inputs: Vec<(String, Value)>,
    status: AtomicU8,
    error: Mutex<Option<String>>,
    nodes: Box<[MemoryNode]>,
    /// Errors and outputs, which most transitions do not have.
    extras: Mutex<HashMap<u32, Extras>>,
}

#[derive(Debug, Default)]
struct MemoryNode {
    status: AtomicU8,
    attempts: AtomicU32,
    busy_ns: AtomicU64,
}

#[derive(Debug, Default)]
struct Extras {
    error: Option<String>,
    outputs: Option<Arc<[Option<Value>]>>,
}

const NODE_STATUSES: [NodeStatus; 7] = [
    NodeStatus::Pending,
    NodeStatus::Running,
    NodeStatus::Succeeded,
    NodeStatus::Failed,
    NodeStatus::Skipped,
    NodeStatus::Cancelled,
    NodeStatus::NotRun,
];

const RUN_STATUSES: [RunStatus; 4] = [
    RunStatus::Running,
    RunStatus::Succeeded,
    RunStatus::Failed,
    RunStatus::Cancelled,
];

impl NodeStatus {
    pub(crate) fn code(self) -> u8 {
        NODE_STATUSES.iter().position(|s| *s == self).unwrap_or(0) as u8
    }

    pub(crate) fn from_code(code: u8) -> NodeStatus {
        NODE_STATUSES
            .get(code as usize)
            .copied()
            .unwrap_or(NodeStatus::Pending)
    }
}

fn run_status_code(status: RunStatus) -> u8 {
    RUN_STATUSES.iter().position(|s| *s == status).unwrap_or(0) as u8
}

impl ExecutionRecorder for MemoryRun {
    fn node_changed(&self, index: u32, record: &NodeRecord) {
        let Some(node) = self.nodes.get(index as usize) else {
            return;
        };
        node.attempts.store(record.attempts, Ordering::Relaxed);
        node.busy_ns.store(
            record.busy.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
        if record.error.is_some() || record.outputs.is_some() {
            let mut extras = self.extras.lock();
            let entry = extras.entry(index).or_default();
            if let Some(error) = &record.error {
                entry.error = Some(error.clone());
            }
            if let Some(outputs) = &record.outputs {
                entry.outputs = Some(outputs.clone());
            }
        }
        node.status.store(record.status.code(), Ordering::Release);
    }

    fn finished(&self, status: RunStatus, error: Option<&str>) {
        if let Some(error) = error {
            *self.error.lock() = Some(error.to_owned());
        }
        self.status
            .store(run_status_code(status), Ordering::Release);
    }
}

impl MemoryInner {
    /// Removes the oldest executions until one more with `incoming` node
    /// records fits (or, with `incoming` 0, until the store is within its
    /// limits), keeping at least the most recent one.
    fn evict(&mut self, incoming: usize) -> Vec<Arc<MemoryRun>> {
        let mut evicted = Vec::new();
        let extra = usize::from(incoming > 0);
        while self.order.len() > 1 - extra
            && (self.order.len() + extra > self.capacity || self.nodes + incoming > self.max_nodes)
        {
            if let Some(old) = self.order.pop_front()
                && let Some(old) = self.runs.remove(&old)
            {
                self.nodes -= old.nodes.len();
                evicted.push(old);
            }
        }
        evicted
    }
}

impl MemoryRun {
    fn new(start: &ExecutionStart<'_>) -> Self {
        MemoryRun {
            run_id: start.run_id,
            flow: start.flow.clone(),
            started: start.started,
            inputs: start.inputs.to_vec(),
            status: AtomicU8::new(run_status_code(RunStatus::Running)),
            error: Mutex::new(None),
            nodes: (0..start.flow.nodes().len())
                .map(|_| MemoryNode::default())
                .collect(),
            extras: Mutex::new(HashMap::new()),
        }
    }

    /// Makes an old execution's record the record of a new one with as many
    /// nodes, keeping its allocations.
    fn reset(&mut self, start: &ExecutionStart<'_>) {
        self.run_id = start.run_id;
        self.flow = start.flow.clone();
        self.started = start.started;
        self.inputs.clear();
        self.inputs.extend_from_slice(start.inputs);
        *self.status.get_mut() = run_status_code(RunStatus::Running);
        *self.error.get_mut() = None;
        for node in self.nodes.iter_mut() {
            *node = MemoryNode::default();
        }
        self.extras.get_mut().clear();
    }

    fn state(&self) -> ExecutionState {
        let extras = self.extras.lock();
        let status = RUN_STATUSES
            .get(self.status.load(Ordering::Acquire) as usize)
            .copied()
            .unwrap_or(RunStatus::Running);
        ExecutionState {
            run_id: self.run_id,
            flow: self.flow.name().to_owned(),
            status,
            started: self.started,
            error: self.error.lock().clone(),
            node_ids: self.flow.nodes().iter().map(|n| n.id.clone()).collect(),
            nodes: self
                .nodes
                .iter()
                .enumerate()
                .map(|(i, node)| {
                    let extra = extras.get(&(i as u32));
                    NodeRecord {
                        status: NodeStatus::from_code(node.status.load(Ordering::Acquire)),
                        attempts: node.attempts.load(Ordering::Relaxed),
                        busy: Duration::from_nanos(node.busy_ns.load(Ordering::Relaxed)),
                        error: extra.and_then(|e| e.error.clone()),
                        outputs: extra.and_then(|e| e.outputs.clone()),
                    }
                })
                .collect(),
            inputs: self.inputs.clone(),
        }
    }
}

impl ExecutionStore for MemoryStore {
    fn begin(&self, start: &ExecutionStart<'_>) -> Arc<dyn ExecutionRecorder> {
        let nodes = start.flow.nodes().len();
        // Make room first, so that an evicted execution nobody holds any
        // more can be reused for this one instead of allocating anew.
        let mut evicted = self.inner.lock().evict(nodes);
        let reusable = evicted
            .iter_mut()
            .position(|old| old.nodes.len() == nodes && Arc::get_mut(old).is_some());
        let run = match reusable {
            Some(i) => {
                let mut run = evicted.swap_remove(i);
                if let Some(state) = Arc::get_mut(&mut run) {
                    state.reset(start);
                }
                run
            }
            None => Arc::new(MemoryRun::new(start)),
        };
        {
            let mut inner = self.inner.lock();
            inner.order.push_back(start.run_id);
            inner.nodes += nodes;
            inner.runs.insert(start.run_id, run.clone());
            // Others may have begun meanwhile: stay within the limits, never
            // evicting the execution just added.
            evicted.extend(inner.evict(0));
        }
        // Old executions are freed outside the lock.
        drop(evicted);
        run
    }

    fn keeps_outputs(&self) -> bool {
        self.keep_outputs.load(Ordering::Relaxed)
    }

    fn load(&self, run_id: RunId) -> Option<ExecutionState> {
        let run = self.inner.lock().runs.get(&run_id).cloned()?;
        Some(run.state())
    }
}

fn ser_us<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros().min(u64::MAX as u128) as u64)
}
