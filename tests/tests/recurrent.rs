//! Backpropagation through time: the generated backward pass of Elman, GRU
//! and LSTM cells, written in the definition language, against central
//! finite differences, at T = 1, 2 and 16, with and without truncation.
//!
//! Full BPTT is checked against the derivative of the whole loss. With
//! `truncate k` the state adjoint is cut where it would flow from step `t`
//! back to step `t - 1` for `t` a positive multiple of `k`: the gradient is
//! then, by definition, the sum over the chunks `[0, k)`, `[k, 2k)`, ... of
//! the derivative of the chunk's loss with the state entering the chunk held
//! fixed. The test computes that definition by finite differences through the
//! generated `step` function and compares.

use nn_runtime::prelude::*;
use nn_runtime::Rng;

/// One step of a recurrent net, for the truncated definition.
trait Recurrent: Network<Scalar = f64> {
    type State: Clone;
    type StepIn;
    fn init(&self) -> Self::State;
    fn step_once(&self, state: &mut Self::State, x: &Self::StepIn) -> [f64; 2];
    /// The input and target of sample `seed`.
    fn sample(seed: u64) -> (Self::Input, Self::Target);
    fn step_input(input: &Self::Input, t: usize) -> Self::StepIn;
    fn step_target(target: &Self::Target, t: usize) -> [f64; 2];
    const T: usize;
    const TRUNCATE: Option<usize>;
}

macro_rules! recurrent_net {
    ($name:ident, $t:literal, $trunc:expr, { $($def:tt)* }) => {
        #[network { dtype f64; steps $t; $($def)* }]
        pub struct $name;

        impl Recurrent for $name {
            type State = <$name as StateOf>::S;
            type StepIn = [f64; 3];
            fn init(&self) -> Self::State {
                self.initial_state()
            }
            fn step_once(&self, state: &mut Self::State, x: &[f64; 3]) -> [f64; 2] {
                self.step(state, x)
            }
            fn sample(seed: u64) -> ([[f64; 3]; $t], [[f64; 2]; $t]) {
                let mut rng = Rng::new(seed);
                let mut x = [[0.0; 3]; $t];
                let mut y = [[0.0; 2]; $t];
                for t in 0..$t {
                    for v in x[t].iter_mut() {
                        *v = rng.uniform(-1.0, 1.0);
                    }
                    for v in y[t].iter_mut() {
                        *v = rng.uniform(-1.0, 1.0);
                    }
                }
                (x, y)
            }
            fn step_input(input: &[[f64; 3]; $t], t: usize) -> [f64; 3] {
                input[t]
            }
            fn step_target(target: &[[f64; 2]; $t], t: usize) -> [f64; 2] {
                target[t]
            }
            const T: usize = $t;
            const TRUNCATE: Option<usize> = $trunc;
        }
    };
}

/// The state type of a generated recurrent net.
trait StateOf {
    type S: Clone;
}

macro_rules! state_of {
    ($($name:ident => $state:ident),* $(,)?) => {
        $(impl StateOf for $name { type S = $state; })*
    };
}

macro_rules! elman {
    ($name:ident, $t:literal, $trunc:expr $(, { $($extra:tt)* })?) => {
        recurrent_net!($name, $t, $trunc, {
            $($($extra)*)?
            input x[t][3]; target y[t][2];
            param h0[5] = uniform(-0.5, 0.5);
            state h[5] = h0;
            param wh[5, 5] = xavier;
            h[t] = tanh(wh @ h[t-1] + dense(x[t], 5));
            out[t] = dense(h[t], 2);
            loss = mean_steps(mse(out[t], y[t]));
        });
    };
}

macro_rules! gru {
    ($name:ident, $t:literal, $trunc:expr $(, { $($extra:tt)* })?) => {
        recurrent_net!($name, $t, $trunc, {
            $($($extra)*)?
            input x[t][3]; target y[t][2];
            state h[4] = zeros;
            param uz[4, 4] = xavier; param ur[4, 4] = xavier; param un[4, 4] = xavier;
            z[t] = sigmoid(dense(x[t], 4) + uz @ h[t-1]);
            r[t] = sigmoid(dense(x[t], 4) + ur @ h[t-1]);
            n[t] = tanh(dense(x[t], 4) + un @ (r[t] * h[t-1]));
            h[t] = (1 - z[t]) * n[t] + z[t] * h[t-1];
            out[t] = dense(h[t], 2);
            loss = mean_steps(mse(out[t], y[t]));
        });
    };
}

