//! The doc comments of the generated passes: what each computes, one line
//! of maths per value, in the definition's names.

use super::body::{live_with_states, Which};
use super::plan::Plan;
use crate::ir::*;

/// A node's name as the user reads it in docs (parameters as `h.weight`).
pub fn math_name(plan: &Plan, id: NodeId) -> String {
    match plan.g.nodes[id].op {
        Op::Param(k) => plan.g.params[k].name.clone(),
        _ => plan.ident[id].to_string(),
    }
}

/// What a generated function does, in one paragraph (the first of its doc
/// comment).
pub fn intro(plan: &Plan, which: Which) -> &'static str {
    let batch = plan.batch;
    match which {
        Which::InputGrad => "The gradient of the loss with respect to the input (each input, for several): `∂loss/∂input` for one sample, by a forward and a backward pass through the network (saliency, adversarial examples). Computed on the stack; stores nothing.",
        Which::Hvp => "The Hessian-vector product: adds `H v` into `out`, where `H` is the Hessian of the loss in the parameters at this sample and `v` has the parameters' layout. Computed exactly, by differentiating the backward pass once more (reverse over reverse), with no tape and no allocation: the intermediates of a forward, a backward and a second backward pass are local arrays.",
        Which::Predict => "Inference: the output for one input; stores nothing.",
        Which::Forward if batch => "Forward pass for a mini-batch of `B` samples as matrix-matrix work, each per-sample vector a matrix with one column per sample: returns the sum of the samples' losses and stores in `tape` what `backward_batch` reads (`[n, B]` below is a vector `[n]` for each sample).",
        Which::Forward => "Forward pass for one sample: returns the loss and stores in `tape` what `backward` reads.",
        Which::Backward if batch => "Backward pass for the mini-batch last passed to `forward_batch`: adds the sum over the samples of `∂loss/∂θ` into `grads` (a weight gradient is one `dZ Xᵀ` product), exactly what `B` calls of `backward` add; the batch tape is its workspace.",
        Which::Backward if plan.g.steps.is_some() => "Backward pass through time for the sequence last passed to `forward`: steps `t = T-1 .. 0`, each layer last first, carrying each state's adjoint back one step; adds `∂loss/∂θ`, summed over the steps, into `grads` (`+=`, so a batch accumulates).",
        Which::Backward => "Backward pass (reverse-mode chain rule, last layer first) for the sample last passed to `forward`: adds `∂loss/∂θ` into `grads` (`+=`, so a batch accumulates).",
        Which::SgdStep => "Plain SGD for the sample last passed to `forward`, fused into its backward pass: seeded with `∂loss/∂loss = -lr` instead of `1`, the backward pass adds `-lr · ∂loss/∂θ` straight into the parameters (each block after the last read of any parameter), with no gradient buffer to clear, fill and read back. The same step as `backward` into zeroed gradients followed by `Sgd::new(lr)`'s update, up to rounding.",
        Which::Step => "One time step for inference: reads `state` (the states' values at the previous step), returns this step's output and leaves the new values in `state`.",
        Which::Stream => "Streaming inference, one position at a time: takes the input signals' columns at the next position, returns the output's column there, and keeps in `state` what the causal convolutions read of the earlier positions (a ring buffer of each one's last `dilation·(kernel-1)` input columns). Calls at positions `0, 1, 2, ...` from a new state return the columns of `predict` on the whole signal (convolutions and elementwise functions computed as there, bit for bit; a matrix product `W @ x` to rounding), for signals of any length. No heap, no allocation.",
    }
}

/// The doc comment of a generated function: its [`intro`], then one line
/// of maths per value computed, then (backward) where each gradient goes.
pub fn doc(plan: &Plan, which: Which) -> String {
    let g = plan.g;
    let batch = plan.batch;
    let intro = intro(plan, which);
    let (pass, roots): (Pass, Vec<NodeId>) = match which {
        Which::InputGrad | Which::Hvp => return intro.to_string(),
        Which::SgdStep => {
            return format!(
                "{intro}\n\nThe maths: that of [`backward`](Self::backward), with `∂loss/∂loss = -lr`, and each `∂loss/∂θ += d` a `θ += d`."
            )
        }
        Which::Predict | Which::Step | Which::Stream => (Pass::Forward, vec![g.output]),
        Which::Forward => (Pass::Forward, vec![g.loss]),
        Which::Backward if batch => (Pass::Backward, g.grads.iter().flatten().copied().collect()),
        Which::Backward => (
            Pass::Backward,
            g.grads
                .iter()
                .flatten()
                .chain(g.state_adjoints.iter().flatten())
                .copied()
                .collect(),
        ),
    };
    let live = live_with_states(g, roots);
    let mut lines = vec![intro.to_string(), String::new(), "```text".to_string()];
    let name = |a: NodeId| math_name(plan, a);
    for (id, node) in g.nodes.iter().enumerate() {
        // a per-sample outer product is only ever summed over the batch:
        // the sum's line says it
        let summed_outer = matches!(node.op, Op::Outer(..)) && plan.batched[id];
        if !live[id]
            || node.pass != pass
            || summed_outer
            || matches!(node.op, Op::Input(_) | Op::Target(_) | Op::Param(_))
        {
            continue;
        }
        let shape = if batch && plan.batched[id] {
            let mut dims = node.shape.0.clone();
            let text: Vec<String> = dims.drain(..).map(|d| d.to_string()).collect();
            let mut text = text;
            text.push("B".into());
            format!(" [{}]", text.join(", "))
        } else {
            String::new()
        };
        let math = match node.op {
            Op::Seed => "1".to_string(),
            _ => crate::ops::math(g, id, &name),
        };
        lines.push(format!("{}{shape} = {math}", plan.ident[id]));
    }
    if which == Which::Backward {
        for (p, gr) in g.params.iter().zip(&g.grads) {
            match gr {
                Some(gr) => lines.push(format!("∂loss/∂{} += {}", p.name, plan.ident[*gr])),
                None => lines.push(format!(
                    "∂loss/∂{} += 0 (the loss does not depend on it)",
                    p.name
                )),
            }
        }
    }
    lines.push("```".to_string());
    lines.join("\n")
}
