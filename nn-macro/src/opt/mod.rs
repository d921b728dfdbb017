//! Optimisation passes over the graph, one per file, chained here. Each pass
//! keeps the graph's meaning; dead nodes are simply left unreachable from the
//! roots and never emitted.

pub mod cse;
pub mod fuse;
pub mod simplify;

use crate::ir::Graph;

/// Runs simplification, elementwise fusion and common-subexpression
/// elimination until the graph stops changing.
pub fn optimise(mut g: Graph) -> Graph {
    for _ in 0..16 {
        let before = g.clone();
        simplify::simplify_graph(&mut g);
        fuse::fuse_maps(&mut g);
        cse::share_common(&mut g);
        if g == before {
            break;
        }
    }
    g
}
