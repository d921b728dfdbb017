//! Streaming inference of causal convolutional networks: `stream_step`,
//! called at positions 0, 1, 2, ... from a new state, returns `predict`'s
//! output columns on the whole signal (bit for bit where the step computes
//! as `predict` does: convolutions and elementwise functions; to rounding
//! through a matrix product), keeps going past the training length, and
//! allocates nothing.

use nn_runtime::prelude::*;
use nn_runtime::Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Dilations 1, 2, 4 with kernels of 2, eight tanh channels, residual
/// sums and a 1x1 output convolution (f32; short vectors: scalar loops).
#[network {
    input  x[1, 48];
    target y[1, 48];
    h0   = tanh(conv1d(x, 8, 2, causal));
    h1   = h0 + tanh(conv1d(h0, 8, 2, dilation = 2, causal));
    h2   = h1 + tanh(conv1d(h1, 8, 2, dilation = 4, causal));
    out  = conv1d(h2, 1, 1);
    loss = mse(out, y);
}]
pub struct Wave;

/// Kernels of 3, 16 channels (the activations go through the vectorised
/// kernels, in `predict` and in the step alike), tanh·sigmoid gates, a
/// per-channel parameter, relu, constants, three output channels.
#[network {
    input  x[2, 40];
    target y[3, 40];
    param scale[16] = uniform(0.5, 1.5);
    a    = conv1d(x, 16, 3, causal);
    g1   = tanh(conv1d(a, 16, 3, dilation = 2, causal)) * sigmoid(conv1d(a, 16, 3, dilation = 2, causal));
    r1   = a + scale * g1;
    g2   = relu(conv1d(r1, 16, 3, dilation = 4, causal)) + 0.5 * r1;
    out  = conv1d(g2, 3, 1) - 0.25;
    loss = mse(out, y);
}]
pub struct Gated;

/// f64, two input signals, a kernel of 2 with dilation 1 and 2, a
/// parameter-only scale computed at every step, and `dense` of a signal
/// (a matrix product per position).
#[network {
    dtype f64;
    input  x[1, 32];
    input  c[2, 32];
    target y[2, 32];
    param  s[4] = uniform(-1, 1);
    h    = softsign(conv1d(x, 4, 2, causal) + conv1d(c, 4, 2, dilation = 2, causal));
    k    = h * exp(s) + elu(conv1d(h, 4, 2, dilation = 2, causal));
    out  = dense(k, 2);
    loss = mse(out, y);
}]
pub struct Conditioned;

fn signal<const C: usize, const L: usize>(rng: &mut Rng) -> [[f32; L]; C] {
    let mut x = [[0.0; L]; C];
    for row in &mut x {
        for v in row.iter_mut() {
            *v = rng.uniform(-1.5, 1.5) as f32;
        }
    }
    x
}

#[test]
fn wave_streams_predict_bit_for_bit() {
    let mut rng = Rng::new(5);
    for seed in 0..4 {
        let net = Wave::new(seed);
        let x: [[f32; 48]; 1] = signal(&mut rng);
        let whole = net.predict(&x);
        let mut state = net.stream_state();
        for t in 0..48 {
            let y = net.stream_step(&mut state, &[x[0][t]]);
            assert_eq!(y[0].to_bits(), whole[0][t].to_bits(), "seed {seed}, t {t}");
        }
        // reset: the same again
        state.reset();
        assert_eq!(state, WaveStream::new());
        for t in 0..48 {
            assert_eq!(net.stream_step(&mut state, &[x[0][t]])[0], whole[0][t]);
        }
    }
}

#[test]
fn gated_streams_predict_bit_for_bit() {
    let mut rng = Rng::new(6);
    for seed in 0..3 {
        let net = Gated::new(seed);
        let x: [[f32; 40]; 2] = signal(&mut rng);
        let whole = net.predict(&x);
        let mut state = GatedStream::default();
        for t in 0..40 {
            let y = net.stream_step(&mut state, &[x[0][t], x[1][t]]);
            for o in 0..3 {
                assert_eq!(
                    y[o].to_bits(),
                    whole[o][t].to_bits(),
                    "seed {seed}, t {t}, channel {o}"
                );
            }
        }
    }
}

#[test]
fn conditioned_streams_predict_to_rounding() {
    let mut rng = Rng::new(7);
    let net = Conditioned::new(2);
    let mut x = [[0.0f64; 32]; 1];
    let mut c = [[0.0f64; 32]; 2];
    for v in x.iter_mut().chain(c.iter_mut()).flatten() {
        *v = rng.uniform(-2.0, 2.0);
    }
    let whole = net.predict(&(x, c));
    let mut state = net.stream_state();
    for t in 0..32 {
        let y = net.stream_step(&mut state, &([x[0][t]], [c[0][t], c[1][t]]));
        for o in 0..2 {
            let e = (y[o] - whole[o][t]).abs();
            assert!(
                e <= 1e-14 * (1.0 + whole[o][t].abs()),
                "t {t}, channel {o}: {} vs {}",
                y[o],
                whole[o][t]
            );
        }
    }
}

/// Past the compiled length: position `t` of a long stream is the last
/// position of `predict` on the 48 positions up to `t` (the receptive
/// field, 8 positions, fits in them), bit for bit.
#[test]
fn streams_go_on_past_the_signal_length() {
    let net = Wave::new(11);
    let mut rng = Rng::new(8);
    let long: Vec<f32> = (0..400).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
    let mut state = net.stream_state();
    for (t, &v) in long.iter().enumerate() {
        let y = net.stream_step(&mut state, &[v]);
        if t >= 47 {
            let mut window = [[0.0f32; 48]; 1];
            window[0].copy_from_slice(&long[t - 47..=t]);
            assert_eq!(
                y[0].to_bits(),
                net.predict(&window)[0][47].to_bits(),
                "t {t}"
            );
        }
    }
}

/// Trained weights stream as they predict.
#[test]
fn a_trained_net_still_streams_predict() {
    let mut rng = Rng::new(9);
    let inputs: Vec<[[f32; 48]; 1]> = (0..64).map(|_| signal(&mut rng)).collect();
    let targets: Vec<[[f32; 48]; 1]> = inputs
        .iter()
        .map(|x| {
            let mut y = [[0.0; 48]; 1];
            for t in 1..48 {
                y[0][t] = (0.7 * x[0][t] + 0.3 * x[0][t - 1]).tanh();
            }
            y
        })
        .collect();
    let data = Dataset::new(inputs.clone(), targets);
    let mut net = Wave::new(1);
    Trainer::new(Adam::new(3e-3))
        .epochs(3)
        .batch_size(16)
        .fit(&mut net, &data)
        .expect("trains");
    let whole = net.predict(&inputs[0]);
    let mut state = net.stream_state();
    for t in 0..48 {
        assert_eq!(
            net.stream_step(&mut state, &[inputs[0][0][t]])[0],
            whole[0][t]
        );
    }
}

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn stream_steps_do_not_allocate() {
    let (wave, gated) = (Wave::new(3), Gated::new(3));
    let mut ws = wave.stream_state();
    let mut gs = gated.stream_state();
    let mut sum = 0.0;
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    for t in 0..1000 {
        let v = (t as f32 * 0.01).sin();
        sum += wave.stream_step(&mut ws, &[v])[0];
        sum += gated.stream_step(&mut gs, &[v, -v])[2];
        if t == 500 {
            ws.reset();
        }
    }
    COUNTING.with(|c| c.set(false));
    assert!(std::hint::black_box(sum).is_finite());
    assert_eq!(COUNT.with(Cell::get), 0, "stream_step allocated");
}
