//! Common-subexpression elimination: two nodes with the same op, operands
//! and shape become one, across passes too, so the backward pass reuses a
//! forward value instead of recomputing it.

use crate::ir::*;
use std::collections::HashMap;

/// Replaces each node that repeats an earlier one by that earlier one.
pub fn share_common(g: &mut Graph) {
    let live = g.live_from(&g.roots());
    let mut seen: HashMap<String, NodeId> = HashMap::new();
    for id in 0..g.nodes.len() {
        if !live[id] {
            continue;
        }
        let node = &g.nodes[id];
        let key = format!("{:?} {:?}", node.op, node.shape);
        match seen.get(&key) {
            Some(&first) => g.replace_uses(id, first),
            None => {
                seen.insert(key, id);
            }
        }
    }
}
