//! The executor: spawn-on-ready with inline successors.
//!
//! Each execution is one [`RunShared`]: per-node atomic pending counters and
//! a flat array of input slots, shared by the tasks ("workers") that run
//! nodes. A worker runs a node, delivers its outputs to the successors'
//! slots, and decrements their counters; of the successors that became ready
//! it runs one itself and spawns a worker for each other. The last worker to
//! finish completes the execution.
//!
//! The hot path holds no lock across a node and allocates, per node, only
//! the node's future and its output values: a worker owns one [`Context`]
//! for all the nodes it runs, and recycles the vectors that carry a node's
//! inputs and outputs.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Engine, EngineInner, Execution, Inputs, Outcome, RunId};
use crate::context::{Context, Secrets};
use crate::error::{Error, NodeError};
use crate::event::{Emitter, EventKind, EventStream, ExecutionEvents, RunStatus};
use crate::flow::{Flow, FlowNode, NodeFailure, Target};
use crate::policy::OnError;
use crate::redact::Redactor;
use crate::store::{ExecutionRecorder, ExecutionStart, NodeRecord, NodeStatus};
use crate::value::Value;

/// Runtime state of one node in one execution.
struct NodeState {
    /// Incoming edges not yet resolved.
    pending: AtomicU32,
    /// A required input will never arrive: the node is skipped.
    dead: AtomicBool,
    /// At least one input value arrived. A node with connected inputs
    /// that all stayed empty (every branch it listens to was not taken) is
    /// skipped, even when those inputs are optional.
    arrived: AtomicBool,
    /// An eager node was made ready by its first input: later resolutions
    /// must not make it ready again.
    fired: AtomicBool,
    status: AtomicU8,
    attempts: AtomicU32,
    busy_ns: AtomicU64,
}

/// Everything one execution shares between its workers.
pub(crate) struct RunShared {
    pub(crate) run_id: RunId,
    pub(crate) flow: Flow,
    pub(crate) engine: Arc<EngineInner>,
    /// Set when the execution is cancelled or failed: checking it is one
    /// atomic load.
    cancelled: AtomicBool,
    /// Wakes what waits for cancellation. Made on first use: most runs never
    /// have a node that waits, so most runs never pay for one.
    token: OnceLock<CancellationToken>,
    pub(crate) emitter: Emitter,
    pub(crate) secrets: Arc<dyn Secrets>,
    /// The secret values this run handed out, masked in what it reports.
    pub(crate) redactor: Redactor,
    log: Option<Arc<ExecutionEvents>>,
    recorder: Arc<dyn ExecutionRecorder>,
    keep_outputs: bool,
    nodes: Box<[NodeState]>,
    /// One slot per input port of every node, numbered by the plan.
    slots: Box<[Mutex<Option<Value>>]>,
    key_limits: Option<Box<[Option<Arc<Semaphore>>]>>,
    /// Live workers; the last one completes the execution.
    inflight: AtomicUsize,
    /// Ready nodes that no worker has taken yet.
    queue: Mutex<Vec<u32>>,
    /// Workers able to take queued nodes now (not waiting inside a node).
    active: AtomicUsize,
    /// How many workers may be active at once: the runtime's worker threads.
    parallelism: usize,
    failure: Mutex<Option<Error>>,
    outputs: Mutex<Vec<Option<Value>>>,
    /// The result, once the last worker has finished: the run's duration,
    /// or why it failed. `wait` makes the [`Outcome`] from it.
    result: Mutex<Option<Result<Duration, Error>>>,
    /// Signalled when `result` is set.
    finished: Notify,
    started: Instant,
    span: tracing::Span,
}

/// How the attempts of one node ended.
enum Attempted {
    Succeeded(Vec<Option<Value>>),
    Failed(NodeError, u32),
    Cancelled,
}

thread_local! {
    /// The wall clock at an instant, on this thread, read at most once a second.
    static WALL_ANCHOR: std::cell::Cell<Option<(Instant, SystemTime)>> =
        const { std::cell::Cell::new(None) };
}

