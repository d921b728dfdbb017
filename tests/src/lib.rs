//! Shared helpers for the integration tests.

pub mod bench_nets;
pub mod handwritten;
pub mod handwritten_rnn;

use nn_runtime::{check_gradients_batch, Flat, Float, GradCheckOptions, GradCheckReport, Network};

/// A tiny deterministic generator (64-bit LCG, high bits), so test values do
/// not depend on the runtime's RNG.
#[derive(Clone, Debug)]
pub struct Lcg(u64);

impl Lcg {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut g = Lcg(seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(0x2545_F491_4F6C_DD1D));
        g.next_u64();
        g
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 ^ (self.0 >> 29)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Magnitude uniform in `[lo, hi)`, sign random: keeps values away from 0.
    pub fn signed(&mut self, lo: f64, hi: f64) -> f64 {
        let m = self.uniform(lo, hi);
        if self.next_u64() & (1 << 40) != 0 {
            m
        } else {
            -m
        }
    }

    /// An array of [`signed`](Self::signed) values.
    pub fn array<const N: usize>(&mut self, lo: f64, hi: f64) -> [f64; N] {
        core::array::from_fn(|_| self.signed(lo, hi))
    }

    /// A matrix of [`signed`](Self::signed) values.
    pub fn matrix<const R: usize, const C: usize>(&mut self, lo: f64, hi: f64) -> [[f64; C]; R] {
        core::array::from_fn(|_| self.array(lo, hi))
    }
}

/// Overwrites every parameter with a value whose magnitude is in `[lo, hi)`
/// and whose sign is random (so zero-initialised biases take part too).
pub fn fill_params<N: Network>(net: &mut N, seed: u64, lo: f64, hi: f64) {
    let mut rng = Lcg::new(seed);
    for p in net.params_mut().as_mut_slice() {
        *p = N::Scalar::from_f64(rng.signed(lo, hi));
    }
}

/// Overwrites every parameter with a positive value in `[lo, hi)`.
pub fn fill_params_positive<N: Network>(net: &mut N, seed: u64, lo: f64, hi: f64) {
    let mut rng = Lcg::new(seed);
    for p in net.params_mut().as_mut_slice() {
        *p = N::Scalar::from_f64(rng.uniform(lo, hi));
    }
}

/// Relative tolerance of the f64 gradient checks.
pub const F64_TOLERANCE: f64 = 1e-6;

/// The f64 check's options: central differences with step `h = 1e-5`
/// (near the optimum `eps^(1/3)` for central differences: truncation error
/// `~h^2`, rounding error `~eps |L| / h`, both around 1e-10), relative errors
/// `|a - n| / max(|a|, |n|, 1e-3)`, tolerance 1e-6.
pub fn f64_options() -> GradCheckOptions {
    GradCheckOptions {
        h: 1e-5,
        floor: 1e-3,
        tolerance: F64_TOLERANCE,
    }
}

/// [`f64_options`]'s gradient check of `N` at three points: parameters of
/// size 0.3 to 1.2 with random signs (seeds 1 to 3); the gradient must not
/// be trivially zero.
pub fn check_at_random_points<N: Network<Scalar = f64>>(input: N::Input, target: N::Target) {
    for seed in 1..=3 {
        let mut net = N::new(seed);
        fill_params(&mut net, seed + 10, 0.3, 1.2);
        let report = nn_runtime::check_gradients(&mut net, &input, &target, f64_options()).unwrap();
        assert!(
            report.analytic_norm > 1e-3,
            "seed {seed}: gradient is trivially zero"
        );
        report.assert_within(F64_TOLERANCE);
    }
}

/// Checks `backward` against central differences for one sample (f64
/// [`f64_options`]), and that the
/// check means something: the whole analytic gradient's norm exceeds
/// `min_norm` and every parameter tensor's gradient is non-zero, except the
/// tensors named in `zero`, whose analytic gradient must be exactly zero.
#[track_caller]
pub fn assert_gradients<N: Network>(
    net: &mut N,
    input: &N::Input,
    target: &N::Target,
    min_norm: f64,
    zero: &[&str],
) -> GradCheckReport {
    assert_gradients_batch(
        net,
        core::slice::from_ref(input),
        core::slice::from_ref(target),
        min_norm,
        zero,
    )
}

