//! The cost of the checked optimiser update, side by side with the unchecked
//! in-place step it replaced, at the digits network's parameter count
//! (2,410) and an MNIST-sized one (101,770), in `f32`:
//!
//! - `step`: the old update, `Optimizer::step` in place (no check; a
//!   non-finite result cannot be undone);
//! - `step_into+swap_boxes`: the trainer's update, `Optimizer::step_into` a
//!   second buffer with the finiteness check in the same loop, then the
//!   buffers swapped by pointer (what a network keeping its parameters in a
//!   `Box` does in `Network::swap_params`);
//! - `step_into+swap_contents`: the same with the default `swap_params`,
//!   which exchanges the two buffers' contents;
//! - `backup+step+scan`: the alternative design, a copy of the parameters
//!   before an in-place step and a finiteness scan after it (vectorised as
//!   `step_into`'s check is; it cannot restore an optimiser's state).
//!
//! `cargo bench -p nn-runtime --bench update`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nn_runtime::{Adam, Optimizer, Sgd};
use std::hint::black_box;
use std::time::Duration;

fn optimisers() -> Vec<(&'static str, Box<dyn Optimizer<f32>>)> {
    vec![
        ("sgd", Box::new(Sgd::new(1e-6))),
        ("sgd_momentum", Box::new(Sgd::new(1e-6).momentum(0.9))),
        ("adam", Box::new(Adam::new(1e-6))),
    ]
}

/// Whether every value is finite: `x · 0` summed in 16 lanes (0 while
/// finite, NaN otherwise), which vectorises.
fn all_finite(values: &[f32]) -> bool {
    let (blocks, rest) = values.as_chunks::<16>();
    let mut acc = [0.0f32; 16];
    for block in blocks {
        for (a, v) in acc.iter_mut().zip(block) {
            *a += v * 0.0;
        }
    }
    acc.iter().all(|a| *a == 0.0) && rest.iter().all(|v| v.is_finite())
}

fn bench_size(c: &mut Criterion, n: usize) {
    let mut group = c.benchmark_group(format!("update/{n}"));
    group.throughput(Throughput::Elements(n as u64));
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let grads: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) * 1e-3).collect();
    let start: Vec<f32> = (0..n).map(|i| ((i % 89) as f32 - 44.0) * 1e-2).collect();
    for (name, mut opt) in optimisers() {
        opt.init(n);
        let mut p: Box<[f32]> = start.clone().into_boxed_slice();
        let mut out: Box<[f32]> = vec![0.0; n].into_boxed_slice();
        group.bench_function(BenchmarkId::new("step", name), |b| {
            b.iter(|| opt.step(black_box(&mut p), black_box(&grads)))
        });
        group.bench_function(BenchmarkId::new("step_into+swap_boxes", name), |b| {
            b.iter(|| {
                if opt.step_into(black_box(&p), black_box(&grads), &mut out) {
                    std::mem::swap(&mut p, &mut out);
                }
            })
        });
        group.bench_function(BenchmarkId::new("step_into+swap_contents", name), |b| {
            b.iter(|| {
                if opt.step_into(black_box(&p), black_box(&grads), &mut out) {
                    p.swap_with_slice(&mut out);
                }
            })
        });
        group.bench_function(BenchmarkId::new("backup+step+scan", name), |b| {
            b.iter(|| {
                out.copy_from_slice(&p);
                opt.step(black_box(&mut p), black_box(&grads));
                if !all_finite(&p) {
                    p.copy_from_slice(&out);
                }
            })
        });
        assert!(p.iter().all(|v| v.is_finite()));
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_size(c, 2_410);
    bench_size(c, 101_770);
}

criterion_group!(update, benches);
criterion_main!(update);
