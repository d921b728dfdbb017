//! The hot path allocates nothing: `predict`, `forward`, `backward`, clearing
//! the gradient and the SGD update (`Optimizer::step` on the flat views, and
//! the trainer's checked update: `Optimizer::step_into` a second buffer and
//! `Network::swap_params`) make zero heap allocations, once the tape and the
//! gradient buffers exist; so do the batched passes the trainer runs
//! (`train_block`, `eval_block`, at every compiled width) once their
//! workspace exists, and whole training epochs after the first, on one
//! thread and on two.
//!
//! A counting global allocator counts only the allocations of threads that
//! have switched counting on (a `const` thread-local flag, so reading it never
//! allocates), so the test harness's other threads do not disturb the count.
//! For the two-thread epochs, the training pool's workers are marked too:
//! the network marks every thread other than the test's own that runs one
//! of its blocks, and the test first runs epochs until both workers are
//! marked.

use nn_runtime::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
    /// Whether this thread is a worker of the measured training pool, whose
    /// allocations go to `POOL_ALLOCATIONS`.
    static POOL_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Allocations by the measured training pool's workers.
static POOL_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

/// All counted allocations of all threads (for the report only).
static TOTAL: AtomicUsize = AtomicUsize::new(0);

fn note() {
    // `try_with`: the thread-locals may already be gone while a thread exits.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        TOTAL.fetch_add(1, Ordering::Relaxed);
    }
    if POOL_WORKER.try_with(Cell::get).unwrap_or(false) {
        POOL_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
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
/// Sgd::step_into, swap_params and the fused SGD step (`sgd_step`, where
/// the network has one).
fn hot_path_allocations<N: Network>(
    net: &mut N,
    inputs: &[N::Input],
    targets: &[N::Target],
    rounds: usize,
) -> [(&'static str, usize); 8] {
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
        ("sgd_step", 0),
    ];
    let lr = N::Scalar::from_f64(1e-3);
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
            let (_, n) = allocations(|| net.sgd_step(&tape, lr));
            counts[7].1 += n;
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

/// A small convolutional network on 8x8 images: convolutions, pooling,
/// reshapes, per sample and batched (the batch tape is the workspace).
#[network {
    input  x[1, 8, 8];
    target label: class[10];
    c1   = relu(conv2d(x, 4, 3, padding = 1));
    p1   = max_pool2d(c1, 2);
    c2   = relu(conv2d(p1, 8, 3, padding = 1));
    g    = global_avg_pool(c2);
    out  = dense(flatten(avg_pool2d(c2, 2)), 10) + dense(g, 10);
    loss = softmax_cross_entropy(out, label);
}]
pub struct DigitsCnn;

#[test]
fn conv_net_hot_path_does_not_allocate() {
    let mut net = DigitsCnn::new(3);
    let (inputs, targets) = digits_data(50, 13);
    for (what, n) in batched_allocations(&net, &inputs, &targets, 3) {
        assert_eq!(n, 0, "DigitsCnn: {what} allocated {n} times");
    }
    let counts = hot_path_allocations(&mut net, &inputs[..8], &targets[..8], 3);
    for (what, n) in counts {
        assert_eq!(n, 0, "DigitsCnn: {what} allocated {n} times");
    }
    assert_ne!(
        net.params().as_slice(),
        DigitsCnn::new(3).params().as_slice()
    );
}

#[network {
    input  tok: class[100];
    input  x[4];
    target label: class[3];
    e    = embedding(tok, 16);
    h    = tanh(dense(x, 16) + e);
    out  = dense(h, 3);
    loss = softmax_cross_entropy(out, label);
}]
pub struct Embedded;

#[test]
fn embedding_hot_path_does_not_allocate() {
    let mut net = Embedded::new(3);
    let inputs: Vec<(usize, [f32; 4])> = (0..8)
        .map(|i| {
            (
                (i * 37) % 100,
                core::array::from_fn(|k| (i + k) as f32 / 10.0),
            )
        })
        .collect();
    let targets: Vec<usize> = (0..8).map(|i| i % 3).collect();
    let counts = hot_path_allocations(&mut net, &inputs, &targets, 5);
    for (what, n) in counts {
        assert_eq!(n, 0, "Embedded: {what} allocated {n} times");
    }
    assert_ne!(
        net.params().as_slice(),
        Embedded::new(3).params().as_slice()
    );
}

