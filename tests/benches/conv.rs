//! Convolution layers, generated vs hand-written, side by side.
//!
//! Two layers, each trained alone against an MSE target so that the step is
//! the convolution's forward pass, its weight and bias gradients and
//! nothing else of note:
//! - `conv1d`: a signal of 16 channels × 128 samples to 32 channels, kernel
//!   3, padding 1;
//! - `conv2d`: an image of 8 channels × 16 × 16 to 16 channels, kernel 3 × 3,
//!   padding 1;
//!
//! each output flattened (a copy) to meet a flat target.
//!
//! Each group holds:
//! - `generated/step_b32`: `forward_batch` + `backward_batch` over 32
//!   samples (the batched passes: the input unfolded into the batch tape,
//!   one matrix product through the runtime's GEMM for the forward pass and
//!   one for the weight gradient);
//! - `generated/step_b1`: `forward` + `backward` of one sample (direct
//!   loops, no unfolding);
//! - `handwritten/step_b32` and `handwritten/step_b1`: the same steps by
//!   hand, one sample at a time: straightforward direct loops over output
//!   channel, input channel and tap, the innermost along the contiguous
//!   positions (which the compiler vectorises), the gradient checked against
//!   the generated one before timing.
//!
//! Throughput is in elements = FLOPs (`FORWARD_FLOPS + BACKWARD_FLOPS` per
//! sample), so criterion's `thrpt` line reads as FLOP/s.
//! `cargo bench -p nn-tests --bench conv`; `NN_BENCH_QUICK=1` shortens runs.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use nn_runtime::prelude::*;
use nn_tests::Lcg;
use std::hint::black_box;
use std::time::Duration;

const B: usize = 32;

fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    if std::env::var_os("NN_BENCH_QUICK").is_some() {
        g.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(600))
            .sample_size(20);
    } else {
        g.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(30);
    }
}

/// `c` channels of `n` values each, uniform in [-1, 1].
fn random<const N: usize>(rng: &mut Lcg) -> Box<[f32; N]> {
    let mut v = Box::new([0.0f32; N]);
    for x in v.iter_mut() {
        *x = rng.uniform(-1.0, 1.0) as f32;
    }
    v
}

/// A convolution by hand, one sample: `y = conv(x, w) + b` over a flat
/// `[ci, h, w]` input (`h = 1` for a signal), stride 1, `k × k` kernel
/// (`1 × k` for a signal), zero padding `p`; then the MSE against `t` and,
/// into `gw`, `gb`, its gradient.
#[allow(clippy::too_many_arguments)]
fn hand_step(
    (ci, co, h, w, kh, kw, p): (usize, usize, usize, usize, usize, usize, usize),
    x: &[f32],
    t: &[f32],
    wt: &[f32],
    bias: &[f32],
    y: &mut [f32],
    gw: &mut [f32],
    gb: &mut [f32],
) -> f32 {
    let (ph, pw) = (if kh > 1 { p } else { 0 }, p);
    let n = (co * h * w) as f32;
    // forward: y[o][i][j] = b[o] + Σ_{c,u,v} w[o][c][u][v] x[c][i+u-ph][j+v-pw]
    for o in 0..co {
        y[o * h * w..(o + 1) * h * w].fill(bias[o]);
        for c in 0..ci {
            for u in 0..kh {
                for v in 0..kw {
                    let wv = wt[((o * ci + c) * kh + u) * kw + v];
                    for i in 0..h {
                        let si = i as isize + u as isize - ph as isize;
                        if si < 0 || si >= h as isize {
                            continue;
                        }
                        let (j0, j1) = (pw.saturating_sub(v), (w + pw - v).min(w));
                        let (yr, xr) = (o * h * w + i * w, c * h * w + si as usize * w);
                        for j in j0..j1 {
                            y[yr + j] += wv * x[xr + j + v - pw];
                        }
                    }
                }
            }
        }
    }
    // loss and its adjoint, in place of y
    let mut loss = 0.0;
    for (yv, tv) in y.iter_mut().zip(t) {
        let e = *yv - tv;
        loss += e * e;
        *yv = 2.0 * e / n;
    }
    // weight and bias gradients: gw[o][c][u][v] += Σ_{i,j} d[o][i][j] x[c][i+u-ph][j+v-pw]
    for o in 0..co {
        gb[o] += y[o * h * w..(o + 1) * h * w].iter().sum::<f32>();
        for c in 0..ci {
            for u in 0..kh {
                for v in 0..kw {
                    let mut s = 0.0;
                    for i in 0..h {
                        let si = i as isize + u as isize - ph as isize;
                        if si < 0 || si >= h as isize {
                            continue;
                        }
                        let (j0, j1) = (pw.saturating_sub(v), (w + pw - v).min(w));
                        let (yr, xr) = (o * h * w + i * w, c * h * w + si as usize * w);
                        for j in j0..j1 {
                            s += y[yr + j] * x[xr + j + v - pw];
                        }
                    }
                    gw[((o * ci + c) * kh + u) * kw + v] += s;
                }
            }
        }
    }
    loss / n
}

#[network { input x[16, 128]; target y[4096];
    h = flatten(conv1d(x, 32, 3, padding = 1)); loss = mse(h, y); }]
struct Conv1dLayer;

#[network { input x[8, 16, 16]; target y[4096];
    h = flatten(conv2d(x, 16, 3, padding = 1)); loss = mse(h, y); }]
struct Conv2dLayer;

