//! The workload shapes every contender runs, and their sequential reference.
//!
//! A shape is a DAG given as, for each node, the indices of its predecessors
//! (always smaller than the node's own index, so index order is a
//! topological order). Every node computes `1 + sum(inputs)` as a wrapping
//! `u64`; the result of a run is the wrapping sum of the values of the sinks
//! (nodes without successors), which depends on every node's value.

/// A named DAG.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Short name used in tables and JSON.
    pub name: &'static str,
    /// For each node, its predecessors, in input-slot order.
    pub preds: Vec<Vec<usize>>,
}

impl Shape {
    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.preds.len()
    }

    /// Whether the shape has no node.
    pub fn is_empty(&self) -> bool {
        self.preds.is_empty()
    }

    /// Number of edges.
    pub fn edges(&self) -> usize {
        self.preds.iter().map(Vec::len).sum()
    }

    /// The largest number of inputs of any node.
    pub fn max_fan_in(&self) -> usize {
        self.preds.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// For each node, its successors.
    pub fn successors(&self) -> Vec<Vec<usize>> {
        let mut succ = vec![Vec::new(); self.len()];
        for (node, preds) in self.preds.iter().enumerate() {
            for &p in preds {
                succ[p].push(node);
            }
        }
        succ
    }

    /// Whether each node is a sink (has no successor).
    pub fn sinks(&self) -> Vec<bool> {
        let mut sink = vec![true; self.len()];
        for preds in &self.preds {
            for &p in preds {
                sink[p] = false;
            }
        }
        sink
    }

    /// The expected result of a run, computed sequentially in index order.
    pub fn reference(&self) -> u64 {
        let mut values = vec![0u64; self.len()];
        for (i, preds) in self.preds.iter().enumerate() {
            values[i] = step(preds.iter().map(|&p| values[p]));
        }
        self.sinks()
            .iter()
            .zip(&values)
            .filter(|(sink, _)| **sink)
            .fold(0u64, |acc, (_, v)| acc.wrapping_add(*v))
    }

    /// Checks the invariant every contender relies on: predecessors come first.
    pub fn is_topologically_indexed(&self) -> bool {
        self.preds
            .iter()
            .enumerate()
            .all(|(i, preds)| preds.iter().all(|&p| p < i))
    }
}

/// What every node computes: one plus the wrapping sum of its inputs.
#[inline]
pub fn step(inputs: impl IntoIterator<Item = u64>) -> u64 {
    inputs.into_iter().fold(1u64, u64::wrapping_add)
}

/// A chain of `n` nodes.
pub fn chain(n: usize) -> Shape {
    Shape {
        name: "chain",
        preds: (0..n)
            .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
            .collect(),
    }
}

/// One source, `width` nodes reading it, one sink reading them all.
pub fn fan_out(width: usize) -> Shape {
    let mut preds = vec![vec![]];
    preds.extend((0..width).map(|_| vec![0]));
    preds.push((1..=width).collect());
    Shape {
        name: "fan_out",
        preds,
    }
}

/// `leaves` independent sources reduced by an `arity`-ary tree to one root.
pub fn fan_in_tree(leaves: usize, arity: usize) -> Shape {
    let arity = arity.max(2);
    let mut preds: Vec<Vec<usize>> = (0..leaves).map(|_| vec![]).collect();
    let mut level: Vec<usize> = (0..leaves).collect();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(arity));
        for group in level.chunks(arity) {
            next.push(preds.len());
            preds.push(group.to_vec());
        }
        level = next;
    }
    Shape {
        name: "fan_in_tree",
        preds,
    }
}

/// `n` nodes without edges.
pub fn independent(n: usize) -> Shape {
    Shape {
        name: "independent",
        preds: vec![vec![]; n],
    }
}

/// The 4-node diamond: `a -> (b, c) -> d`.
pub fn diamond() -> Shape {
    Shape {
        name: "diamond",
        preds: vec![vec![], vec![0], vec![0], vec![1, 2]],
    }
}

