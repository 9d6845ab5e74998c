//! [dagx](https://crates.io/crates/dagx) as a contender: one `#[task]` per
//! shape node, chosen by the node's number of inputs, wired with
//! `depends_on`. Values travel between tasks through dagx's own outputs (it
//! hands each dependent an `Arc` of the producer's output); the run's result
//! is read back from the sinks with [`DagRunner::get`] after
//! [`DagRunner::run`], which spawns with `tokio::spawn`.

use std::sync::Arc;

use ::dagx::{DagRunner, Task, TaskHandle, task};
use futures::future::BoxFuture;

use crate::contender::{Built, Contender, Ran};
use crate::shapes::{Shape, step};

/// The most dependencies `depends_on` accepts: it takes one handle or a
/// tuple of up to eight, and has no form for a list sized at run time.
pub const MAX_INPUTS: usize = 8;

/// The dagx contender.
#[derive(Debug, Default)]
pub struct Dagx;

impl Contender for Dagx {
    fn name(&self) -> &'static str {
        "dagx"
    }

    fn unsupported(&self, shape: &Shape) -> Option<String> {
        let fan_in = shape.max_fan_in();
        (fan_in > MAX_INPUTS).then(|| {
            format!(
                "a node has {fan_in} inputs, but a dagx task's inputs are the fixed parameters \
                 of its `run` and `depends_on` takes at most {MAX_INPUTS} handles (a tuple), \
                 with no form for a list of handles sized at run time"
            )
        })
    }

    fn build(&self, shape: &Arc<Shape>) -> Box<dyn Built> {
        let dag = DagRunner::new();
        let mut handles: Vec<TaskHandle<u64>> = Vec::with_capacity(shape.len());
        for preds in &shape.preds {
            let h = |i: usize| &handles[preds[i]];
            let handle = match preds.len() {
                0 => dag.add_task(Source).into(),
                1 => dag.add_task(Sum1).depends_on(h(0)),
                2 => dag.add_task(Sum2).depends_on((h(0), h(1))),
                3 => dag.add_task(Sum3).depends_on((h(0), h(1), h(2))),
                4 => dag.add_task(Sum4).depends_on((h(0), h(1), h(2), h(3))),
                5 => dag
                    .add_task(Sum5)
                    .depends_on((h(0), h(1), h(2), h(3), h(4))),
                6 => dag
                    .add_task(Sum6)
                    .depends_on((h(0), h(1), h(2), h(3), h(4), h(5))),
                7 => dag
                    .add_task(Sum7)
                    .depends_on((h(0), h(1), h(2), h(3), h(4), h(5), h(6))),
                8 => {
                    dag.add_task(Sum8)
                        .depends_on((h(0), h(1), h(2), h(3), h(4), h(5), h(6), h(7)))
                }
                n => {
                    unreachable!("dagx cannot take {n} inputs; `unsupported` rules this shape out")
                }
            };
            handles.push(handle);
        }
        let sinks = shape
            .sinks()
            .iter()
            .zip(&handles)
            .filter(|(sink, _)| **sink)
            .map(|(_, handle)| *handle)
            .collect();
        Box::new(DagxGraph { dag, sinks })
    }
}

/// A built dagx graph and the handles of its sinks.
struct DagxGraph {
    dag: DagRunner,
    sinks: Vec<TaskHandle<u64>>,
}

impl Built for DagxGraph {
    fn run(self: Box<Self>) -> BoxFuture<'static, Ran> {
        Box::pin(async move {
            let DagxGraph { dag, sinks } = *self;
            dag.run(|task| {
                tokio::spawn(task);
            })
            .await
            .expect("the dagx run failed");
            let checksum = sinks.into_iter().fold(0u64, |acc, sink| {
                let value: u64 = dag.get(sink).expect("dagx kept the sink's output");
                acc.wrapping_add(value)
            });
            Ran::new(checksum, dag)
        })
    }
}

/// A node without inputs.
struct Source;

#[task]
impl Source {
    fn run() -> u64 {
        step([])
    }
}

/// Defines a task with the given `u64` inputs that outputs `1 + sum(inputs)`;
/// attributes after the inputs go on its `run`.
macro_rules! sum_task {
    ($(#[$doc:meta])* $name:ident($($input:ident),+) $(#[$run_attr:meta])*) => {
        $(#[$doc])*
        struct $name;

        #[task]
        impl $name {
            $(#[$run_attr])*
            fn run($($input: &u64),+) -> u64 {
                step([$(*$input),+])
            }
        }
    };
}

sum_task!(
    /// A node with one input.
    Sum1(a)
);
sum_task!(
    /// A node with two inputs.
    Sum2(a, b)
);
sum_task!(
    /// A node with three inputs.
    Sum3(a, b, c)
);
sum_task!(
    /// A node with four inputs.
    Sum4(a, b, c, d)
);
sum_task!(
    /// A node with five inputs.
    Sum5(a, b, c, d, e)
);
sum_task!(
    /// A node with six inputs.
    Sum6(a, b, c, d, e, f)
);
sum_task!(
    /// A node with seven inputs.
    Sum7(a, b, c, d, e, f, g)
);
sum_task!(
    /// A node with eight inputs.
    Sum8(a, b, c, d, e, f, g, h)
    #[expect(
        clippy::too_many_arguments,
        reason = "dagx passes a task's inputs as the parameters of its `run`"
    )]
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes;

    fn run(shape: Shape) -> u64 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let shape = Arc::new(shape);
        let built = {
            let _guard = rt.enter();
            Dagx.build(&shape)
        };
        rt.block_on(built.run()).checksum
    }

    #[test]
    fn computes_the_reference_on_small_shapes() {
        for shape in [
            shapes::diamond(),
            shapes::ai_flow(),
            shapes::chain(20),
            shapes::fan_in_tree(100, 8),
            shapes::layered_random(5, 10, 7),
            shapes::fan_out(8),
        ] {
            assert!(Dagx.unsupported(&shape).is_none(), "{}", shape.name);
            assert_eq!(run(shape.clone()), shape.reference(), "{}", shape.name);
        }
    }

    #[test]
    fn refuses_more_than_eight_inputs() {
        assert!(Dagx.unsupported(&shapes::fan_out(9)).is_some());
        assert!(Dagx.unsupported(&shapes::fan_out(10_000)).is_some());
    }
}
