//! Common-subexpression elimination: two nodes with the same op, operands
//! and shape become one, across passes too, so the backward pass reads a
//! forward value instead of recomputing it.

use crate::ir::*;
use std::collections::HashMap;

/// Replaces each node that repeats an earlier one by that earlier one, in
/// one pass (returns whether it found any): operands come before their users, so a node's operands are
/// already rewritten when its own key is taken.
pub fn share_common(g: &mut Graph) -> bool {
    let live = g.live_from(&g.roots());
    let mut alias: Vec<NodeId> = (0..g.nodes.len()).collect();
    let mut seen: HashMap<(Op, Shape), NodeId> = HashMap::new();
    let mut changed = false;
    for id in 0..g.nodes.len() {
        if g.nodes[id].op.args().iter().any(|&a| alias[a] != a) {
            g.nodes[id].op.map_args(|a| alias[a]);
            changed = true;
        }
        if !live[id] {
            continue;
        }
        let node = &g.nodes[id];
        let key = (node.op.clone(), node.shape.clone());
        match seen.get(&key) {
            Some(&first) => alias[id] = first,
            None => {
                seen.insert(key, id);
            }
        }
    }
    changed | crate::opt::simplify::remap_roots(g, &alias)
}
