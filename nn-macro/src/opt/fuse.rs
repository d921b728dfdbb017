//! Elementwise fusion: an elementwise node whose only use is one operand
//! position of another elementwise node of the same shape and pass is
//! inlined into it, so a chain such as `sigmoid(w @ x + b)` becomes one loop
//! and one stored array.
//!
//! Fusion never duplicates work: a producer is inlined only where its user's
//! expression reads it once (`sigmoid(h) * h` keeps `h` a value of its own,
//! or a chain of such bindings would double the code at every link), and a
//! fused expression stays below [`MAX_FUSED_SIZE`] operations, so a long
//! chain becomes several loops rather than one expression nested as deep as
//! the chain is long.

use crate::ir::*;
use crate::ops::elementwise::compact;
use crate::scalar::S;

/// The largest expression fusion builds (nodes of its scalar expression tree).
pub const MAX_FUSED_SIZE: usize = 48;

/// Inlines single-use elementwise producers into their elementwise users, in
/// one pass in graph order (returns whether it fused any) (a producer is complete before its user is visited).
pub fn fuse_maps(g: &mut Graph) -> bool {
    let live = g.live_from(&g.roots());
    let mut uses = g.use_counts(&live);
    // never move a value into or out of a time loop, or between per-sample and shared
    let regions = g.regions();
    let batched = g.batched();
    let mut any = false;
    for id in 0..g.nodes.len() {
        if !live[id] {
            continue;
        }
        // whether operand `k` (node `a`, read as `b`) may be inlined
        let fusible = |k: usize, a: NodeId, b: Bcast, body: &S| {
            let producer = &g.nodes[a];
            b == Bcast::Full
                && uses[a] == 1
                && matches!(producer.op, Op::Map { .. })
                && body.count_arg(k) == 1
                && producer.pass == g.nodes[id].pass
                && producer.shape == g.nodes[id].shape
                && regions[a] == regions[id]
                && (!g.batch || batched[a] == batched[id])
        };
        // most nodes have nothing to fuse: look before copying the op
        let Op::Map { args, bcast, body } = &g.nodes[id].op else {
            continue;
        };
        if !args
            .iter()
            .zip(bcast)
            .enumerate()
            .any(|(k, (&a, &b))| fusible(k, a, b, body))
        {
            continue;
        }
        let Op::Map { args, bcast, body } = g.nodes[id].op.clone() else {
            continue;
        };
        let mut new_args = args.clone();
        let mut new_bcast = bcast.clone();
        let mut subst = vec![];
        let mut fused = vec![false; args.len()];
        let mut size = body.size();
        let mut changed = false;
        for (k, (&a, &b)) in args.iter().zip(&bcast).enumerate() {
            let producer = &g.nodes[a];
            let fusible = fusible(k, a, b, &body);
            match &producer.op {
                Op::Map {
                    args: pa,
                    bcast: pb,
                    body: pbody,
                } if fusible && size + pbody.size() <= MAX_FUSED_SIZE => {
                    size += pbody.size();
                    let base = new_args.len();
                    new_args.extend(pa.iter().copied());
                    new_bcast.extend(pb.iter().copied());
                    let renum: Vec<usize> = (base..base + pa.len()).collect();
                    subst.push(pbody.renumber(&renum));
                    fused[k] = true;
                    changed = true;
                }
                _ => subst.push(S::Arg(k)),
            }
        }
        if changed {
            let body = body.substitute(&subst);
            let (args2, bcast2, body) = compact(new_args, new_bcast, body);
            // keep the use counts exact for the nodes still to come: the
            // fused producers' operands are now this node's
            for &a in &args {
                uses[a] -= 1;
            }
            for (k, &a) in args.iter().enumerate() {
                if !fused[k] {
                    continue;
                }
                if let Op::Map { args: pa, .. } = &g.nodes[a].op {
                    for &p in pa {
                        uses[p] -= 1;
                    }
                }
            }
            for &a in &args2 {
                uses[a] += 1;
            }
            g.nodes[id].op = Op::Map {
                args: args2,
                bcast: bcast2,
                body,
            };
            any = true;
        }
    }
    any
}
