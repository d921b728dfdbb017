//! Common-subexpression elimination: two nodes with the same op, operands
//! and shape become one, across passes too, so the backward pass reads a
//! forward value instead of recomputing it.

use crate::ir::*;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

/// Replaces each node that repeats an earlier one by that earlier one, in
/// one pass (returns whether it found any): operands come before their users, so a node's operands are
/// already rewritten when its own key is taken.
pub fn share_common(g: &mut Graph) -> bool {
    let live = g.live_from(&g.roots());
    let mut alias: Vec<NodeId> = (0..g.nodes.len()).collect();
    // nodes by the hash of their op and shape, compared in place on a hit
    // (no copy of an op is kept)
    let hasher = RandomState::new();
    let mut seen: HashMap<u64, Vec<NodeId>> = HashMap::new();
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
        let same = seen
            .entry(hasher.hash_one((&node.op, &node.shape)))
            .or_default();
        match same
            .iter()
            .find(|&&e| g.nodes[e].op == node.op && g.nodes[e].shape == node.shape)
        {
            Some(&first) => alias[id] = first,
            None => same.push(id),
        }
    }
    changed | crate::opt::simplify::remap_roots(g, &alias)
}
