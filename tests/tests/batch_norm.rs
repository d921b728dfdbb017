//! `batch_norm(x)`: the batched training passes against central finite
//! differences of the whole batch's loss, the running statistics against
//! PyTorch's update rule worked by hand, inference (per-sample passes,
//! `predict`, batched with the batch statistics off) on the running
//! statistics, the Trainer's rules, and checkpoints keeping the buffers.

use nn_runtime::prelude::*;

#[network { dtype f64; input x[3]; target y[2];
    a = tanh(dense(x, 4));
    h = batch_norm(a);
    out = dense(h, 2);
    loss = mse(out, y); }]
pub struct Normed;

#[network { dtype f64; input x[3]; target y[3];
    h = batch_norm(x);
    loss = mse(h, y); }]
pub struct Plain;

const B: usize = 4;

fn batch() -> ([[f64; 3]; B], [[f64; 2]; B]) {
    (
        [
            [0.7, -1.3, 0.4],
            [2.1, -0.2, 0.9],
            [-0.5, 0.8, -1.1],
            [0.3, 0.1, 1.7],
        ],
        [[0.3, -0.8], [0.5, 0.1], [-0.4, 0.9], [0.2, -0.6]],
    )
}

fn batch_loss(net: &Normed) -> f64 {
    let (x, y) = batch();
    let mut tape = Normed::new_batch_tape::<B>();
    net.forward_batch(&x, &y, &mut tape)
}

#[test]
fn the_batched_gradient_is_the_derivative_of_the_whole_batchs_loss() {
    let mut net = Normed::new(5);
    // weights away from their initial ones and zeros, so that every term counts
    for (k, w) in net.params.as_mut_slice().iter_mut().enumerate() {
        *w += 0.1 * ((k as f64) * 0.37).sin();
    }
    let (x, y) = batch();
    let mut tape = Normed::new_batch_tape::<B>();
    net.forward_batch(&x, &y, &mut tape);
    let mut grads = Normed::new_grads();
    net.backward_batch(&mut tape, &mut grads);
    let analytic = grads.as_slice().to_vec();
    let eps = 1e-6;
    let (mut worst, mut first_layer) = (0.0f64, 0.0f64);
    for (k, &a) in analytic.iter().enumerate() {
        let w = net.params.as_slice()[k];
        net.params.as_mut_slice()[k] = w + eps;
        let up = batch_loss(&net);
        net.params.as_mut_slice()[k] = w - eps;
        let down = batch_loss(&net);
        net.params.as_mut_slice()[k] = w;
        let numeric = (up - down) / (2.0 * eps);
        worst = worst.max((numeric - a).abs() / numeric.abs().max(1e-3));
        if k < 16 {
            first_layer += a * a;
        }
    }
    // the weights before the batch norm get their gradient through the batch statistics
    assert!(first_layer.sqrt() > 1e-3, "trivially zero: {first_layer}");
    assert!(worst < 1e-6, "relative error {worst}");
    // the per-sample backward (inference mode) differs: the statistics are not the batch's
    let mut per_sample = Normed::new_grads();
    let mut t = Normed::new_tape();
    for j in 0..B {
        net.forward(&x[j], &y[j], &mut t);
        net.backward(&t, &mut per_sample);
    }
    assert!(per_sample.a_weight != grads.a_weight);
}