/// The summed loss, each forward on a fresh (zeroed) tape.
fn fresh_loss<N: Network>(net: &N, inputs: &[N::Input], targets: &[N::Target]) -> f64 {
    inputs
        .iter()
        .zip(targets)
        .map(|(x, y)| net.forward(x, y, &mut N::new_tape()).to_f64())
        .sum()
}

/// An independent central-difference check in which every `forward` gets a
/// fresh zeroed tape: separates "backward is wrong" from "forward is not
/// repeatable on a reused tape" (which `check_gradients`, reusing one tape,
/// also catches).
#[track_caller]
fn fresh_tape_check<N: Network>(net: &mut N, inputs: &[N::Input], targets: &[N::Target]) {
    let opts = f64_options();
    let mut grads = N::new_grads();
    for (x, y) in inputs.iter().zip(targets) {
        let mut tape = N::new_tape();
        net.forward(x, y, &mut tape);
        net.backward(&tape, &mut grads);
    }
    let analytic: Vec<f64> = grads.as_slice().iter().map(|g| g.to_f64()).collect();
    let h = N::Scalar::from_f64(opts.h);
    for (k, &a) in analytic.iter().enumerate() {
        let orig = net.params().as_slice()[k];
        let (plus, minus) = (orig + h, orig - h);
        net.params_mut().as_mut_slice()[k] = plus;
        let lp = fresh_loss(net, inputs, targets);
        net.params_mut().as_mut_slice()[k] = minus;
        let lm = fresh_loss(net, inputs, targets);
        net.params_mut().as_mut_slice()[k] = orig;
        let n = (lp - lm) / (plus.to_f64() - minus.to_f64());
        let rel = (a - n).abs() / a.abs().max(n.abs()).max(opts.floor);
        let (name, index) = N::PARAM_INFO
            .iter()
            .find(|p| p.range().contains(&k))
            .map_or(("?", k), |p| (p.name, k - p.offset));
        assert!(
            rel <= opts.tolerance,
            "fresh-tape gradient check failed at `{name}`[flat {index}]: analytic {a:e}, numeric {n:e}, rel error {rel:e}"
        );
    }
}

/// `forward` twice on the same tape with the same parameters gives the same
/// loss (bit for bit): the trainer and `check_gradients` reuse one tape.
#[track_caller]
pub fn assert_forward_repeatable<N: Network>(net: &N, inputs: &[N::Input], targets: &[N::Target]) {
    let mut tape = N::new_tape();
    for (i, (x, y)) in inputs.iter().zip(targets).enumerate() {
        let fresh = net.forward(x, y, &mut N::new_tape()).to_f64();
        let first = net.forward(x, y, &mut tape).to_f64();
        let second = net.forward(x, y, &mut tape).to_f64();
        let third = net.forward(x, y, &mut tape).to_f64();
        assert!(
            fresh == first && first == second && second == third,
            "forward is not repeatable on a reused tape (sample {i}): fresh tape {fresh}, \
             same tape three times {first}, {second}, {third}"
        );
    }
}

/// [`assert_gradients`] for the summed loss of several samples.
#[track_caller]
pub fn assert_gradients_batch<N: Network>(
    net: &mut N,
    inputs: &[N::Input],
    targets: &[N::Target],
    min_norm: f64,
    zero: &[&str],
) -> GradCheckReport {
    fresh_tape_check(net, inputs, targets);
    assert_forward_repeatable(net, inputs, targets);
    let r = check_gradients_batch(net, inputs, targets, f64_options()).expect("gradient check");
    println!("{r}");
    assert!(
        r.analytic_norm > min_norm,
        "analytic gradient norm {:e} is not above {min_norm:e}: the check proves little\n{r}",
        r.analytic_norm
    );
    for p in &r.params {
        if zero.contains(&p.name) {
            assert_eq!(
                p.analytic_norm, 0.0,
                "`{}` does not affect the loss, its gradient must be exactly zero\n{r}",
                p.name
            );
        } else {
            assert!(
                p.analytic_norm > 0.0,
                "`{}` has a zero gradient: this case does not exercise it\n{r}",
                p.name
            );
        }
    }
    r.assert_within(F64_TOLERANCE);
    r
}