#[network {
    input  x[8];
    target y[2];
    h    = dropout(relu(dense(x, 32)), 0.25);
    out  = dense(h, 2);
    loss = mse(out, y);
}]
pub struct Dropped;

#[test]
fn dropout_hot_path_does_not_allocate() {
    let mut net = Dropped::new(3);
    let inputs: Vec<[f32; 8]> = (0..8)
        .map(|i| core::array::from_fn(|k| ((i * 3 + k) % 7) as f32 / 7.0))
        .collect();
    let targets: Vec<[f32; 2]> = (0..8).map(|i| [i as f32 / 8.0, 0.5]).collect();
    let counts = hot_path_allocations(&mut net, &inputs, &targets, 5);
    for (what, n) in counts {
        assert_eq!(n, 0, "Dropped: {what} allocated {n} times");
    }
    // and with dropout on, as the Trainer runs it
    let mut tape = Dropped::new_tape();
    let mut grads = Dropped::new_grads();
    let ((), n) = allocations(|| {
        for (i, (x, y)) in inputs.iter().zip(&targets).enumerate() {
            Dropped::set_dropout(&mut tape, Some(nn_runtime::dropout::sample_seed(1, i)));
            black_box(net.forward(x, y, &mut tape));
            net.backward(&tape, &mut grads);
        }
    });
    assert_eq!(n, 0, "training passes with dropout allocated {n} times");
    assert!(tape.h_mask.contains(&0.0));
}

#[network {
    input  x[8];
    target y[2];
    a    = relu(dense(x, 16));
    h    = batch_norm(a);
    out  = dense(h, 2);
    loss = mse(out, y);
}]
pub struct BatchNormed;

