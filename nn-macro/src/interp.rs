//! A reference interpreter for the graph, in f64, for tests: it runs the
//! forward and backward nodes directly (no code generation), so random
//! networks can be gradient-checked against finite differences without
//! compiling Rust for each one.

use crate::ir::*;

/// Values of every node, row-major.
pub struct Run {
    /// Each node's value, empty where not computed.
    pub values: Vec<Vec<f64>>,
}

/// Evaluates every node of `g` (forward and backward) for the given inputs,
/// targets and parameters (each flat, row-major; a class target is its
/// index): leaves are given, every other node is its op's reference value
/// from the op table (`ops::eval`).
pub fn run(g: &Graph, inputs: &[Vec<f64>], targets: &[Vec<f64>], params: &[Vec<f64>]) -> Run {
    assert!(
        g.steps.is_none(),
        "the interpreter runs feed-forward graphs only"
    );
    let live = g.live_from(&g.roots());
    let mut v: Vec<Vec<f64>> = vec![vec![]; g.nodes.len()];
    for (id, node) in g.nodes.iter().enumerate() {
        if !live[id] {
            continue;
        }
        let val = match &node.op {
            Op::Input(k) => inputs[*k].clone(),
            Op::Target(k) => targets[*k].clone(),
            Op::Param(k) => params[*k].clone(),
            Op::Seed => vec![1.0],
            _ => crate::ops::eval(g, id, &v),
        };
        assert_eq!(
            val.len(),
            node.shape.len().max(1),
            "node {id} {} has {} values for shape {}",
            node.name,
            val.len(),
            node.shape
        );
        v[id] = val;
    }
    Run { values: v }
}

