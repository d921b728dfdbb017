//! Tests of the ONNX description.

use super::*;
use crate::expand::compile;

fn desc(text: &str) -> R<Desc> {
    let c = compile(text, None).expect("compiles");
    describe(&c.sample)
}

fn ops(d: &Desc) -> Vec<&'static str> {
    d.nodes.iter().map(|n| n.op).collect()
}

#[test]
fn a_dense_layer_is_one_gemm() {
    let d = desc("input x[2]; target y[1]; h = sigmoid(dense(x, 4)); out = sigmoid(dense(h, 1)); loss = mse(out, y);")
        .expect("exports");
    assert_eq!(d.params, vec![0, 1, 2, 3]);
    assert_eq!(d.inputs[0].name, "x");
    assert_eq!(d.output.name, "out");
    let ops = ops(&d);
    assert_eq!(ops.iter().filter(|o| **o == "Gemm").count(), 2, "{ops:?}");
    assert_eq!(
        ops.iter().filter(|o| **o == "Sigmoid").count(),
        2,
        "{ops:?}"
    );
    // every node's inputs are defined before it
    let mut defined: HashSet<String> = d.inputs.iter().map(|i| i.name.clone()).collect();
    defined.extend(["h.weight", "h.bias", "out.weight", "out.bias"].map(String::from));
    for c in &d.consts {
        match c {
            OConst::Float(n, _) | OConst::Int(n, _) => defined.insert(n.clone()),
        };
    }
    for n in &d.nodes {
        for i in &n.inputs {
            assert!(defined.contains(i), "{i} used before defined");
        }
        assert!(
            defined.insert(n.output.clone()),
            "{} defined twice",
            n.output
        );
    }
}

#[test]
fn an_operation_without_an_onnx_form_is_named() {
    let text = "input x[2]; target y[2]; h = dense(x, 2); out = tanh(h); loss = mse(out, y);";
    let mut g = compile(text, None).expect("compiles").sample;
    // an output computed from a target (which inference never reads)
    let t = g
        .nodes
        .iter()
        .position(|n| n.op == Op::Target(0))
        .expect("target");
    let out = g.output;
    g.nodes[out].op = Op::Map {
        args: vec![t],
        bcast: vec![Bcast::Full],
        body: S::Arg(0),
    };
    let e = describe(&g).expect_err("unsupported");
    assert_eq!(e.op, "target `y`");
    assert_eq!(e.reason, "inference reads no target");
    // an operation of the backward pass only
    let mut g = compile(text, None).expect("compiles").sample;
    g.nodes[out].op = Op::BatchSum(t);
    let e = describe(&g).expect_err("unsupported");
    assert_eq!((e.op.as_str(), e.binding.as_str()), ("target `y`", "y"));
    let mut g = compile(text, None).expect("compiles").sample;
    g.nodes[out].op = Op::Tangent(0);
    let e = describe(&g).expect_err("unsupported");
    assert_eq!(e.op, "tangent");
    assert_eq!(e.reason, "not an operation of inference");
    // and the expansion carries the error, not a graph
    let tokens = onnx_export(&g, "Net").to_string();
    assert!(tokens.contains("Export :: Unsupported"), "{tokens}");
    assert!(tokens.contains("\"tangent\""), "{tokens}");
}

#[test]
fn recurrent_definitions_describe_one_step() {
    let d = desc("steps 5; input x[t][2]; target y[t][1]; state h[3] = zeros; param wh[3, 3] = xavier; \
        h[t] = tanh(wh @ h[t-1] + dense(x[t], 3)); out[t] = dense(h[t], 1); loss = mean_steps(mse(out[t], y[t]));")
        .expect("exports");
    assert_eq!(d.steps, 5);
    assert_eq!(d.states.len(), 1);
    assert!(d.output.per_step && d.inputs[0].per_step);
    assert!(d
        .nodes
        .iter()
        .any(|n| n.place == Place::Step && n.op == "Tanh"));
}
