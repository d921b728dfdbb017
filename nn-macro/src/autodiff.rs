//! Reverse-mode differentiation of the tensor graph: one vector-Jacobian
//! product per op, appended to the same graph as backward nodes.
//!
//! The walk goes from the loss back to the inputs, last node first (the
//! error flows backwards); a node used several times gets
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
//! over the time steps.

use crate::ir::*;
use crate::ops;
use crate::scalar::build::*;

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
    // per-sample feed-forward passes take the seed from the caller (`1`, or
    // `-lr` for the fused SGD step); the others start from the constant `1`
    let seed_op = if g.batch || g.steps.is_some() {
        Op::Map {
            args: vec![],
            bcast: vec![],
            body: c(1.0),
        }
    } else {
        Op::Seed
    };
    let seed = push(&mut g, seed_op, Shape::scalar(), seed_name);
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
        let mut v = ops::Vjp::new(&mut g, id, d, &needs, &regions);
        ops::vjp(&mut v, &node.op);
        let contributions = v.out;
        for (k, part) in contributions {
            // from one sample to a value all samples share: sum over the batch
            let part = if g.batch && batched[id] && !batched[k] {
                let shape = g.nodes[k].shape.clone();
                let name = format!("d_{}", g.nodes[k].name);
                push(&mut g, Op::BatchSum(part), shape, name)
            } else {
                part
            };
            // from inside the loop to a value outside it: sum over the steps
            // (after the batch sum, so that a weight gradient is one matrix
            // product per step, added over the steps)
            let part = if regions[id] == Region::Step && regions[k] == Region::Before {
                let shape = g.nodes[k].shape.clone();
                let name = format!("d_{}", g.nodes[k].name);
                push(&mut g, Op::StepSum(part), shape, name)
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

/// The derivative of the scalar node `e` with respect to node `x`
/// (`grad(e, x)` inside a definition), built by the same reverse walk as
/// the backward pass, but as nodes of the forward pass, which the backward
/// pass then differentiates in turn (reverse over reverse). `None` when `e`
/// does not depend on `x`. Only for feed-forward graphs.
pub fn derivative(g: &mut Graph, e: NodeId, x: NodeId) -> Option<NodeId> {
    derivatives(g, e, &[x])[0]
}

/// The derivatives of the scalar node `e` with respect to each of `xs`, by
/// one reverse walk over the nodes up to `e` (forward and backward ones
/// alike: the Hessian-vector product differentiates a backward pass), as
/// new forward nodes. Only for feed-forward graphs.
pub fn derivatives(g: &mut Graph, e: NodeId, xs: &[NodeId]) -> Vec<Option<NodeId>> {
    let n = e + 1;
    let mut needs = vec![false; n];
    for &x in xs.iter().filter(|&&x| x < n) {
        needs[x] = true;
    }
    for id in 0..n {
        if !needs[id] {
            needs[id] = g.nodes[id].op.args().iter().any(|&a| needs[a]);
        }
    }
    let mut found = vec![None; xs.len()];
    if !needs[e] {
        return found;
    }
    let regions = vec![Region::Before; n];
    let mut parts: Vec<Vec<NodeId>> = vec![vec![]; n];
    // ∂e/∂h is named `d_e_d_h`
    let prefix = format!("d_{}_d_", g.nodes[e].name);
    let seed = g.push(
        Op::Map {
            args: vec![],
            bcast: vec![],
            body: c(1.0),
        },
        Shape::scalar(),
        format!("{prefix}{}", g.nodes[e].name),
        Pass::Forward,
        None,
    );
    parts[e].push(seed);
    let first = xs.iter().copied().min().unwrap_or(0);
    for id in (first..n).rev() {
        if parts[id].is_empty() || !needs[id] {
            continue;
        }
        let d = if parts[id].len() == 1 {
            parts[id][0]
        } else {
            let shape = g.nodes[id].shape.clone();
            let nm = format!("{prefix}{}", g.nodes[id].name);
            g.push(Op::AddN(parts[id].clone()), shape, nm, Pass::Forward, None)
        };
        for (k, &x) in xs.iter().enumerate() {
            if x == id {
                found[k] = Some(d);
            }
        }
        let node = g.nodes[id].clone();
        let mut v = ops::Vjp::new(g, id, d, &needs, &regions);
        v.pass = Pass::Forward;
        v.prefix = prefix.clone();
        ops::vjp(&mut v, &node.op);
        for (k, part) in v.out {
            parts[k].push(part);
        }
    }
    found
}