#[test]
fn training_normalises_with_the_batch_and_moves_the_running_statistics_as_pytorch() {
    let mut net = Plain::new(1);
    let (x, _) = batch();
    let y = [[0.0; 3]; B];
    let mut tape = Plain::new_batch_tape::<B>();
    let loss = net.forward_batch(&x, &y, &mut tape);
    let mut expected_loss = 0.0;
    for i in 0..3 {
        let mean = x.iter().map(|s| s[i]).sum::<f64>() / B as f64;
        let ss = x.iter().map(|s| (s[i] - mean).powi(2)).sum::<f64>();
        let (biased, unbiased) = (ss / B as f64, ss / (B - 1) as f64);
        // each sample's loss is the mean of its squared normalised values
        expected_loss += B as f64 * biased / (biased + 1e-5) / 3.0;
        assert!((tape.__nn_bn0_mean[i] - mean).abs() < 1e-15);
        assert!((tape.__nn_bn0_var[i] - unbiased).abs() < 1e-14);
    }
    assert!(
        (loss - expected_loss).abs() < 1e-12,
        "{loss} vs {expected_loss}"
    );
    assert!(net.update_running_stats(&mut tape));
    // once per batch: the same statistics again change nothing
    assert!(!net.update_running_stats(&mut tape));
    // nor does an inference-mode pass
    tape.set_batch_statistics(false);
    net.forward_batch(&x, &y, &mut tape);
    assert!(!net.update_running_stats(&mut tape));
    // a second training batch (the same samples) moves them again
    tape.set_batch_statistics(true);
    net.forward_batch(&x, &y, &mut tape);
    assert!(net.update_running_stats(&mut tape));
    for i in 0..3 {
        let mean = x.iter().map(|s| s[i]).sum::<f64>() / B as f64;
        let var = x.iter().map(|s| (s[i] - mean).powi(2)).sum::<f64>() / (B - 1) as f64;
        // twice: r = 0.9 r + 0.1 batch, from mean 0 and variance 1
        let (m1, v1) = (0.1 * mean, 0.9 + 0.1 * var);
        let (m2, v2) = (0.9 * m1 + 0.1 * mean, 0.9 * v1 + 0.1 * var);
        assert!((net.params.h_running_mean[i] - m2).abs() < 1e-14);
        assert!((net.params.h_running_var[i] - v2).abs() < 1e-14);
    }
    assert_eq!(net.params.h_num_batches_tracked, 2.0);
    // the optimisers' view holds the weight and bias only
    assert_eq!(Plain::PARAMS, 6);
    assert_eq!(net.params.as_slice().len(), 6);
    assert_eq!(net.params.buffers().len(), 7);
}

#[test]
fn inference_uses_the_running_statistics_everywhere() {
    let mut net = Normed::new(2);
    net.params.h_running_mean = [0.1, -0.2, 0.3, 0.05];
    net.params.h_running_var = [0.5, 1.5, 2.0, 0.8];
    net.params.h_weight = [1.2, 0.7, -0.4, 1.0];
    net.params.h_bias = [0.1, 0.0, -0.3, 0.2];
    let (x, y) = batch();
    let mut batch_tape = Normed::new_batch_tape::<B>();
    batch_tape.set_batch_statistics(false);
    let batched = net.forward_batch(&x, &y, &mut batch_tape);
    let mut sum = 0.0;
    let mut tape = Normed::new_tape();
    for j in 0..B {
        let loss = net.forward(&x[j], &y[j], &mut tape);
        // forward's loss is that of predict's output
        let out = net.predict(&x[j]);
        let mse = ((out[0] - y[j][0]).powi(2) + (out[1] - y[j][1]).powi(2)) / 2.0;
        assert!((loss - mse).abs() < 1e-14);
        sum += loss;
        // by hand: h = (a - running_mean) / sqrt(running_var + eps) * weight + bias
        let mut out = net.params.out_bias;
        for u in 0..4 {
            let a = (0..3)
                .map(|i| net.params.a_weight[u][i] * x[j][i])
                .sum::<f64>()
                + net.params.a_bias[u];
            let p = &net.params;
            let h = (a.tanh() - p.h_running_mean[u]) / (p.h_running_var[u] + 1e-5).sqrt()
                * p.h_weight[u]
                + p.h_bias[u];
            for (o, row) in out.iter_mut().zip(&p.out_weight) {
                *o += row[u] * h;
            }
        }
        let predicted = net.predict(&x[j]);
        for o in 0..2 {
            assert!((predicted[o] - out[o]).abs() < 1e-14);
        }
    }
    assert!((batched - sum).abs() < 1e-12, "{batched} vs {sum}");
}

fn data(n: usize) -> Dataset<[f64; 3], [f64; 2]> {
    let mut rng = nn_runtime::Rng::new(9);
    let mut xs = vec![];
    let mut ys = vec![];
    for _ in 0..n {
        let x = [
            rng.normal(0.0, 1.0),
            rng.normal(1.0, 2.0),
            rng.normal(0.0, 1.0),
        ];
        ys.push([x[0] * x[1], x[2] - x[0]]);
        xs.push(x);
    }
    Dataset::new(xs, ys)
}

#[test]
fn the_trainer_runs_whole_batches_and_moves_the_running_statistics_once_each() {
    let train = data(70);
    let mut net = Normed::new(1);
    let report = Trainer::new(Sgd::new(0.05))
        .epochs(3)
        .batch_size(32)
        .seed(4)
        .fit(&mut net, &train)
        .unwrap();
    // 70 samples: two whole batches of 32 an epoch, the other 6 left out
    assert_eq!(net.params.h_num_batches_tracked, 6.0);
    assert!(report.epochs.iter().all(|e| e.loss.is_finite()));
    assert!(net.params.h_running_mean.iter().any(|&m| m != 0.0));
    // the same with two threads: bitwise the same weights and statistics
    let mut two = Normed::new(1);
    Trainer::new(Sgd::new(0.05))
        .epochs(3)
        .batch_size(32)
        .seed(4)
        .threads(2)
        .fit(&mut two, &train)
        .unwrap();
    assert_eq!(net.params, two.params);
}