/// The wall-clock time at `now`, from a per-thread anchor that is read from
/// the system at most once a second: a run then reads one clock when it
/// starts, not two. Within the second the two clocks do not drift apart
/// measurably.
fn wall_clock(now: Instant) -> SystemTime {
    let anchor = WALL_ANCHOR.try_with(std::cell::Cell::get).ok().flatten();
    match anchor {
        Some((at, wall))
            if now.saturating_duration_since(at) < Duration::from_secs(1) && now >= at =>
        {
            wall + (now - at)
        }
        _ => {
            let wall = SystemTime::now();
            let _ = WALL_ANCHOR.try_with(|cell| cell.set(Some((now, wall))));
            wall
        }
    }
}

/// A worker waiting: counts it as active again when dropped.
struct Blocked<'a>(&'a Arc<RunShared>);

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_add(1, Ordering::AcqRel);
    }
}

/// Vectors of input and output slots kept by a worker for reuse: at most
/// this many, each of at most [`SPARE_CAPACITY`] slots.
const SPARES: usize = 8;
const SPARE_CAPACITY: usize = 64;

pub(super) async fn run_inline(
    engine: &Engine,
    flow: &Flow,
    inputs: Inputs,
) -> Result<Outcome, Error> {
    let run = prepare(engine, flow, inputs, false)?;
    let cancel_on_drop = CancelOnDrop(Some(run.clone()));
    let roots = flow.0.plan.roots();
    if let Some((&first, rest)) = roots.split_first() {
        // The caller's task is the first worker.
        run.inflight.store(1, Ordering::Relaxed);
        run.active.store(1, Ordering::Relaxed);
        run.queue.lock().extend(rest.iter().rev());
        let mut worker = Worker::new(run.clone());
        worker.next = Some(first);
        worker.share(rest.len());
        worker.work().await;
    } else {
        run.finish(None);
    }
    let result = run.wait().await;
    cancel_on_drop.disarm();
    result
}

pub(super) fn start(engine: &Engine, flow: &Flow, inputs: Inputs) -> Result<Execution, Error> {
    let run = prepare(engine, flow, inputs, true)?;
    let roots = flow.0.plan.roots();
    // This call counts as a worker while it spawns the first ones, so that
    // they cannot complete the execution before all of them exist.
    run.inflight.store(1, Ordering::Relaxed);
    run.queue.lock().extend(roots.iter().rev());
    run.spawn_helpers(roots.len());
    if run.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
        run.finish(None);
    }
    Ok(Execution {
        shared: run,
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

/// A task that runs nodes: the one it was started with, then ready
/// successors, keeping one for itself after each node (no spawn, warm
/// caches) and putting the others on the execution's ready queue, which the
/// execution's workers share.
///
/// Its `Drop` counts it out; the last worker of an execution completes it,
/// even when the worker's future is dropped mid-node.
struct Worker {
    /// The context handed to every node this worker runs; it holds the
    /// worker's reference on the execution.
    ctx: Context,
    /// The node to run next, before looking at the shared queue.
    next: Option<u32>,
    /// Successors made ready by the node that just ran.
    ready: Vec<u32>,
    /// Recycled slot vectors.
    spare: Vec<Vec<Option<Value>>>,
    /// When the previous node's attempt ended, if this worker went straight
    /// on: the next attempt's start, read from the clock once, not twice.
    clock: Option<Instant>,
    /// The last node this worker ran kept it busy for long: nodes of this
    /// flow may be CPU-heavy, so queued work should get helpers at once.
    slow: bool,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let run = &self.ctx.run;
        if run.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            run.finish(self.clock);
        }
        if self.ready.capacity() <= SPARE_CAPACITY {
            self.ready.clear();
            let buffers = (
                std::mem::take(&mut self.ready),
                std::mem::take(&mut self.spare),
            );
            // Gone when the thread is ending: then the buffers are just freed.
            let _ = BUFFERS.try_with(|slot| {
                if let Ok(mut slot) = slot.try_borrow_mut() {
                    slot.get_or_insert(buffers);
                }
            });
        }
    }
}

thread_local! {
    /// A finished worker's empty buffers, for the next worker on this thread:
    /// a short run then allocates none of its own.
    static BUFFERS: RefCell<Option<Buffers>> = const { RefCell::new(None) };
}

/// A worker's `ready` list and its recycled slot vectors (all empty).
type Buffers = (Vec<u32>, Vec<Vec<Option<Value>>>);

