//! The hot path allocates nothing: `predict`, `forward`, `backward`, clearing
//! the gradient and the SGD update (`Optimizer::step` on the flat views, and
//! the trainer's checked update: `Optimizer::step_into` a second buffer and
//! `Network::swap_params`) make zero heap allocations, once the tape and the
//! gradient buffers exist.
//!
//! A counting global allocator counts only the allocations of threads that
//! have switched counting on (a `const` thread-local flag, so reading it never
//! allocates), so the test harness's other threads do not disturb the count.

use nn_runtime::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

/// All counted allocations of all threads (for the report only).
static TOTAL: AtomicUsize = AtomicUsize::new(0);

fn note() {
    // `try_with`: the thread-locals may already be gone while a thread exits.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        TOTAL.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns how many heap allocations (alloc, alloc_zeroed,
/// realloc) the current thread made meanwhile.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, COUNT.with(Cell::get))
}

#[test]
fn the_counter_counts() {
    let (v, n) = allocations(|| black_box(vec![1u8; 100]));
    assert_eq!(n, 1);
    drop(v);
    let (b, n) = allocations(|| black_box(Box::new([0u64; 4])));
    assert_eq!(n, 1);
    drop(b);
    let (_, n) = allocations(|| black_box(1 + 1));
    assert_eq!(n, 0);
}

/// Counts the allocations of each hot-path operation separately, `rounds`
/// times over the samples: predict, forward, backward, fill_zero, Sgd::step,
/// Sgd::step_into and swap_params.
fn hot_path_allocations<N: Network>(
    net: &mut N,
    inputs: &[N::Input],
    targets: &[N::Target],
    rounds: usize,
) -> [(&'static str, usize); 7] {
    // Allocated before the measured region.
    let mut tape = N::new_tape();
    let mut grads = N::new_grads();
    let mut spare = N::new_grads();
    let mut sgd = Sgd::new(0.01);
    Optimizer::<N::Scalar>::init(&mut sgd, N::PARAMS);
    let mut counts = [
        ("predict", 0),
        ("forward", 0),
        ("backward", 0),
        ("fill_zero", 0),
        ("Sgd::step", 0),
        ("Sgd::step_into", 0),
        ("swap_params", 0),
    ];
    for _ in 0..rounds {
        for (x, y) in inputs.iter().zip(targets) {
            let (out, n) = allocations(|| net.predict(black_box(x)));
            black_box(out);
            counts[0].1 += n;
            let (loss, n) = allocations(|| net.forward(black_box(x), black_box(y), &mut tape));
            black_box(loss);
            counts[1].1 += n;
            let ((), n) = allocations(|| net.backward(&tape, &mut grads));
            counts[2].1 += n;
        }
        let ((), n) = allocations(|| {
            Optimizer::<N::Scalar>::step(
                &mut sgd,
                net.params_mut().as_mut_slice(),
                grads.as_slice(),
            )
        });
        counts[4].1 += n;
        let (finite, n) = allocations(|| {
            Optimizer::<N::Scalar>::step_into(
                &mut sgd,
                net.params().as_slice(),
                grads.as_slice(),
                spare.as_mut_slice(),
            )
        });
        assert!(finite);
        counts[5].1 += n;
        let ((), n) = allocations(|| net.swap_params(&mut spare));
        counts[6].1 += n;
        let ((), n) = allocations(|| grads.fill_zero());
        counts[3].1 += n;
    }
    // And all of it in one measured region, as a training step runs it.
    let ((), n) = allocations(|| {
        for (x, y) in inputs.iter().zip(targets) {
            black_box(net.predict(x));
            black_box(net.forward(x, y, &mut tape));
            net.backward(&tape, &mut grads);
        }
        Optimizer::<N::Scalar>::step(&mut sgd, net.params_mut().as_mut_slice(), grads.as_slice());
        let finite = Optimizer::<N::Scalar>::step_into(
            &mut sgd,
            net.params().as_slice(),
            grads.as_slice(),
            spare.as_mut_slice(),
        );
        if finite {
            net.swap_params(&mut spare);
        }
        grads.fill_zero();
    });
    assert_eq!(n, 0, "a whole training step allocated {n} times");
    counts
}

#[network {
    input  x[2];
    target y[1];
    h    = sigmoid(dense(x, 4));
    out  = sigmoid(dense(h, 1));
    loss = mse(out, y);
}]
pub struct Xor;

