//! A physics-informed network: solves `u'' = -π² sin(πx)` on `[0, 1]` with
//! `u(0) = u(1) = 0` (whose solution is `sin(πx)`) from the equation alone,
//! with no samples of the solution.
//!
//! The network is `u(x) = x (1 - x) N(x)`: the factor `x (1 - x)` makes the
//! boundary conditions hold exactly, and `N` is a 1-32-32-1 tanh network.
//! The loss at a collocation point `x` is the squared residual
//! `(u''(x) - f(x))²` with `f(x) = -π² sin(πx)` given as the target: `u''`
//! is `grad` taken twice inside the definition, and training differentiates
//! the loss (third derivatives of `tanh`) at compile time too. The error is
//! then measured against the exact solution on a grid of 10,001 points.
//!
//! The second network solves Poisson's equation on the unit square,
//! `u_xx + u_yy = -2π² sin(πx) sin(πy)` with `u = 0` on the boundary
//! (solution `sin(πx) sin(πy)`), the same way: `u = x(1-x) y(1-y) N(x, y)`,
//! and the Laplacian from the gradient's components differentiated again.
//!
//! Run with `cargo run --release --example pinn` (from the workspace root).

use nn_runtime::prelude::*;
use std::f64::consts::PI;
use std::time::Instant;

#[network {
    dtype f64;
    input  x[1];
    target f[1];
    h1  = tanh(dense(x, 32));
    h2  = tanh(dense(h1, 32));
    u   = x * (1 - x) * dense(h2, 1);
    du  = grad(sum(u), x);
    d2u = grad(sum(du), x);
    output u;
    loss = mse(d2u, f);
}]
pub struct Poisson;

#[network {
    dtype f64;
    input  p[2];
    target f[1];
    h1  = tanh(dense(p, 32));
    h2  = tanh(dense(h1, 32));
    x   = p[0:1];
    y   = p[1:2];
    u   = x * (1 - x) * y * (1 - y) * dense(h2, 1);
    du  = grad(sum(u), p);
    dux = grad(sum(du[0:1]), p);
    duy = grad(sum(du[1:2]), p);
    output u;
    loss = mse(dux[0:1] + duy[1:2], f);
}]
pub struct Poisson2d;

/// Collocation points, evenly spaced inside `(0, 1)`.
const POINTS: usize = 64;
const EPOCHS: usize = 4_000;
const GRID: usize = 10_001;
/// Collocation points per side of the square, and the grid the error is
/// measured on.
const SIDE: usize = 24;
const EPOCHS_2D: usize = 3_000;
const GRID_2D: usize = 201;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let xs: Vec<[f64; 1]> = (0..POINTS)
        .map(|i| [(i as f64 + 0.5) / POINTS as f64])
        .collect();
    let fs: Vec<[f64; 1]> = xs.iter().map(|x| [-PI * PI * (PI * x[0]).sin()]).collect();
    let data = Dataset::new(xs, fs);

    let mut net = Poisson::new(7);
    let start = Instant::now();
    let schedule = Schedule::Cosine {
        warmup: 0,
        total: EPOCHS,
        min_factor: 1e-3,
    };
    let report = Trainer::new(Adam::new(3e-3))
        .epochs(EPOCHS)
        .batch_size(POINTS)
        .schedule(schedule)
        .fit(&mut net, &data)?;
    let time = start.elapsed();

    let (mut worst, mut at) = (0.0f64, 0.0);
    for i in 0..GRID {
        let x = i as f64 / (GRID - 1) as f64;
        let err = (net.predict(&[x])[0] - (PI * x).sin()).abs();
        if err > worst {
            (worst, at) = (err, x);
        }
    }
    let last = report.last().map_or(f64::NAN, |e| e.loss);
    println!("u'' = -π² sin(πx) on [0, 1], u(0) = u(1) = 0: {POINTS} collocation points, no samples of u");
    println!(
        "training: {EPOCHS} epochs of Adam in {time:.2?}, final mean squared residual {last:.3e}"
    );
    println!("largest |u - sin(πx)| on {GRID} points: {worst:.2e} (at x = {at:.4})");

    let mut ps = vec![];
    for i in 0..SIDE {
        for j in 0..SIDE {
            ps.push([
                (i as f64 + 0.5) / SIDE as f64,
                (j as f64 + 0.5) / SIDE as f64,
            ]);
        }
    }
    let exact = |p: &[f64; 2]| (PI * p[0]).sin() * (PI * p[1]).sin();
    let fs: Vec<[f64; 1]> = ps.iter().map(|p| [-2.0 * PI * PI * exact(p)]).collect();
    let data = Dataset::new(ps, fs);
    let mut net = Poisson2d::new(7);
    let start = Instant::now();
    let schedule = Schedule::Cosine {
        warmup: 0,
        total: EPOCHS_2D,
        min_factor: 1e-3,
    };
    let report = Trainer::new(Adam::new(3e-3))
        .epochs(EPOCHS_2D)
        .batch_size(SIDE * SIDE)
        .schedule(schedule)
        .fit(&mut net, &data)?;
    let time = start.elapsed();
    let mut worst = 0.0f64;
    for i in 0..GRID_2D {
        for j in 0..GRID_2D {
            let step = (GRID_2D - 1) as f64;
            let p = [i as f64 / step, j as f64 / step];
            worst = worst.max((net.predict(&p)[0] - exact(&p)).abs());
        }
    }
    let last = report.last().map_or(f64::NAN, |e| e.loss);
    println!();
    println!("u_xx + u_yy = -2π² sin(πx) sin(πy) on [0, 1]², u = 0 on the boundary: {} collocation points", SIDE * SIDE);
    println!("training: {EPOCHS_2D} epochs of Adam in {time:.2?}, final mean squared residual {last:.3e}");
    println!("largest |u - sin(πx) sin(πy)| on {GRID_2D} × {GRID_2D} points: {worst:.2e}");
    Ok(())
}
