//! The executor: spawn-on-ready with inline successors.
//!
//! Each execution is one [`RunShared`]: per-node atomic pending counters and
//! input slots, shared by the tasks ("workers") that run nodes. A worker runs
//! a node, delivers its outputs to the successors' slots, and decrements their
//! counters; of the successors that became ready it runs one itself and spawns
//! a worker for each other. The last worker to finish completes the execution.
//! No lock is held across a node, and nothing is allocated per edge beyond the
//! value's `Arc` clone.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Engine, EngineInner, Execution, Inputs, NodeSummary, Outcome, RunId};
use crate::context::{Context, Secrets};
use crate::error::{Error, NodeError};
use crate::event::{Emitter, EventKind, EventStream, ExecutionEvents, RunStatus};
use crate::flow::{Flow, FlowNode, NodeFailure};
use crate::policy::OnError;
use crate::store::{ExecutionRecorder, ExecutionState, NodeRecord, NodeStatus};
use crate::value::Value;

/// Runtime state of one node in one execution.
struct NodeState {
    /// Incoming edges not yet resolved.
    pending: AtomicU32,
    /// A required input will never arrive: the node is skipped.
    dead: AtomicBool,
    status: AtomicU8,
    attempts: AtomicU32,
    busy_ns: AtomicU64,
    /// Input slots; allocated on the first delivered value.
    inputs: Mutex<Vec<Option<Value>>>,
}

/// Everything one execution shares between its workers.
pub(crate) struct RunShared {
    pub(crate) run_id: RunId,
    pub(crate) flow: Flow,
    pub(crate) engine: Arc<EngineInner>,
    pub(crate) cancel: CancellationToken,
    pub(crate) emitter: Emitter,
    pub(crate) secrets: Arc<dyn Secrets>,
    log: Option<Arc<ExecutionEvents>>,
    recorder: Arc<dyn ExecutionRecorder>,
    keep_outputs: bool,
    nodes: Box<[NodeState]>,
    key_limits: Option<Box<[Option<Arc<Semaphore>>]>>,
    inflight: AtomicUsize,
    user_cancelled: AtomicBool,
    failure: Mutex<Option<Error>>,
    outputs: Mutex<Vec<Option<Value>>>,
    done: Mutex<Option<oneshot::Sender<Result<Outcome, Error>>>>,
    started: Instant,
    span: tracing::Span,
}

const STATUSES: [NodeStatus; 7] = [
    NodeStatus::Pending,
    NodeStatus::Running,
    NodeStatus::Succeeded,
    NodeStatus::Failed,
    NodeStatus::Skipped,
    NodeStatus::Cancelled,
    NodeStatus::NotRun,
];

fn status_code(status: NodeStatus) -> u8 {
    STATUSES.iter().position(|s| *s == status).unwrap_or(0) as u8
}

/// Where the result of an execution arrives.
type Done = oneshot::Receiver<Result<Outcome, Error>>;

/// How the attempts of one node ended.
enum Attempted {
    Succeeded(Vec<Option<Value>>),
    Failed(NodeError, u32),
    Cancelled,
}

pub(super) async fn run_inline(
    engine: &Engine,
    flow: &Flow,
    inputs: Inputs,
) -> Result<Outcome, Error> {
    let (run, done) = prepare(engine, flow, inputs, false)?;
    let cancel_on_drop = CancelOnDrop(Some(run.clone()));
    let roots = &flow.0.plan.roots;
    run.inflight.store(roots.len(), Ordering::Relaxed);
    if let Some((&first, rest)) = roots.split_first() {
        for &node in rest {
            tokio::spawn(worker(run.clone(), node));
        }
        worker(run.clone(), first).await;
    } else {
        run.finish();
    }
    let result = done.await.unwrap_or(Err(Error::Cancelled));
    cancel_on_drop.disarm();
    result
}

pub(super) fn start(engine: &Engine, flow: &Flow, inputs: Inputs) -> Result<Execution, Error> {
    let (run, done) = prepare(engine, flow, inputs, true)?;
    let roots = &flow.0.plan.roots;
    run.inflight.store(roots.len(), Ordering::Relaxed);
    if roots.is_empty() {
        run.finish();
    }
    for &node in roots.iter() {
        tokio::spawn(worker(run.clone(), node));
    }
    Ok(Execution {
        shared: run,
        done: Some(done),
        detached: false,
    })
}

