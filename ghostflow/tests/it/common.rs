//! Nodes shared by the engine tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use ghostflow::prelude::*;
use parking_lot::Mutex;

/// A number.
#[derive(Ports, Debug)]
pub(crate) struct Num {
    /// The number.
    pub(crate) n: u64,
}

/// Two numbers, the second optional.
#[derive(Ports, Debug)]
pub(crate) struct Pair {
    /// Left operand.
    pub(crate) a: u64,
    /// Right operand.
    pub(crate) b: Option<u64>,
}

/// Two optional numbers.
#[derive(Ports, Debug)]
pub(crate) struct Either {
    /// First.
    pub(crate) a: Option<u64>,
    /// Second.
    pub(crate) b: Option<u64>,
}

/// Outputs of a branch.
#[derive(Ports, Debug)]
pub(crate) struct Branches {
    /// Taken when the number is at least the threshold.
    pub(crate) then: Option<u64>,
    /// Taken otherwise.
    #[port(name = "else")]
    pub(crate) otherwise: Option<u64>,
}

/// Shared log of node names in the order they ran.
pub(crate) type Log = Arc<Mutex<Vec<String>>>;

/// Emits a constant.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(output = Num)]
pub(crate) struct Const {
    /// The constant.
    pub(crate) value: u64,
}

impl Run for Const {
    async fn run(&self, _: (), _: &Context) -> Result<Num, NodeError> {
        Ok(Num { n: self.value })
    }
}

/// Adds `b` (or 0) to `a`, and logs its name.
#[derive(Node, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[node(input = Pair, output = Num)]
pub(crate) struct Add {
    /// Where to log.
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) log: Log,
}

impl Run for Add {
    async fn run(&self, input: Pair, ctx: &Context) -> Result<Num, NodeError> {
        self.log.lock().push(ctx.node_id().to_owned());
        Ok(Num {
            n: input.a + input.b.unwrap_or(0),
        })
    }
}

/// Sums whichever of its optional inputs arrived.
#[derive(Node, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[node(input = Either, output = Num)]
pub(crate) struct Merge {}

impl Run for Merge {
    async fn run(&self, input: Either, _: &Context) -> Result<Num, NodeError> {
        Ok(Num {
            n: input.a.unwrap_or(0) + input.b.unwrap_or(0),
        })
    }
}

/// Routes its input to `then` or `else`.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Num, output = Branches)]
pub(crate) struct Branch {
    /// Numbers at least this go to `then`.
    pub(crate) threshold: u64,
}

impl Run for Branch {
    async fn run(&self, input: Num, _: &Context) -> Result<Branches, NodeError> {
        let high = input.n >= self.threshold;
        Ok(Branches {
            then: high.then_some(input.n),
            otherwise: (!high).then_some(input.n),
        })
    }
}

/// Records when each node started and ended, and how many ran at once.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    /// `(node, start, end)` in tokio time.
    pub(crate) spans: Mutex<Vec<(String, tokio::time::Instant, tokio::time::Instant)>>,
    /// Nodes running right now.
    pub(crate) running: AtomicUsize,
    /// The most that ever ran at once.
    pub(crate) max_running: AtomicUsize,
}

/// Sleeps, then passes its input on.
#[derive(Node, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[node(input = Num, output = Num)]
pub(crate) struct Sleep {
    /// How long, in milliseconds.
    pub(crate) ms: u64,
    /// Where to record.
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) timeline: Arc<Timeline>,
}

impl Run for Sleep {
    async fn run(&self, input: Num, ctx: &Context) -> Result<Num, NodeError> {
        let t = &self.timeline;
        let now = t.running.fetch_add(1, Ordering::SeqCst) + 1;
        t.max_running.fetch_max(now, Ordering::SeqCst);
        let start = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        t.running.fetch_sub(1, Ordering::SeqCst);
        t.spans
            .lock()
            .push((ctx.node_id().to_owned(), start, tokio::time::Instant::now()));
        Ok(input)
    }
}

/// Fails its first `failures` attempts, then passes its input on.
#[derive(Node, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[node(input = Num, output = Num)]
pub(crate) struct Flaky {
    /// Attempts that fail.
    pub(crate) failures: u32,
    /// Fail with a permanent error instead of a retryable one.
    pub(crate) permanent: bool,
    /// Attempt start times.
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) attempts: Arc<Mutex<Vec<tokio::time::Instant>>>,
}

impl Run for Flaky {
    async fn run(&self, input: Num, ctx: &Context) -> Result<Num, NodeError> {
        self.attempts.lock().push(tokio::time::Instant::now());
        if ctx.attempt() <= self.failures {
            let message = format!("attempt {} failed", ctx.attempt());
            return Err(if self.permanent {
                NodeError::permanent(message)
            } else {
                NodeError::retryable(message)
            });
        }
        Ok(input)
    }
}

/// Sets a flag when dropped.
#[derive(Debug)]
pub(crate) struct DropFlag(pub Arc<AtomicU32>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Never finishes on its own; counts its starts and its drops.
#[derive(Node, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[node(input = Num, output = Num)]
pub(crate) struct Forever {
    /// Starts.
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) started: Arc<AtomicU32>,
    /// Futures dropped.
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) dropped: Arc<AtomicU32>,
}

impl Run for Forever {
    async fn run(&self, _: Num, _: &Context) -> Result<Num, NodeError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let _flag = DropFlag(self.dropped.clone());
        std::future::pending::<Result<Num, NodeError>>().await
    }
}
