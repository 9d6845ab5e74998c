//! Validation and compilation of a flow into a dense, index-based plan.

use std::collections::{HashMap, HashSet};

use super::{Edge, FlowNode, FlowPort};
use crate::error::Problem;

/// Where a value goes: node index and input slot.
pub(crate) type Target = (u32, u16);

/// The compiled form of a flow: everything the executor needs, by index.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Incoming node-to-node edges per node: the executor's pending count.
    pub(crate) in_degree: Vec<u32>,
    /// Whether each input slot is required, per node.
    pub(crate) required: Vec<Box<[bool]>>,
    /// Targets of each output slot (the last slot is `error`), per node.
    pub(crate) out_targets: Vec<Box<[Box<[Target]>]>>,
    /// Targets of each flow input.
    pub(crate) input_targets: Vec<Box<[Target]>>,
    /// Flow outputs fed by each node: `(output slot, flow output)`.
    pub(crate) output_taps: Vec<Box<[(u16, u16)]>>,
    /// Flow outputs that read a flow input directly: `(flow output, flow input)`.
    pub(crate) passthrough: Box<[(u16, u16)]>,
    /// Nodes with no incoming node edge.
    pub(crate) roots: Box<[u32]>,
    /// A topological order.
    pub(crate) topo: Box<[u32]>,
}