#[test]
fn batch_norm_hot_path_does_not_allocate() {
    let mut net = BatchNormed::new(3);
    let inputs: Vec<[f32; 8]> = (0..8)
        .map(|i| core::array::from_fn(|k| ((i * 3 + k) % 7) as f32 / 7.0))
        .collect();
    let targets: Vec<[f32; 2]> = (0..8).map(|i| [i as f32 / 8.0, 0.5]).collect();
    // the per-sample passes (inference mode) and the optimiser's step
    let counts = hot_path_allocations(&mut net, &inputs, &targets, 5);
    for (what, n) in counts {
        assert_eq!(n, 0, "BatchNormed: {what} allocated {n} times");
    }
    // the training passes: batch statistics, their backward, the running update
    let x: [[f32; 8]; 4] = core::array::from_fn(|j| inputs[j]);
    let y: [[f32; 2]; 4] = core::array::from_fn(|j| targets[j]);
    let mut tape = BatchNormed::new_batch_tape::<4>();
    let mut grads = BatchNormed::new_grads();
    let ((), n) = allocations(|| {
        for _ in 0..5 {
            black_box(net.forward_batch(&x, &y, &mut tape));
            net.backward_batch(&mut tape, &mut grads);
            assert!(net.update_running_stats(&mut tape));
        }
    });
    assert_eq!(n, 0, "batch-norm training passes allocated {n} times");
    assert_eq!(net.params.h_num_batches_tracked, 5.0);
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

/// `train_block` and `eval_block` at every compiled width, `rounds` times
/// over blocks of samples picked from `inputs`: the allocations of each.
fn batched_allocations<N: Network>(
    net: &N,
    inputs: &[N::Input],
    targets: &[N::Target],
    rounds: usize,
) -> [(&'static str, usize); 2] {
    assert!(!N::BATCH_WIDTHS.is_empty());
    let mut work = N::new_batch_work();
    let mut grads = N::new_grads();
    let widest = N::BATCH_WIDTHS[0];
    let mut losses = vec![N::Scalar::ZERO; widest];
    let mut correct = vec![false; widest];
    let mut counts = [("train_block", 0), ("eval_block", 0)];
    for r in 0..rounds {
        for &w in N::BATCH_WIDTHS {
            let idx: Vec<usize> = (0..w).map(|j| (r * 7 + j * 3) % inputs.len()).collect();
            let ((), n) = allocations(|| {
                net.train_block(
                    inputs,
                    targets,
                    &idx,
                    &mut work,
                    &mut grads,
                    &mut losses[..w],
                    &mut correct[..w],
                )
            });
            counts[0].1 += n;
            let ((), n) = allocations(|| {
                net.eval_block(
                    inputs,
                    targets,
                    &idx,
                    &mut work,
                    &mut losses[..w],
                    &mut correct[..w],
                )
            });
            counts[1].1 += n;
            assert!(losses[..w].iter().all(|l| l.is_finite()));
        }
    }
    assert!(grads.as_slice().iter().any(|g| *g != N::Scalar::ZERO));
    counts
}

fn digits_data(n: usize, seed: u64) -> (Vec<[f32; 64]>, Vec<usize>) {
    let mut rng = nn_tests::Lcg::new(seed);
    let targets: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % 10).collect();
    let inputs = targets
        .iter()
        .map(|&c| {
            core::array::from_fn(|i| {
                rng.uniform(0.0, 0.5) as f32 + if i % 10 == c { 0.6 } else { 0.0 }
            })
        })
        .collect();
    (inputs, targets)
}

#[test]
fn batched_passes_do_not_allocate() {
    let net = Xor::new(7);
    let inputs = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    let targets = [[0.0], [1.0], [1.0], [0.0]];
    for (what, n) in batched_allocations(&net, &inputs, &targets, 5) {
        assert_eq!(n, 0, "Xor: {what} allocated {n} times");
    }
    let net = Digits::new(3);
    let (inputs, targets) = digits_data(50, 12);
    for (what, n) in batched_allocations(&net, &inputs, &targets, 5) {
        assert_eq!(n, 0, "Digits: {what} allocated {n} times");
    }
}

/// The digits network, marking every thread other than `owner` that runs
/// one of its blocks as a counted pool worker (and, when `PROBE` is set,
/// allocating once on it, to show that the workers are counted).
struct MarkingDigits {
    inner: Digits,
    owner: std::thread::ThreadId,
    /// How many workers are marked.
    marked: std::sync::Arc<AtomicUsize>,
}

/// When set, the next block on a worker allocates once.
static PROBE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl MarkingDigits {
    fn mark(&self) {
        if std::thread::current().id() != self.owner && !POOL_WORKER.with(Cell::get) {
            POOL_WORKER.with(|w| w.set(true));
            self.marked.fetch_add(1, Ordering::SeqCst);
        }
        if POOL_WORKER.with(Cell::get) && PROBE.swap(false, Ordering::SeqCst) {
            drop(black_box(vec![0u8; 8]));
        }
    }
}

impl Network for MarkingDigits {
    type Scalar = f32;
    type Input = [f32; 64];
    type Target = usize;
    type Output = [f32; 10];
    type Params = <Digits as Network>::Params;
    type Tape = <Digits as Network>::Tape;
    type BatchWork = <Digits as Network>::BatchWork;
    const PARAMS: usize = Digits::PARAMS;
    const TAPE_BYTES: usize = Digits::TAPE_BYTES;
    const FORWARD_FLOPS: u64 = Digits::FORWARD_FLOPS;
    const BACKWARD_FLOPS: u64 = Digits::BACKWARD_FLOPS;
    const PARAM_INFO: &'static [ParamInfo] = Digits::PARAM_INFO;
    const BATCH_WIDTHS: &'static [usize] = <Digits as Network>::BATCH_WIDTHS;

    fn new(seed: u64) -> Self {
        MarkingDigits {
            inner: Digits::new(seed),
            owner: std::thread::current().id(),
            marked: std::sync::Arc::default(),
        }
    }
    fn params(&self) -> &Self::Params {
        Network::params(&self.inner)
    }
    fn params_mut(&mut self) -> &mut Self::Params {
        Network::params_mut(&mut self.inner)
    }
    fn swap_params(&mut self, other: &mut Box<Self::Params>) {
        Network::swap_params(&mut self.inner, other)
    }
    fn predict(&self, x: &[f32; 64]) -> [f32; 10] {
        Network::predict(&self.inner, x)
    }
    fn forward(&self, x: &[f32; 64], y: &usize, tape: &mut Self::Tape) -> f32 {
        Network::forward(&self.inner, x, y, tape)
    }
    fn backward(&self, tape: &Self::Tape, grads: &mut Self::Params) {
        Network::backward(&self.inner, tape, grads)
    }
    fn is_correct(out: &[f32; 10], y: &usize) -> bool {
        <Digits as Network>::is_correct(out, y)
    }
    fn check_target(y: &usize) -> Result<(), TargetError> {
        <Digits as Network>::check_target(y)
    }
    fn tape_output(tape: &Self::Tape) -> Option<[f32; 10]> {
        <Digits as Network>::tape_output(tape)
    }
    fn train_block(
        &self,
        inputs: &[[f32; 64]],
        targets: &[usize],
        idx: &[usize],
        work: &mut Self::BatchWork,
        grads: &mut Self::Params,
        losses: &mut [f32],
        correct: &mut [bool],
    ) {
        self.mark();
        self.inner
            .train_block(inputs, targets, idx, work, grads, losses, correct)
    }
    fn eval_block(
        &self,
        inputs: &[[f32; 64]],
        targets: &[usize],
        idx: &[usize],
        work: &mut Self::BatchWork,
        losses: &mut [f32],
        correct: &mut [bool],
    ) {
        self.mark();
        self.inner
            .eval_block(inputs, targets, idx, work, losses, correct)
    }
}

#[test]
fn batched_training_epochs_do_not_allocate_after_the_first() {
    let (inputs, targets) = digits_data(540, 13);
    let (train, val) = Dataset::new(inputs, targets).split(440.0 / 540.0, 1);
    // Batches of 100 = 3 × 32 + 4 (four parts), the last of 40 = 32 + 2 × 4;
    // validation 100.
    for threads in [1, 2] {
        let mut net = MarkingDigits::new(1);
        let start = net.params().as_slice().to_vec();
        let marked = std::sync::Arc::clone(&net.marked);
        let mut trainer = Trainer::new(Adam::new(0.01))
            .epochs(usize::MAX)
            .batch_size(100)
            .threads(threads)
            .clip(Clip::Norm(10.0))
            .quiet();
        let mut epochs = trainer.train(&mut net, &train, Some(&val)).unwrap();
        // Warm-up: the first epoch starts the workers; run epochs until
        // both have run a block (and are counted).
        epochs.next().unwrap().unwrap();
        let mut warm_up = 1;
        while threads == 2 && warm_up < 1000 && marked.load(Ordering::SeqCst) < 2 {
            epochs.next().unwrap().unwrap();
            warm_up += 1;
        }
        if threads == 2 {
            assert_eq!(marked.load(Ordering::SeqCst), 2, "after {warm_up} epochs");
        }
        let before = POOL_ALLOCATIONS.load(Ordering::SeqCst);
        let ((), caller) = allocations(|| {
            for _ in 0..10 {
                black_box(epochs.next().unwrap().unwrap());
            }
        });
        let workers = POOL_ALLOCATIONS.load(Ordering::SeqCst) - before;
        assert_eq!(
            (caller, workers),
            (0, 0),
            "allocations in 10 epochs on {threads} threads (calling thread, workers)"
        );
        if threads == 2 {
            // The workers are counted: an allocation on one shows.
            PROBE.store(true, Ordering::SeqCst);
            while PROBE.load(Ordering::SeqCst) {
                epochs.next().unwrap().unwrap();
            }
            assert!(POOL_ALLOCATIONS.load(Ordering::SeqCst) > before);
        }
        let report = epochs.next().unwrap().unwrap();
        drop(epochs);
        assert!(report.val_accuracy.unwrap() > 0.9, "{report}");
        assert_ne!(net.params().as_slice(), &start[..]);
    }
    POOL_WORKER.with(|w| assert!(!w.get(), "the test thread is not a worker"));
}
