//! An MNIST-sized network (784-128-10: 100 480 f32 parameters, 400 KB, and
//! as much again for a gradient buffer) compiles, is constructed, and trains,
//! in a debug build, on a thread whose stack is only 256 KiB: parameters,
//! gradients and tape must go straight to the heap, never through the stack.

use nn_runtime::prelude::*;

#[network {
    input  x[784];
    target label: class[10];
    h    = relu(dense(x, 128, he));
    out  = dense(h, 10);
    loss = softmax_cross_entropy(out, label);
}]
pub struct Mnist;

/// Stack of the test thread: smaller than the parameters (400 KB), the
/// gradient buffer (400 KB) or the hidden layer's weights alone (401 KB).
const STACK: usize = 256 * 1024;

/// Runs `f` on a fresh thread with a `STACK`-byte stack and propagates its panic.
fn on_small_stack<R: Send + 'static>(name: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn random_samples(n: usize, seed: u64) -> (Vec<[f32; 784]>, Vec<usize>) {
    let mut rng = nn_tests::Lcg::new(seed);
    let mut inputs = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    for i in 0..n {
        // Built in place in the vector's heap buffer, not on the stack.
        inputs.push([0.0f32; 784]);
        for v in inputs[i].iter_mut() {
            *v = rng.unit() as f32;
        }
        targets.push(i % 10);
    }
    (inputs, targets)
}

#[test]
fn sizes_are_as_expected() {
    assert_eq!(Mnist::PARAMS, 784 * 128 + 128 + 128 * 10 + 10);
    assert_eq!(
        std::mem::size_of::<<Mnist as Network>::Params>(),
        Mnist::PARAMS * 4
    );
    assert!(std::mem::size_of::<<Mnist as Network>::Params>() > STACK);
}

#[test]
fn constructs_and_takes_a_training_step_on_a_small_stack() {
    on_small_stack("mnist-step", || {
        let mut net = Mnist::new(42);
        assert!(net.params().as_slice().iter().any(|&w| w != 0.0));
        let (inputs, targets) = random_samples(4, 1);
        let mut tape = Mnist::new_tape();
        let mut grads = Mnist::new_grads();

        let out = net.predict(&inputs[0]);
        assert!(out.iter().all(|v| v.is_finite()), "{out:?}");

        let mut before = 0.0;
        for (x, y) in inputs.iter().zip(&targets) {
            let loss = net.forward(x, y, &mut tape);
            assert!(loss.is_finite() && loss >= 0.0, "loss {loss}");
            before += loss;
            net.backward(&tape, &mut grads);
        }
        let norm: f32 = grads.as_slice().iter().map(|g| g * g).sum::<f32>().sqrt();
        assert!(norm > 0.0 && norm.is_finite(), "|grad| = {norm}");
        let mut sgd = Sgd::new(0.01);
        Optimizer::<f32>::init(&mut sgd, Mnist::PARAMS);
        for g in grads.as_mut_slice() {
            *g /= inputs.len() as f32;
        }
        Optimizer::<f32>::step(&mut sgd, net.params_mut().as_mut_slice(), grads.as_slice());
        grads.fill_zero();

        // A small step against the gradient lowers the summed loss.
        let after: f32 = inputs
            .iter()
            .zip(&targets)
            .map(|(x, y)| net.forward(x, y, &mut tape))
            .sum();
        assert!(after < before, "loss {before} -> {after}");
    });
}

#[test]
fn trainer_fits_one_epoch_on_a_small_stack() {
    on_small_stack("mnist-fit", || {
        let mut net = Mnist::new(7);
        let (inputs, targets) = random_samples(6, 2);
        let data = Dataset::new(inputs, targets);
        let report = Trainer::new(Sgd::new(0.01))
            .epochs(1)
            .batch_size(3)
            .seed(5)
            .fit(&mut net, &data)
            .expect("fit");
        let last = report.last().expect("one epoch");
        assert!(last.loss.is_finite() && last.loss > 0.0, "{last:?}");
        let eval = evaluate(&net, &data).expect("evaluate");
        assert!(eval.loss.is_finite(), "{eval:?}");
    });
}

#[test]
fn gradient_buffers_and_tapes_are_built_on_a_small_stack() {
    on_small_stack("mnist-buffers", || {
        // Several at once, and a network from explicit parameters.
        let a = Mnist::new_grads();
        let b = Mnist::new_grads();
        let t = Mnist::new_tape();
        let net = Mnist::from_params(Mnist::new_grads());
        assert!(net.params().as_slice().iter().all(|&w| w == 0.0));
        assert_eq!(a.as_slice().len() + b.as_slice().len(), 2 * Mnist::PARAMS);
        drop(t);
    });
}

#[network {
    input  x[4096];
    target y[4096];
    h    = tanh(dense(x, 64));
    out  = dense(h, 4096);
    loss = mse(out, y);
}]
pub struct Wide;

/// The batched passes keep every intermediate in the batch tape (on the
/// heap): a 4096-wide network at 64 samples a batch (each per-sample vector a
/// 1 MiB matrix) runs in a debug build on a 2 MiB thread stack, through the
/// public batched methods and through the blocks the trainer runs.
#[test]
fn wide_batched_passes_need_no_stack() {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let net = Wide::new(3);
            let inputs: Box<[[f32; 4096]; 64]> = vec![[0.25f32; 4096]; 64]
                .into_boxed_slice()
                .try_into()
                .unwrap();
            let targets: Box<[[f32; 4096]; 64]> = vec![[0.5f32; 4096]; 64]
                .into_boxed_slice()
                .try_into()
                .unwrap();
            let mut tape = Wide::new_batch_tape::<64>();
            let mut grads = Wide::new_grads();
            let loss = net.forward_batch(&inputs, &targets, &mut tape);
            net.backward_batch(&mut tape, &mut grads);
            assert!(loss.is_finite());
            let mut work = <Wide as Network>::new_batch_work();
            let idx: Vec<usize> = (0..32).map(|j| j * 2).collect();
            let (mut losses, mut correct) = (vec![0.0f32; 32], vec![false; 32]);
            net.train_block(
                &inputs[..],
                &targets[..],
                &idx,
                &mut work,
                &mut grads,
                &mut losses,
                &mut correct,
            );
            assert!(losses.iter().all(|l| l.is_finite()));
        })
        .expect("spawn")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}