macro_rules! lstm {
    ($name:ident, $t:literal, $trunc:expr $(, { $($extra:tt)* })?) => {
        recurrent_net!($name, $t, $trunc, {
            $($($extra)*)?
            input x[t][3]; target y[t][2];
            state h[4] = zeros; state c[4] = constant(0.1);
            param ui[4, 4] = xavier; param uf[4, 4] = xavier;
            param uo[4, 4] = xavier; param ug[4, 4] = xavier;
            i[t] = sigmoid(dense(x[t], 4) + ui @ h[t-1]);
            f[t] = sigmoid(dense(x[t], 4) + uf @ h[t-1] + 1);
            o[t] = sigmoid(dense(x[t], 4) + uo @ h[t-1]);
            g[t] = tanh(dense(x[t], 4) + ug @ h[t-1]);
            c[t] = f[t] * c[t-1] + i[t] * g[t];
            h[t] = o[t] * tanh(c[t]);
            out[t] = dense(h[t], 2);
            loss = mean_steps(mse(out[t], y[t]));
        });
    };
}

elman!(Elman1, 1, None);
elman!(Elman2, 2, None);
elman!(Elman16, 16, None);
elman!(Elman2Trunc1, 2, Some(1), { truncate 1; });
elman!(Elman16Trunc4, 16, Some(4), { truncate 4; });
gru!(Gru1, 1, None);
gru!(Gru2, 2, None);
gru!(Gru16, 16, None);
gru!(Gru16Trunc5, 16, Some(5), { truncate 5; });
lstm!(Lstm1, 1, None);
lstm!(Lstm2, 2, None);
lstm!(Lstm16, 16, None);
lstm!(Lstm16Trunc4, 16, Some(4), { truncate 4; });

state_of!(
    Elman1 => Elman1State, Elman2 => Elman2State, Elman16 => Elman16State,
    Elman2Trunc1 => Elman2Trunc1State, Elman16Trunc4 => Elman16Trunc4State,
    Gru1 => Gru1State, Gru2 => Gru2State, Gru16 => Gru16State, Gru16Trunc5 => Gru16Trunc5State,
    Lstm1 => Lstm1State, Lstm2 => Lstm2State, Lstm16 => Lstm16State, Lstm16Trunc4 => Lstm16Trunc4State,
);

/// The per-step loss of the definitions above: mse(out, y) / T.
fn step_loss<N: Recurrent>(out: [f64; 2], y: [f64; 2]) -> f64 {
    ((out[0] - y[0]).powi(2) + (out[1] - y[1]).powi(2)) / 2.0 / N::T as f64
}

/// The loss by finite differences' definition: without truncation the whole
/// sequence's loss (through `forward`); with it, the sum over chunks, each
/// from the state entering it in the unperturbed run, which `fixed` holds.
fn truncated_loss<N: Recurrent>(net: &N, x: &N::Input, y: &N::Target, fixed: &[N::State]) -> f64 {
    let k = N::TRUNCATE.unwrap_or(N::T);
    let mut total = 0.0;
    for (chunk, start) in (0..N::T).step_by(k).enumerate() {
        let mut state = if start == 0 {
            net.init()
        } else {
            fixed[chunk].clone()
        };
        for t in start..(start + k).min(N::T) {
            let out = net.step_once(&mut state, &N::step_input(x, t));
            total += step_loss::<N>(out, N::step_target(y, t));
        }
    }
    total
}