/// Cancels the execution when the `run` future is dropped before the end.
struct CancelOnDrop(Option<Arc<RunShared>>);

impl CancelOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(run) = &self.0 {
            run.cancel_by_user();
        }
    }
}

/// Counts a worker; the last one to go completes the execution, even when
/// its future is dropped mid-node.
struct WorkerGuard(Arc<RunShared>);

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.finish();
        }
    }
}

async fn worker(run: Arc<RunShared>, first: u32) {
    let guard = WorkerGuard(run);
    let run = &guard.0;
    let mut ready = Vec::new();
    let mut next = Some(first);
    while let Some(node) = next {
        run.execute(node, &mut ready).await;
        next = ready.pop();
        for other in ready.drain(..) {
            spawn_worker(run, other);
        }
    }
}

/// Spawns a worker for `node`. A separate function, so that the recursive
/// spawn inside [`worker`] does not need `worker`'s own future type.
fn spawn_worker(run: &Arc<RunShared>, node: u32) {
    run.inflight.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(worker(run.clone(), node));
}

fn prepare(
    engine: &Engine,
    flow: &Flow,
    inputs: Inputs,
    keep_log: bool,
) -> Result<(Arc<RunShared>, Done), Error> {
    let plan = &flow.0.plan;
    let declared = flow.inputs();
    let mut by_position: Vec<Option<Value>> = vec![None; declared.len()];
    for (name, value) in inputs.0 {
        let Some(position) = declared.iter().position(|p| p.name == name) else {
            return Err(Error::UnknownInput {
                name,
                declared: declared
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let port = &declared[position];
        let json_port = port.type_name == std::any::type_name::<serde_json::Value>();
        if value.type_name() != port.type_name && !value.is::<serde_json::Value>() && !json_port {
            return Err(Error::InputType {
                name,
                expected: port.type_name.clone(),
                found: value.type_name().to_owned(),
            });
        }
        by_position[position] = Some(value);
    }
    if let Some(missing) = declared.iter().zip(&by_position).find(|(_, v)| v.is_none()) {
        return Err(Error::MissingInput {
            name: missing.0.name.clone(),
        });
    }

    let nodes: Box<[NodeState]> = plan
        .in_degree
        .iter()
        .map(|&pending| NodeState {
            pending: AtomicU32::new(pending),
            dead: AtomicBool::new(false),
            status: AtomicU8::new(0),
            attempts: AtomicU32::new(0),
            busy_ns: AtomicU64::new(0),
            inputs: Mutex::new(Vec::new()),
        })
        .collect();
    for (position, targets) in plan.input_targets.iter().enumerate() {
        for &(node, slot) in targets.iter() {
            let mut slots = nodes[node as usize].inputs.lock();
            if slots.is_empty() {
                slots.resize(flow.0.nodes[node as usize].spec.inputs.len(), None);
            }
            slots[slot as usize].clone_from(&by_position[position]);
        }
    }
    let mut outputs = vec![None; flow.outputs().len()];
    for &(output, input) in plan.passthrough.iter() {
        outputs[output as usize].clone_from(&by_position[input as usize]);
    }

    let inner = &engine.0;
    let key_limits = (!inner.key_limits.is_empty()).then(|| {
        flow.nodes()
            .iter()
            .map(|node| {
                let key = node
                    .policy
                    .concurrency_key
                    .as_deref()
                    .or(inner.defaults.concurrency_key.as_deref())
                    .unwrap_or(&node.spec.type_name);
                inner.key_limits.get(key).cloned()
            })
            .collect()
    });

    let run_id = RunId::new();
    let started = Instant::now();
    let log = keep_log.then(|| Arc::new(ExecutionEvents::default()));
    let emitter = Emitter::new(run_id, started, &inner.sinks, log.clone());
    let recorder = inner.store.begin(ExecutionState {
        run_id,
        flow: flow.name().to_owned(),
        status: RunStatus::Running,
        started: SystemTime::now(),
        error: None,
        node_ids: flow.nodes().iter().map(|n| n.id.clone()).collect(),
        nodes: vec![NodeRecord::pending(); plan.len()],
        inputs: declared
            .iter()
            .zip(by_position)
            .filter_map(|(p, v)| Some((p.name.clone(), v?)))
            .collect(),
    });
    let keep_outputs = inner.store.keeps_outputs();
    let span = tracing::info_span!("run", run_id = %run_id, flow = %flow.name());
    let (tx, rx) = oneshot::channel();
    let run = Arc::new(RunShared {
        run_id,
        flow: flow.clone(),
        engine: inner.clone(),
        cancel: CancellationToken::new(),
        emitter,
        secrets: inner.secrets.clone(),
        log,
        recorder,
        keep_outputs,
        nodes,
        key_limits,
        inflight: AtomicUsize::new(0),
        user_cancelled: AtomicBool::new(false),
        failure: Mutex::new(None),
        outputs: Mutex::new(outputs),
        done: Mutex::new(Some(tx)),
        started,
        span,
    });
    run.emitter.emit(EventKind::RunStarted {
        flow: Arc::from(flow.name()),
        nodes: plan.len() as u32,
    });
    Ok((run, rx))
}

impl RunShared {
    pub(crate) fn events_log(&self) -> EventStream {
        match &self.log {
            Some(log) => log.subscribe(),
            None => EventStream::closed(),
        }
    }

    pub(crate) fn cancel_by_user(&self) {
        self.user_cancelled.store(true, Ordering::Relaxed);
        self.cancel.cancel();
    }

    fn node(&self, index: u32) -> &FlowNode {
        &self.flow.0.nodes[index as usize]
    }

    fn set_status(&self, index: u32, status: NodeStatus) {
        self.nodes[index as usize]
            .status
            .store(status_code(status), Ordering::Relaxed);
    }

    fn status(&self, index: u32) -> NodeStatus {
        STATUSES[self.nodes[index as usize].status.load(Ordering::Relaxed) as usize]
    }

    fn record(
        &self,
        index: u32,
        status: NodeStatus,
        error: Option<&str>,
        outputs: Option<&[Option<Value>]>,
    ) {
        self.set_status(index, status);
        let state = &self.nodes[index as usize];
        self.recorder.node_changed(
            index,
            &NodeRecord {
                status,
                attempts: state.attempts.load(Ordering::Relaxed),
                busy: Duration::from_nanos(state.busy_ns.load(Ordering::Relaxed)),
                error: error.map(str::to_owned),
                outputs: outputs.filter(|_| self.keep_outputs).map(Arc::from),
            },
        );
    }

    async fn execute(self: &Arc<Self>, index: u32, ready: &mut Vec<u32>) {
        let state = &self.nodes[index as usize];
        if state.dead.load(Ordering::Relaxed) {
            self.skip(index, None, ready);
            return;
        }
        if self.cancel.is_cancelled() {
            self.set_status(index, NodeStatus::NotRun);
            return;
        }
        let inputs = std::mem::take(&mut *state.inputs.lock());
        let node = self.node(index);
        let span = tracing::info_span!(parent: &self.span, "node", node = %node.id, index);
        match self.attempts(index, inputs).instrument(span).await {
            Attempted::Succeeded(mut outputs) => {
                outputs.push(None); // the `error` port
                self.record(index, NodeStatus::Succeeded, None, Some(&outputs));
                if self.emitter.is_active() {
                    let state = &self.nodes[index as usize];
                    self.emitter.emit(EventKind::NodeSucceeded {
                        node: node.id.clone(),
                        index,
                        attempt: state.attempts.load(Ordering::Relaxed),
                        duration: Duration::from_nanos(state.busy_ns.load(Ordering::Relaxed)),
                        outputs: self
                            .emitter
                            .wants_payloads()
                            .then(|| payloads(node, &outputs)),
                    });
                }
                self.deliver_all(index, outputs, ready);
            }
            Attempted::Failed(error, attempts) => {
                let on_error = node
                    .policy
                    .on_error
                    .or(self.engine.defaults.on_error)
                    .unwrap_or_default();
                match on_error {
                    OnError::Fail => {
                        self.record(index, NodeStatus::Failed, Some(error.message()), None);
                        self.failure.lock().get_or_insert(Error::NodeFailed {
                            node: node.id.to_string(),
                            attempts,
                            error,
                        });
                        self.cancel.cancel();
                    }
                    OnError::Continue => {
                        let mut outputs = vec![None; node.spec.outputs.len()];
                        outputs.push(Some(Value::new(NodeFailure::new(
                            &node.id,
                            error.message(),
                            attempts,
                            error.kind(),
                        ))));
                        self.record(
                            index,
                            NodeStatus::Failed,
                            Some(error.message()),
                            Some(&outputs),
                        );
                        self.deliver_all(index, outputs, ready);
                    }
                    OnError::Skip => self.skip(index, Some(error.message()), ready),
                }
            }
            Attempted::Cancelled => {
                self.record(index, NodeStatus::Cancelled, None, None);
                self.emitter.emit(EventKind::NodeCancelled {
                    node: node.id.clone(),
                    index,
                });
            }
        }
    }

    fn skip(&self, index: u32, error: Option<&str>, ready: &mut Vec<u32>) {
        let node = self.node(index);
        self.record(index, NodeStatus::Skipped, error, None);
        self.emitter.emit(EventKind::NodeSkipped {
            node: node.id.clone(),
            index,
        });
        for targets in self.flow.0.plan.out_targets[index as usize].iter() {
            for &target in targets.iter() {
                self.deliver(target, None, ready);
            }
        }
    }

    fn deliver_all(&self, index: u32, mut outputs: Vec<Option<Value>>, ready: &mut Vec<u32>) {
        let plan = &self.flow.0.plan;
        let taps = &plan.output_taps[index as usize];
        if !taps.is_empty() {
            let mut flow_outputs = self.outputs.lock();
            for &(port, output) in taps.iter() {
                flow_outputs[output as usize].clone_from(&outputs[port as usize]);
            }
        }
        for (port, targets) in plan.out_targets[index as usize].iter().enumerate() {
            let Some((&last, rest)) = targets.split_last() else {
                continue;
            };
            let value = outputs[port].take();
            for &target in rest {
                self.deliver(target, value.clone(), ready);
            }
            self.deliver(last, value, ready);
        }
    }

    fn deliver(&self, (node, slot): (u32, u16), value: Option<Value>, ready: &mut Vec<u32>) {
        let state = &self.nodes[node as usize];
        match value {
            Some(value) => {
                let mut slots = state.inputs.lock();
                if slots.is_empty() {
                    slots.resize(self.node(node).spec.inputs.len(), None);
                }
                slots[slot as usize] = Some(value);
            }
            None => {
                if self.flow.0.plan.required[node as usize][slot as usize] {
                    state.dead.store(true, Ordering::Relaxed);
                }
            }
        }
        if state.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            ready.push(node);
        }
    }

    async fn attempts(self: &Arc<Self>, index: u32, inputs: Vec<Option<Value>>) -> Attempted {
        let node = self.node(index);
        let defaults = &self.engine.defaults;
        let retry = node.policy.retry.as_ref().or(defaults.retry.as_ref());
        let max_attempts = retry.map_or(1, |r| r.max_attempts.max(1));
        let timeout = node.policy.timeout.or(defaults.timeout);
        let state = &self.nodes[index as usize];
        let mut inputs = Some(inputs);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let these_inputs = if attempt < max_attempts {
                inputs.clone().unwrap_or_default()
            } else {
                inputs.take().unwrap_or_default()
            };
            let permits = tokio::select! {
                biased;
                permits = self.acquire(index) => permits,
                () = self.cancel.cancelled() => return Attempted::Cancelled,
            };
            state.attempts.store(attempt, Ordering::Relaxed);
            self.record(index, NodeStatus::Running, None, None);
            self.emitter.emit(EventKind::NodeStarted {
                node: node.id.clone(),
                index,
                attempt,
            });
            let ctx = Context {
                run: self.clone(),
                node_index: index,
                attempt,
            };
            let began = Instant::now();
            let result = tokio::select! {
                biased;
                result = run_attempt(node, these_inputs, &ctx, timeout) => result,
                () = self.cancel.cancelled() => {
                    state.busy_ns.fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    return Attempted::Cancelled;
                }
            };
            state
                .busy_ns
                .fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
            drop(permits);
            let error = match result {
                Ok(outputs) => return Attempted::Succeeded(outputs),
                Err(error) => error,
            };
            let retry_in = match retry {
                Some(policy) if error.is_retryable() && attempt < max_attempts => {
                    Some(policy.delay(attempt, &error, fastrand::f64()))
                }
                _ => None,
            };
            tracing::debug!(attempt, error = %error, ?retry_in, "node attempt failed");
            self.emitter.emit(EventKind::NodeFailed {
                node: node.id.clone(),
                index,
                attempt,
                error: error.message().to_owned(),
                retry_in,
            });
            let Some(delay) = retry_in else {
                return Attempted::Failed(error, attempt);
            };
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Attempted::Cancelled,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Waits for the node's concurrency slots: its key's limit first, then
    /// the engine-wide one, so a node never holds a global slot while it
    /// waits for its key.
    async fn acquire(&self, index: u32) -> [Option<OwnedSemaphorePermit>; 2] {
        let key = match self
            .key_limits
            .as_ref()
            .and_then(|l| l[index as usize].clone())
        {
            Some(semaphore) => semaphore.acquire_owned().await.ok(),
            None => None,
        };
        let global = match &self.engine.global_limit {
            Some(semaphore) => semaphore.clone().acquire_owned().await.ok(),
            None => None,
        };
        [key, global]
    }

    /// Completes the execution: called once, by the last worker.
    fn finish(&self) {
        let mut all_final = true;
        for index in 0..self.nodes.len() as u32 {
            match self.status(index) {
                NodeStatus::Pending => {
                    all_final = false;
                    self.record(index, NodeStatus::NotRun, None, None);
                }
                NodeStatus::Running => {
                    all_final = false;
                    self.record(index, NodeStatus::Cancelled, None, None);
                }
                NodeStatus::NotRun | NodeStatus::Cancelled => all_final = false,
                _ => {}
            }
        }
        let failure = self.failure.lock().take();
        let result = match failure {
            Some(error) => Err(error),
            None if all_final => Ok(self.outcome()),
            None => Err(Error::Cancelled),
        };
        let (status, message) = match &result {
            Ok(_) => (RunStatus::Succeeded, None),
            Err(Error::Cancelled) => (RunStatus::Cancelled, None),
            Err(e) => (RunStatus::Failed, Some(e.to_string())),
        };
        self.recorder.finished(status, message.as_deref());
        self.emitter.emit(EventKind::RunFinished {
            status,
            error: message,
        });
        self.emitter.close();
        tracing::debug!(parent: &self.span, ?status, "run finished");
        if let Some(done) = self.done.lock().take() {
            // The receiver is gone when nobody waits (a detached execution).
            let _ = done.send(result);
        }
    }

    fn outcome(&self) -> Outcome {
        let names = self.flow.outputs().iter().map(|p| p.name.clone());
        let values = std::mem::take(&mut *self.outputs.lock());
        Outcome {
            run_id: self.run_id,
            outputs: names.zip(values).collect(),
            nodes: self
                .flow
                .nodes()
                .iter()
                .enumerate()
                .map(|(i, node)| {
                    let state = &self.nodes[i];
                    NodeSummary {
                        id: node.id.clone(),
                        status: self.status(i as u32),
                        attempts: state.attempts.load(Ordering::Relaxed),
                        busy: Duration::from_nanos(state.busy_ns.load(Ordering::Relaxed)),
                    }
                })
                .collect(),
            duration: self.started.elapsed(),
        }
    }
}

/// One attempt: the node's future under its timeout, with panics turned
/// into permanent errors and the number of outputs checked.
async fn run_attempt(
    node: &FlowNode,
    inputs: Vec<Option<Value>>,
    ctx: &Context,
    timeout: Option<Duration>,
) -> Result<Vec<Option<Value>>, NodeError> {
    let attempt = AssertUnwindSafe(node.node.run(inputs, ctx)).catch_unwind();
    let caught = match timeout {
        Some(limit) => match tokio::time::timeout(limit, attempt).await {
            Ok(caught) => caught,
            Err(_) => return Err(NodeError::timeout(limit)),
        },
        None => attempt.await,
    };
    let outputs = caught.map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        NodeError::permanent(format!("node panicked: {message}"))
    })??;
    if outputs.len() != node.spec.outputs.len() {
        return Err(NodeError::permanent(format!(
            "node returned {} output values but its spec declares {} output ports",
            outputs.len(),
            node.spec.outputs.len()
        )));
    }
    Ok(outputs)
}

fn payloads(
    node: &FlowNode,
    outputs: &[Option<Value>],
) -> serde_json::Map<String, serde_json::Value> {
    node.spec
        .outputs
        .iter()
        .zip(outputs)
        .filter_map(|(port, value)| {
            let json = value
                .as_ref()?
                .to_json()
                .unwrap_or_else(|e| serde_json::Value::String(format!("<not serializable: {e}>")));
            Some((port.name.clone(), json))
        })
        .collect()
}
