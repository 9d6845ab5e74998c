//! Shared pieces of the GhostFlow benchmarks: a node that computes
//! `1 + sum(inputs)`, and flow shapes built from it.

use std::sync::Arc;

use ghostflow::node::BoxFuture;
use ghostflow::{Endpoint, ErasedNode, Flow, NodeError, NodeIndex, NodeSpec, PortSpec, Value};

/// A node with `n` `u64` inputs and one `u64` output: `1 + sum(inputs)`.
#[derive(Debug)]
pub struct Step {
    spec: Arc<NodeSpec>,
}

impl Step {
    /// A step with `inputs` inputs.
    pub fn new(inputs: usize) -> Self {
        Step {
            spec: Arc::new(NodeSpec {
                type_name: "step".into(),
                version: "1".into(),
                description: "Outputs one plus the sum of its inputs.".into(),
                category: "bench".into(),
                config_schema: serde_json::json!({}),
                inputs: (0..inputs)
                    .map(|i| PortSpec::of::<u64>(&format!("in{i}"), None, true))
                    .collect(),
                outputs: vec![PortSpec::of::<u64>("out", None, true)],
            }),
        }
    }
}

impl ErasedNode for Step {
    fn spec(&self) -> Arc<NodeSpec> {
        self.spec.clone()
    }

    fn run<'a>(
        &'a self,
        inputs: Vec<Option<Value>>,
        _ctx: &'a ghostflow::Context,
    ) -> BoxFuture<'a, Result<Vec<Option<Value>>, NodeError>> {
        Box::pin(async move {
            let mut sum = 1u64;
            for slot in inputs {
                let v = slot.ok_or_else(|| NodeError::permanent("missing input"))?;
                sum = sum.wrapping_add(v.take::<u64>().map_err(NodeError::from)?);
            }
            Ok(vec![Some(Value::new(sum))])
        })
    }

    fn config_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        Ok(serde_json::json!({}))
    }
}

/// A flow shape: for each node, the indices of its predecessors (all smaller).
pub type Shape = Vec<Vec<usize>>;

/// A chain of `n` nodes.
pub fn chain(n: usize) -> Shape {
    (0..n)
        .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
        .collect()
}

/// One source, `width` nodes reading it, one sink reading them all.
pub fn fan_out(width: usize) -> Shape {
    let mut shape = vec![vec![]];
    shape.extend((0..width).map(|_| vec![0]));
    shape.push((1..=width).collect());
    shape
}

/// The 4-node diamond.
pub fn diamond() -> Shape {
    vec![vec![], vec![0], vec![0], vec![1, 2]]
}

/// Builds a flow of [`Step`] nodes with the given shape; the last node is the
/// flow output `out`.
pub fn build(shape: &Shape) -> Flow {
    let mut b = Flow::builder("bench");
    let nodes: Vec<NodeIndex> = shape
        .iter()
        .enumerate()
        .map(|(i, preds)| b.add_erased(format!("n{i}"), Arc::new(Step::new(preds.len()))))
        .collect();
    for (i, preds) in shape.iter().enumerate() {
        for (slot, &p) in preds.iter().enumerate() {
            b.connect_erased(
                Endpoint {
                    node: nodes[p],
                    port: 0,
                },
                Endpoint {
                    node: nodes[i],
                    port: slot as u16,
                },
            );
        }
    }
    if let Some(&last) = nodes.last() {
        b.output_erased(
            "out",
            Endpoint {
                node: last,
                port: 0,
            },
        );
    }
    b.build().expect("bench shapes are valid")
}

/// The expected value of the last node, computed sequentially.
pub fn reference(shape: &Shape) -> u64 {
    let mut values = vec![0u64; shape.len()];
    for (i, preds) in shape.iter().enumerate() {
        values[i] = preds
            .iter()
            .fold(1u64, |acc, &p| acc.wrapping_add(values[p]));
    }
    *values.last().unwrap_or(&0)
}