/// Queued ready nodes beyond which a worker asks for helpers: fewer are run
/// by the workers already there, which is cheaper than a spawn when nodes
/// are quick (a node that has to wait, or runs long, gets helpers at once).
const HELP_THRESHOLD: usize = 16;

/// A node attempt that ran at least this long marks its worker as `slow`.
const SLOW_NODE: Duration = Duration::from_micros(50);

impl Worker {
    fn new(run: Arc<RunShared>) -> Self {
        let (ready, spare) = BUFFERS
            .try_with(|slot| slot.try_borrow_mut().ok()?.take())
            .ok()
            .flatten()
            .unwrap_or_default();
        Worker {
            ctx: Context::new(run),
            next: None,
            ready,
            spare,
            clock: None,
            slow: false,
        }
    }

    /// Runs nodes until there are none left to take.
    async fn work(mut self) {
        loop {
            let node = match self.next.take() {
                Some(node) => node,
                None => match self.ctx.run.pop() {
                    Some(node) => node,
                    None => {
                        if self.ctx.run.retire() {
                            return;
                        }
                        continue;
                    }
                },
            };
            self.execute(node).await;
            self.next = self.ready.pop();
            if !self.ready.is_empty() {
                let queued = {
                    let mut queue = self.ctx.run.queue.lock();
                    queue.append(&mut self.ready);
                    queue.len()
                };
                self.share(queued);
            }
        }
    }

    /// Asks for helpers when `queued` nodes wait and this worker alone
    /// would be slow to get through them.
    fn share(&mut self, queued: usize) {
        if queued > 0 && (queued >= HELP_THRESHOLD || self.slow) {
            let run = &self.ctx.run;
            if run.spawn_helpers(queued) > 0 && run.parallelism > 1 {
                // A task spawned from a runtime worker thread goes to that
                // thread's next-task slot, which other threads cannot steal
                // from, and this worker goes on running nodes without
                // yielding: the helper would wait for it. Spawning one more
                // (empty) task moves the helper to the thread's stealable
                // queue and wakes an idle thread to take it.
                tokio::spawn(async {});
            }
        }
    }
}