fn check<N: Recurrent>() {
    for seed in 1..=3 {
        let mut net = N::new(seed);
        let (x, y) = N::sample(seed + 100);
        // `step` and `forward` compute the same loss
        let mut tape = N::new_tape();
        let loss = net.forward(&x, &y, &mut tape);
        let mut state = net.init();
        let by_steps: f64 = (0..N::T)
            .map(|t| {
                step_loss::<N>(
                    net.step_once(&mut state, &N::step_input(&x, t)),
                    N::step_target(&y, t),
                )
            })
            .sum();
        assert!(
            (loss - by_steps).abs() < 1e-12,
            "forward {loss} vs steps {by_steps}"
        );
        // the states entering each chunk, unperturbed
        let k = N::TRUNCATE.unwrap_or(N::T);
        let mut fixed = vec![];
        let mut state = net.init();
        for t in 0..N::T {
            if t % k == 0 {
                fixed.push(state.clone());
            }
            net.step_once(&mut state, &N::step_input(&x, t));
        }
        let mut grads = N::new_grads();
        net.forward(&x, &y, &mut tape);
        net.backward(&tape, &mut grads);
        let analytic: Vec<f64> = grads.as_slice().to_vec();
        let norm = analytic.iter().map(|g| g * g).sum::<f64>().sqrt();
        assert!(
            norm > 1e-3,
            "seed {seed}: gradient is trivially zero ({norm})"
        );
        let h = 1e-6;
        for (i, &a) in analytic.iter().enumerate() {
            let orig = net.params().as_slice()[i];
            net.params_mut().as_mut_slice()[i] = orig + h;
            let plus = truncated_loss(&net, &x, &y, &fixed);
            net.params_mut().as_mut_slice()[i] = orig - h;
            let minus = truncated_loss(&net, &x, &y, &fixed);
            net.params_mut().as_mut_slice()[i] = orig;
            let numeric = (plus - minus) / (2.0 * h);
            let err =
                (analytic[i] - numeric).abs() / analytic[i].abs().max(numeric.abs()).max(1e-4);
            let info = N::PARAM_INFO
                .iter()
                .find(|p| p.range().contains(&i))
                .unwrap();
            assert!(
                err < 1e-5,
                "seed {seed}: `{}`[{}]: analytic {a}, numeric {numeric}, relative error {err:e}",
                info.name,
                i - info.offset
            );
        }
    }
}

#[test]
fn elman_bptt_matches_finite_differences() {
    check::<Elman1>();
    check::<Elman2>();
    check::<Elman16>();
}

#[test]
fn gru_bptt_matches_finite_differences() {
    check::<Gru1>();
    check::<Gru2>();
    check::<Gru16>();
}

#[test]
fn lstm_bptt_matches_finite_differences() {
    check::<Lstm1>();
    check::<Lstm2>();
    check::<Lstm16>();
}

#[test]
fn truncated_bptt_matches_the_truncated_definition() {
    check::<Elman2Trunc1>();
    check::<Elman16Trunc4>();
    check::<Gru16Trunc5>();
    check::<Lstm16Trunc4>();
}

/// Truncation changes the gradient (so the checks above do test it), and
/// the recorded per-step norms of the carried adjoint are finite, zero only
/// where truncation cuts, and the cut is where `truncate` says.
#[test]
fn truncation_cuts_and_norms_are_recorded() {
    let full = Elman16::new(3);
    let mut cut = Elman16Trunc4::new(0);
    cut.params
        .as_mut_slice()
        .copy_from_slice(full.params.as_slice());
    let (x, y) = Elman16::sample(7);
    let (mut tf, mut tc) = (Elman16::new_tape(), Elman16Trunc4::new_tape());
    let (mut gf, mut gc) = (Elman16::new_grads(), Elman16Trunc4::new_grads());
    full.forward(&x, &y, &mut tf);
    cut.forward(&x, &y, &mut tc);
    let (mut nf, mut nc) = ([0.0; 16], [0.0; 16]);
    full.backward_traced(&tf, &mut gf, &mut nf);
    cut.backward_traced(&tc, &mut gc, &mut nc);
    assert_ne!(gf.as_slice(), gc.as_slice());
    assert!(nf.iter().all(|n| n.is_finite() && *n > 0.0), "{nf:?}");
    // the adjoint carried out of step t is what flows to t - 1; it still
    // exists (it is computed) but is not passed on at t = 4, 8, 12
    assert!(nc.iter().all(|n| n.is_finite()));
}

/// A state that runs for longer than training: `step` goes on past T.
#[test]
fn step_by_step_inference_runs_past_the_training_length() {
    let net = Elman2::new(1);
    let mut state = net.initial_state();
    let mut last = [0.0; 2];
    for t in 0..100 {
        last = net.step(&mut state, &[(t as f64 * 0.3).sin(), 0.5, -0.5]);
    }
    assert!(last.iter().all(|v| v.is_finite()));
    // and its first T steps are `predict`'s
    let xs = [[0.1, 0.2, 0.3], [0.4, -0.5, 0.6]];
    let seq = net.predict(&xs);
    let mut state = net.initial_state();
    for t in 0..2 {
        assert_eq!(net.step(&mut state, &xs[t]), seq[t]);
    }
}

