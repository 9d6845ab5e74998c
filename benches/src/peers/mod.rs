//! DAG executors from crates.io, run on the same shapes.

pub mod dagrs;
pub mod dagx;

use crate::contender::Contender;

/// Every peer executor.
pub fn all() -> Vec<Box<dyn Contender>> {
    vec![Box::new(self::dagx::Dagx), Box::new(self::dagrs::Dagrs)]
}
