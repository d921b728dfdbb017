//! The batched form (`forward_batch`, `backward_batch`: a mini-batch as
//! matrix-matrix work) computes exactly what the per-sample form computes,
//! summed over the batch: the same loss and the same gradients, for every
//! kind of op that has a batched form.

use nn_runtime::prelude::*;
use nn_runtime::Rng;

#[network { dtype f64; input x[2]; target y[1];
    h = sigmoid(dense(x, 4)); out = sigmoid(dense(h, 1)); loss = mse(out, y); }]
pub struct Xor;

#[network { dtype f64; input x[6]; target label: class[4];
    h = relu(dense(x, 8, he)); logits = dense(h, 4); loss = softmax_cross_entropy(logits, label); }]
pub struct Classifier;

#[network { dtype f64; input x[5]; input s; target y[3]; target p[3];
    param w[4, 5] = xavier; param v[5, 3] = xavier; param c;
    fn gated(z) = z * sigmoid(z);
    a = gated(w @ x) * c + s;
    b = (x * s) @ v + concat(a[0:2], softmax(a[1:4])[0:1]);
    out = tanh(b) + where(b > 0, b, 0.5 * b);
    loss = mse(out, y) + softmax_cross_entropy(b, softmax(p)) + logsumexp(a) * 0.1 + sum(abs(x * c)) / 5; }]
pub struct Mixed;

#[network { dtype f64; input x[5]; target y[2];
    h = dense(x, 6); n = layer_norm(h); out = dense(tanh(n), 2); loss = mse(out, y); }]
pub struct LayerNormed;

fn random<const N: usize>(rng: &mut Rng) -> [f64; N] {
    std::array::from_fn(|_| rng.uniform(-1.0, 1.0))
}

/// Checks `forward_batch`/`backward_batch` against `B` per-sample passes.
macro_rules! same_as_per_sample {
    ($net:ty, $b:literal, $sample:expr) => {{
        let mut rng = Rng::new(11);
        let mut net = <$net>::new(3);
        for v in net.params.as_mut_slice() {
            *v += rng.uniform(-0.3, 0.3);
        }
        let data: Vec<_> = (0..$b).map(|_| $sample(&mut rng)).collect();
        let inputs: [_; $b] = std::array::from_fn(|j| data[j].0);
        let targets: [_; $b] = std::array::from_fn(|j| data[j].1);
        // per sample
        let mut tape = <$net>::new_tape();
        let mut grads = <$net>::new_grads();
        let mut loss = 0.0;
        for j in 0..$b {
            loss += net.forward(&inputs[j], &targets[j], &mut tape);
            net.backward(&tape, &mut grads);
        }
        // batched, twice on the same tape (a reused tape must not leak)
        let mut btape = <$net>::new_batch_tape::<$b>();
        for _ in 0..2 {
            let mut bgrads = <$net>::new_grads();
            let bloss = net.forward_batch(&inputs, &targets, &mut btape);
            net.backward_batch(&mut btape, &mut bgrads);
            assert!(
                (bloss - loss).abs() <= 1e-10 * loss.abs().max(1.0),
                "loss: batched {bloss}, per sample {loss}"
            );
            let norm: f64 = grads.as_slice().iter().map(|g| g * g).sum::<f64>().sqrt();
            assert!(norm > 1e-3, "gradient is trivially zero");
            for (k, (a, b)) in bgrads.as_slice().iter().zip(grads.as_slice()).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-10 * b.abs().max(1.0),
                    "gradient {k}: batched {a}, per sample {b}"
                );
            }
        }
    }};
}

#[test]
fn xor_batch_equals_per_sample() {
    same_as_per_sample!(Xor, 4, |r: &mut Rng| (random::<2>(r), random::<1>(r)));
}

#[test]
fn classifier_batch_equals_per_sample() {
    same_as_per_sample!(Classifier, 7, |r: &mut Rng| (random::<6>(r), r.below(4)));
    same_as_per_sample!(Classifier, 1, |r: &mut Rng| (random::<6>(r), r.below(4)));
}

