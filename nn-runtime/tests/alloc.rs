//! Proves the training hot path allocates nothing: a counting global
//! allocator sees the same number of allocations for 1 epoch as for 50,
//! none in any optimiser's step, and none in a whole multi-threaded epoch
//! after the first.

use nn_runtime::{
    evaluate, Adam, AdamW, Clip, Dataset, EarlyStopping, Flat, Metric, Network, Optimizer,
    ParamInfo, RmsProp, Schedule, Sgd, Trainer, Zeroable,
};
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

/// One test, running the checks one after another: the test harness's own
/// threads allocate when a test finishes, which would be counted against a
/// test running beside it.
#[test]
fn hot_paths_allocate_nothing() {
    training_allocates_per_fit_not_per_batch_or_epoch();
    optimiser_steps_allocate_nothing();
    a_multi_threaded_epoch_allocates_nothing_after_the_first();
}

fn allocations_of(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

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
                .quiet()
                .fit_with_validation(&mut net, &train, &val)
                .unwrap();
        })
    };
    let one = fit(1, 1);
    assert_eq!(fit(50, 1), one, "allocations grow with epochs");
    assert_eq!(fit(50, 7), one, "allocations depend on the batch size");
    // per part (8): a tape and a gradient buffer; the parts' vectors, the
    // index order, the report
    assert!((1..=24).contains(&one), "{one} allocations per fit");

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
        .quiet()
        .fit_with_validation(&mut net, &train, &val)
        .unwrap();
    let last = report.last().unwrap();
    assert!(last.loss < 1e-6, "{last}");
    assert_eq!(last.accuracy, 1.0);
    assert_eq!(last.val_accuracy, Some(1.0));
}

fn step_allocations<O: Optimizer<f32>>(mut opt: O) -> usize {
    let mut p = vec![0.5f32; 1000];
    let g = vec![0.25f32; 1000];
    opt.init(p.len());
    opt.step(&mut p, &g);
    allocations_of(|| {
        for t in 0..100 {
            opt.set_learning_rate(0.01 * Schedule::cosine(10, 100).factor(t));
            opt.step(&mut p, &g);
        }
    })
}

fn optimiser_steps_allocate_nothing() {
    assert_eq!(step_allocations(Sgd::new(0.1)), 0, "Sgd");
    assert_eq!(
        step_allocations(Sgd::new(0.1).momentum(0.9).weight_decay(1e-4)),
        0,
        "Sgd with momentum"
    );
    assert_eq!(
        step_allocations(Sgd::new(0.1).momentum(0.9).nesterov(true)),
        0,
        "Nesterov"
    );
    assert_eq!(
        step_allocations(Adam::new(1e-3).weight_decay(1e-4)),
        0,
        "Adam"
    );
    assert_eq!(step_allocations(AdamW::new(1e-3, 0.01)), 0, "AdamW");
    assert_eq!(
        step_allocations(RmsProp::new(1e-2).momentum(0.9)),
        0,
        "RmsProp"
    );
    let mut g = vec![3.0f32; 1000];
    assert_eq!(
        allocations_of(|| {
            Clip::Norm(1.0).apply(&mut g);
            Clip::Value(0.5).apply(&mut g);
        }),
        0,
        "clipping"
    );
}

fn a_multi_threaded_epoch_allocates_nothing_after_the_first() {
    let inputs: Vec<[f32; 2]> = (0..400)
        .map(|i| [(i % 7) as f32 / 7.0, (i % 5) as f32 / 5.0])
        .collect();
    let targets: Vec<[f32; 1]> = inputs.iter().map(|x| [2.0 * x[0] - x[1] + 0.5]).collect();
    let (train, val) = Dataset::new(inputs, targets).split(0.75, 1);
    let mut net = Lin::new(0);
    let mut trainer = Trainer::new(Adam::new(0.01))
        .epochs(100)
        .batch_size(16)
        .threads(2)
        .schedule(Schedule::cosine(5, 500))
        .clip(Clip::Norm(10.0))
        .early_stopping(EarlyStopping::new(Metric::Loss, 1000))
        .quiet();
    let mut epochs = trainer.train(&mut net, &train, Some(&val)).unwrap();
    // Warm-up: the first epoch starts rayon's workers (and their queues).
    epochs.next().unwrap().unwrap();
    epochs.next().unwrap().unwrap();
    let n = allocations_of(|| {
        for _ in 0..20 {
            std::hint::black_box(epochs.next().unwrap().unwrap());
        }
    });
    assert_eq!(n, 0, "allocations in 20 two-thread epochs");
}
