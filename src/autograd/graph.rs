//! The recorded graph of a tensor as Graphviz DOT text (`kiln explain --graph`), micrograd's
//! `draw_dot` for kiln: one box per op (its name and output shape), one ellipse per leaf
//! (parameters, which require grad, filled; data and constants plain), one edge per tensor
//! from its producer to each op that reads it, labelled with its shape.

use std::collections::HashSet;
use std::fmt::Write;

use crate::tensor::Tensor;

/// One op or leaf of the graph: (id, label, is op, is parameter) and its inputs' ids.
pub type GraphNode = ((u64, String, bool, bool), Vec<u64>);

/// The graph reachable from `root` through recorded nodes, inputs before the ops that read
/// them.
pub fn graph_nodes(root: &Tensor) -> Vec<GraphNode> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        let node = t.inner.node.as_ref();
        if expanded {
            let ins = node.map(|n| n.inputs.iter().map(Tensor::id).collect());
            let label = match node {
                Some(n) => format!("{} {:?}", n.name, t.shape()),
                None if t.requires_grad_flag() => format!("param {:?}", t.shape()),
                None => format!("input {:?}", t.shape()),
            };
            let param = node.is_none() && t.requires_grad_flag();
            out.push((
                (t.id(), label, node.is_some(), param),
                ins.unwrap_or_default(),
            ));
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(n) = node {
            for i in n.inputs.iter().rev() {
                if !seen.contains(&i.id()) {
                    stack.push((i.clone(), false));
                }
            }
        }
    }
    out
}

/// [`graph_nodes`] of `root` as DOT text.
pub fn graph_dot(root: &Tensor) -> String {
    graph_to_dot(&graph_nodes(root))
}

/// Nodes from [`graph_nodes`] as DOT text.
pub fn graph_to_dot(nodes: &[GraphNode]) -> String {
    let mut shapes = std::collections::HashMap::new();
    let mut s = String::from("digraph step {\n  rankdir=LR;\n  node [fontname=\"sans-serif\"];\n");
    for ((id, label, op, param), _) in nodes {
        let style = match (op, param) {
            (true, _) => "shape=box",
            (false, true) => "shape=ellipse, style=filled, fillcolor=\"#f6d68a\"",
            (false, false) => "shape=ellipse",
        };
        let _ = writeln!(s, "  n{id} [label=\"{label}\", {style}];");
        shapes.insert(*id, label[label.find('[').unwrap_or(0)..].to_string());
    }
    for ((id, ..), ins) in nodes {
        for i in ins {
            let shape = shapes.get(i).cloned().unwrap_or_default();
            let _ = writeln!(s, "  n{i} -> n{id} [label=\"{shape}\"];");
        }
    }
    s.push_str("}\n");
    s
}
