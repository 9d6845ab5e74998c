//! Validation and compilation of a flow into a dense, index-based plan.

use std::collections::HashMap;

use super::{Edge, FlowNode, FlowPort};
use crate::error::Problem;

/// Where a value goes: the target node and its flat input slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    /// The node.
    pub(crate) node: u32,
    /// The input slot, as an index into the plan's flat slot arrays.
    pub(crate) slot: u32,
}

/// The compiled form of a flow: everything the executor needs, in flat
/// arrays indexed by node, input slot and output port (compressed rows, so
/// that a plan is a handful of allocations whatever the flow's size).
#[derive(Debug)]
pub(crate) struct Plan {
    /// Incoming node-to-node edges per node: the executor's pending count.
    pub(crate) in_degree: Box<[u32]>,
    /// The input slots of node `i` are `input_base[i]..input_base[i + 1]`.
    pub(crate) input_base: Box<[u32]>,
    /// Whether each input slot is required.
    pub(crate) required: Box<[bool]>,
    /// The output ports of node `i` are `port_base[i]..port_base[i + 1]`;
    /// the last one is the implicit `error` port.
    pub(crate) port_base: Box<[u32]>,
    /// The targets of output port `p` are `targets[target_base[p]..target_base[p + 1]]`.
    pub(crate) target_base: Box<[u32]>,
    /// Edge targets, grouped by output port.
    pub(crate) targets: Box<[Target]>,
    /// Targets of each flow input.
    pub(crate) input_targets: Box<[Box<[Target]>]>,
    /// The flow outputs fed by node `i` are `taps[tap_base[i]..tap_base[i + 1]]`.
    pub(crate) tap_base: Box<[u32]>,
    /// `(output port of the node, flow output)`, grouped by node.
    pub(crate) taps: Box<[(u16, u16)]>,
    /// Flow outputs that read a flow input directly: `(flow output, flow input)`.
    pub(crate) passthrough: Box<[(u16, u16)]>,
    /// How many nodes have no incoming node edge: they start the
    /// topological order.
    roots: usize,
    /// A topological order.
    pub(crate) topo: Box<[u32]>,
    /// Per node, [`EAGER`] and [`RUNS_FLOWS`] bits; empty when no node has
    /// either.
    flags: Box<[u8]>,
}

/// A node that runs on its first arriving input.
const EAGER: u8 = 1;
/// A node that mostly waits for flows it runs.
const RUNS_FLOWS: u8 = 2;