#[test]
fn mixed_ops_batch_equals_per_sample() {
    same_as_per_sample!(Mixed, 5, |r: &mut Rng| (
        (random::<5>(r), r.uniform(-1.0, 1.0)),
        (random::<3>(r), random::<3>(r))
    ));
}

/// `Network::train_block` and `eval_block` (what the trainer runs): for
/// every compiled width, over samples picked by index from a data set, the
/// same gradient, losses and correctness as the per-sample passes.
fn blocks_equal_per_sample<N: Network<Scalar = f64>>(data: &Dataset<N::Input, N::Target>) {
    let mut rng = Rng::new(5);
    let net = N::new(2);
    let mut work = N::new_batch_work();
    let mut tape = N::new_tape();
    assert!(!N::BATCH_WIDTHS.is_empty());
    for &w in N::BATCH_WIDTHS {
        let idx: Vec<usize> = (0..w).map(|_| rng.below(data.len())).collect();
        let (mut losses, mut correct) = (vec![0.0; w], vec![false; w]);
        let mut grads = N::new_grads();
        net.train_block(
            &data.inputs,
            &data.targets,
            &idx,
            &mut work,
            &mut grads,
            &mut losses,
            &mut correct,
        );
        let mut want = N::new_grads();
        for (j, &i) in idx.iter().enumerate() {
            let (x, y) = (&data.inputs[i], &data.targets[i]);
            let loss = net.forward(x, y, &mut tape);
            net.backward(&tape, &mut want);
            assert!(
                (losses[j] - loss).abs() <= 1e-12 * loss.abs().max(1.0),
                "width {w}, sample {j}"
            );
            assert_eq!(
                correct[j],
                N::is_correct(&net.predict(x), y),
                "width {w}, sample {j}"
            );
            // the output is on the tape unless it is a parameter
            if let Some(o) = N::tape_output(&tape) {
                assert_eq!(N::is_correct(&o, y), correct[j]);
            }
        }
        for (a, b) in grads.as_slice().iter().zip(want.as_slice()) {
            assert!(
                (a - b).abs() <= 1e-10 * b.abs().max(1.0),
                "width {w}: {a} vs {b}"
            );
        }
        let (mut elosses, mut ecorrect) = (vec![0.0; w], vec![false; w]);
        net.eval_block(
            &data.inputs,
            &data.targets,
            &idx,
            &mut work,
            &mut elosses,
            &mut ecorrect,
        );
        assert_eq!((elosses, ecorrect), (losses, correct));
    }
}

#[test]
fn training_blocks_equal_per_sample_passes() {
    let mut rng = Rng::new(9);
    let n = 100;
    let xor = Dataset::new(
        (0..n).map(|_| random::<2>(&mut rng)).collect(),
        (0..n).map(|_| random::<1>(&mut rng)).collect(),
    );
    blocks_equal_per_sample::<Xor>(&xor);
    let cls = Dataset::new(
        (0..n).map(|_| random::<6>(&mut rng)).collect(),
        (0..n).map(|_| rng.below(4)).collect(),
    );
    blocks_equal_per_sample::<Classifier>(&cls);
    let shared = Dataset::new(
        (0..n).map(|_| random::<2>(&mut rng)).collect(),
        (0..n).map(|_| random::<3>(&mut rng)).collect(),
    );
    blocks_equal_per_sample::<SharedOutput>(&shared);
    let residual = Dataset::new(
        (0..n).map(|_| random::<2>(&mut rng)).collect(),
        (0..n).map(|_| random::<1>(&mut rng)).collect(),
    );
    blocks_equal_per_sample::<Residual>(&residual);
}