/// A layered random DAG: `layers` layers of `width` nodes; each node after
/// the first layer reads 1 to 5 distinct nodes (3 on average) of the two
/// layers before it, mostly the previous one. Seeded, so every run and every
/// machine gets the same graph.
pub fn layered_random(layers: usize, width: usize, seed: u64) -> Shape {
    let mut rng = SplitMix64(seed);
    let mut preds = Vec::with_capacity(layers * width);
    for layer in 0..layers {
        for _ in 0..width {
            if layer == 0 {
                preds.push(vec![]);
                continue;
            }
            let inputs = 1 + rng.below(5) as usize;
            let mut mine: Vec<usize> = Vec::with_capacity(inputs);
            while mine.len() < inputs {
                let from_layer = if layer >= 2 && rng.below(4) == 0 {
                    layer - 2
                } else {
                    layer - 1
                };
                let p = from_layer * width + rng.below(width as u64) as usize;
                if !mine.contains(&p) {
                    mine.push(p);
                }
            }
            preds.push(mine);
        }
    }
    Shape {
        name: "layered_random",
        preds,
    }
}

/// A typical 12-node AI flow: normalize the question, then a retrieval
/// branch (embed, retrieve, rerank) and a safety branch (language, moderation)
/// that meet at the prompt, the model call, and two post-processing steps.
pub fn ai_flow() -> Shape {
    Shape {
        name: "ai_flow",
        preds: vec![
            vec![],        // 0 input
            vec![0],       // 1 normalize
            vec![1],       // 2 detect language
            vec![1],       // 3 embed query
            vec![3],       // 4 retrieve
            vec![4, 1],    // 5 rerank
            vec![1],       // 6 moderate
            vec![5, 2, 6], // 7 build prompt
            vec![7],       // 8 chat model
            vec![8, 5],    // 9 extract citations
            vec![8, 6],    // 10 guardrail
            vec![9, 10],   // 11 respond
        ],
    }
}

/// Every shape of the comparison, at the sizes of the benchmark.
pub fn all() -> Vec<Shape> {
    vec![
        chain(1_000),
        fan_out(10_000),
        fan_in_tree(10_000, 8),
        layered_random(100, 100, 0x6768_6f73_7466_6c6f),
        independent(10_000),
        diamond(),
        ai_flow(),
    ]
}

/// A small, fixed-seed generator, so that the random DAG needs no dependency
/// and never changes.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_have_the_advertised_sizes_and_are_indexed_topologically() {
        for shape in all() {
            assert!(shape.is_topologically_indexed(), "{}", shape.name);
        }
        assert_eq!(chain(1000).len(), 1000);
        assert_eq!(fan_out(10_000).len(), 10_002);
        let tree = fan_in_tree(10_000, 8);
        assert_eq!(tree.len(), 10_000 + 1250 + 157 + 20 + 3 + 1);
        assert_eq!(tree.max_fan_in(), 8);
        let dag = layered_random(100, 100, 1);
        assert_eq!(dag.len(), 10_000);
        let mean = dag.edges() as f64 / (dag.len() - 100) as f64;
        assert!((2.7..3.3).contains(&mean), "mean fan-in {mean}");
        assert_eq!(ai_flow().len(), 12);
    }

    #[test]
    fn references_follow_the_definition() {
        // chain: 1, 2, ..., n
        assert_eq!(chain(10).reference(), 10);
        // diamond: a=1, b=c=2, d=5
        assert_eq!(diamond().reference(), 5);
        // fan-out: 1, then w nodes of 2, then 1 + 2w
        assert_eq!(fan_out(100).reference(), 201);
        // independent: n sinks of 1
        assert_eq!(independent(10_000).reference(), 10_000);
        // a tree over 8 leaves with arity 8: 1 + 8
        assert_eq!(fan_in_tree(8, 8).reference(), 9);
    }

    #[test]
    fn the_random_dag_is_the_same_every_time() {
        let a = layered_random(10, 10, 42);
        let b = layered_random(10, 10, 42);
        assert_eq!(a.preds, b.preds);
        assert_ne!(a.preds, layered_random(10, 10, 43).preds);
    }
}
