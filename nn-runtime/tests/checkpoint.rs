//! Checkpoints of generated networks: round trips, every kind of load
//! mismatch, files written by the reference safetensors implementation, and
//! a training run that stops on a non-finite loss without touching its
//! last good checkpoint.

use nn_runtime::checkpoint::{self, CheckpointError, Mismatch};
use nn_runtime::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};

#[network {
    input x[3]; target y[2];
    h = tanh(dense(x, 4));
    out = dense(h, 2);
    loss = mse(out, y);
}]
struct Tiny;

#[network {
    dtype f64;
    input x[3]; target y[2];
    h = tanh(dense(x, 4));
    out = dense(h, 2);
    loss = mse(out, y);
}]
struct Tiny64;

/// Same names as `Tiny`, but `h` is 5 wide.
#[network {
    input x[3]; target y[2];
    h = tanh(dense(x, 5));
    out = dense(h, 2);
    loss = mse(out, y);
}]
struct Wider;

/// One layer fewer, and one more.
#[network {
    input x[3]; target y[2];
    h = tanh(dense(x, 4));
    g = tanh(dense(h, 4));
    out = dense(g, 2);
    loss = mse(out, y);
}]
struct Deeper;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nn-ckpt-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn f64s(view: &TensorView<'_>) -> Vec<f64> {
    assert_eq!(view.dtype(), Dtype::F64);
    view.data()
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The values `make_fixture.py` wrote, in PyTorch's [out, in] layout.
fn reference_params() -> Vec<(&'static str, Vec<f64>)> {
    vec![
        (
            "h.weight",
            (0..12).map(|i| (i as f64 - 5.5) / 10.0).collect(),
        ),
        ("h.bias", vec![0.1, -0.2, 0.3, -0.4]),
        (
            "out.weight",
            (0..8).map(|i| -1.0 + 2.0 * i as f64 / 7.0).collect(),
        ),
        ("out.bias", vec![0.5, -0.5]),
    ]
}

#[test]
fn loads_a_checkpoint_written_by_the_reference_implementation() {
    let expected = std::fs::read(fixture("tiny_expected.safetensors")).unwrap();
    let expected = SafeTensors::deserialize(&expected).unwrap();
    let x = f64s(&expected.tensor("x").unwrap());
    let y = f64s(&expected.tensor("y").unwrap());

    // f32 file into the f32 network.
    let mut net = Tiny::new(7);
    net.load_checkpoint(fixture("tiny_f32.safetensors"))
        .unwrap();
    let flat = net.params().as_slice();
    for (name, values) in reference_params() {
        let info = Tiny::PARAM_INFO.iter().find(|p| p.name == name).unwrap();
        for (got, want) in flat[info.range()].iter().zip(&values) {
            assert!((*got as f64 - want).abs() < 1e-7, "{name}: {got} vs {want}");
        }
    }
    // The names map to the right fields, in [out, in] order.
    assert_eq!(net.params.h_weight[1][2], ((5.0 - 5.5) / 10.0) as f32);
    let out = net.predict(&[x[0] as f32, x[1] as f32, x[2] as f32]);
    for (o, w) in out.iter().zip(&y) {
        assert!((*o as f64 - w).abs() < 1e-6, "{out:?} vs NumPy's {y:?}");
    }

    // f64 file into the f64 twin: exact values, output to rounding.
    let mut net = Tiny64::new(7);
    checkpoint::load(&mut net, fixture("tiny_f64.safetensors")).unwrap();
    let flat = net.params().as_slice();
    for (name, values) in reference_params() {
        let info = Tiny64::PARAM_INFO.iter().find(|p| p.name == name).unwrap();
        for (got, want) in flat[info.range()].iter().zip(&values) {
            // NumPy's linspace may round the last bit differently from the formula.
            assert!((got - want).abs() < 1e-15, "{name}: {got} vs {want}");
        }
    }
    let out = net.predict(&[x[0], x[1], x[2]]);
    for (o, w) in out.iter().zip(&y) {
        assert!((o - w).abs() < 1e-14, "{out:?} vs NumPy's {y:?}");
    }
}

#[test]
fn saved_files_are_plain_safetensors_with_definition_names() {
    let d = scratch("names");
    let path = d.join("tiny.safetensors");
    let net = Tiny::new(3);
    net.save_checkpoint(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert_eq!(names, ["h.bias", "h.weight", "out.bias", "out.weight"]);
    let w = file.tensor("h.weight").unwrap();
    assert_eq!((w.dtype(), w.shape()), (Dtype::F32, &[4usize, 3][..]));
    let first = f32::from_le_bytes(w.data()[..4].try_into().unwrap());
    assert_eq!(first, net.params.h_weight[0][0]);
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");

    // Round trip, with Adam's state.
    let data = Dataset::new(vec![[0.1, 0.2, 0.3]; 4], vec![[1.0, -1.0]; 4]);
    let mut net = Tiny::new(3);
    let mut trainer = Trainer::new(Adam::new(0.01)).epochs(3).quiet();
    trainer.fit(&mut net, &data).unwrap();
    checkpoint::save_with_optimizer(&net, trainer.optimizer(), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.len(), 12, "4 parameters, and m and v of each");
    assert_eq!(
        file.tensor("optim.m.h.weight").unwrap().shape(),
        &[4usize, 3][..]
    );
    let mut back = Tiny::new(99);
    let mut adam = Adam::new(0.01);
    checkpoint::load_with_optimizer(&mut back, &mut adam, &path).unwrap();
    assert_eq!(back.params().as_slice(), net.params().as_slice());
    assert_eq!(Optimizer::<f32>::steps(&adam), 3);
    let (a, b) = (
        Optimizer::<f32>::state(&adam),
        Optimizer::<f32>::state(trainer.optimizer()),
    );
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        for (x, y) in va.iter().zip(vb.iter()) {
            // Stored in the network's f32.
            assert_eq!(*x, *y as f32 as f64);
        }
    }
    std::fs::remove_dir_all(&d).unwrap();
}

fn mismatch(err: CheckpointError) -> Vec<Mismatch> {
    match err {
        CheckpointError::Mismatch { problems, .. } => problems,
        other => panic!("{other}"),
    }
}

#[test]
fn every_load_mismatch_is_named_and_nothing_changes() {
    let d = scratch("mismatch");
    let path = d.join("tiny.safetensors");
    Tiny::new(1).save_checkpoint(&path).unwrap();

    // Shape: h is 5 wide in `Wider`.
    let mut wider = Wider::new(2);
    let before = wider.params().as_slice().to_vec();
    let err = wider.load_checkpoint(&path).unwrap_err();
    let msg = err.to_string();
    assert_eq!(
        mismatch(err),
        [
            Mismatch::Shape {
                name: "h.weight".into(),
                expected: vec![5, 3],
                found: vec![4, 3]
            },
            Mismatch::Shape {
                name: "h.bias".into(),
                expected: vec![5],
                found: vec![4]
            },
            Mismatch::Shape {
                name: "out.weight".into(),
                expected: vec![2, 5],
                found: vec![2, 4]
            },
        ]
    );
    assert_eq!(
        msg,
        format!(
            "{}: the checkpoint does not match the network:\n  \
             tensor `h.weight` has shape [4, 3] in the file but [5, 3] in the network\n  \
             tensor `h.bias` has shape [4] in the file but [5] in the network\n  \
             tensor `out.weight` has shape [2, 4] in the file but [2, 5] in the network",
            path.display()
        )
    );
    assert_eq!(wider.params().as_slice(), &before[..], "changed on error");

    // Missing: `Deeper` has a layer `g` the file lacks.
    let err = Deeper::new(1).load_checkpoint(&path).unwrap_err();
    assert_eq!(
        mismatch(err),
        [
            Mismatch::Missing {
                name: "g.weight".into(),
                shape: vec![4, 4]
            },
            Mismatch::Missing {
                name: "g.bias".into(),
                shape: vec![4]
            },
        ]
    );

    // Unexpected: a `Deeper` file into `Tiny`.
    let deep_path = d.join("deeper.safetensors");
    Deeper::new(1).save_checkpoint(&deep_path).unwrap();
    let err = Tiny::new(1).load_checkpoint(&deep_path).unwrap_err();
    let msg = err.to_string();
    assert_eq!(
        mismatch(err),
        [
            Mismatch::Unexpected {
                name: "g.bias".into(),
                shape: vec![4]
            },
            Mismatch::Unexpected {
                name: "g.weight".into(),
                shape: vec![4, 4]
            },
        ]
    );
    assert!(
        msg.contains(
            "unexpected tensor `g.weight` (shape [4, 4]): the network has no such parameter"
        ),
        "{msg}"
    );

    // Dtype: an f64 file into the f32 network.
    let err = Tiny::new(1)
        .load_checkpoint(fixture("tiny_f64.safetensors"))
        .unwrap_err();
    let problems = mismatch(err);
    assert_eq!(problems.len(), 4);
    assert_eq!(
        problems[0],
        Mismatch::Dtype {
            name: "h.weight".into(),
            expected: "F32".into(),
            found: "F64".into()
        }
    );
    assert_eq!(
        problems[0].to_string(),
        "tensor `h.weight` has dtype F64 in the file but the network computes in F32"
    );

    // Several kinds at once, in one message.
    let mixed = d.join("mixed.safetensors");
    let w = vec![0u8; 4 * 3 * 8];
    let b = vec![0u8; 4 * 4];
    let extra = vec![0u8; 4];
    let views = vec![
        (
            "h.weight",
            TensorView::new(Dtype::F64, vec![4, 3], &w).unwrap(),
        ),
        (
            "h.bias",
            TensorView::new(Dtype::F32, vec![2, 2], &b).unwrap(),
        ),
        (
            "stray",
            TensorView::new(Dtype::F32, vec![1], &extra).unwrap(),
        ),
    ];
    std::fs::write(&mixed, safetensors::serialize(views, None).unwrap()).unwrap();
    let problems = mismatch(Tiny::new(1).load_checkpoint(&mixed).unwrap_err());
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        text,
        [
            "tensor `h.weight` has dtype F64 in the file but the network computes in F32",
            "tensor `h.bias` has shape [2, 2] in the file but [4] in the network",
            "missing tensor `out.weight` (shape [2, 4])",
            "missing tensor `out.bias` (shape [2])",
            "unexpected tensor `stray` (shape [1]): the network has no such parameter",
        ]
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let d = scratch("nonfinite");
    let path = d.join("run.safetensors");
    let mut data = Dataset::new(
        (0..16)
            .map(|i| [i as f32 / 16.0, 1.0 - i as f32 / 16.0, 0.5])
            .collect(),
        (0..16).map(|i| [i as f32 / 8.0, -1.0]).collect(),
    );
    // Three good epochs, checkpointed after each.
    let mut net = Tiny::new(5);
    let mut trainer = Trainer::new(Sgd::new(0.1))
        .epochs(3)
        .batch_size(4)
        .checkpoint(&path)
        .quiet();
    trainer.fit(&mut net, &data).unwrap();
    let good = std::fs::read(&path).unwrap();
    let weights = net.params().as_slice().to_vec();

    // Then a sample goes bad: the next run fails in its first epoch.
    data.targets[9][1] = f32::NAN;
    let err = trainer.fit(&mut net, &data).unwrap_err();
    match &err {
        TrainError::NonFiniteLoss {
            epoch: 1,
            sample: 9,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("epoch 1, step"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        good,
        "checkpoint was touched"
    );
    // Earlier batches of the failed epoch were applied, but the checkpoint
    // still loads the last good epoch's weights.
    let mut back = Tiny::new(0);
    back.load_checkpoint(&path).unwrap();
    assert_eq!(back.params().as_slice(), &weights[..]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_failed_checkpoint_stops_training_with_the_error_chained() {
    use std::error::Error;
    let d = scratch("chain");
    let data = Dataset::new(vec![[0.1f32, 0.2, 0.3]; 8], vec![[0.5f32, -0.5]; 8]);
    let mut net = Tiny::new(3);
    let mut trainer = Trainer::new(Sgd::new(0.1))
        .epochs(2)
        .batch_size(4)
        .checkpoint(d.join("run.safetensors"))
        .quiet();
    let mut training = trainer.train(&mut net, &data, None).unwrap();
    // The folder goes away after the settings were checked.
    std::fs::remove_dir_all(&d).unwrap();
    let err = training.next().unwrap().unwrap_err();
    let TrainError::Checkpoint { epoch: 1, error } = &err else {
        panic!("{err:?}");
    };
    assert!(matches!(error, CheckpointError::Io { .. }), "{error:?}");
    // The chain: training error -> checkpoint error (naming the file) -> io.
    let source = err.source().expect("a checkpoint error as the source");
    assert!(source.to_string().contains("run.safetensors"), "{source}");
    assert!(source.source().unwrap().is::<std::io::Error>());
    assert!(err
        .to_string()
        .starts_with("saving the checkpoint after epoch 1 failed: "));
}
