//! What the comparison runs: a *contender* turns a [`Shape`] into something
//! runnable (timed as *build*), then runs it once (timed as *run*).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::shapes::Shape;

/// An executor under comparison.
pub trait Contender: Send + Sync + 'static {
    /// Name in tables and JSON.
    fn name(&self) -> &'static str;

    /// Why this contender cannot run `shape`, if it cannot (its API has no
    /// way to express it, for example). `None` when it can.
    fn unsupported(&self, shape: &Shape) -> Option<String>;

    /// One-time work per shape that is not part of building a graph, such as
    /// making the specs of node types (a registry does that once per type,
    /// not once per flow). Called before anything is timed or measured.
    fn prepare(&self, _shape: &Shape) {}

    /// Builds the runnable form of `shape`: whatever the contender needs
    /// before it can start (a compiled plan, a graph object, arrays).
    ///
    /// Called on a task of the runtime under test, right before the run.
    fn build(&self, shape: &Arc<Shape>) -> Box<dyn Built>;
}

/// A shape built by a contender, ready to run once.
pub trait Built: Send {
    /// The run, as a future that the harness awaits on a task of the runtime
    /// under test.
    fn run(self: Box<Self>) -> BoxFuture<'static, Ran>;

    /// Another run of the same built graph, for contenders whose built form
    /// is reusable (GhostFlow's `Flow` is compiled once and run many times);
    /// `None` for single-use graphs. The harness then times runs of one
    /// graph, as an application that built it once would see them.
    fn rerun(&self) -> Option<Box<dyn Built>> {
        None
    }

    /// The part of [`Contender::build`] that turned the graph, already
    /// described, into the executable form (GhostFlow's `FlowBuilder::build`:
    /// validation and the compiled plan). `None` when building has no such
    /// separate step.
    fn compile_time(&self) -> Option<Duration> {
        None
    }
}

/// What a run leaves.
pub struct Ran {
    /// The wrapping sum of the values of the shape's sinks, which the harness
    /// checks against [`Shape::reference`].
    pub checksum: u64,
    /// Whatever the run still owns (the graph, the engine). The harness drops
    /// it after the clock stops, so no contender's teardown is counted.
    pub remains: Box<dyn Send>,
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ran")
            .field("checksum", &self.checksum)
            .finish_non_exhaustive()
    }
}

impl Ran {
    /// A result and what to drop later.
    pub fn new(checksum: u64, remains: impl Send + 'static) -> Self {
        Ran {
            checksum,
            remains: Box::new(remains),
        }
    }
}
