//! The GhostFlow benchmarks: the same workloads on GhostFlow, a hand-written
//! tokio reference executor, and other DAG executors from crates.io.
//!
//! - [`shapes`]: the workloads, and their sequential reference results;
//! - [`contender`]: the interface every executor under comparison implements;
//! - [`reference`](mod@reference), [`engine`], [`peers`]: the executors;
//! - [`harness`]: timing and memory measurement.
//!
//! The `compare` binary prints the side-by-side table (see `benches/README.md`);
//! the criterion benches under `benches/` track regressions.

pub mod contender;
pub mod engine;
pub mod harness;
pub mod peers;
pub mod reference;
pub mod shapes;

use contender::Contender;

use std::sync::Arc;

/// Every contender, the reference first.
pub fn contenders() -> Vec<Arc<dyn Contender>> {
    let mut all: Vec<Arc<dyn Contender>> = vec![
        Arc::new(reference::TokioReference),
        Arc::new(engine::GhostFlow::default()),
        Arc::new(engine::GhostFlowEvents::default()),
    ];
    all.extend(peers::all());
    all
}