fn prepare(
    engine: &Engine,
    flow: &Flow,
    inputs: Inputs,
    keep_log: bool,
) -> Result<Arc<RunShared>, Error> {
    let plan = &flow.0.plan;
    let declared = flow.inputs();
    let mut by_position: Vec<Option<&Value>> = vec![None; declared.len()];
    for (name, value) in &inputs.0 {
        let Some(position) = declared.iter().position(|p| p.name == *name) else {
            return Err(Error::UnknownInput {
                name: name.clone(),
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
                name: name.clone(),
                expected: port.type_name.clone(),
                found: value.type_name().to_owned(),
            });
        }
        if json_port {
            let json = value.to_json().map_err(|e| Error::InputInvalid {
                name: name.clone(),
                problems: vec![format!("the value is not JSON: {e}")],
            })?;
            let problems = flow.check_input(position, &json);
            if !problems.is_empty() {
                return Err(Error::InputInvalid {
                    name: name.clone(),
                    problems,
                });
            }
        }
        by_position[position] = Some(value);
    }
    // Inputs left out take their default; those without one are required.
    let defaults: Vec<Option<Value>> = declared
        .iter()
        .zip(&by_position)
        .map(|(port, given)| match (given, &port.default) {
            (None, Some(default)) => Some(Value::json(default.clone())),
            _ => None,
        })
        .collect();
    for ((slot, default), port) in by_position.iter_mut().zip(&defaults).zip(declared) {
        if slot.is_none() {
            *slot = default.as_ref();
            if slot.is_none() {
                return Err(Error::MissingInput {
                    name: port.name.clone(),
                });
            }
        }
    }

    let mut nodes: Box<[NodeState]> = plan
        .in_degree
        .iter()
        .map(|&pending| NodeState {
            pending: AtomicU32::new(pending),
            dead: AtomicBool::new(false),
            arrived: AtomicBool::new(false),
            fired: AtomicBool::new(false),
            status: AtomicU8::new(NodeStatus::Pending.code()),
            attempts: AtomicU32::new(0),
            busy_ns: AtomicU64::new(0),
        })
        .collect();
    let mut slots: Box<[Mutex<Option<Value>>]> =
        plan.required.iter().map(|_| Mutex::new(None)).collect();
    for (position, targets) in plan.input_targets.iter().enumerate() {
        for target in targets.iter() {
            *slots[target.slot as usize].get_mut() = by_position[position].cloned();
            *nodes[target.node as usize].arrived.get_mut() = true;
        }
    }
    let mut outputs = vec![None; flow.outputs().len()];
    for &(output, input) in plan.passthrough.iter() {
        outputs[output as usize] = by_position[input as usize].cloned();
    }

    let inner = &engine.0;
    let key_limits = (!inner.key_limits.is_empty()).then(|| {
        flow.nodes()
            .iter()
            .map(|node| {
                let key = node
                    .policy()
                    .concurrency_key
                    .as_deref()
                    .or(inner.defaults.concurrency_key.as_deref())
                    .unwrap_or(&node.spec.type_name);
                inner.key_limits.get(key).cloned()
            })
            .collect()
    });

    let started = Instant::now();
    let started_wall = wall_clock(started);
    let run_id = RunId::at(started_wall);
    let log = keep_log.then(|| Arc::new(ExecutionEvents::default()));
    let emitter = Emitter::new(run_id, started, started_wall, &inner.sinks, log.clone());
    let recorder = inner.store.begin(&ExecutionStart {
        run_id,
        flow,
        started: started_wall,
        inputs: &inputs.0,
    });
    let keep_outputs = inner.store.keeps_outputs();
    let span = tracing::info_span!("run", run_id = %run_id, flow = %flow.name());
    let run = Arc::new(RunShared {
        run_id,
        flow: flow.clone(),
        engine: inner.clone(),
        cancelled: AtomicBool::new(false),
        token: OnceLock::new(),
        emitter,
        secrets: inner.secrets.clone(),
        redactor: Redactor::default(),
        log,
        recorder,
        keep_outputs,
        nodes,
        slots,
        key_limits,
        inflight: AtomicUsize::new(0),
        queue: Mutex::new(Vec::new()),
        active: AtomicUsize::new(0),
        parallelism: tokio::runtime::Handle::try_current()
            .map_or(1, |h| h.metrics().num_workers())
            .max(1),
        failure: Mutex::new(None),
        outputs: Mutex::new(outputs),
        result: Mutex::new(None),
        finished: Notify::new(),
        started,
        span,
    });
    run.emitter.emit(|| EventKind::RunStarted {
        flow: Arc::from(flow.name()),
        nodes: plan.len() as u32,
    });
    Ok(run)
}

impl Worker {
    /// Runs node `index` (or skips it), then delivers what it produced.
    async fn execute(&mut self, index: u32) {
        let run = &self.ctx.run;
        let state = &run.nodes[index as usize];
        let nothing_arrived =
            run.flow.0.plan.in_degree[index as usize] > 0 && !state.arrived.load(Ordering::Relaxed);
        if state.dead.load(Ordering::Relaxed) || nothing_arrived {
            run.skip(index, None, &mut self.ready);
            return;
        }
        if run.is_cancelled() {
            run.set_status(index, NodeStatus::NotRun);
            return;
        }
        let mut inputs = self.spare.pop().unwrap_or_default();
        inputs.extend(
            run.flow
                .0
                .plan
                .slots(index)
                .map(|slot| run.slots[slot].lock().take()),
        );
        let node = run.node(index);
        let span = tracing::info_span!(parent: &run.span, "node", node = %node.id, index);
        let attempted = attempts(&self.ctx, index, inputs, &mut self.clock)
            .instrument(span)
            .await;
        self.slow = Duration::from_nanos(state.busy_ns.load(Ordering::Relaxed)) >= SLOW_NODE;
        let run = &self.ctx.run;
        match attempted {
            Attempted::Succeeded(mut outputs) => {
                run.record(index, NodeStatus::Succeeded, None, Some((&outputs, None)));
                run.emitter.emit(|| EventKind::NodeSucceeded {
                    node: node.id.clone(),
                    index,
                    attempt: state.attempts.load(Ordering::Relaxed),
                    duration: Duration::from_nanos(state.busy_ns.load(Ordering::Relaxed)),
                    outputs: run
                        .emitter
                        .wants_payloads()
                        .then(|| payloads(&run.redactor, node, &outputs)),
                });
                run.deliver_all(index, &mut outputs, None, &mut self.ready);
                recycle(&mut self.spare, outputs);
            }
            Attempted::Failed(error, attempts) => {
                let on_error = node
                    .policy()
                    .on_error
                    .or(run.engine.defaults.on_error)
                    .unwrap_or_default();
                match on_error {
                    OnError::Fail => {
                        run.record(index, NodeStatus::Failed, Some(error.message()), None);
                        run.failure.lock().get_or_insert(Error::NodeFailed {
                            node: node.id.to_string(),
                            attempts,
                            error,
                        });
                        run.cancel_all();
                    }
                    OnError::Continue => {
                        let mut outputs = self.spare.pop().unwrap_or_default();
                        outputs.resize(node.spec.outputs.len(), None);
                        let failure = Value::new(NodeFailure::new(
                            &node.id,
                            error.message(),
                            attempts,
                            error.kind(),
                        ));
                        run.record(
                            index,
                            NodeStatus::Failed,
                            Some(error.message()),
                            Some((&outputs, Some(&failure))),
                        );
                        run.deliver_all(index, &mut outputs, Some(failure), &mut self.ready);
                        recycle(&mut self.spare, outputs);
                    }
                    OnError::Skip => run.skip(index, Some(error.message()), &mut self.ready),
                }
            }
            Attempted::Cancelled => {
                run.record(index, NodeStatus::Cancelled, None, None);
                run.emitter.emit(|| EventKind::NodeCancelled {
                    node: node.id.clone(),
                    index,
                });
            }
        }
    }
}