/// An edge source as written in error messages: `node.port` or `input.name`.
fn source_name(edge: &Edge, nodes: &[FlowNode], inputs: &[FlowPort]) -> String {
    if edge.from.is_flow_input() {
        let name = inputs.get(edge.from.port as usize).map_or("?", |p| &p.name);
        format!("input.{name}")
    } else {
        match nodes.get(edge.from.node.index()) {
            Some(from) => format!("{}.{}", from.id, from.output_name(edge.from.port)),
            None => format!("node #{}", edge.from.node.index()),
        }
    }
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

        // One pass over the nodes: the flat numbering of input slots and
        // output ports. (The builder checked the ids as nodes were added.)
        let mut input_base = Vec::with_capacity(n + 1);
        let mut port_base = Vec::with_capacity(n + 1);
        let mut required = Vec::with_capacity(n);
        let (mut slots, mut ports) = (0u32, 0u32);
        for node in nodes {
            input_base.push(slots);
            port_base.push(ports);
            required.extend(node.spec.inputs.iter().map(|p| p.required));
            slots += node.spec.inputs.len() as u32;
            ports += node.output_len() as u32;
        }
        input_base.push(slots);
        port_base.push(ports);
        duplicate_names(inputs, "input", &mut problems);
        duplicate_names(outputs, "output", &mut problems);

        // Check the edges; count sources per slot and targets per port.
        let mut in_degree = vec![0u32; n];
        // Sources per input slot, then whether each edge is valid (0 or 1),
        // in one scratch allocation.
        let mut scratch = vec![0u32; slots as usize + edges.len()];
        let (sources, valid) = scratch.split_at_mut(slots as usize);
        // Targets per output port; becomes `target_base`, one longer.
        let mut fan_out = Vec::with_capacity(ports as usize + 1);
        fan_out.resize(ports as usize, 0u32);
        let mut input_targets: Vec<Vec<Target>> = vec![Vec::new(); inputs.len()];
        for (e, edge) in edges.iter().enumerate() {
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
            let target = Target {
                node: edge.to.node.0,
                slot: input_base[edge.to.node.index()] + edge.to.port as u32,
            };
            if edge.from.is_flow_input() {
                match input_targets.get_mut(edge.from.port as usize) {
                    Some(targets) => targets.push(target),
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
                fan_out[(port_base[edge.from.node.index()] + edge.from.port as u32) as usize] += 1;
                in_degree[edge.to.node.index()] += 1;
                valid[e] = 1;
            }
            sources[target.slot as usize] += 1;
        }

        for (i, node) in nodes.iter().enumerate() {
            let base = input_base[i] as usize;
            for (k, spec) in node.spec.inputs.iter().enumerate() {
                match sources[base + k] {
                    0 if spec.required => problems.push(Problem::UnconnectedInput {
                        node: node.id.to_string(),
                        port: spec.name.clone(),
                    }),
                    0 | 1 => {}
                    _ => problems.push(Problem::InputConnectedTwice {
                        node: node.id.to_string(),
                        port: spec.name.clone(),
                        sources: edges
                            .iter()
                            .filter(|e| {
                                e.to.node.index() == i
                                    && e.to.port as usize == k
                                    && (e.from.is_flow_input()
                                        || nodes.get(e.from.node.index()).is_some())
                            })
                            .map(|e| source_name(e, nodes, inputs))
                            .collect(),
                    }),
                }
            }
        }

        // Group the node-to-node edges by output port (a counting sort):
        // `target_base` first holds where each port's targets end, and
        // filling from the last edge backwards moves it to where they start,
        // keeping the edges' order.
        let mut target_base = fan_out;
        let mut total = 0u32;
        for count in &mut target_base {
            total += *count;
            *count = total;
        }
        target_base.push(total);
        let mut targets = vec![
            Target {
                node: u32::MAX,
                slot: u32::MAX,
            };
            total as usize
        ];
        for (edge, _) in edges
            .iter()
            .zip(valid.iter())
            .rev()
            .filter(|(_, ok)| **ok == 1)
        {
            let port = (port_base[edge.from.node.index()] + edge.from.port as u32) as usize;
            target_base[port] -= 1;
            targets[target_base[port] as usize] = Target {
                node: edge.to.node.0,
                slot: input_base[edge.to.node.index()] + edge.to.port as u32,
            };
        }

        let mut node_taps: Vec<(u32, u16, u16)> = Vec::new();
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
                        node_taps.push((source.node.0, source.port, position as u16));
                    }
                    _ => problems.push(Problem::UnknownPort {
                        endpoint: format!("flow output `{}`", output.name),
                        direction: "output",
                    }),
                }
            }
        }
        node_taps.sort_unstable_by_key(|t| t.0);
        // Without flow outputs read from nodes, no per-node index is needed.
        let mut tap_base = Vec::with_capacity(if node_taps.is_empty() { 0 } else { n + 1 });
        if !node_taps.is_empty() {
            let mut next = 0;
            for i in 0..=n as u32 {
                while next < node_taps.len() && node_taps[next].0 < i {
                    next += 1;
                }
                tap_base.push(next as u32);
            }
        }

        let topo = topological_order(&in_degree, &port_base, &target_base, &targets);
        if topo.len() < n {
            let successors = |i: u32| {
                let ports = port_base[i as usize] as usize..port_base[i as usize + 1] as usize;
                let range = target_base[ports.start] as usize..target_base[ports.end] as usize;
                targets[range].iter().map(|t| t.node)
            };
            for cycle in find_cycles(n, &topo, successors) {
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
        // Kahn's order starts with every node without incoming edges.
        let roots = topo
            .iter()
            .take_while(|&&i| in_degree[i as usize] == 0)
            .count();
        Ok(Plan {
            in_degree: in_degree.into_boxed_slice(),
            input_base: input_base.into_boxed_slice(),
            required: required.into_boxed_slice(),
            port_base: port_base.into_boxed_slice(),
            target_base: target_base.into_boxed_slice(),
            targets: targets.into_boxed_slice(),
            input_targets: input_targets
                .into_iter()
                .map(Vec::into_boxed_slice)
                .collect(),
            tap_base: tap_base.into_boxed_slice(),
            taps: node_taps
                .iter()
                .map(|&(_, port, out)| (port, out))
                .collect(),
            passthrough: passthrough.into_boxed_slice(),
            roots,
            topo: topo.into_boxed_slice(),
            flags: {
                let flags: Box<[u8]> = nodes
                    .iter()
                    .map(|n| {
                        (u8::from(n.node.eager()) * EAGER)
                            | (u8::from(n.node.runs_flows()) * RUNS_FLOWS)
                    })
                    .collect();
                if flags.iter().any(|&f| f != 0) {
                    flags
                } else {
                    Box::default()
                }
            },
        })
    }

    /// Whether node `node` runs on its first arriving input.
    pub(crate) fn is_eager(&self, node: u32) -> bool {
        self.flags
            .get(node as usize)
            .is_some_and(|f| f & EAGER != 0)
    }

    /// Whether node `node` mostly waits for flows it runs.
    pub(crate) fn runs_flows(&self, node: u32) -> bool {
        self.flags
            .get(node as usize)
            .is_some_and(|f| f & RUNS_FLOWS != 0)
    }

    /// Nodes with no incoming node edge.
    pub(crate) fn roots(&self) -> &[u32] {
        &self.topo[..self.roots]
    }

    /// Number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.in_degree.len()
    }

    /// The input slots of node `node`.
    pub(crate) fn slots(&self, node: u32) -> std::ops::Range<usize> {
        self.input_base[node as usize] as usize..self.input_base[node as usize + 1] as usize
    }

    /// Every target of every output port of node `node`.
    pub(crate) fn node_targets(&self, node: u32) -> &[Target] {
        let first = self.port_base[node as usize] as usize;
        let last = self.port_base[node as usize + 1] as usize;
        &self.targets[self.target_base[first] as usize..self.target_base[last] as usize]
    }

    /// The flow outputs read from node `node`: `(output port, flow output)`.
    pub(crate) fn node_taps(&self, node: u32) -> &[(u16, u16)] {
        if self.taps.is_empty() {
            return &[];
        }
        &self.taps[self.tap_base[node as usize] as usize..self.tap_base[node as usize + 1] as usize]
    }
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
fn topological_order(
    in_degree: &[u32],
    port_base: &[u32],
    target_base: &[u32],
    targets: &[Target],
) -> Vec<u32> {
    let mut order: Vec<u32> = Vec::with_capacity(in_degree.len());
    order.extend((0..in_degree.len() as u32).filter(|&i| in_degree[i as usize] == 0));
    if targets.is_empty() {
        return order;
    }
    let mut remaining = in_degree.to_vec();
    let mut next = 0;
    while next < order.len() {
        let node = order[next] as usize;
        next += 1;
        let first = target_base[port_base[node] as usize] as usize;
        let last = target_base[port_base[node + 1] as usize] as usize;
        for t in &targets[first..last] {
            remaining[t.node as usize] -= 1;
            if remaining[t.node as usize] == 0 {
                order.push(t.node);
            }
        }
    }
    order
}

