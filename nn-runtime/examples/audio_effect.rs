//! A causal dilated convolutional network (WaveNet-style) learns a
//! nonlinear audio effect, then runs as a real-time audio callback would:
//! one sample in, one sample out, through `stream_step`.
//!
//! The effect: a one-pole low-pass filter (cut-off 1 kHz at 16 kHz)
//! followed by soft clipping, `y = tanh(4 · lowpass(x))`. The audio: sums
//! of three sines (50 Hz to 4 kHz, random amplitudes and phases) and white
//! noise, at a random level per excerpt. The net: a 1x1 input convolution
//! to 16 channels, four gated residual layers (`tanh(conv) · sigmoid(conv)`
//! with kernels of 2 and dilations 1, 2, 4, 8, then a 1x1 convolution added
//! to the residual stream; a receptive field of 16 samples), and a 1x1
//! output convolution. It trains with the `Trainer` on batches of excerpts
//! of 256 samples, each effect computed from rest as the net sees it
//! (zeros before the excerpt). Then, on ten seconds of held-out audio: the
//! error-to-signal ratio `ESR = Σ (y - ŷ)² / Σ y²` of the streamed output,
//! the time per streamed sample, and a check that every streamed sample
//! equals `predict` on the excerpt around it.
//!
//! Run with `cargo run --release --example audio_effect` (from the
//! workspace root).

use nn_runtime::prelude::*;
use nn_runtime::Rng;
use std::error::Error;
use std::f64::consts::PI;
use std::hint::black_box;
use std::time::Instant;

/// Excerpt length of training and `predict`.
const L: usize = 256;

#[network {
    input  x[1, 256];
    target y[256];
    h0  = conv1d(x, 16, 1);
    z1  = tanh(conv1d(h0, 16, 2, causal)) * sigmoid(conv1d(h0, 16, 2, causal));
    h1  = h0 + conv1d(z1, 16, 1);
    z2  = tanh(conv1d(h1, 16, 2, dilation = 2, causal)) * sigmoid(conv1d(h1, 16, 2, dilation = 2, causal));
    h2  = h1 + conv1d(z2, 16, 1);
    z3  = tanh(conv1d(h2, 16, 2, dilation = 4, causal)) * sigmoid(conv1d(h2, 16, 2, dilation = 4, causal));
    h3  = h2 + conv1d(z3, 16, 1);
    z4  = tanh(conv1d(h3, 16, 2, dilation = 8, causal)) * sigmoid(conv1d(h3, 16, 2, dilation = 8, causal));
    h4  = h3 + conv1d(z4, 16, 1);
    out = flatten(conv1d(h4, 1, 1));
    loss = mse(out, y);
}]
pub struct Effect;

const RATE: f64 = 16_000.0;
const CUTOFF: f64 = 1_000.0;
const DRIVE: f64 = 4.0;
/// Samples before the output no longer depends on an input sample:
/// Σ dilation·(kernel - 1) over the layers.
const RECEPTIVE: usize = 1 + 2 + 4 + 8;
const TRAIN: usize = 3_000;
const EPOCHS: usize = 12;
const BATCH: usize = 32;
const LR: f64 = 3e-3;
/// Ten seconds of held-out audio.
const HELD_OUT: usize = 160_000;

/// Audio of `n` samples: excerpts of `chunk` samples, each a sum of three
/// sines and noise at its own level.
fn audio(rng: &mut Rng, n: usize, chunk: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let level = rng.uniform(0.05, 0.9);
        let tones: Vec<(f64, f64, f64)> = (0..3)
            .map(|_| {
                let f = 50.0 * (80f64).powf(rng.next_f64()); // 50 Hz .. 4 kHz
                (f, rng.uniform(0.2, 1.0), rng.uniform(0.0, 2.0 * PI))
            })
            .collect();
        let norm: f64 = tones.iter().map(|t| t.1).sum::<f64>() + 0.1;
        for k in 0..chunk.min(n - out.len()) {
            let t = k as f64 / RATE;
            let s: f64 = tones
                .iter()
                .map(|&(f, a, p)| a * (2.0 * PI * f * t + p).sin())
                .sum();
            out.push((level * (s + rng.normal(0.0, 0.05)) / norm) as f32);
        }
    }
    out
}

/// The effect on a signal starting from rest: one-pole low-pass, then
/// `tanh(DRIVE ·)`.
fn effect(x: &[f32]) -> Vec<f32> {
    let a = 1.0 - (-2.0 * PI * CUTOFF / RATE).exp();
    let mut lp = 0.0f64;
    x.iter()
        .map(|&v| {
            lp += a * (f64::from(v) - lp);
            (DRIVE * lp).tanh() as f32
        })
        .collect()
}

/// Error-to-signal ratio `Σ (y - ŷ)² / Σ y²`.
fn esr(y: &[f32], y_hat: &[f32]) -> f64 {
    let (mut e, mut s) = (0.0, 0.0);
    for (&a, &b) in y.iter().zip(y_hat) {
        e += f64::from(a - b).powi(2);
        s += f64::from(a).powi(2);
    }
    e / s
}

