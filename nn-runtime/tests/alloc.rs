//! Proves the training hot path allocates nothing: a counting global
//! allocator sees the same number of allocations for 1 epoch as for 50.

use nn_runtime::{evaluate, Dataset, Flat, Network, ParamInfo, Sgd, Trainer, Zeroable};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `out = w · x + b` with loss `(out - y)²`, in `f32`.
struct Lin {
    p: Box<P>,
}

#[repr(C)]
struct P {
    w: [f32; 2],
    b: [f32; 1],
}
// SAFETY: only `f32` arrays.
unsafe impl Zeroable for P {}
// SAFETY: `#[repr(C)]`, three `f32`s.
unsafe impl Flat<f32> for P {
    const LEN: usize = 3;
}

#[repr(C)]
struct Tape {
    x: [f32; 2],
    out: f32,
    d_out: f32,
}
// SAFETY: only `f32`s.
unsafe impl Zeroable for Tape {}

impl Network for Lin {
    type Scalar = f32;
    type Input = [f32; 2];
    type Target = [f32; 1];
    type Output = [f32; 1];
    type Params = P;
    type Tape = Tape;
    const PARAMS: usize = 3;
    const TAPE_BYTES: usize = 16;
    const FORWARD_FLOPS: u64 = 6;
    const BACKWARD_FLOPS: u64 = 6;
    const PARAM_INFO: &'static [ParamInfo] = &[
        ParamInfo {
            name: "w",
            shape: &[2],
            offset: 0,
        },
        ParamInfo {
            name: "b",
            shape: &[1],
            offset: 2,
        },
    ];
    fn new(_seed: u64) -> Self {
        Lin { p: P::zeroed_box() }
    }
    fn params(&self) -> &P {
        &self.p
    }
    fn params_mut(&mut self) -> &mut P {
        &mut self.p
    }
    fn predict(&self, x: &[f32; 2]) -> [f32; 1] {
        [self.p.w[0] * x[0] + self.p.w[1] * x[1] + self.p.b[0]]
    }
    fn forward(&self, x: &[f32; 2], y: &[f32; 1], tape: &mut Tape) -> f32 {
        let out = self.predict(x)[0];
        tape.x = *x;
        tape.out = out;
        tape.d_out = 2.0 * (out - y[0]);
        (out - y[0]) * (out - y[0])
    }
    fn backward(&self, tape: &Tape, g: &mut P) {
        g.w[0] += tape.d_out * tape.x[0];
        g.w[1] += tape.d_out * tape.x[1];
        g.b[0] += tape.d_out;
    }
    fn is_correct(out: &[f32; 1], y: &[f32; 1]) -> bool {
        (out[0] - y[0]).abs() < 0.1
    }
    fn tape_output(tape: &Tape) -> Option<[f32; 1]> {
        Some([tape.out])
    }
}

fn allocations_of(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

#[test]
fn training_allocates_per_fit_not_per_batch_or_epoch() {
    let inputs: Vec<[f32; 2]> = (0..40)
        .map(|i| [(i % 7) as f32 / 7.0, (i % 5) as f32 / 5.0])
        .collect();
    let targets: Vec<[f32; 1]> = inputs.iter().map(|x| [2.0 * x[0] - x[1] + 0.5]).collect();
    let data = Dataset::new(inputs, targets);
    let (train, val) = data.split(0.75, 1);

    let fit = |epochs: usize, batch: usize| {
        let mut net = Lin::new(0);
        allocations_of(|| {
            Trainer::new(Sgd::new(0.1))
                .epochs(epochs)
                .batch_size(batch)
                .fit_with_validation(&mut net, &train, &val)
                .unwrap();
        })
    };
    let one = fit(1, 1);
    assert_eq!(fit(50, 1), one, "allocations grow with epochs");
    assert_eq!(fit(50, 7), one, "allocations depend on the batch size");
    // tape, gradient buffer, index order, report
    assert!((1..=4).contains(&one), "{one} allocations per fit");

    let net = Lin::new(0);
    assert_eq!(
        allocations_of(|| {
            std::hint::black_box(evaluate(&net, &val));
        }),
        1,
        "one tape"
    );

    // And the model learns (the tape's output path of accuracy is used).
    let mut net = Lin::new(0);
    let report = Trainer::new(Sgd::new(0.3))
        .epochs(300)
        .batch_size(8)
        .fit_with_validation(&mut net, &train, &val)
        .unwrap();
    let last = report.last().unwrap();
    assert!(last.loss < 1e-6, "{last}");
    assert_eq!(last.accuracy, 1.0);
    assert_eq!(last.val_accuracy, Some(1.0));
}
