//! Proves the training hot path allocates nothing: a counting global
//! allocator sees the same number of allocations for 1 epoch as for 50,
//! none in any optimiser's step, and none in a whole multi-threaded epoch
//! after the first; on the per-sample path (a hand-written network) and on
//! the batched path (a generated one, whose batches are cut into blocks of
//! 32 and 4 and single samples).
//!
//! Only the measured threads are counted, so the counts are exact whatever
//! else the process (the test harness, other tests) or the machine does: a
//! `const` thread-local flag marks a thread whose allocations count (reading
//! it never allocates). A single-threaded measurement counts its own thread;
//! the multi-threaded epochs count the calling thread and every worker of
//! the training's thread pool, which the optimiser marks from inside the
//! pool (`rayon::broadcast` on its first step).

use nn_runtime::{
    evaluate, network, Adam, AdamW, Clip, Dataset, EarlyStopping, Flat, Metric, Network, Optimizer,
    ParamInfo, RmsProp, Schedule, SettingError, Sgd, Trainer, Zeroable,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

thread_local! {
    /// Whether this thread's allocations go to its own `COUNT`.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
    /// Whether this thread is a worker of the measured training pool, whose
    /// allocations go to `POOL_ALLOCATIONS`.
    static POOL_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Allocations by the measured training pool's workers.
static POOL_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

fn note() {
    // `try_with`: the thread-locals may already be gone while a thread exits.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
    if POOL_WORKER.try_with(Cell::get).unwrap_or(false) {
        POOL_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
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
    type BatchWork = nn_runtime::NoBatch;
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

/// The digits network's shape: batched passes of 32 and 4 samples.
#[network {
    input  x[64];
    target label: class[10];
    h      = relu(dense(x, 32, he));
    logits = dense(h, 10);
    loss   = softmax_cross_entropy(logits, label);
}]
struct Digits;

/// `n` digits-shaped samples whose class is the brightest block of pixels.
fn digits(n: usize) -> Dataset<[f32; 64], usize> {
    let mut rng = nn_runtime::Rng::new(7);
    let targets: Vec<usize> = (0..n).map(|_| rng.below(10)).collect();
    let inputs = targets
        .iter()
        .map(|&c| {
            std::array::from_fn(|i| {
                rng.uniform(0.0, 0.5) as f32 + if i % 10 == c { 0.6 } else { 0.0 }
            })
        })
        .collect();
    Dataset::new(inputs, targets)
}

/// Runs `f` and returns how many heap allocations (alloc, alloc_zeroed,
/// realloc) the current thread made meanwhile.
fn allocations_of(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    COUNT.with(Cell::get)
}

#[test]
fn the_counter_counts_this_thread_only() {
    assert_eq!(
        allocations_of(|| drop(std::hint::black_box(vec![1u8; 10]))),
        1
    );
    assert_eq!(
        allocations_of(|| drop(std::hint::black_box(Box::new(1u64)))),
        1
    );
    assert_eq!(allocations_of(|| std::hint::black_box(())), 0);
    // Another thread's allocations are not counted (spawning is).
    let other = std::thread::spawn(|| {
        for _ in 0..100 {
            drop(std::hint::black_box(vec![0u8; 64]));
        }
    });
    let n = allocations_of(|| {
        for _ in 0..100 {
            std::hint::black_box(1 + 1);
        }
    });
    other.join().unwrap();
    assert_eq!(n, 0);
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
                .quiet()
                .fit_with_validation(&mut net, &train, &val)
                .unwrap();
        })
    };
    let one = fit(1, 1);
    assert_eq!(fit(50, 1), one, "allocations grow with epochs");
    assert_eq!(fit(50, 7), one, "allocations depend on the batch size");
    // per part (8): a tape and a gradient buffer; the second parameter
    // buffer; the parts' vectors, the index order, the report
    assert!((1..=26).contains(&one), "{one} allocations per fit");

    let net = Lin::new(0);
    assert_eq!(
        allocations_of(|| {
            std::hint::black_box(evaluate(&net, &val).unwrap());
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

#[test]
fn batched_training_allocates_per_fit_not_per_batch_or_epoch() {
    assert_eq!(Digits::BATCH_WIDTHS, &[32, 4]);
    let (train, val) = digits(300).split(0.8, 1);
    // Batches of 41 = 32 + 4 + 4 + 1 (and a last one of 35 = 32 + 3 × 1);
    // validation 60 = 32 + 7 × 4.
    let fit = |epochs: usize, threads: usize| {
        let mut net = Digits::new(0);
        let mut report = None;
        let n = allocations_of(|| {
            report = Some(
                Trainer::new(Adam::new(0.01))
                    .epochs(epochs)
                    .batch_size(41)
                    .threads(threads)
                    .quiet()
                    .fit_with_validation(&mut net, &train, &val)
                    .unwrap(),
            );
        });
        (n, report.unwrap())
    };
    let (one, _) = fit(1, 1);
    let (fifty, report) = fit(50, 1);
    assert_eq!(fifty, one, "allocations grow with epochs");
    // per part (8, as the validation set has 8 blocks): a tape, a batched
    // workspace, its scratch (losses, flags, indices) and a gradient
    // buffer; the second parameter buffer, the parts' vectors, the index
    // order, Adam's state, the report
    assert!((48..=70).contains(&one), "{one} allocations per fit");
    assert!(
        report.last().unwrap().val_accuracy.unwrap() > 0.9,
        "{report:?}"
    );
    // On the calling thread with two threads, too (the pool's start-up
    // allocates on it once per fit).
    assert_eq!(fit(1, 2).0, fit(20, 2).0, "allocations grow with epochs");

    // `evaluate`: a tape, a batched workspace and its scratch, whatever
    // the size of the set.
    let net = Digits::new(0);
    let small = allocations_of(|| {
        std::hint::black_box(evaluate(&net, &val).unwrap());
    });
    let large = allocations_of(|| {
        std::hint::black_box(evaluate(&net, &train).unwrap());
    });
    assert_eq!((small, large), (5, 5));
}

/// The digits network with a batch norm after its hidden layer.
#[network {
    input  x[64];
    target label: class[10];
    a      = dense(x, 32, he);
    h      = relu(batch_norm(a));
    logits = dense(h, 10);
    loss   = softmax_cross_entropy(logits, label);
}]
struct NormedDigits;

#[test]
fn batch_norm_training_allocates_per_fit_not_per_batch_or_epoch() {
    let (train, val) = digits(300).split(0.8, 1);
    // 240 samples: 7 whole batches of 32 an epoch (16 left out), each a
    // block and a running-statistics update; validation 60 = 32 + 7 × 4
    let fit = |epochs: usize| {
        let mut net = NormedDigits::new(0);
        let mut report = None;
        let n = allocations_of(|| {
            report = Some(
                Trainer::new(Adam::new(0.01))
                    .epochs(epochs)
                    .batch_size(32)
                    .quiet()
                    .fit_with_validation(&mut net, &train, &val)
                    .unwrap(),
            );
        });
        (n, report.unwrap(), net)
    };
    let (one, _, _) = fit(1);
    let (thirty, report, net) = fit(30);
    assert_eq!(thirty, one, "allocations grow with epochs");
    assert_eq!(net.params.h_num_batches_tracked, 30.0 * 7.0);
    assert!(
        report.last().unwrap().val_accuracy.unwrap() > 0.9,
        "{report:?}"
    );
}

fn step_allocations<O: Optimizer<f32>>(mut opt: O) -> usize {
    let mut p = vec![0.5f32; 1000];
    let mut out = vec![0.0f32; 1000];
    let g = vec![0.25f32; 1000];
    opt.init(p.len());
    opt.step(&mut p, &g);
    assert!(opt.step_into(&p, &g, &mut out));
    allocations_of(|| {
        for t in 0..100 {
            opt.set_learning_rate(0.01 * Schedule::cosine(10, 100).factor(t));
            opt.step(&mut p, &g);
            assert!(opt.step_into(&p, &g, &mut out));
            std::mem::swap(&mut p, &mut out);
        }
        // A rejected step allocates nothing either.
        opt.set_learning_rate(f64::INFINITY);
        assert!(!opt.step_into(&p, &g, &mut out));
    })
}

#[test]
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

/// When set, the next step has every pool worker allocate once (proving
/// the workers are counted).
static PROBE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Adam, marking every worker of the pool it runs in as counted on its
/// first step (which the trainer runs inside its pool).
struct MarkWorkers {
    adam: Adam,
    marked: bool,
}

impl Optimizer<f32> for MarkWorkers {
    fn init(&mut self, n: usize) {
        Optimizer::<f32>::init(&mut self.adam, n);
    }
    fn step(&mut self, params: &mut [f32], grads: &[f32]) {
        self.adam.step(params, grads);
    }
    fn step_into(&mut self, params: &[f32], grads: &[f32], out: &mut [f32]) -> bool {
        if !self.marked {
            assert!(rayon::current_thread_index().is_some(), "not in the pool");
            rayon::broadcast(|_| POOL_WORKER.with(|w| w.set(true)));
            self.marked = true;
        }
        if PROBE.swap(false, Ordering::SeqCst) {
            rayon::broadcast(|_| drop(std::hint::black_box(vec![0u8; 8])));
        }
        self.adam.step_into(params, grads, out)
    }
    fn check_settings(&self) -> Result<(), SettingError> {
        Optimizer::<f32>::check_settings(&self.adam)
    }
    fn learning_rate(&self) -> Option<f64> {
        Optimizer::<f32>::learning_rate(&self.adam)
    }
    fn set_learning_rate(&mut self, lr: f64) {
        Optimizer::<f32>::set_learning_rate(&mut self.adam, lr);
    }
}

#[test]
fn a_multi_threaded_epoch_allocates_nothing_after_the_first() {
    // One network after the other: the workers' counter is shared.
    let inputs: Vec<[f32; 2]> = (0..400)
        .map(|i| [(i % 7) as f32 / 7.0, (i % 5) as f32 / 5.0])
        .collect();
    let targets: Vec<[f32; 1]> = inputs.iter().map(|x| [2.0 * x[0] - x[1] + 0.5]).collect();
    let (train, val) = Dataset::new(inputs, targets).split(0.75, 1);
    multi_threaded_epochs(Lin::new(0), &train, &val, 16, true);
    // The batched path: batches of 100 = 3 × 32 + 4 (four parts), the last
    // of 40 = 32 + 2 × 4; validation 100 = 3 × 32 + 4; and the per-sample
    // path of the same network.
    let (train, val) = digits(440).split(340.0 / 440.0, 2);
    multi_threaded_epochs(Digits::new(0), &train, &val, 100, true);
    multi_threaded_epochs(Digits::new(0), &train, &val, 100, false);
}

/// 20 two-thread epochs of `net` after two warm-up epochs: no allocation
/// on the calling thread nor on the pool's workers.
fn multi_threaded_epochs<N: Network<Scalar = f32>>(
    mut net: N,
    train: &Dataset<N::Input, N::Target>,
    val: &Dataset<N::Input, N::Target>,
    batch: usize,
    batched: bool,
) {
    let optimizer = MarkWorkers {
        adam: Adam::new(0.01),
        marked: false,
    };
    let mut trainer = Trainer::new(optimizer)
        .epochs(100)
        .batch_size(batch)
        .batched(batched)
        .threads(2)
        .schedule(Schedule::cosine(5, 500))
        .clip(Clip::Norm(10.0))
        .early_stopping(EarlyStopping::new(Metric::Loss, 1000))
        .quiet();
    let mut epochs = trainer.train(&mut net, train, Some(val)).unwrap();
    // Warm-up: the first epoch starts rayon's workers (and their queues)
    // and marks them.
    epochs.next().unwrap().unwrap();
    epochs.next().unwrap().unwrap();
    let workers_before = POOL_ALLOCATIONS.load(Ordering::SeqCst);
    let caller = allocations_of(|| {
        for _ in 0..20 {
            std::hint::black_box(epochs.next().unwrap().unwrap());
        }
    });
    let workers = POOL_ALLOCATIONS.load(Ordering::SeqCst) - workers_before;
    assert_eq!(
        (caller, workers),
        (0, 0),
        "allocations in 20 two-thread epochs (calling thread, pool workers), \
         batch {batch}, batched {batched}"
    );
    // The workers are counted: one allocation on each of the two shows.
    PROBE.store(true, Ordering::SeqCst);
    epochs.next().unwrap().unwrap();
    let probed = POOL_ALLOCATIONS.load(Ordering::SeqCst) - workers_before;
    assert!(probed >= 2, "{probed} allocations counted on the workers");
    drop(epochs);
    POOL_WORKER.with(|w| assert!(!w.get(), "the test thread is not a worker"));
}