/// The batched passes of a recurrent network (a batch of sequences, each
/// step's values a matrix with a column per sequence, BPTT over the batch)
/// give each sequence's loss and the summed gradient of the per-sequence
/// passes, learned initial state and truncation included.
fn batched_equals_per_sequence<N: Recurrent>() {
    let data: Vec<(N::Input, N::Target)> = (0..40).map(|s| N::sample(100 + s)).collect();
    let (inputs, targets): (Vec<_>, Vec<_>) = data.into_iter().unzip();
    let net = N::new(4);
    let mut work = N::new_batch_work();
    let mut tape = N::new_tape();
    assert_eq!(N::BATCH_WIDTHS, &[32, 4]);
    for &w in N::BATCH_WIDTHS {
        let idx: Vec<usize> = (0..w).map(|j| (7 * j + 3) % inputs.len()).collect();
        let (mut losses, mut correct) = (vec![0.0; w], vec![false; w]);
        let mut grads = N::new_grads();
        net.train_block(
            &inputs,
            &targets,
            &idx,
            &mut work,
            &mut grads,
            &mut losses,
            &mut correct,
        );
        let mut want = N::new_grads();
        for (j, &i) in idx.iter().enumerate() {
            let loss = net.forward(&inputs[i], &targets[i], &mut tape);
            net.backward(&tape, &mut want);
            assert!(
                (losses[j] - loss).abs() <= 1e-12 * loss.abs().max(1.0),
                "sequence {j}"
            );
        }
        let norm: f64 = want.as_slice().iter().map(|g| g * g).sum::<f64>().sqrt();
        assert!(norm > 1e-6);
        for (k, (a, b)) in grads.as_slice().iter().zip(want.as_slice()).enumerate() {
            assert!(
                (a - b).abs() <= 1e-10 * b.abs().max(1.0),
                "width {w}, gradient {k}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn batched_recurrent_passes_equal_per_sequence_passes() {
    batched_equals_per_sequence::<Elman1>();
    batched_equals_per_sequence::<Elman16>();
    batched_equals_per_sequence::<Elman16Trunc4>();
    batched_equals_per_sequence::<Gru16>();
    batched_equals_per_sequence::<Gru16Trunc5>();
    batched_equals_per_sequence::<Lstm16>();
    batched_equals_per_sequence::<Lstm16Trunc4>();
}

/// `m[t] = k[t-1]`: a state whose new value is another state's previous
/// one reads it before that state is overwritten, in every pass.
#[network {
    dtype f64;
    steps 4;
    input x[t][2];
    target y[t][2];
    param w[2] = uniform(-1, 1);
    state k[2] = zeros;
    state m[2] = constant(0.25);
    k[t] = w * 2 + x[t];
    m[t] = k[t-1];
    out[t] = x[t] + m[t-1];
    loss = sum_steps(sum(out[t] * y[t]));
}]
pub struct ChainedStates;

#[test]
fn a_state_reading_another_previous_state_sees_its_old_value() {
    let net = ChainedStates::new(3);
    let w = net.params.w;
    let x = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]];
    // m[-1] = 0.25, m[0] = k[-1] = 0, m[t] = k[t-1] = 2 w + x[t-1]
    let m_prev = |t: usize, i: usize| match t {
        0 => 0.25,
        1 => 0.0,
        _ => 2.0 * w[i] + x[t - 2][i],
    };
    let out = net.predict(&x);
    let mut state = net.initial_state();
    for t in 0..4 {
        let step = net.step(&mut state, &x[t]);
        for i in 0..2 {
            let want = x[t][i] + m_prev(t, i);
            assert!(
                (out[t][i] - want).abs() < 1e-12,
                "predict, step {t}: {out:?}"
            );
            assert!((step[i] - want).abs() < 1e-12, "step {t}: {step:?}");
        }
    }
    let y = [[1.0, -1.0], [0.5, 2.0], [-1.0, 1.0], [2.0, 0.25]];
    let want: f64 = (0..4)
        .map(|t| (0..2).map(|i| out[t][i] * y[t][i]).sum::<f64>())
        .sum();
    let mut tape = ChainedStates::new_tape();
    assert!((net.forward(&x, &y, &mut tape) - want).abs() < 1e-12);
    let mut batch = ChainedStates::new_batch_tape::<4>();
    let total = net.forward_batch::<4>(&[x; 4], &[y; 4], &mut batch);
    assert!((total - 4.0 * want).abs() < 1e-11);
}