/// The four steps of one layer. `geometry`: (in channels, out channels,
/// height, width, kernel height, kernel width, padding); `flat_in`,
/// `flat_out` view one sample's input and target as flat slices.
fn layer<N, const I: usize, const O: usize>(
    c: &mut Criterion,
    name: &str,
    geometry: (usize, usize, usize, usize, usize, usize, usize),
    batch: impl Fn(&N, &[N::Input; B], &[N::Target; B], &mut N::Params),
    flat_in: impl Fn(&N::Input) -> &[f32],
    flat_out: impl Fn(&N::Target) -> &[f32],
    make: impl Fn(Box<[f32; I]>, Box<[f32; O]>) -> (N::Input, N::Target),
) where
    N: Network<Scalar = f32>,
    N::Input: Clone,
    N::Target: Clone,
{
    let mut rng = Lcg::new(3);
    let samples: Vec<(N::Input, N::Target)> = (0..B)
        .map(|_| make(random::<I>(&mut rng), random::<O>(&mut rng)))
        .collect();
    let xs: Box<[N::Input; B]> = samples
        .iter()
        .map(|s| s.0.clone())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap_or_else(|_| unreachable!("B samples"));
    let ts: Box<[N::Target; B]> = samples
        .iter()
        .map(|s| s.1.clone())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap_or_else(|_| unreachable!("B samples"));
    let net = N::new(1);
    let mut tape = N::new_tape();
    let mut grads = N::new_grads();
    let params = net.params().as_slice().to_vec();
    let (ci, co, _, _, kh, kw, _) = geometry;
    let (wt, bias) = params.split_at(co * ci * kh * kw);
    let mut y = vec![0.0f32; O];
    let mut hg = vec![0.0f32; params.len()];

    // the hand-written gradient is the generated one
    net.forward(&samples[0].0, &samples[0].1, &mut tape);
    net.backward(&tape, &mut grads);
    {
        let (gw, gb) = hg.split_at_mut(co * ci * kh * kw);
        let (x, t) = (flat_in(&samples[0].0), flat_out(&samples[0].1));
        hand_step(geometry, x, t, wt, bias, &mut y, gw, gb);
    }
    for (a, b) in hg.iter().zip(grads.as_slice()) {
        assert!(
            (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
            "hand {a} vs generated {b}"
        );
    }

    let mut g = c.benchmark_group(name);
    configure(&mut g);
    g.throughput(Throughput::Elements(
        B as u64 * (N::FORWARD_FLOPS + N::BACKWARD_FLOPS),
    ));
    g.bench_function("generated/step_b32", |bench| {
        bench.iter(|| batch(&net, black_box(&xs), &ts, &mut grads))
    });
    g.bench_function("handwritten/step_b32", |bench| {
        bench.iter(|| {
            let (gw, gb) = hg.split_at_mut(co * ci * kh * kw);
            let mut loss = 0.0;
            for (x, t) in samples.iter() {
                loss += hand_step(
                    geometry,
                    flat_in(black_box(x)),
                    flat_out(t),
                    wt,
                    bias,
                    &mut y,
                    gw,
                    gb,
                );
            }
            black_box(loss)
        })
    });
    g.throughput(Throughput::Elements(N::FORWARD_FLOPS + N::BACKWARD_FLOPS));
    g.bench_function("generated/step_b1", |bench| {
        bench.iter(|| {
            let loss = net.forward(black_box(&samples[0].0), &samples[0].1, &mut tape);
            net.backward(&tape, &mut grads);
            black_box(loss)
        })
    });
    g.bench_function("handwritten/step_b1", |bench| {
        bench.iter(|| {
            let (gw, gb) = hg.split_at_mut(co * ci * kh * kw);
            let (x, t) = (flat_in(black_box(&samples[0].0)), flat_out(&samples[0].1));
            black_box(hand_step(geometry, x, t, wt, bias, &mut y, gw, gb))
        })
    });
    g.finish();
}

fn conv1d(c: &mut Criterion) {
    let mut tape = Conv1dLayer::new_batch_tape::<B>();
    let tape = std::cell::RefCell::new(&mut tape);
    layer::<Conv1dLayer, 2048, 4096>(
        c,
        "conv1d",
        (16, 32, 1, 128, 1, 3, 1),
        |net, xs, ts, grads| {
            let mut tape = tape.borrow_mut();
            let loss = net.forward_batch::<B>(xs, ts, &mut tape);
            net.backward_batch::<B>(&mut tape, grads);
            black_box(loss);
        },
        |x| x.as_flattened(),
        |t| &t[..],
        |x, t| {
            (
                std::array::from_fn(|c| x[c * 128..(c + 1) * 128].try_into().unwrap()),
                *t,
            )
        },
    );
}

fn conv2d(c: &mut Criterion) {
    let mut tape = Conv2dLayer::new_batch_tape::<B>();
    let tape = std::cell::RefCell::new(&mut tape);
    layer::<Conv2dLayer, 2048, 4096>(
        c,
        "conv2d",
        (8, 16, 16, 16, 3, 3, 1),
        |net, xs, ts, grads| {
            let mut tape = tape.borrow_mut();
            let loss = net.forward_batch::<B>(xs, ts, &mut tape);
            net.backward_batch::<B>(&mut tape, grads);
            black_box(loss);
        },
        |x| &x[..],
        |t| &t[..],
        |x, t| (*x, *t),
    );
}

criterion_group!(benches, conv1d, conv2d);
criterion_main!(benches);
