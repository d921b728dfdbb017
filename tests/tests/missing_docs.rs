//! Every item `#[network]` generates is documented: a crate that denies
//! `missing_docs` compiles with feed-forward and recurrent networks in it.
#![deny(missing_docs)]

use nn_runtime::prelude::*;

/// A feed-forward network with a class target.
#[network {
    input  x[4];
    target label: class[3];
    h      = tanh(dense(x, 8));
    logits = dense(h, 3);
    loss   = cross_entropy(logits, label);
}]
pub struct Documented;

/// A recurrent network with two inputs.
#[network {
    steps 4;
    input  x[t][2];
    input  s[1];
    target y[t][1];
    state  h[3] = zeros;
    h[t] = tanh(dense(concat(x[t], s), 3) + dense(h[t-1], 3));
    out[t] = dense(h[t], 1);
    loss = mean_steps(mse(out[t], y[t]));
}]
pub struct DocumentedRnn;

/// A network whose loss holds a derivative, in f64.
#[network {
    dtype f64;
    input  x[1];
    target f[1];
    h   = tanh(dense(x, 4));
    u   = dense(h, 1);
    du  = grad(sum(u), x);
    output u;
    loss = mse(du, f);
}]
pub struct DocumentedDerivative;

#[test]
fn documented_networks_work() {
    let logits = Documented::new(1).predict(&[0.1, 0.2, 0.3, 0.4]);
    assert!(logits.iter().all(|v| v.is_finite()));
    let u = DocumentedDerivative::new(1).predict(&[0.5]);
    assert!(u[0].is_finite());
    let outs = DocumentedRnn::new(1).predict(&([[0.5, -0.5]; 4], [1.0]));
    assert_eq!(outs.len(), 4);
}
