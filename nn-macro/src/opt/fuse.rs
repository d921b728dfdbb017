//! Elementwise fusion: an elementwise node used only by another elementwise
//! node of the same shape and pass is inlined into it, so a chain such as
//! `sigmoid(w @ x + b)` becomes one loop and one stored array.

use crate::autodiff::compact;
use crate::ir::*;
use crate::scalar::S;

/// Inlines single-use elementwise producers into their elementwise users.
pub fn fuse_maps(g: &mut Graph) {
    while fuse_one(g) {}
}

/// Fuses the first fusible producer found; returns whether it did.
fn fuse_one(g: &mut Graph) -> bool {
    let live = g.live_from(&g.roots());
    let uses = g.use_counts(&live);
    // never move a value into or out of a time loop
    let regions = g.regions();
    let batched = g.batched();
    for id in 0..g.nodes.len() {
        if !live[id] {
            continue;
        }
        let Op::Map { args, bcast, body } = g.nodes[id].op.clone() else {
            continue;
        };
        let mut new_args = args.clone();
        let mut new_bcast = bcast.clone();
        let mut subst = vec![];
        let mut changed = false;
        for (k, (&a, &b)) in args.iter().zip(&bcast).enumerate() {
            let producer = &g.nodes[a];
            let fusible = b == Bcast::Full
                && uses[a] == 1
                && producer.pass == g.nodes[id].pass
                && producer.shape == g.nodes[id].shape
                && regions[a] == regions[id]
                && (!g.batch || batched[a] == batched[id])
                && matches!(producer.op, Op::Map { .. });
            match (&producer.op, fusible) {
                (
                    Op::Map {
                        args: pa,
                        bcast: pb,
                        body: pbody,
                    },
                    true,
                ) => {
                    let base = new_args.len();
                    new_args.extend(pa.iter().copied());
                    new_bcast.extend(pb.iter().copied());
                    let renum: Vec<usize> = (base..base + pa.len()).collect();
                    subst.push(pbody.renumber(&renum));
                    changed = true;
                }
                _ => subst.push(S::Arg(k)),
            }
        }
        if changed {
            let body = body.substitute(&subst);
            let (args, bcast, body) = compact(new_args, new_bcast, body);
            g.nodes[id].op = Op::Map { args, bcast, body };
            // use counts changed: start again
            return true;
        }
    }
    false
}
