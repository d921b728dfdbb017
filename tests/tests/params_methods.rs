//! The passes as methods of the parameter struct (what a `no_std` user
//! without the heap calls) are the struct's passes: same initial values,
//! same outputs, losses and gradients, bit for bit.

use nn_runtime::prelude::*;

#[network {
    input  x[3];
    target label: class[4];
    h      = tanh(dense(x, 5));
    logits = dense(h, 4);
    loss   = softmax_cross_entropy(logits, label);
}]
pub struct Small;

#[network {
    steps 3;
    input  x[t][2];
    target y[t][1];
    state  h[4] = zeros;
    h[t]   = tanh(dense(x[t], 4) + dense(h[t-1], 4));
    out[t] = dense(h[t], 1);
    loss   = mean_steps(mse(out[t], y[t]));
}]
pub struct Rnn;

#[test]
fn zeroed_constants_are_zeros() {
    assert!(SmallParams::ZEROED.as_slice().iter().all(|v| *v == 0.0));
    let t = SmallTape::ZEROED;
    assert!(t.h.iter().all(|v| *v == 0.0));
}

#[test]
fn params_new_and_init_equal_the_struct_s_initialisation() {
    for seed in [0, 1, 42] {
        let net = Small::new(seed);
        assert_eq!(SmallParams::new(seed), *net.params);
        let mut p = SmallParams::ZEROED;
        p.init(seed);
        assert_eq!(p, *net.params);
        assert_eq!(RnnParams::new(seed), *Rnn::new(seed).params);
    }
    assert_ne!(SmallParams::new(1), SmallParams::new(2));
}

#[test]
fn params_passes_equal_the_struct_s() {
    let net = Small::new(3);
    let p = SmallParams::new(3);
    let x = [0.5, -1.0, 2.0];
    assert_eq!(p.predict(&x), net.predict(&x));
    let (mut t1, mut t2) = (SmallTape::ZEROED, Small::new_tape());
    let (mut g1, mut g2) = (SmallParams::ZEROED, Small::new_grads());
    let l1 = p.forward(&x, &2, &mut t1);
    let l2 = net.forward(&x, &2, &mut t2);
    assert_eq!(l1.to_bits(), l2.to_bits());
    p.backward(&t1, &mut g1);
    net.backward(&t2, &mut g2);
    assert_eq!(g1, *g2);
    assert!(g1.as_slice().iter().any(|v| *v != 0.0));
    assert_eq!(p.input_gradient(&x, &2), net.input_gradient(&x, &2));

    let rnn = Rnn::new(5);
    let q = RnnParams::new(5);
    let xs = [[0.1, 0.2], [0.3, -0.4], [1.0, 0.0]];
    let ys = [[0.5], [-0.5], [1.0]];
    assert_eq!(q.predict(&xs), rnn.predict(&xs));
    let (mut t1, mut t2) = (RnnTape::ZEROED, Rnn::new_tape());
    let (mut g1, mut g2) = (RnnParams::ZEROED, Rnn::new_grads());
    assert_eq!(
        q.forward(&xs, &ys, &mut t1).to_bits(),
        rnn.forward(&xs, &ys, &mut t2).to_bits()
    );
    let (mut n1, mut n2) = ([0.0; 3], [0.0; 3]);
    q.backward_traced(&t1, &mut g1, &mut n1);
    rnn.backward_traced(&t2, &mut g2, &mut n2);
    assert_eq!((g1, n1), (*g2, n2));
    let (mut s1, mut s2) = (q.initial_state(), rnn.initial_state());
    assert_eq!(q.step(&mut s1, &xs[0]), rnn.step(&mut s2, &xs[0]));
}