#[test]
fn the_trainer_refuses_what_batch_statistics_cannot_be_computed_on() {
    let train = data(40);
    for (batch, batched, setting) in [
        (10, true, "Trainer::batch_size"),
        (0, true, "Trainer::batch_size"),
        (32, false, "Trainer::batched"),
    ] {
        let mut net = Normed::new(1);
        let err = Trainer::new(Sgd::new(0.05))
            .epochs(1)
            .batch_size(batch)
            .batched(batched)
            .fit(&mut net, &train)
            .unwrap_err();
        match &err {
            TrainError::InvalidSetting(e) => assert_eq!(e.setting, setting, "{err}"),
            other => panic!("{other}"),
        }
    }
}

#[test]
fn a_checkpoint_keeps_the_running_statistics_under_pytorchs_names() {
    let dir = std::env::temp_dir().join(format!("nn-bn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bn.safetensors");
    let mut net = Normed::new(3);
    net.params.h_running_mean = [0.1, -0.2, 0.3, 0.05];
    net.params.h_running_var = [0.5, 1.5, 2.0, 0.8];
    net.params.h_num_batches_tracked = 17.0;
    net.save_checkpoint(&path).unwrap();
    let mut back = Normed::new(99);
    back.load_checkpoint(&path).unwrap();
    assert_eq!(net.params, back.params);
    let bytes = std::fs::read(&path).unwrap();
    let header = String::from_utf8_lossy(&bytes[8..8 + 2000.min(bytes.len() - 8)]).to_string();
    assert!(header.contains("\"h.running_mean\""), "{header}");
    assert!(header.contains("\"h.running_var\""), "{header}");
    assert!(
        header.contains("\"h.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[]"),
        "{header}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn per_sample_grads(net: &Normed, x: &[f64; 3], y: &[f64; 2]) -> Vec<f64> {
    let mut tape = Normed::new_tape();
    let mut grads = Normed::new_grads();
    net.forward(x, y, &mut tape);
    net.backward(&tape, &mut grads);
    grads.as_slice().to_vec()
}

#[test]
fn the_per_sample_derivatives_are_those_of_the_inference_loss() {
    let mut net = Normed::new(6);
    net.params.h_running_mean = [0.1, -0.2, 0.3, 0.05];
    net.params.h_running_var = [0.5, 1.5, 2.0, 0.8];
    let (x, y) = (batch().0[1], batch().1[1]);
    let loss = |net: &Normed, x: &[f64; 3]| {
        let out = net.predict(x);
        ((out[0] - y[0]).powi(2) + (out[1] - y[1]).powi(2)) / 2.0
    };
    let eps = 1e-6;
    // the parameters' gradient of the per-sample backward
    let analytic = per_sample_grads(&net, &x, &y);
    for (k, &a) in analytic.iter().enumerate() {
        let w = net.params.as_slice()[k];
        net.params.as_mut_slice()[k] = w + eps;
        let up = loss(&net, &x);
        net.params.as_mut_slice()[k] = w - eps;
        let down = loss(&net, &x);
        net.params.as_mut_slice()[k] = w;
        let numeric = (up - down) / (2.0 * eps);
        assert!((numeric - a).abs() < 1e-6 * numeric.abs().max(1e-3), "{k}");
    }
    // the input gradient
    let g = net.input_gradient(&x, &y);
    assert!(g.iter().any(|&v| v.abs() > 1e-3));
    for i in 0..3 {
        let (mut up, mut down) = (x, x);
        up[i] += eps;
        down[i] -= eps;
        let numeric = (loss(&net, &up) - loss(&net, &down)) / (2.0 * eps);
        assert!(
            (numeric - g[i]).abs() < 1e-6 * numeric.abs().max(1e-3),
            "{i}"
        );
    }
    // the Hessian-vector product: central differences of the gradient along v
    let mut v = Normed::new_grads();
    for (k, e) in v.as_mut_slice().iter_mut().enumerate() {
        *e = ((k as f64) * 0.71).cos();
    }
    let mut hv = Normed::new_grads();
    net.hvp(&x, &y, &v, &mut hv);
    let moved = |sign: f64| {
        let mut n = Normed::new(6);
        n.params = net.params.clone();
        for (p, d) in n.params.as_mut_slice().iter_mut().zip(v.as_slice()) {
            *p += sign * eps * d;
        }
        per_sample_grads(&n, &x, &y)
    };
    let (up, down) = (moved(1.0), moved(-1.0));
    for (k, ((u, d), &ours)) in up.iter().zip(&down).zip(hv.as_slice()).enumerate() {
        let numeric = (u - d) / (2.0 * eps);
        assert!(
            (numeric - ours).abs() < 1e-5 * numeric.abs().max(1e-2),
            "{k}: {numeric} vs {ours}"
        );
    }
}

#[test]
fn early_stopping_restores_the_running_statistics_of_the_best_epoch() {
    let (train, validation) = (data(64), data(40));
    let trainer = || Trainer::new(Sgd::new(0.8)).batch_size(32).seed(2);
    let mut net = Normed::new(1);
    let report = trainer()
        .epochs(40)
        .early_stopping(EarlyStopping::new(Metric::Loss, 3))
        .fit_with_validation(&mut net, &train, &validation)
        .unwrap();
    let best = report.best_epoch.unwrap();
    assert!(best < report.epochs.len(), "the best epoch is not the last");
    // the same training stopped at the best epoch: the same weights and statistics
    let mut again = Normed::new(1);
    trainer().epochs(best).fit(&mut again, &train).unwrap();
    assert_eq!(again.params.h_num_batches_tracked, 2.0 * best as f64);
    assert_eq!(net.params, again.params);
}

// Over a signal's and an image's channels: each channel's statistics over
// the batch and its positions (`BatchNorm1d` of `[N, C, L]`, `BatchNorm2d`).
#[network { dtype f64; input s[2, 5]; input img[1, 4, 4]; target y[2];
    c = batch_norm(tanh(conv1d(s, 3, 2, padding = 1)));
    g = batch_norm(conv2d(img, 2, 3, padding = 1));
    out = dense(concat(flatten(c), flatten(g)), 2);
    loss = mse(out, y); }]