/// Keeps an emptied slot vector for the next node, if it is small.
fn recycle(spare: &mut Vec<Vec<Option<Value>>>, mut slots: Vec<Option<Value>>) {
    if spare.len() < SPARES && slots.capacity() <= SPARE_CAPACITY {
        slots.clear();
        spare.push(slots);
    }
}

/// Runs the attempts of node `index` under its retry policy. `clock` is the
/// time the worker's previous attempt ended, if it went straight on; it is
/// set to the time this node's last attempt ended.
async fn attempts(
    ctx: &Context,
    index: u32,
    inputs: Vec<Option<Value>>,
    clock: &mut Option<Instant>,
) -> Attempted {
    let run = &*ctx.run;
    let node = run.node(index);
    let defaults = &run.engine.defaults;
    let retry = node.policy().retry.as_ref().or(defaults.retry.as_ref());
    let max_attempts = retry.map_or(1, |r| r.max_attempts.max(1));
    let timeout = node.policy().timeout.or(defaults.timeout);
    let limited = run.key_limits.is_some() || run.engine.global_limit.is_some();
    let policy = node.policy();
    let guard_key =
        |key: &Option<String>| key.clone().unwrap_or_else(|| node.spec.type_name.clone());
    let bucket = policy
        .rate_limit
        .as_ref()
        .or(defaults.rate_limit.as_ref())
        .map(|limit| run.engine.guards.bucket(&guard_key(&limit.key), limit));
    let breaker = policy
        .circuit_breaker
        .as_ref()
        .or(defaults.circuit_breaker.as_ref())
        .map(|b| run.engine.guards.breaker(&guard_key(&b.key), b));
    let state = &run.nodes[index as usize];
    let mut inputs = Some(inputs);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let these_inputs = if attempt < max_attempts {
            inputs.clone().unwrap_or_default()
        } else {
            inputs.take().unwrap_or_default()
        };
        let permits = if limited {
            Some(match run.try_acquire(index) {
                Some(permits) => permits,
                None => {
                    let _blocked = ctx.run.blocked();
                    let permits = tokio::select! {
                        biased;
                        permits = run.acquire(index) => permits,
                        () = run.cancelled() => return Attempted::Cancelled,
                    };
                    // The wait is not the node's time.
                    *clock = None;
                    permits
                }
            })
        } else {
            None
        };
        state.attempts.store(attempt, Ordering::Relaxed);
        run.record(index, NodeStatus::Running, None, None);
        run.emitter.emit(|| EventKind::NodeStarted {
            node: node.id.clone(),
            index,
            attempt,
        });
        if let Some(bucket) = &bucket {
            // Wait for a token; the wait is not the node's time.
            while let Err(wait) = bucket.try_take() {
                let _blocked = ctx.run.blocked();
                *clock = None;
                tokio::select! {
                    biased;
                    () = run.cancelled() => return Attempted::Cancelled,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
        ctx.set_node(index, attempt);
        let admission = match breaker.as_ref().map(|b| b.admit()) {
            Some(Err(refused)) => Err(refused),
            Some(Ok(admission)) => Ok(Some(admission)),
            None => Ok(None),
        };
        let began = clock.take().unwrap_or_else(Instant::now);
        let result = match admission {
            // An open breaker fails the attempt without running the node.
            Err(refused) => Err(refused),
            Ok(admission) => {
                let mut attempt_run = pin!(run_attempt(node, these_inputs, ctx, timeout));
                // Most nodes finish on their first poll: try that before
                // arming the race with cancellation.
                let result = match attempt_run.as_mut().now_or_never() {
                    Some(result) => result,
                    None => {
                        let _blocked = ctx.run.blocked();
                        tokio::select! {
                            biased;
                            result = attempt_run => result,
                            () = run.cancelled() => {
                                state.busy_ns.fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
                                if let (Some(breaker), Some(admission)) = (&breaker, admission) {
                                    breaker.abandon(admission);
                                }
                                return Attempted::Cancelled;
                            }
                        }
                    }
                };
                if let (Some(breaker), Some(admission)) = (&breaker, admission) {
                    breaker.record(admission, result.is_ok());
                }
                result
            }
        };
        let ended = Instant::now();
        state.busy_ns.fetch_add(
            ended.saturating_duration_since(began).as_nanos() as u64,
            Ordering::Relaxed,
        );
        drop(permits);
        let error = match result {
            Ok(outputs) => {
                *clock = Some(ended);
                return Attempted::Succeeded(outputs);
            }
            // From here on the error is reported: no secret may show in it.
            Err(error) => run.redactor.error(error),
        };
        let retry_in = match retry {
            Some(policy) if error.is_retryable() && attempt < max_attempts => {
                Some(policy.delay(attempt, &error, fastrand::f64()))
            }
            _ => None,
        };
        tracing::debug!(attempt, error = %error, ?retry_in, "node attempt failed");
        run.emitter.emit(|| EventKind::NodeFailed {
            node: node.id.clone(),
            index,
            attempt,
            error: error.message().to_owned(),
            retry_in,
        });
        let Some(delay) = retry_in else {
            *clock = Some(ended);
            return Attempted::Failed(error, attempt);
        };
        let _blocked = ctx.run.blocked();
        tokio::select! {
            biased;
            () = run.cancelled() => return Attempted::Cancelled,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

impl RunShared {
    pub(crate) fn events_log(&self) -> EventStream {
        match &self.log {
            Some(log) => log.subscribe(),
            None => EventStream::closed(),
        }
    }

    pub(crate) fn cancel_by_user(&self) {
        self.cancel_all();
    }

    /// Stops the execution: no node starts any more, running ones are dropped.
    fn cancel_all(&self) {
        // SeqCst pairs with `token`: either it sees the flag, or this sees its token.
        self.cancelled.store(true, Ordering::SeqCst);
        if let Some(token) = self.token.get() {
            token.cancel();
        }
    }

    /// Takes a ready node from the shared queue.
    fn pop(&self) -> Option<u32> {
        self.queue.lock().pop()
    }

    /// A worker found the queue empty: it stops counting as active, unless
    /// work arrived meanwhile. Returns whether it may exit.
    fn retire(&self) -> bool {
        self.active.fetch_sub(1, Ordering::AcqRel);
        if self.queue.lock().is_empty() {
            return true;
        }
        self.active.fetch_add(1, Ordering::AcqRel);
        false
    }

    /// Spawns workers for queued nodes, up to `queued` of them and while
    /// fewer than `parallelism` workers are active. Returns how many.
    fn spawn_helpers(self: &Arc<Self>, queued: usize) -> usize {
        for spawned in 0..queued {
            let claimed = self
                .active
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |active| {
                    (active < self.parallelism).then_some(active + 1)
                });
            if claimed.is_err() {
                return spawned;
            }
            self.inflight.fetch_add(1, Ordering::AcqRel);
            let worker = Worker::new(self.clone());
            tokio::spawn(worker.work());
        }
        queued
    }

    /// The current worker is about to wait (for a node's I/O, a
    /// concurrency slot, a retry delay): it stops counting as active, and
    /// queued nodes get a helper so that they do not wait with it.
    fn blocked(self: &Arc<Self>) -> Blocked<'_> {
        self.active.fetch_sub(1, Ordering::AcqRel);
        let queued = self.queue.lock().len();
        if queued > 0 {
            // The waiting worker yields anyway, so the helpers get to start.
            self.spawn_helpers(queued);
        }
        Blocked(self)
    }

    /// Waits for the result of the execution (once: it is taken).
    pub(crate) async fn wait(self: &Arc<Self>) -> Result<Outcome, Error> {
        loop {
            let result = self.result.lock().take();
            if let Some(result) = result {
                return result.map(|duration| Outcome {
                    run: self.clone(),
                    outputs: std::mem::take(&mut *self.outputs.lock()),
                    duration,
                });
            }
            self.finished.notified().await;
        }
    }

    /// What node `index` did, as far as it went.
    pub(crate) fn node_result(&self, index: usize) -> (NodeStatus, u32, Duration) {
        let state = &self.nodes[index];
        (
            NodeStatus::from_code(state.status.load(Ordering::Acquire)),
            state.attempts.load(Ordering::Relaxed),
            Duration::from_nanos(state.busy_ns.load(Ordering::Relaxed)),
        )
    }

    /// Whether the execution was cancelled or failed.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// The execution's cancellation token, cancelled when the execution is.
    pub(crate) fn token(&self) -> &CancellationToken {
        let token = self.token.get_or_init(CancellationToken::new);
        if self.cancelled.load(Ordering::SeqCst) {
            token.cancel();
        }
        token
    }

    /// Resolves when the execution is cancelled.
    pub(crate) async fn cancelled(&self) {
        self.token().cancelled().await
    }

    pub(crate) fn node(&self, index: u32) -> &FlowNode {
        &self.flow.0.nodes[index as usize]
    }

    fn set_status(&self, index: u32, status: NodeStatus) {
        self.nodes[index as usize]
            .status
            .store(status.code(), Ordering::Relaxed);
    }

    fn status(&self, index: u32) -> NodeStatus {
        NodeStatus::from_code(self.nodes[index as usize].status.load(Ordering::Relaxed))
    }

    /// Records a transition: in the node's state, and with the store. The
    /// outputs are the regular ports' values and the `error` port's.
    fn record(
        &self,
        index: u32,
        status: NodeStatus,
        error: Option<&str>,
        outputs: Option<(&[Option<Value>], Option<&Value>)>,
    ) {
        self.set_status(index, status);
        let state = &self.nodes[index as usize];
        let outputs = match outputs {
            Some((values, error_port)) if self.keep_outputs => Some(
                values
                    .iter()
                    .cloned()
                    .chain(std::iter::once(error_port.cloned()))
                    .collect(),
            ),
            _ => None,
        };
        self.recorder.node_changed(
            index,
            &NodeRecord {
                status,
                attempts: state.attempts.load(Ordering::Relaxed),
                busy: Duration::from_nanos(state.busy_ns.load(Ordering::Relaxed)),
                error: error.map(str::to_owned),
                outputs,
            },
        );
    }

    fn skip(&self, index: u32, error: Option<&str>, ready: &mut Vec<u32>) {
        let node = self.node(index);
        self.record(index, NodeStatus::Skipped, error, None);
        self.emitter.emit(|| EventKind::NodeSkipped {
            node: node.id.clone(),
            index,
        });
        let plan = &self.flow.0.plan;
        // Values that did arrive are not needed any more.
        for slot in plan.slots(index) {
            drop(self.slots[slot].lock().take());
        }
        for &target in plan.node_targets(index) {
            self.deliver(target, None, ready);
        }
    }

    /// Hands node `index`'s outputs (and its `error` port's value) to the
    /// flow outputs and to every target: an `Arc` clone for all targets of a
    /// port but the last, which gets the value itself.
    fn deliver_all(
        &self,
        index: u32,
        outputs: &mut [Option<Value>],
        mut error: Option<Value>,
        ready: &mut Vec<u32>,
    ) {
        let plan = &self.flow.0.plan;
        let taps = plan.node_taps(index);
        if !taps.is_empty() {
            let mut flow_outputs = self.outputs.lock();
            for &(port, output) in taps {
                flow_outputs[output as usize] = match outputs.get(port as usize) {
                    Some(value) => value.clone(),
                    None => error.clone(),
                };
            }
        }
        // One window of `target_base` per output port, the `error` port last.
        let first = plan.port_base[index as usize] as usize;
        let last = plan.port_base[index as usize + 1] as usize;
        for (port, bounds) in plan.target_base[first..=last].windows(2).enumerate() {
            let targets = &plan.targets[bounds[0] as usize..bounds[1] as usize];
            let Some((&last, rest)) = targets.split_last() else {
                continue;
            };
            let value = match outputs.get_mut(port) {
                Some(value) => value.take(),
                None => error.take(),
            };
            for &target in rest {
                self.deliver(target, value.clone(), ready);
            }
            self.deliver(last, value, ready);
        }
    }

    fn deliver(&self, target: Target, value: Option<Value>, ready: &mut Vec<u32>) {
        let state = &self.nodes[target.node as usize];
        let plan = &self.flow.0.plan;
        let eager = plan.is_eager(target.node);
        match value {
            Some(value) => {
                *self.slots[target.slot as usize].lock() = Some(value);
                state.arrived.store(true, Ordering::Relaxed);
                // An eager node is ready with its first value.
                if eager && !state.fired.swap(true, Ordering::AcqRel) {
                    ready.push(target.node);
                }
            }
            None => {
                if plan.required[target.slot as usize] {
                    state.dead.store(true, Ordering::Relaxed);
                }
            }
        }
        if state.pending.fetch_sub(1, Ordering::AcqRel) == 1
            && (!eager || !state.fired.swap(true, Ordering::AcqRel))
        {
            ready.push(target.node);
        }
    }

    /// The node's concurrency slots, if they are free right now.
    fn try_acquire(&self, index: u32) -> Option<[Option<OwnedSemaphorePermit>; 2]> {
        let key = match self
            .key_limits
            .as_ref()
            .and_then(|l| l[index as usize].clone())
        {
            Some(semaphore) => Some(semaphore.try_acquire_owned().ok()?),
            None => None,
        };
        let global = match &self.engine.global_limit {
            Some(semaphore) if !self.flow.0.plan.runs_flows(index) => {
                Some(semaphore.clone().try_acquire_owned().ok()?)
            }
            _ => None,
        };
        Some([key, global])
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
            Some(semaphore) if !self.flow.0.plan.runs_flows(index) => {
                semaphore.clone().acquire_owned().await.ok()
            }
            _ => None,
        };
        [key, global]
    }

    /// Completes the execution: called once, by the last worker. `now` is
    /// the time its last node ended, if it has just read the clock.
    fn finish(&self, now: Option<Instant>) {
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
            None if all_final => Ok(now
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(self.started)),
            None => Err(Error::Cancelled),
        };
        let (status, message) = match &result {
            Ok(_) => (RunStatus::Succeeded, None),
            Err(Error::Cancelled) => (RunStatus::Cancelled, None),
            Err(e) => (RunStatus::Failed, Some(e.to_string())),
        };
        self.recorder.finished(status, message.as_deref());
        self.emitter.emit(|| EventKind::RunFinished {
            status,
            error: message.clone(),
        });
        self.emitter.close();
        tracing::debug!(parent: &self.span, ?status, "run finished");
        *self.result.lock() = Some(result);
        self.finished.notify_one();
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
    redactor: &Redactor,
    node: &FlowNode,
    outputs: &[Option<Value>],
) -> serde_json::Map<String, serde_json::Value> {
    node.spec
        .outputs
        .iter()
        .zip(outputs)
        .filter_map(|(port, value)| {
            let mut json = value
                .as_ref()?
                .to_json()
                .unwrap_or_else(|e| serde_json::Value::String(format!("<not serializable: {e}>")));
            redactor.json(&mut json);
            Some((port.name.clone(), json))
        })
        .collect()
}