/// The distinct cycles among the `n` nodes that Kahn's algorithm could not order.
fn find_cycles<I: Iterator<Item = u32>>(
    n: usize,
    ordered: &[u32],
    successors: impl Fn(u32) -> I,
) -> Vec<Vec<u32>> {
    let mut stuck = vec![true; n];
    for &i in ordered {
        stuck[i as usize] = false;
    }
    // Drop stuck nodes that only lead out of the stuck set: they sit after a
    // cycle, not on one. What remains has a stuck successor everywhere.
    loop {
        let mut changed = false;
        for i in 0..n {
            if stuck[i] && !successors(i as u32).any(|s| stuck[s as usize]) {
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
            at = successors(at).find(|&s| stuck[s as usize]).unwrap_or(at);
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
        let succ: Vec<Vec<u32>> = vec![vec![1], vec![2], vec![1, 3], vec![], vec![4]];
        // One output port per node, its targets in `succ` order.
        let port_base: Vec<u32> = (0..=5).collect();
        let mut target_base = vec![0u32];
        let mut targets = Vec::new();
        let mut indeg = vec![0u32; 5];
        for s in &succ {
            for &t in s {
                indeg[t as usize] += 1;
                targets.push(Target { node: t, slot: 0 });
            }
            target_base.push(targets.len() as u32);
        }
        let order = topological_order(&indeg, &port_base, &target_base, &targets);
        assert_eq!(order, vec![0]);
        let cycles = find_cycles(5, &order, |i| succ[i as usize].iter().copied());
        assert_eq!(cycles, vec![vec![1, 2], vec![4]]);
    }
}
