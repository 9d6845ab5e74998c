//! Events: what happens during an execution, as one typed stream.
//!
//! Every execution reports its progress as [`Event`]s to the engine's
//! [`EventSink`]s and, when started with [`Engine::start`](crate::Engine::start),
//! to [`Execution::events`](crate::Execution::events). Emitting costs nothing
//! when nobody listens.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::RunId;

/// The state of an execution as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Nodes are running.
    Running,
    /// Every node succeeded or was skipped.
    Succeeded,
    /// A node failed with on-error `fail`.
    Failed,
    /// The execution was cancelled.
    Cancelled,
}

/// One thing that happened during an execution.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// The execution.
    pub run_id: RunId,
    /// Time since the execution started.
    #[serde(serialize_with = "ser_duration_us", rename = "elapsed_us")]
    pub elapsed: Duration,
    /// Wall-clock time.
    #[serde(serialize_with = "ser_system_time_ms", rename = "time_ms")]
    pub time: SystemTime,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The execution started.
    RunStarted {
        /// The flow's name.
        flow: Arc<str>,
        /// Number of nodes.
        nodes: u32,
    },
    /// A node attempt started.
    NodeStarted {
        /// Node id.
        node: Arc<str>,
        /// Node index in the flow.
        index: u32,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// A node succeeded.
    NodeSucceeded {
        /// Node id.
        node: Arc<str>,
        /// Node index in the flow.
        index: u32,
        /// The successful attempt.
        attempt: u32,
        /// Duration of that attempt.
        #[serde(serialize_with = "ser_duration_us", rename = "duration_us")]
        duration: Duration,
        /// Output values by port name, when a sink asked for payloads.
        #[serde(skip_serializing_if = "Option::is_none")]
        outputs: Option<serde_json::Map<String, serde_json::Value>>,
    },
    /// A node attempt failed.
    NodeFailed {
        /// Node id.
        node: Arc<str>,
        /// Node index in the flow.
        index: u32,
        /// The failed attempt.
        attempt: u32,
        /// The error message.
        error: String,
        /// Delay before the next attempt; `None` when this was the last one.
        #[serde(serialize_with = "ser_opt_duration_ms", rename = "retry_in_ms")]
        retry_in: Option<Duration>,
    },
    /// A node was skipped: a required input was never produced, or it failed
    /// with on-error `skip`.
    NodeSkipped {
        /// Node id.
        node: Arc<str>,
        /// Node index in the flow.
        index: u32,
    },
    /// A running node was cancelled.
    NodeCancelled {
        /// Node id.
        node: Arc<str>,
        /// Node index in the flow.
        index: u32,
    },
    /// Progress reported by a running node (for example streamed LLM tokens).
    NodeProgress {
        /// Node id.
        node: Arc<str>,
        /// Node index in the flow.
        index: u32,
        /// Whatever the node reported.
        data: serde_json::Value,
    },
    /// The execution finished.
    RunFinished {
        /// How it ended.
        status: RunStatus,
        /// The error, when it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// Receives the events of every execution of an engine.
///
/// `emit` is called on the executing task: keep it quick (push to a channel).
pub trait EventSink: Send + Sync + fmt::Debug + 'static {
    /// Handles one event.
    fn emit(&self, event: &Event);

    /// Whether [`EventKind::NodeSucceeded`] should carry the output values as
    /// JSON. Serializing them has a cost, so the default is no.
    fn wants_payloads(&self) -> bool {
        false
    }
}

/// Per-execution event fan-out: engine sinks plus the execution's own stream.
#[derive(Clone, Default)]
pub(crate) struct Emitter(Option<Arc<EmitterInner>>);

struct EmitterInner {
    run_id: RunId,
    started: Instant,
    /// Wall-clock time at `started`: event times are derived from it, so an
    /// event reads one clock, not two.
    started_wall: SystemTime,
    sinks: Vec<Arc<dyn EventSink>>,
    own: Option<Arc<ExecutionEvents>>,
    payloads: bool,
}

impl Emitter {
    pub(crate) fn new(
        run_id: RunId,
        started: Instant,
        started_wall: SystemTime,
        sinks: &[Arc<dyn EventSink>],
        own: Option<Arc<ExecutionEvents>>,
    ) -> Self {
        if sinks.is_empty() && own.is_none() {
            return Emitter(None);
        }
        let payloads = sinks.iter().any(|s| s.wants_payloads());
        Emitter(Some(Arc::new(EmitterInner {
            run_id,
            started,
            started_wall,
            sinks: sinks.to_vec(),
            own,
            payloads,
        })))
    }

    pub(crate) fn is_active(&self) -> bool {
        self.0.is_some()
    }

    pub(crate) fn wants_payloads(&self) -> bool {
        self.0.as_ref().is_some_and(|i| i.payloads)
    }

    /// Emits the event that `kind` makes; `kind` is only called when
    /// someone listens.
    #[inline]
    pub(crate) fn emit(&self, kind: impl FnOnce() -> EventKind) {
        if let Some(inner) = &self.0 {
            inner.emit(kind());
        }
    }

    /// Ends the execution's own stream.
    pub(crate) fn close(&self) {
        if let Some(own) = self.0.as_ref().and_then(|i| i.own.as_ref()) {
            own.close();
        }
    }
}

impl EmitterInner {
    fn emit(&self, kind: EventKind) {
        let inner = self;
        let elapsed = inner.started.elapsed();
        let event = Event {
            run_id: inner.run_id,
            elapsed,
            time: inner.started_wall + elapsed,
            kind,
        };
        for sink in &inner.sinks {
            sink.emit(&event);
        }
        if let Some(own) = &inner.own {
            own.push(event);
        }
    }
}

/// The event log of one execution started with `Engine::start`: every event
/// is kept, so a stream opened late still sees the whole execution.
#[derive(Default)]
pub(crate) struct ExecutionEvents {
    inner: Mutex<LogState>,
}

#[derive(Default)]
struct LogState {
    history: Vec<Event>,
    subscribers: Vec<mpsc::UnboundedSender<Event>>,
    closed: bool,
}

impl ExecutionEvents {
    fn push(&self, event: Event) {
        let mut state = self.inner.lock();
        state.subscribers.retain(|s| s.send(event.clone()).is_ok());
        state.history.push(event);
    }

    fn close(&self) {
        let mut state = self.inner.lock();
        state.closed = true;
        state.subscribers.clear();
    }

    /// A stream of every event so far, then the live ones until the end.
    pub(crate) fn subscribe(&self) -> EventStream {
        let mut state = self.inner.lock();
        let (tx, rx) = mpsc::unbounded_channel();
        for event in &state.history {
            // The receiver is alive: it is right here.
            let _ = tx.send(event.clone());
        }
        if !state.closed {
            state.subscribers.push(tx);
        }
        EventStream { rx }
    }
}

/// The events of one execution, as a [`Stream`](futures::Stream). Ends after
/// [`EventKind::RunFinished`].
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl EventStream {
    /// A stream that has already ended.
    pub(crate) fn closed() -> Self {
        let (_, rx) = mpsc::unbounded_channel();
        EventStream { rx }
    }

    /// The next event, or `None` after the last one.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl futures::Stream for EventStream {
    type Item = Event;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// An [`EventSink`] that forwards every event into a channel.
#[derive(Debug, Clone)]
pub struct ChannelSink {
    tx: mpsc::UnboundedSender<Event>,
    payloads: bool,
}

impl ChannelSink {
    /// A sink and the receiving end of its channel.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            ChannelSink {
                tx,
                payloads: false,
            },
            rx,
        )
    }

    /// Asks for output payloads in [`EventKind::NodeSucceeded`].
    #[must_use]
    pub fn with_payloads(mut self) -> Self {
        self.payloads = true;
        self
    }
}

impl EventSink for ChannelSink {
    fn emit(&self, event: &Event) {
        // A closed receiver means nobody listens any more; dropping is right.
        let _ = self.tx.send(event.clone());
    }

    fn wants_payloads(&self) -> bool {
        self.payloads
    }
}

fn ser_duration_us<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros().min(u64::MAX as u128) as u64)
}

fn ser_opt_duration_ms<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_millis().min(u64::MAX as u128) as u64)),
        None => s.serialize_none(),
    }
}

fn ser_system_time_ms<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis().min(u64::MAX as u128) as u64)
        .unwrap_or(0);
    s.serialize_u64(ms)
}