/// The largest relative difference between the graph's gradients and central
/// finite differences of its loss, and the gradient's norm.
pub fn gradient_error(
    g: &Graph,
    inputs: &[Vec<f64>],
    targets: &[Vec<f64>],
    params: &[Vec<f64>],
) -> (f64, f64) {
    let r = run(g, inputs, targets, params);
    let mut worst: f64 = 0.0;
    let mut norm2 = 0.0;
    for (k, p) in params.iter().enumerate() {
        for e in 0..p.len() {
            let analytic = g.grads[k].map_or(0.0, |gr| r.values[gr][e]);
            let h = 1e-6;
            let mut plus = params.to_vec();
            plus[k][e] += h;
            let mut minus = params.to_vec();
            minus[k][e] -= h;
            let lp = run(g, inputs, targets, &plus).values[g.loss][0];
            let lm = run(g, inputs, targets, &minus).values[g.loss][0];
            let numeric = (lp - lm) / (2.0 * h);
            let err = (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(1e-3);
            worst = worst.max(err);
            norm2 += analytic * analytic;
        }
    }
    (worst, norm2.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expand::compile_text;

    use crate::fuzz::Rng;

    /// One flat tensor per input, target or parameter.
    type Tensors = Vec<Vec<f64>>;

    /// Random inputs, targets and parameters for a graph.
    fn values(g: &Graph, rng: &mut Rng) -> (Tensors, Tensors, Tensors) {
        let fill = |n: usize, rng: &mut Rng| {
            (0..n.max(1))
                .map(|_| rng.uniform(-1.5, 1.5))
                .collect::<Vec<f64>>()
        };
        let inputs = g
            .inputs
            .iter()
            .map(|d| match d.classes {
                Some(n) => vec![rng.below(n) as f64],
                None => fill(d.shape.len(), rng),
            })
            .collect();
        let targets = g
            .targets
            .iter()
            .map(|d| match d.classes {
                Some(n) => (0..d.shape.len()).map(|_| rng.below(n) as f64).collect(),
                None => fill(d.shape.len(), rng),
            })
            .collect();
        let params = g.params.iter().map(|p| fill(p.shape.len(), rng)).collect();
        (inputs, targets, params)
    }

    fn check(def: &str, rng: &mut Rng) {
        // every definition names an output; these name their first parameter
        let first_param = def.split("param ").nth(1).and_then(|rest| {
            rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                .next()
        });
        let def = &match (def.contains("output"), first_param) {
            (false, Some(p)) => format!("{def} output {p};"),
            _ => def.to_string(),
        };
        let g = compile_text(def, Some(Dtype::F64)).unwrap_or_else(|e| panic!("{def}\n{e:?}"));
        let (i, t, p) = values(&g, rng);
        let (err, norm) = gradient_error(&g, &i, &t, &p);
        assert!(norm > 1e-6, "{def}: gradient is trivially zero");
        assert!(err < 1e-5, "{def}: relative gradient error {err}\n{g}");
    }

    /// Every op of the language, each in a small network whose loss depends
    /// on a parameter through it: graph gradients against finite differences.
    #[test]
    fn every_op_differentiates_correctly() {
        let mut rng = Rng(7);
        let cases = [
            "input x[3]; target y[2]; param w[2, 3]; h = w @ x; loss = mse(h, y);",
            "input x[3]; target t: class[4]; param w[4, 3]; loss = softmax_cross_entropy(w @ x, t);",
            "input x[3]; target t[4]; param w[4, 3]; loss = softmax_cross_entropy(w @ x, softmax(t));",
            "input x[3]; target y[3]; param w[3]; loss = bce_with_logits(w * x, y);",
            "input x[4]; param w[4]; loss = sum(sigmoid(w) * tanh(w * x) + relu(w) + exp(w) - softplus(x * w));",
            "input x[4]; param w[4]; loss = sum(log(exp(w) + 1) + sqrt(square(w) + 1) + abs(w) + pow(w, 3) + (square(w) + 1) ^ 0.5 ^ 2 + x);",
            "input x[4]; param w[4]; loss = sum(leaky_relu(w) + leaky_relu(w, 0.2) + elu(w) + elu(x * w, 0.5));",
            "input x[4]; param w[4]; loss = sum(gelu(w) + gelu_exact(w) + silu(w) + swish(x * w) + softsign(w));",
            "input x[4]; param w[4]; param v[4]; loss = sum(min(w, v) + max(w, x) + clamp(w, -0.5, 0.5) + where(w > v, w * v, w - v));",
            "input x[4]; param w[4]; loss = sum(where(w <= 0, w, 2 * w) + where(w >= x, x, w) + where(w == w, w, 0) + where(w != 1, w, 0) + (w < x) * w);",
            "input x[4]; param w[4]; loss = sum(log_softmax(w) * x) + logsumexp(w * x) + sum(softmax(w) * x);",
            "param a[2, 3]; param b[3, 4]; input x[4]; loss = sum(transpose(a @ b) @ x[0:2] ^ 2);",
            "input x[3]; param u[3]; param v[2]; loss = sum(outer(u, v) ^ 2) + dot(u, x) + norm(u);",
            "input x[3]; param u[3]; param v[2]; h = concat(u, v, x); loss = sum(h[1:5] ^ 2) + sum(h[:2]) + sum(h[4:] * h[0:4]);",
            "param m[3, 4]; input x[3]; loss = sum(sum(m, 0) ^ 2) + sum(mean(m, 1) * x) + mean(m ^ 2);",
            "param w[2, 3]; param b[2]; input x[3, 5]; target y[2, 5]; loss = mse(tanh(w @ x + b), y);",
            "param w[3]; input m[3, 2]; loss = sum((w @ m) ^ 2) + w @ w;",
            "param w[4]; param s; input x[4]; loss = sum(s * w * x + s) + s ^ 2 - w @ x / 4;",
            "const alpha = 0.1; const beta = 2 * alpha + 1; param w[4]; input x[4]; loss = sum(leaky_relu(w * x, alpha) * beta);",
            "fn swish2(z) = z * sigmoid(z); fn huber(a, b) = where(abs(a - b) < 1, 0.5 * square(a - b), abs(a - b) - 0.5); \
             input x[3]; target y[2]; param w[2, 3]; loss = sum(huber(swish2(w @ x), y));",
            "fn f(a) = g(a) * a; fn g(b) = tanh(b) + 1; param w[3]; input x[3]; loss = sum(f(w + x) + f(w));",
            "input x[3]; param w[3]; h = w * x; loss = sum(h * h + h);",
            // log1p, expm1, hardtanh, hard_sigmoid, mish (away from the kinks of the hard ones)
            "input x[4]; param w[4]; loss = sum(log1p(w * w + x * x) + expm1(w * x) + mish(w - x));",
            "input x[4]; param w[4]; loss = sum(hardtanh(w * x) * w + hard_sigmoid(4 * w + x) * x);",
            // a vector tiled along the rows and along the columns of a matrix
            "param w[3]; param u[2]; input x[2, 3]; loss = sum(tanh(x * tile_rows(w, 2) + tile_cols(u, 3)) * tile_cols(u * u, 3));",
            "param w[4]; input x[4]; target y[3, 4]; loss = mse(tile_rows(w * x, 3), y) + sum(tile_cols(w, 2) ^ 2);",
            // convolutions, poolings, reshapes
            "input x[2, 9]; target y[2]; h = conv1d(x, 3, 3, stride = 2, padding = 2, dilation = 2); \
             loss = mse(dense(flatten(tanh(h)), 2), y); output h;",
            "input x[2, 9]; h = conv1d(x, 2, 3, causal); loss = sum(tanh(conv1d(h, 2, 2, dilation = 2, causal))); output h;",
            "input x[2, 6, 5]; h = tanh(conv2d(x, 3, 3, padding = 1, stride = 2)); \
             loss = sum(max_pool2d(h, 2, 1) * avg_pool2d(h, 2, padding = 1)); output h;",
            "input x[2, 6, 5]; h = conv2d(x, 2, 2); loss = sum(global_avg_pool(h) ^ 2) + sum(reshape(h, 2, 20) ^ 2); output h;",
            "input x[2, 9]; h = conv1d(x, 2, 2); loss = sum(max_pool1d(h * h, 3, 2)) + sum(avg_pool1d(h, 2, padding = 1) ^ 2); output h;",
            // the softmax family along each axis of a matrix, and the cross-entropies
            // of a matrix of logits against a class per column or row, or distributions
            "param w[3, 4]; input x[3, 4]; input u[4]; input r[3]; loss = sum(log_softmax(w, 0) * x) + sum(softmax(w * x, 1) * x) + sum(logsumexp(w, 0) * u) + sum(logsumexp(w * x, 1) * r);",
            "param w[4, 3]; input x[3, 5]; target t: class[4][5]; loss = softmax_cross_entropy(w @ x, t, 0);",
            "param w[5, 3]; input x[3, 4]; target t: class[5][4]; loss = cross_entropy(transpose(w @ x), t, 1);",
            // dropout: the interpreter runs inference, where it is the identity
            "input x[4]; param w[4]; target y[4]; loss = mse(dropout(w * x, 0.5) + w, y);",
            // an embedding, a token's row of its weight
            "input tok: class[5]; input x[3]; target y[2]; h = embedding(tok, 3); loss = mse(dense(tanh(h) * x, 2), y);",
            "param w[4, 3]; input x[3, 5]; target t[4, 5]; loss = softmax_cross_entropy(w @ x, softmax(t, 0), 0) + softmax_cross_entropy(transpose(w @ x), transpose(softmax(t, 0)), 1);",
        ];
        for def in cases {
            check(def, &mut rng);
        }
    }

    /// Random networks composed from the op set, gradient-checked through the
    /// interpreter (a fixed, seeded number of cases).
    #[test]
    fn random_networks_differentiate_correctly() {
        let mut rng = Rng(0xDEC0DE);
        let mut checked = 0;
        let unary = [
            "sigmoid",
            "tanh",
            "softplus",
            "gelu",
            "silu",
            "softsign",
            "elu",
            "leaky_relu",
            "square",
            "exp",
        ];
        for case in 0..60 {
            let n = 2 + rng.below(4);
            let mut lines = vec![format!(
                "input x[{n}]; target y[{n}]; param w[{n}, {n}] = xavier; param b[{n}];"
            )];
            let mut names = vec!["x".to_string()];
            for layer in 0..1 + rng.below(4) {
                let a = names[rng.below(names.len())].clone();
                let bname = names[rng.below(names.len())].clone();
                let f = unary[rng.below(unary.len())];
                let expr = match rng.below(6) {
                    0 => format!("{f}(w @ {a} + b)"),
                    1 => format!("{f}({a}) * {bname}"),
                    2 => format!("{a} - {f}({bname}) / (1 + square({a}))"),
                    3 => format!("max({a}, {bname}) + min(w @ {a}, b)"),
                    4 => format!("{f}(dense({a}, {n}))"),
                    _ => format!("where({a} > {bname}, {f}({a}), w @ {bname})"),
                };
                let name = format!("h{layer}");
                lines.push(format!("{name} = {expr};"));
                names.push(name);
            }
            let last = names.last().expect("at least one layer").clone();
            let loss = match rng.below(3) {
                0 => format!("loss = mse({last}, y);"),
                1 => format!("loss = softmax_cross_entropy({last}, softmax(y));"),
                _ => format!("loss = bce_with_logits({last}, sigmoid(y)) + sum(b * w @ x);"),
            };
            lines.push(loss);
            let def = lines.join(" ");
            let g = match compile_text(&def, Some(Dtype::F64)) {
                Ok(g) => g,
                // an unused parameter or input is reported: not this test's concern
                Err(_) => continue,
            };
            let (i, t, p) = values(&g, &mut rng);
            let (err, _) = gradient_error(&g, &i, &t, &p);
            assert!(
                err < 1e-5,
                "case {case}: {def}: relative gradient error {err}\n{g}"
            );
            checked += 1;
        }
        assert!(
            checked >= 40,
            "only {checked} of 60 random networks compiled"
        );
    }
}
