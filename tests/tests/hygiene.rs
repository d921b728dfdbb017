//! Generated code never resolves a name from the user's module: networks of
//! every kind compile and run beside items that would capture the names
//! the generated code uses (a unit struct `B` and a const `B`-like generic,
//! lowercase constants and unit structs named like the passes' parameters
//! and locals, a type alias shadowing `f32`, macros shadowing `assert!`,
//! functions named like the activations), and definition names that are
//! Rust keywords or the generated code's own names.

#![allow(non_upper_case_globals, non_camel_case_types, dead_code, unused_macros)]

/// The networks, and the items that must not leak into them.
mod hostile {
    use nn_runtime::prelude::*;

    // Items a careless expansion would pick up.
    struct B;
    struct i;
    struct j;
    struct t;
    const h: i32 = 3;
    const input: usize = 4;
    const target: usize = 5;
    const tape: usize = 6;
    const grads: usize = 7;
    const params: usize = 8;
    const seed: u64 = 9;
    const state: usize = 10;
    const output: usize = 11;
    const inputs: usize = 12;
    const targets: usize = 13;
    const norms: usize = 14;
    struct x;
    type f32 = u8;
    type f64 = i8;
    type usize = u16;
    type Box<T> = Vec<T>;
    fn sigmoid() {}
    fn relu() {}
    fn exp() {}
    macro_rules! assert {
        ($($t:tt)*) => {
            compile_error!("the generated code used the user's `assert!`")
        };
    }
    macro_rules! vec {
        ($($t:tt)*) => {
            compile_error!("the generated code used the user's `vec!`")
        };
    }

    /// Feed-forward, with a batched form.
    #[network { input x[3]; target y[2]; h = relu(dense(x, 4)); out = sigmoid(dense(h, 2)); loss = mse(out, y); }]
    pub struct Mlp;

    /// A class target, softmax cross-entropy, slices and concatenation.
    #[network {
        input x[4]; target label: class[3];
        h = tanh(dense(x, 5)); z = concat(h[0:2], h[2:5]);
        logits = dense(z, 3); loss = softmax_cross_entropy(logits, label);
    }]
    pub struct Classifier;

    /// Definition names that are Rust keywords, the generated code's own
    /// names, or `_`.
    #[network {
        input self[2]; target tape[1]; param grads[3, 2] = xavier; param B[3];
        fn type(z) = z * sigmoid(z);
        i = type(grads @ self + B); j = dense(i, 1); _ = j * 2;
        loss = mse(_, tape);
    }]
    pub struct Keywords;

    /// Recurrent, with a stateful step.
    #[network {
        steps 3; input x[t][2]; target y[t][1]; state h[3] = zeros; param wh[3, 3] = xavier;
        h[t] = tanh(wh @ h[t-1] + dense(x[t], 3)); out[t] = dense(h[t], 1);
        loss = mean_steps(mse(out[t], y[t]));
    }]
    pub struct Rnn;

    /// Bindings named like the locals of the generated reductions and the
    /// batched passes' sample index (`m`, `s`, `total`, `at`), with an
    /// embedding, dropout, norms and the softmax family.
    #[network {
        input tok: class[5]; input x[3]; target y[2];
        m = dense(x, 4) + embedding(tok, 4); s = norm(m); total = log_softmax(m);
        at = dropout(tanh(m * s + total), 0.2) + logsumexp(m);
        out = dense(at, 2);
        loss = mse(out, y) + softmax_cross_entropy(at, softmax(m));
    }]
    pub struct Locals;

    /// The same names around the softmax family along an axis (per sample).
    #[network {
        input x[3]; target y[2]; param w[4];
        m = outer(w, x); s = sum(logsumexp(m, 0)) + sum(softmax(m, 1));
        total = log_softmax(transpose(m), 0);
        out = dense(sum(total, 0), 2) * s;
        loss = mse(out, y);
    }]
    pub struct AxisLocals;
}

use hostile::{AxisLocals, Classifier, Keywords, Locals, Mlp, Rnn};

#[test]
fn bindings_named_like_generated_locals_are_not_shadowed() {
    let n = Locals::new(1);
    let x = (2, [0.1, -0.2, 0.3]);
    let y = [0.5, -0.5];
    let mut tp = Locals::new_tape();
    tp.set_dropout(Some(3));
    let l = n.forward(&x, &y, &mut tp);
    let mut g = Locals::new_grads();
    n.backward(&tp, &mut g);
    let mut bt = Locals::new_batch_tape::<2>();
    bt.set_dropout(Some(4));
    let lb = n.forward_batch(&[x; 2], &[y; 2], &mut bt);
    n.backward_batch(&mut bt, &mut g);
    assert!(l.is_finite() && lb.is_finite());
    assert_eq!(n.predict(&x), n.predict(&x));
    let a = AxisLocals::new(2);
    let mut tp = AxisLocals::new_tape();
    assert!(a.forward(&[0.1, 0.2, 0.3], &y, &mut tp).is_finite());
}

#[test]
fn networks_compile_and_run_beside_hostile_items() {
    let n = Mlp::new(1);
    let mut tp = Mlp::new_tape();
    let mut g = Mlp::new_grads();
    let l = n.forward(&[0.1, 0.2, 0.3], &[0.0, 1.0], &mut tp);
    n.backward(&tp, &mut g);
    assert!(l.is_finite());
    let mut bt = Mlp::new_batch_tape::<2>();
    let lb = n.forward_batch(&[[0.1, 0.2, 0.3]; 2], &[[0.0, 1.0]; 2], &mut bt);
    n.backward_batch(&mut bt, &mut g);
    assert!((lb - 2.0 * l).abs() < 1e-5);

    let c = Classifier::new(2);
    let mut ct = Classifier::new_tape();
    assert!(c.forward(&[1.0, 0.0, -1.0, 0.5], &2, &mut ct).is_finite());

    let k = Keywords::new(3);
    let mut kt = Keywords::new_tape();
    let mut kg = Keywords::new_grads();
    assert!(k.forward(&[0.5, -0.5], &[1.0], &mut kt).is_finite());
    k.backward(&kt, &mut kg);
    assert_eq!(Keywords::PARAM_INFO[0].name, "grads");

    let r = Rnn::new(4);
    let mut s = r.initial_state();
    let o = r.step(&mut s, &[0.5, 0.25]);
    assert!(o[0].is_finite());
}