fn db(r: f64) -> f64 {
    10.0 * r.log10()
}

fn main() -> Result<(), Box<dyn Error>> {
    let start = Instant::now();
    let mut rng = Rng::new(1);
    let (mut inputs, mut targets) = (Vec::with_capacity(TRAIN), Vec::with_capacity(TRAIN));
    for _ in 0..TRAIN {
        let x = audio(&mut rng, L, L);
        let y = effect(&x);
        let (mut xa, mut ya) = ([[0.0f32; L]; 1], [0.0f32; L]);
        xa[0].copy_from_slice(&x);
        ya.copy_from_slice(&y);
        inputs.push(xa);
        targets.push(ya);
    }
    let train = Dataset::new(inputs, targets);
    println!(
        "audio effect: tanh({DRIVE} · one-pole low-pass at {CUTOFF} Hz), {RATE} Hz; \
         {TRAIN} training excerpts of {L} samples ({:.1} s of audio)",
        (TRAIN * L) as f64 / RATE
    );
    println!(
        "Effect: {} parameters, receptive field {} samples, forward {} FLOPs per excerpt",
        Effect::PARAMS,
        RECEPTIVE + 1,
        Effect::FORWARD_FLOPS
    );

    let mut net = Effect::new(1);
    let trained_at = Instant::now();
    let mut trainer = Trainer::new(Adam::new(LR))
        .epochs(EPOCHS)
        .batch_size(BATCH)
        .schedule(Schedule::cosine(0, EPOCHS * TRAIN.div_ceil(BATCH)))
        .clip(Clip::Norm(1.0))
        .seed(1)
        .threads(2)
        .progress(false);
    for report in trainer.train(&mut net, &train, None)? {
        let report = report?;
        println!(
            "  epoch {:>2}: train MSE {:.3e} ({:.1?})",
            report.epoch,
            report.loss,
            trained_at.elapsed()
        );
    }
    let training = trained_at.elapsed();

    // Held out: ten seconds of new audio, the effect run continuously over it.
    let mut rng = Rng::new(2);
    let x = audio(&mut rng, HELD_OUT, 4_000);
    let y = effect(&x);
    let mut y_hat = vec![0.0f32; HELD_OUT];
    let mut state = net.stream_state();
    // warm-up pass (caches, frequency), then the timed one from a new state
    for (v, o) in x.iter().zip(&mut y_hat) {
        *o = net.stream_step(&mut state, &[*v])[0];
    }
    state.reset();
    let timed = Instant::now();
    for (v, o) in x.iter().zip(&mut y_hat) {
        *o = black_box(net.stream_step(&mut state, black_box(&[*v])))[0];
    }
    let streaming = timed.elapsed();
    let per_sample = streaming.as_secs_f64() / HELD_OUT as f64;
    let ratio = esr(&y, &y_hat);
    println!(
        "held out ({:.0} s of audio, streamed sample by sample): ESR {:.2e} ({:.1} dB); \
         the input as the output: ESR {:.2e} ({:.1} dB)",
        HELD_OUT as f64 / RATE,
        ratio,
        db(ratio),
        esr(&y, &x),
        db(esr(&y, &x))
    );
    println!(
        "stream_step: {:.0} ns per sample ({:.1?} for {HELD_OUT}); real-time factor at 48 kHz: {:.1}x \
         (one sample every {:.1} µs); state {} bytes",
        per_sample * 1e9,
        streaming,
        1.0 / (48_000.0 * per_sample),
        1e6 / 48_000.0,
        std::mem::size_of::<EffectStream>()
    );

    // `predict` on excerpts of L samples, overlapping by the receptive
    // field: from position RECEPTIVE of an excerpt on (everywhere in the
    // first), its output sees no padding and must equal the stream's.
    let (mut checked, mut equal, mut largest) = (0usize, 0usize, 0.0f32);
    let mut from = 0;
    loop {
        let at = from.min(HELD_OUT - L);
        let mut excerpt = [[0.0f32; L]; 1];
        excerpt[0].copy_from_slice(&x[at..at + L]);
        let whole = net.predict(&excerpt);
        let first = if at == 0 { 0 } else { RECEPTIVE };
        for p in first..L {
            let (a, b) = (whole[p], y_hat[at + p]);
            checked += 1;
            equal += usize::from(a.to_bits() == b.to_bits());
            largest = largest.max((a - b).abs());
        }
        if at == HELD_OUT - L {
            break;
        }
        from = at + L - RECEPTIVE;
    }
    println!(
        "stream_step against predict: {equal} of {checked} samples bit for bit equal, \
         largest difference {largest:e}"
    );
    println!("training {training:.1?}; total {:.1?}", start.elapsed());
    if equal != checked {
        return Err("the streamed output differs from predict".into());
    }
    Ok(())
}