#[test]
fn xor_hot_path_does_not_allocate() {
    let mut net = Xor::new(7);
    let inputs = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    let targets = [[0.0], [1.0], [1.0], [0.0]];
    let counts = hot_path_allocations(&mut net, &inputs, &targets, 10);
    for (what, n) in counts {
        assert_eq!(n, 0, "Xor: {what} allocated {n} times");
    }
    // The network did train: the parameters moved.
    assert_ne!(net.params().as_slice(), Xor::new(7).params().as_slice());
}

#[network {
    input  x[64];
    target label: class[10];
    h    = relu(dense(x, 32));
    out  = dense(h, 10);
    loss = softmax_cross_entropy(out, label);
}]
pub struct Digits;

#[test]
fn digits_sized_hot_path_does_not_allocate() {
    let mut net = Digits::new(3);
    let mut rng = nn_tests::Lcg::new(11);
    let inputs: Vec<[f32; 64]> = (0..8)
        .map(|_| core::array::from_fn(|_| rng.uniform(0.0, 16.0) as f32 / 16.0))
        .collect();
    let targets: Vec<usize> = (0..8).map(|i| (i * 3) % 10).collect();
    let counts = hot_path_allocations(&mut net, &inputs, &targets, 5);
    for (what, n) in counts {
        assert_eq!(n, 0, "Digits: {what} allocated {n} times");
    }
    assert_ne!(net.params().as_slice(), Digits::new(3).params().as_slice());
}

/// `input_gradient` and `hvp` keep every intermediate on the stack.
#[test]
fn input_gradient_and_hvp_do_not_allocate() {
    let net = Digits::new(3);
    let v = Digits::new(4);
    let mut out = Digits::new_grads();
    let x: [f32; 64] = core::array::from_fn(|i| (i % 17) as f32 / 16.0);
    let (g, n) = allocations(|| net.input_gradient(black_box(&x), &7));
    assert_eq!(n, 0, "input_gradient allocated {n} times");
    assert!(g.iter().any(|v| *v != 0.0));
    let ((), n) = allocations(|| net.hvp(black_box(&x), &7, v.params(), &mut out));
    assert_eq!(n, 0, "hvp allocated {n} times");
    assert!(out.as_slice().iter().any(|v| *v != 0.0));
}

/// An LSTM over 16 steps with a loss at every step: the forward pass stores
/// all 16 steps in the tape, BPTT runs back over them.
#[network {
    steps 16;
    input  x[t][3];
    target y[t][2];
    state  h[8] = zeros;
    state  c[8] = constant(0.1);
    param  ui[8, 8] = xavier;
    param  uf[8, 8] = xavier;
    param  uo[8, 8] = xavier;
    param  ug[8, 8] = xavier;
    i[t] = sigmoid(dense(x[t], 8) + ui @ h[t-1]);
    f[t] = sigmoid(dense(x[t], 8) + uf @ h[t-1] + 1);
    o[t] = sigmoid(dense(x[t], 8) + uo @ h[t-1]);
    g[t] = tanh(dense(x[t], 8) + ug @ h[t-1]);
    c[t] = f[t] * c[t-1] + i[t] * g[t];
    h[t] = o[t] * tanh(c[t]);
    out[t] = dense(h[t], 2);
    loss = mean_steps(mse(out[t], y[t]));
}]
pub struct Lstm16;

