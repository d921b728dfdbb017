//! Reverse-mode differentiation of the tensor graph: one vector-Jacobian
//! product per op, appended to the same graph as backward nodes.
//!
//! The walk goes from the loss back to the inputs, last node first (the
//! reference text's "backwards error flow"); a node used several times gets
//! the sum of its users' contributions (`AddN`), and each parameter's
//! gradient is its adjoint.
//!
//! Recurrent definitions (backpropagation through time): the per-step nodes
//! are differentiated once, as the body of a backward loop over
//! `t = T-1 .. 0`. A state's new value gets, besides its users in the same
//! step, the adjoint carried from step `t + 1` (`Carry`); the adjoint of its
//! previous value is what is carried on to step `t - 1`. A contribution from
//! a per-step node to a value computed outside the loop (a parameter) is
//! summed over the steps (`StepSum`): every parameter's gradient is the sum
//! over time steps, as the reference text's BPTT says.

use crate::ir::*;
use crate::opt::simplify::simplify;
use crate::scalar::{build::*, Func, S};

/// Appends the backward pass to `g` and records each parameter's gradient.
pub fn diff_graph(mut g: Graph) -> Graph {
    let n = g.nodes.len();
    let regions = g.regions();
    let batched = g.batched();
    // Only nodes that depend on a parameter need an adjoint; through a state,
    // a step depends on the steps before it, so iterate to a fixed point.
    let mut needs = vec![false; n];
    loop {
        let mut changed = false;
        for id in 0..n {
            let v = match g.nodes[id].op {
                Op::Param(_) => true,
                Op::Input(_) | Op::Target(_) => false,
                Op::StatePrev(k) => {
                    matches!(g.states[k].init, StateInit::Param(_)) || needs[g.states[k].update]
                }
                ref op => op.args().iter().any(|&a| needs[a]),
            };
            if v && !needs[id] {
                needs[id] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut parts: Vec<Vec<NodeId>> = vec![vec![]; n];
    let mut adjoint: Vec<Option<NodeId>> = vec![None; n];
    let loss = g.loss;
    let seed_name = format!("d_{}", g.nodes[loss].name);
    let seed = push(
        &mut g,
        Op::Map {
            args: vec![],
            bcast: vec![],
            body: c(1.0),
        },
        Shape::scalar(),
        seed_name,
    );
    parts[loss].push(seed);
    // a state's new value also feeds the next step: its adjoint from there
    for k in 0..g.states.len() {
        let (update, prev) = (g.states[k].update, g.states[k].prev);
        if needs[update] && needs[prev] && update != prev {
            let name = format!("d_{}_next", g.states[k].name);
            let shape = g.states[k].shape.clone();
            let carry = push(&mut g, Op::Carry(k), shape, name);
            parts[update].push(carry);
        }
    }
    let mut state_adjoints = vec![None; g.states.len()];

    for id in (0..n).rev() {
        if parts[id].is_empty() || !needs[id] {
            continue;
        }
        let name = format!("d_{}", g.nodes[id].name);
        let d = if parts[id].len() == 1 {
            let d = parts[id][0];
            g.nodes[d].name = name;
            d
        } else {
            let shape = g.nodes[id].shape.clone();
            push(&mut g, Op::AddN(parts[id].clone()), shape, name)
        };
        adjoint[id] = Some(d);
        let node = g.nodes[id].clone();
        if let Op::StatePrev(k) = node.op {
            state_adjoints[k] = Some(d);
        }
        for (k, part) in vjp(&mut g, id, &node, d, &needs, &regions) {
            // from inside the loop to a value outside it: sum over the steps
            let part = if regions[id] == Region::Step && regions[k] == Region::Before {
                let shape = g.nodes[k].shape.clone();
                let name = format!("d_{}", g.nodes[k].name);
                push(&mut g, Op::StepSum(part), shape, name)
            } else {
                part
            };
            // from one sample to a value all samples share: sum over the batch
            let part = if g.batch && batched[id] && !batched[k] {
                let shape = g.nodes[k].shape.clone();
                let name = format!("d_{}", g.nodes[k].name);
                push(&mut g, Op::BatchSum(part), shape, name)
            } else {
                part
            };
            parts[k].push(part);
        }
    }
    g.state_adjoints = state_adjoints;
    g.grads = (0..g.params.len())
        .map(|p| {
            (0..n)
                .find(|&id| g.nodes[id].op == Op::Param(p))
                .and_then(|id| adjoint[id])
        })
        .collect();
    g
}

fn push(g: &mut Graph, op: Op, shape: Shape, name: String) -> NodeId {
    g.push(op, shape, name, Pass::Backward, None)
}

/// The contributions of node `id` (with adjoint `d`) to its operands'
/// adjoints, as `(operand, contribution)` pairs.
fn vjp(
    g: &mut Graph,
    id: NodeId,
    node: &Node,
    d: NodeId,
    needs: &[bool],
    regions: &[Region],
) -> Vec<(NodeId, NodeId)> {
    let shape_of = |g: &Graph, a: NodeId| g.nodes[a].shape.clone();
    let part_name = |g: &Graph, a: NodeId| format!("d_{}", g.nodes[a].name);
    let mut out = vec![];
    let mut add = |g: &mut Graph, a: NodeId, op: Op| {
        let (shape, name) = (shape_of(g, a), part_name(g, a));
        let p = push(g, op, shape, name);
        out.push((a, p));
    };
    match &node.op {
        Op::Input(_) | Op::Target(_) | Op::Param(_) => {}
        Op::Map { args, bcast, body } => {
            let n = args.len();
            for (k, (&a, &b)) in args.iter().zip(bcast).enumerate() {
                if !needs[a] {
                    continue;
                }
                // d_a = d ⊙ ∂body/∂a, reusing the forward output where the
                // derivative mentions the whole body (sigmoid' = out (1 - out))
                let deriv = simplify(&body.diff(k).reuse_output(body));
                let renum: Vec<usize> = (1..=n).collect();
                let deriv = deriv.renumber(&renum).out_to_arg(n + 1);
                let contrib = simplify(&mul(S::Arg(0), deriv));
                let mut margs = vec![d];
                margs.extend(args.iter().copied());
                margs.push(id);
                let mut mb = vec![Bcast::Full];
                mb.extend(bcast.iter().copied());
                mb.push(Bcast::Full);
                let (margs, mb, contrib) = compact(margs, mb, contrib);
                let map = Op::Map {
                    args: margs,
                    bcast: mb,
                    body: contrib,
                };
                match b {
                    Bcast::Full => add(g, a, map),
                    // a broadcast operand's adjoint sums over the broadcast
                    Bcast::Scalar | Bcast::Col | Bcast::Row => {
                        let name = format!("{}_full", part_name(g, a));
                        let full = push(g, map, node.shape.clone(), name);
                        let reduce = match b {
                            Bcast::Scalar => Op::Sum(full),
                            Bcast::Col => Op::SumCols(full),
                            _ => Op::SumRows(full),
                        };
                        add(g, a, reduce);
                    }
                }
            }
        }
        // d_w = d ⊗ x, d_x = wᵀ d
        &Op::MatVec(w, x) => {
            if needs[w] {
                add(g, w, Op::Outer(d, x));
            }
            if needs[x] {
                add(g, x, Op::MatVecT(w, d));
            }
        }
        // out = wᵀ e: d_w = e ⊗ d, d_e = w d
        &Op::MatVecT(w, e) => {
            if needs[w] {
                add(g, w, Op::Outer(e, d));
            }
            if needs[e] {
                add(g, e, Op::MatVec(w, d));
            }
        }
        // out = xᵀ b: d_x = b d, d_b = x ⊗ d
        &Op::VecMat(x, b) => {
            if needs[x] {
                add(g, x, Op::MatVec(b, d));
            }
            if needs[b] {
                add(g, b, Op::Outer(x, d));
            }
        }
        // out = a b: d_a = d bᵀ, d_b = aᵀ d
        &Op::MatMul(a, b) => {
            if needs[a] {
                add(g, a, Op::MatMulNT(d, b));
            }
            if needs[b] {
                add(g, b, Op::MatMulTN(a, d));
            }
        }
        // out = a bᵀ: d_a = d b, d_b = dᵀ a
        &Op::MatMulNT(a, b) => {
            if needs[a] {
                add(g, a, Op::MatMul(d, b));
            }
            if needs[b] {
                add(g, b, Op::MatMulTN(d, a));
            }
        }
        // out = aᵀ b: d_a = b dᵀ, d_b = a d
        &Op::MatMulTN(a, b) => {
            if needs[a] {
                add(g, a, Op::MatMulNT(b, d));
            }
            if needs[b] {
                add(g, b, Op::MatMul(a, d));
            }
        }
        // out = u vᵀ: d_u = d v, d_v = dᵀ u
        &Op::Outer(u, v) => {
            if needs[u] {
                add(g, u, Op::MatVec(d, v));
            }
            if needs[v] {
                add(g, v, Op::MatVecT(d, u));
            }
        }
        // out = Σ a: d_a = d everywhere
        &Op::Sum(a) => {
            if needs[a] {
                add(
                    g,
                    a,
                    Op::Map {
                        args: vec![d],
                        bcast: vec![Bcast::Scalar],
                        body: S::Arg(0),
                    },
                );
            }
        }
        // out[i] = Σ_j a[i][j]: d_a[i][j] = d[i]
        &Op::SumCols(a) => {
            if needs[a] {
                add(
                    g,
                    a,
                    Op::Map {
                        args: vec![d],
                        bcast: vec![Bcast::Col],
                        body: S::Arg(0),
                    },
                );
            }
        }
        // y = log_softmax(z): d_z = d - softmax(z) Σ d = d - exp(y) Σ d
        &Op::LogSoftmax(z) => {
            if needs[z] {
                add(g, z, Op::LogSoftmaxGrad(id, d));
            }
        }
        // out = a[t]: d_a = d at t, 0 elsewhere
        &Op::Pick(a, t) => {
            if needs[a] {
                add(g, a, Op::OneHot(t, d));
            }
        }
        // out = Σ parts: each part gets d
        Op::AddN(args) => {
            for &a in args {
                if needs[a] {
                    add(
                        g,
                        a,
                        Op::Map {
                            args: vec![d],
                            bcast: vec![Bcast::Full],
                            body: S::Arg(0),
                        },
                    );
                }
            }
        }
        // out = aᵀ: d_a = dᵀ
        &Op::Transpose(a) => {
            if needs[a] {
                add(g, a, Op::Transpose(d));
            }
        }
        // out = a[start..]: d_a = d placed at start in zeros
        &Op::Slice(a, start) => {
            if needs[a] {
                add(g, a, Op::Pad(d, start));
            }
        }
        // out = a placed at start: d_a = d[start..]
        &Op::Pad(a, start) => {
            if needs[a] {
                add(g, a, Op::Slice(d, start));
            }
        }
        // out = [a, b]: d_a = d[..n], d_b = d[n..]
        &Op::Concat(a, b) => {
            if needs[a] {
                add(g, a, Op::Slice(d, 0));
            }
            if needs[b] {
                let n = g.nodes[a].shape.len();
                add(g, b, Op::Slice(d, n));
            }
        }
        // out[j] = Σ_i a[i][j]: d_a[i][j] = d[j]
        &Op::SumRows(a) => {
            if needs[a] {
                add(
                    g,
                    a,
                    Op::Map {
                        args: vec![d],
                        bcast: vec![Bcast::Row],
                        body: S::Arg(0),
                    },
                );
            }
        }
        // out = logsumexp(a): d_a = d softmax(a) = d exp(a - out)
        &Op::LogSumExp(a) => {
            if needs[a] {
                let body = mul(S::Arg(0), call(Func::Exp, sub(S::Arg(1), S::Arg(2))));
                add(
                    g,
                    a,
                    Op::Map {
                        args: vec![d, a, id],
                        bcast: vec![Bcast::Scalar, Bcast::Full, Bcast::Scalar],
                        body,
                    },
                );
            }
        }
        // out = Σ_t a[t]: d_a[t] = d at every step (T d for a value outside the loop)
        &Op::StepSum(a) => {
            if needs[a] {
                if regions[a] == Region::Step {
                    add(g, a, Op::EachStep(d));
                } else {
                    let steps = g.steps.map_or(1, |s| s.count) as f64;
                    add(
                        g,
                        a,
                        Op::Map {
                            args: vec![d],
                            bcast: vec![Bcast::Full],
                            body: mul(c(steps), S::Arg(0)),
                        },
                    );
                }
            }
        }
        // out = a[T-1]: d_a[t] = d at the last step, zero before
        &Op::Last(a) => {
            if needs[a] {
                if regions[a] == Region::Step {
                    add(g, a, Op::AtLast(d));
                } else {
                    add(
                        g,
                        a,
                        Op::Map {
                            args: vec![d],
                            bcast: vec![Bcast::Full],
                            body: S::Arg(0),
                        },
                    );
                }
            }
        }
        // the previous value of a state: its adjoint is carried, not passed on here
        Op::StatePrev(_) => {}
        Op::Carry(_)
        | Op::EachStep(_)
        | Op::AtLast(_)
        | Op::BatchSum(_)
        | Op::OneHot(..)
        | Op::LogSoftmaxGrad(..) => {
            unreachable!("backward-only ops are never differentiated (no second derivatives)")
        }
    }
    out
}

/// Drops the operands a body does not read (and merges repeated ones),
/// renumbering the body to match.
pub fn compact(args: Vec<NodeId>, bcast: Vec<Bcast>, body: S) -> (Vec<NodeId>, Vec<Bcast>, S) {
    let mut new_args = vec![];
    let mut new_bcast = vec![];
    let mut map = vec![usize::MAX; args.len()];
    for (k, (&a, &b)) in args.iter().zip(&bcast).enumerate() {
        if !body.uses_arg(k) {
            continue;
        }
        if let Some(j) = new_args
            .iter()
            .zip(&new_bcast)
            .position(|(&x, &y)| x == a && y == b)
        {
            map[k] = j;
        } else {
            map[k] = new_args.len();
            new_args.push(a);
            new_bcast.push(b);
        }
    }
    let body = body.renumber(&map);
    (new_args, new_bcast, body)
}