pub struct Channels;

/// A sample of `Channels`: a signal and an image.
type Sample = ([[f64; 5]; 2], [f64; 16]);

fn channel_batch() -> ([Sample; B], [[f64; 2]; B]) {
    let x = core::array::from_fn(|j| {
        let s = core::array::from_fn(|c| {
            core::array::from_fn(|t| ((j * 7 + c * 3 + t) as f64 * 0.61).sin())
        });
        let img = core::array::from_fn(|p| ((j * 5 + p) as f64 * 0.47).cos());
        (s, img)
    });
    let y = core::array::from_fn(|j| [0.3 * j as f64 - 0.4, 0.5 - 0.2 * j as f64]);
    (x, y)
}

fn channel_loss(net: &Channels) -> f64 {
    let (x, y) = channel_batch();
    let mut tape = Channels::new_batch_tape::<B>();
    net.forward_batch(&x, &y, &mut tape)
}

#[test]
fn signals_and_images_normalise_each_channel_over_the_batch_and_its_positions() {
    let mut net = Channels::new(7);
    for (k, w) in net.params.as_mut_slice().iter_mut().enumerate() {
        *w += 0.1 * ((k as f64) * 0.29).sin();
    }
    let (x, y) = channel_batch();
    let mut tape = Channels::new_batch_tape::<B>();
    net.forward_batch(&x, &y, &mut tape);
    let mut grads = Channels::new_grads();
    net.backward_batch(&mut tape, &mut grads);
    let analytic = grads.as_slice().to_vec();
    let eps = 1e-6;
    let (mut worst, mut conv) = (0.0f64, 0.0f64);
    for (k, &a) in analytic.iter().enumerate() {
        let w = net.params.as_slice()[k];
        net.params.as_mut_slice()[k] = w + eps;
        let up = channel_loss(&net);
        net.params.as_mut_slice()[k] = w - eps;
        let down = channel_loss(&net);
        net.params.as_mut_slice()[k] = w;
        let numeric = (up - down) / (2.0 * eps);
        worst = worst.max((numeric - a).abs() / numeric.abs().max(1e-3));
        if k < 12 {
            conv += a * a;
        }
    }
    // the convolution's weights before the batch norm get their gradient
    // through the statistics of every position
    assert!(conv.sqrt() > 1e-3, "trivially zero: {conv}");
    assert!(worst < 1e-6, "relative error {worst}");
    // one update of the running statistics, per channel
    assert!(net.update_running_stats(&mut tape));
    let m = net.params.c_2_running_mean;
    assert!(m.iter().all(|v| v.is_finite()) && m.iter().any(|v| v.abs() > 1e-6));
}