/// A GRU over 16 steps with a learned initial state, truncated BPTT and a
/// loss on the last step only (`h[last]`).
#[network {
    steps 16;
    truncate 4;
    input  x[t][3];
    target y[1];
    param  h0[8] = uniform(-0.5, 0.5);
    state  h[8] = h0;
    param  uz[8, 8] = xavier;
    param  ur[8, 8] = xavier;
    param  un[8, 8] = xavier;
    z[t] = sigmoid(dense(x[t], 8) + uz @ h[t-1]);
    r[t] = sigmoid(dense(x[t], 8) + ur @ h[t-1]);
    n[t] = tanh(dense(x[t], 8) + un @ (r[t] * h[t-1]));
    h[t] = (1 - z[t]) * n[t] + z[t] * h[t-1];
    out = dense(h[last], 1);
    loss = mse(out, y);
}]
pub struct GruLast16;

fn sequences(seed: u64, n: usize) -> Vec<[[f32; 3]; 16]> {
    let mut rng = nn_tests::Lcg::new(seed);
    (0..n)
        .map(|_| core::array::from_fn(|_| core::array::from_fn(|_| rng.signed(-1.0, 1.0) as f32)))
        .collect()
}

#[test]
fn lstm_bptt_hot_path_does_not_allocate() {
    let mut net = Lstm16::new(5);
    let inputs = sequences(21, 4);
    let mut rng = nn_tests::Lcg::new(22);
    let targets: Vec<[[f32; 2]; 16]> = (0..4)
        .map(|_| core::array::from_fn(|_| core::array::from_fn(|_| rng.signed(-1.0, 1.0) as f32)))
        .collect();
    let counts = hot_path_allocations(&mut net, &inputs, &targets, 5);
    for (what, n) in counts {
        assert_eq!(n, 0, "Lstm16: {what} allocated {n} times");
    }
    assert_ne!(net.params().as_slice(), Lstm16::new(5).params().as_slice());

    // The recurrent extras: BPTT with the per-step adjoint norms, and the
    // stateful step API, run for longer than the training length.
    let mut tape = Lstm16::new_tape();
    let mut grads = Lstm16::new_grads();
    let mut norms = [0.0f32; Lstm16::STEPS];
    let mut state = net.initial_state();
    for (x, y) in inputs.iter().zip(&targets) {
        black_box(net.forward(x, y, &mut tape));
        let ((), n) = allocations(|| net.backward_traced(&tape, &mut grads, &mut norms));
        assert_eq!(n, 0, "Lstm16: backward_traced allocated {n} times");
        assert!(norms.iter().all(|v| v.is_finite() && *v > 0.0), "{norms:?}");
        let (s, n) = allocations(|| net.initial_state());
        assert_eq!(n, 0, "Lstm16: initial_state allocated {n} times");
        black_box(s);
        let (_, n) = allocations(|| {
            for _ in 0..3 {
                for x_t in x {
                    black_box(net.step(&mut state, black_box(x_t)));
                }
            }
        });
        assert_eq!(n, 0, "Lstm16: 48 steps allocated {n} times");
    }
    assert!(state.h.iter().chain(&state.c).all(|v| v.is_finite()));
}

#[test]
fn truncated_last_step_gru_hot_path_does_not_allocate() {
    let mut net = GruLast16::new(6);
    let inputs = sequences(31, 4);
    let targets = [[0.5], [-0.25], [1.0], [0.0]];
    let counts = hot_path_allocations(&mut net, &inputs, &targets, 5);
    for (what, n) in counts {
        assert_eq!(n, 0, "GruLast16: {what} allocated {n} times");
    }
    assert_ne!(
        net.params().as_slice(),
        GruLast16::new(6).params().as_slice()
    );
    let mut tape = GruLast16::new_tape();
    let mut grads = GruLast16::new_grads();
    let mut norms = [0.0f32; GruLast16::STEPS];
    for (x, y) in inputs.iter().zip(&targets) {
        black_box(net.forward(x, y, &mut tape));
        let ((), n) = allocations(|| net.backward_traced(&tape, &mut grads, &mut norms));
        assert_eq!(n, 0, "GruLast16: backward_traced allocated {n} times");
        assert!(norms.iter().all(|v| v.is_finite()), "{norms:?}");
    }
}