// A loss holding first and second derivatives (`grad` of `grad`): its
// batched passes hold the derivative passes for every sample's column.
#[network { dtype f64; input p[2]; target f[1];
    h = tanh(dense(p, 6)); u = sum(p * p) * dense(h, 1);
    du = grad(sum(u), p); dux = grad(sum(du[0:1]), p);
    output u; loss = mse(dux[0:1] + du[1:2], f); }]
pub struct Residual;

// The output is a parameter, the same for every sample (found by the
// definition generator: the batched block read it from the tape).
#[network { dtype f64; param p[3] = uniform(-1, 1); input x[2]; target y[3];
    out = p; output out; loss = mse(out, y) + 0.01 * sum(x * x); }]
pub struct SharedOutput;

#[test]
fn layer_norm_batch_equals_per_sample() {
    same_as_per_sample!(LayerNormed, 9, |r: &mut Rng| (
        random::<5>(r),
        random::<2>(r)
    ));
}

// Per-sample matrices and images: convolutions (their weight gradients
// summed over the batch as they are computed), poolings, reshapes, a bias
// along a signal's rows, a shared image parameter, a rank-2 input.
#[network { dtype f64; input x[2, 9]; target y[3];
    h = tanh(conv1d(x, 3, 3, stride = 2, padding = 2, dilation = 2));
    c = conv1d(h, 2, 2, causal);
    m = max_pool1d(c, 2, stride = 1) + avg_pool1d(c, 2, 1);
    g = global_avg_pool(c) * sum(m, 1);
    out = dense(concat(flatten(m), g), 3);
    loss = mse(out, y); }]
pub struct Signal;

#[network { dtype f64; input x[2, 6, 5]; target label: class[3];
    param s[2, 6, 5] = uniform(-1, 1);
    h = relu(conv2d(x * s, 4, 3, padding = 1));
    p = max_pool2d(h, 2) + avg_pool2d(h, 2);
    q = conv2d(p, 2, 2, stride = 1, padding = 1, dilation = 2);
    logits = dense(flatten(q), 3) + dense(global_avg_pool(reshape(h, 4, 30)), 3);
    loss = softmax_cross_entropy(logits, label); }]
pub struct Image;

#[test]
fn convolutions_and_poolings_batch_equal_per_sample() {
    same_as_per_sample!(Signal, 5, |r: &mut Rng| {
        let x: [[f64; 9]; 2] = [random::<9>(r), random::<9>(r)];
        (x, random::<3>(r))
    });
    same_as_per_sample!(Image, 3, |r: &mut Rng| (random::<60>(r), r.below(3)));
    let mut rng = Rng::new(4);
    let images = Dataset::new(
        (0..40).map(|_| random::<60>(&mut rng)).collect(),
        (0..40).map(|_| rng.below(3)).collect(),
    );
    blocks_equal_per_sample::<Image>(&images);
}

// an embedding: each sample's token picks its row; the weight's gradient
// adds each sample's adjoint into its own token's row (two samples may share one)
#[network { dtype f64; input tok: class[5]; input x[3]; target y[2];
    e = embedding(tok, 4);
    h = tanh(dense(x, 4)) * e + e;
    out = dense(h, 2);
    loss = mse(out, y); }]
pub struct Embedded;

#[test]
fn embedding_batch_equals_per_sample() {
    same_as_per_sample!(Embedded, 7, |r: &mut Rng| (
        (r.below(5), random::<3>(r)),
        random::<2>(r)
    ));
}

// A per-sample vector tiled into a per-sample matrix along its rows, a
// shared one along its columns.
#[network { dtype f64; input x[4]; target y[3]; param w[3, 4] = xavier;
    param u[3] = uniform(-1, 1);
    m = tanh(w * tile_rows(x, 3) + tile_cols(u, 4));
    out = sum(m, 1) + u;
    loss = mse(out, y); }]
pub struct Tiled;

#[test]
fn tiled_vectors_batch_equal_per_sample() {
    same_as_per_sample!(Tiled, 5, |r: &mut Rng| (random::<4>(r), random::<3>(r)));
}
