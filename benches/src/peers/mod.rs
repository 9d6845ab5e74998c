//! DAG executors from crates.io, run on the same shapes.

pub mod dagrs;
pub mod dagx;

use std::sync::Arc;

use crate::contender::Contender;

/// Every peer executor.
pub fn all() -> Vec<Arc<dyn Contender>> {
    vec![Arc::new(self::dagx::Dagx), Arc::new(self::dagrs::Dagrs)]
}
