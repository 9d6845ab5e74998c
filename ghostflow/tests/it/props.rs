//! Property tests: random DAGs run every node exactly once, in edge order.

use std::sync::Arc;

use ghostflow::node::BoxFuture;
use ghostflow::{Endpoint, Engine, ErasedNode, Flow, Inputs, NodeError, NodeSpec, PortSpec, Value};
use parking_lot::Mutex;
use proptest::prelude::*;

/// A node with `inputs` required `u64` inputs that outputs `1 + sum`, and logs its index.
#[derive(Debug)]
struct SumNode {
    index: usize,
    spec: Arc<NodeSpec>,
    log: Arc<Mutex<Vec<usize>>>,
}

impl SumNode {
    fn new(index: usize, inputs: usize, log: Arc<Mutex<Vec<usize>>>) -> Self {
        let spec = NodeSpec {
            type_name: "sum".into(),
            version: "1".into(),
            description: "Adds one to the sum of its inputs.".into(),
            category: "test".into(),
            config_schema: serde_json::json!({}),
            inputs: (0..inputs)
                .map(|i| PortSpec::of::<u64>(&format!("in{i}"), None, true))
                .collect(),
            outputs: vec![PortSpec::of::<u64>("out", None, true)],
        };
        SumNode {
            index,
            spec: Arc::new(spec),
            log,
        }
    }
}

impl ErasedNode for SumNode {
    fn spec(&self) -> Arc<NodeSpec> {
        self.spec.clone()
    }

    fn run<'a>(
        &'a self,
        inputs: Vec<Option<Value>>,
        _: &'a ghostflow::Context,
    ) -> BoxFuture<'a, Result<Vec<Option<Value>>, NodeError>> {
        Box::pin(async move {
            self.log.lock().push(self.index);
            let mut sum = 1u64;
            for slot in inputs {
                let value = slot.ok_or_else(|| NodeError::permanent("missing input"))?;
                sum = sum.wrapping_add(value.take::<u64>().map_err(NodeError::from)?);
            }
            tokio::task::yield_now().await;
            Ok(vec![Some(Value::new(sum))])
        })
    }

    fn config_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        Ok(serde_json::json!({}))
    }
}

/// Random DAG: node `i` draws its predecessors from nodes `< i`.
fn dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..40).prop_flat_map(|n| {
        (0..n)
            .map(|i| {
                if i == 0 {
                    Just(Vec::new()).boxed()
                } else {
                    proptest::collection::btree_set(0..i, 0..4.min(i) + 1)
                        .prop_map(|s| s.into_iter().collect())
                        .boxed()
                }
            })
            .collect::<Vec<_>>()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_dags_run_each_node_once_in_edge_order(preds in dag(), multi in any::<bool>(), shuffle in any::<u64>()) {
        let n = preds.len();
        let log = Arc::new(Mutex::new(Vec::new()));
        // Add nodes in a shuffled order so that insertion order means nothing.
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = shuffle;
        for i in (1..n).rev() {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (rng >> 33) as usize % (i + 1));
        }
        let mut b = Flow::builder("random");
        let mut index_of = vec![None; n];
        for &i in &order {
            let idx = b.add_erased(format!("n{i}"), Arc::new(SumNode::new(i, preds[i].len(), log.clone())));
            index_of[i] = Some(idx);
        }
        for (i, ps) in preds.iter().enumerate() {
            for (slot, &p) in ps.iter().enumerate() {
                b.connect_erased(
                    Endpoint { node: index_of[p].unwrap(), port: 0 },
                    Endpoint { node: index_of[i].unwrap(), port: slot as u16 },
                );
            }
        }
        let flow = b.build().unwrap();
        let rt = if multi {
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap()
        } else {
            tokio::runtime::Builder::new_current_thread().build().unwrap()
        };
        let outcome = rt.block_on(Engine::new().run(&flow, Inputs::new())).unwrap();

        let ran = log.lock().clone();
        prop_assert_eq!(ran.len(), n, "every node runs exactly once");
        let mut position = vec![usize::MAX; n];
        for (at, &i) in ran.iter().enumerate() {
            prop_assert_eq!(position[i], usize::MAX, "node {} ran twice", i);
            position[i] = at;
        }
        for (i, ps) in preds.iter().enumerate() {
            for &p in ps {
                prop_assert!(position[p] < position[i], "n{} ran before its input n{}", i, p);
            }
        }
        // The engine's topological order respects edges too.
        let topo: Vec<usize> = flow.topological_order().map(|x| order[x.index()]).collect();
        for (i, ps) in preds.iter().enumerate() {
            let at = topo.iter().position(|&t| t == i).unwrap();
            for &p in ps {
                prop_assert!(topo.iter().position(|&t| t == p).unwrap() < at);
            }
        }
        prop_assert_eq!(outcome.nodes().len(), n);
    }
}
