//! Optimisation passes over the graph, one per file, chained here. Each pass
//! keeps the graph's meaning, runs in one walk over the nodes, and says
//! whether it changed anything; dead nodes are simply left unreachable from
//! the roots and never emitted.

pub mod cse;
pub mod fuse;
pub mod simplify;

use crate::ir::Graph;

/// Simplification and common-subexpression elimination, without fusion:
/// run before differentiation, so that every intermediate value the
/// backward pass needs is still a node of its own (and gets stored on the
/// tape rather than recomputed).
pub fn tidy(mut g: Graph) -> Graph {
    for _ in 0..64 {
        let changed = simplify::simplify_graph(&mut g) | cse::share_common(&mut g);
        if !changed {
            break;
        }
    }
    g
}

/// Runs simplification, elementwise fusion and common-subexpression
/// elimination until the graph stops changing. After differentiation, a
/// forward value the backward pass reads has several users, so it is never
/// fused away: it stays a stored node.
pub fn optimise(mut g: Graph) -> Graph {
    for _ in 0..64 {
        let changed =
            simplify::simplify_graph(&mut g) | fuse::fuse_maps(&mut g) | cse::share_common(&mut g);
        if !changed {
            break;
        }
    }
    g
}