impl Plan {
    /// Validates and compiles. Returns every problem found.
    pub(crate) fn compile(
        nodes: &[FlowNode],
        edges: &[Edge],
        inputs: &[FlowPort],
        outputs: &[FlowPort],
    ) -> Result<Plan, Vec<Problem>> {
        let mut problems = Vec::new();
        let n = nodes.len();

        let mut seen = HashSet::with_capacity(n);
        let mut reported = HashSet::new();
        for node in nodes {
            if !valid_id(&node.id) {
                problems.push(Problem::InvalidId {
                    id: node.id.to_string(),
                });
            }
            if !seen.insert(&*node.id) && reported.insert(&*node.id) {
                problems.push(Problem::DuplicateId {
                    id: node.id.to_string(),
                });
            }
        }
        duplicate_names(inputs, "input", &mut problems);
        duplicate_names(outputs, "output", &mut problems);

        let mut in_degree = vec![0u32; n];
        let mut sources: Vec<Vec<Vec<String>>> = nodes
            .iter()
            .map(|node| vec![Vec::new(); node.spec.inputs.len()])
            .collect();
        let mut out_targets: Vec<Vec<Vec<Target>>> = nodes
            .iter()
            .map(|node| vec![Vec::new(); node.output_len()])
            .collect();
        let mut input_targets: Vec<Vec<Target>> = vec![Vec::new(); inputs.len()];
        let mut successors: Vec<Vec<u32>> = vec![Vec::new(); n];

        for edge in edges {
            let Some(to) = nodes.get(edge.to.node.index()) else {
                problems.push(Problem::UnknownPort {
                    endpoint: format!("node #{}", edge.to.node.index()),
                    direction: "input",
                });
                continue;
            };
            if edge.to.port as usize >= to.spec.inputs.len() {
                problems.push(Problem::UnknownPort {
                    endpoint: format!("{}.#{}", to.id, edge.to.port),
                    direction: "input",
                });
                continue;
            }
            let source_name = if edge.from.is_flow_input() {
                match inputs.get(edge.from.port as usize) {
                    Some(input) => {
                        input_targets[edge.from.port as usize].push((edge.to.node.0, edge.to.port));
                        format!("input.{}", input.name)
                    }
                    None => {
                        problems.push(Problem::UnknownPort {
                            endpoint: format!("flow input #{}", edge.from.port),
                            direction: "flow input",
                        });
                        continue;
                    }
                }
            } else {
                let Some(from) = nodes.get(edge.from.node.index()) else {
                    problems.push(Problem::UnknownPort {
                        endpoint: format!("node #{}", edge.from.node.index()),
                        direction: "output",
                    });
                    continue;
                };
                if edge.from.port as usize >= from.output_len() {
                    problems.push(Problem::UnknownPort {
                        endpoint: format!("{}.#{}", from.id, edge.from.port),
                        direction: "output",
                    });
                    continue;
                }
                out_targets[edge.from.node.index()][edge.from.port as usize]
                    .push((edge.to.node.0, edge.to.port));
                in_degree[edge.to.node.index()] += 1;
                successors[edge.from.node.index()].push(edge.to.node.0);
                format!("{}.{}", from.id, from.output_name(edge.from.port))
            };
            sources[edge.to.node.index()][edge.to.port as usize].push(source_name);
        }

        let mut required = Vec::with_capacity(n);
        for (node, slots) in nodes.iter().zip(&sources) {
            let mut req = Vec::with_capacity(slots.len());
            for (spec, from) in node.spec.inputs.iter().zip(slots) {
                if from.is_empty() && spec.required {
                    problems.push(Problem::UnconnectedInput {
                        node: node.id.to_string(),
                        port: spec.name.clone(),
                    });
                }
                if from.len() > 1 {
                    problems.push(Problem::InputConnectedTwice {
                        node: node.id.to_string(),
                        port: spec.name.clone(),
                        sources: from.clone(),
                    });
                }
                req.push(spec.required);
            }
            required.push(req.into_boxed_slice());
        }

        let mut output_taps: Vec<Vec<(u16, u16)>> = vec![Vec::new(); n];
        let mut passthrough = Vec::new();
        for (position, output) in outputs.iter().enumerate() {
            let Some(source) = output.source else {
                continue;
            };
            if source.is_flow_input() {
                if (source.port as usize) < inputs.len() {
                    passthrough.push((position as u16, source.port));
                } else {
                    problems.push(Problem::UnknownPort {
                        endpoint: format!("flow input #{}", source.port),
                        direction: "flow input",
                    });
                }
            } else {
                match nodes.get(source.node.index()) {
                    Some(node) if (source.port as usize) < node.output_len() => {
                        output_taps[source.node.index()].push((source.port, position as u16));
                    }
                    _ => problems.push(Problem::UnknownPort {
                        endpoint: format!("flow output `{}`", output.name),
                        direction: "output",
                    }),
                }
            }
        }

        let topo = topological_order(&in_degree, &successors);
        if topo.len() < n {
            for cycle in find_cycles(&topo, &successors) {
                problems.push(Problem::Cycle {
                    nodes: cycle
                        .iter()
                        .map(|&i| nodes[i as usize].id.to_string())
                        .collect(),
                });
            }
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        let roots = (0..n as u32)
            .filter(|&i| in_degree[i as usize] == 0)
            .collect();
        Ok(Plan {
            in_degree,
            required,
            out_targets: out_targets
                .into_iter()
                .map(|ports| ports.into_iter().map(Vec::into_boxed_slice).collect())
                .collect(),
            input_targets: input_targets
                .into_iter()
                .map(Vec::into_boxed_slice)
                .collect(),
            output_taps: output_taps.into_iter().map(Vec::into_boxed_slice).collect(),
            passthrough: passthrough.into_boxed_slice(),
            roots,
            topo: topo.into_boxed_slice(),
        })
    }

    /// Number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.in_degree.len()
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn duplicate_names(ports: &[FlowPort], direction: &str, problems: &mut Vec<Problem>) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for port in ports {
        let c = count.entry(&port.name).or_default();
        *c += 1;
        if *c == 2 {
            problems.push(Problem::DuplicateFlowPort {
                direction: direction.to_owned(),
                name: port.name.clone(),
            });
        }
    }
}

/// Kahn's algorithm; returns fewer than `n` nodes when there is a cycle.
fn topological_order(in_degree: &[u32], successors: &[Vec<u32>]) -> Vec<u32> {
    let mut remaining = in_degree.to_vec();
    let mut order: Vec<u32> = (0..in_degree.len() as u32)
        .filter(|&i| remaining[i as usize] == 0)
        .collect();
    let mut next = 0;
    while next < order.len() {
        let node = order[next];
        next += 1;
        for &s in &successors[node as usize] {
            remaining[s as usize] -= 1;
            if remaining[s as usize] == 0 {
                order.push(s);
            }
        }
    }
    order
}

/// The distinct cycles among the nodes that Kahn's algorithm could not order.
fn find_cycles(ordered: &[u32], successors: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let n = successors.len();
    let mut stuck = vec![true; n];
    for &i in ordered {
        stuck[i as usize] = false;
    }
    // Drop stuck nodes that only lead out of the stuck set: they sit after a
    // cycle, not on one. What remains has a stuck successor everywhere.
    loop {
        let mut changed = false;
        for i in 0..n {
            if stuck[i] && !successors[i].iter().any(|&s| stuck[s as usize]) {
                stuck[i] = false;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut on_reported = vec![false; n];
    let mut cycles = Vec::new();
    for start in 0..n {
        if !stuck[start] || on_reported[start] {
            continue;
        }
        // Walk stuck successors until a node repeats: the repeat closes a cycle.
        let mut position = HashMap::new();
        let mut path = Vec::new();
        let mut at = start as u32;
        while !position.contains_key(&at) {
            position.insert(at, path.len());
            path.push(at);
            at = successors[at as usize]
                .iter()
                .copied()
                .find(|&s| stuck[s as usize])
                .unwrap_or(at);
        }
        let cycle = path.split_off(position[&at]);
        if cycle.iter().any(|&i| on_reported[i as usize]) {
            continue;
        }
        for &i in &cycle {
            on_reported[i as usize] = true;
        }
        cycles.push(cycle);
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_found_and_nodes_after_them_are_not_blamed() {
        // 0 -> 1 -> 2 -> 1 (cycle 1,2), 2 -> 3 (after the cycle), 4 -> 4 (self loop)
        let succ = vec![vec![1], vec![2], vec![1, 3], vec![], vec![4]];
        let mut indeg = vec![0u32; 5];
        for s in &succ {
            for &t in s {
                indeg[t as usize] += 1;
            }
        }
        let order = topological_order(&indeg, &succ);
        assert_eq!(order, vec![0]);
        let cycles = find_cycles(&order, &succ);
        assert_eq!(cycles, vec![vec![1, 2], vec![4]]);
    }
}
