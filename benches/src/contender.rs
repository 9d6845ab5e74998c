//! What the comparison runs: a *contender* turns a [`Shape`] into something
//! runnable (timed as *build*), then runs it once (timed as *run*).

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::shapes::Shape;

/// An executor under comparison.
pub trait Contender: Send + Sync {
    /// Name in tables and JSON.
    fn name(&self) -> &'static str;

    /// Why this contender cannot run `shape`, if it cannot (its API has no
    /// way to express it, for example). `None` when it can.
    fn unsupported(&self, shape: &Shape) -> Option<String>;

    /// Builds the runnable form of `shape`: whatever the contender needs
    /// before it can start (a compiled plan, a graph object, arrays).
    ///
    /// Called inside the benchmark's tokio runtime context (so `Handle::current`
    /// works), but not on one of its tasks.
    fn build(&self, shape: &Arc<Shape>) -> Box<dyn Built>;
}

/// A shape built by a contender, ready to run once.
pub trait Built: Send {
    /// The run, as a future that the harness spawns on the runtime under test
    /// and waits for. It resolves to the wrapping sum of the values of the
    /// shape's sinks, which the harness checks against [`Shape::reference`].
    fn run(self: Box<Self>) -> BoxFuture<'static, u64>;
}
