//! Definitions read from a file (relative to this crate's Cargo.toml), in
//! f32 and, through the attribute's `dtype = f64`, in f64.

use nn_runtime::prelude::*;

#[network(file = "nets/xor.nn")]
pub struct XorFromFile;

#[network(file = "nets/xor.nn", dtype = f64)]
pub struct XorFromFile64;

#[test]
fn a_file_definition_builds_the_same_network_as_inline() {
    let net = XorFromFile::new(1);
    assert_eq!(XorFromFile::PARAMS, 17);
    let names: Vec<&str> = XorFromFile::PARAM_INFO.iter().map(|p| p.name).collect();
    assert_eq!(names, ["h.weight", "h.bias", "out.weight", "out.bias"]);
    let y: [f32; 1] = net.predict(&[1.0, 0.0]);
    assert!(y[0] > 0.0 && y[0] < 1.0);
}

#[test]
fn the_dtype_option_makes_an_f64_twin_with_the_same_initial_weights() {
    let a = XorFromFile::new(7);
    let b = XorFromFile64::new(7);
    for (x, y) in a.params.as_slice().iter().zip(b.params.as_slice()) {
        assert!((*x as f64 - y).abs() < 1e-6);
    }
    let mut tape = XorFromFile64::new_tape();
    let loss: f64 = b.forward(&[0.0, 1.0], &[1.0], &mut tape);
    assert!(loss > 0.0);
}

/// A file saved with a byte-order mark (as some editors write one) reads
/// like any other; an initialiser with arguments is accepted in `dense`.
#[network(file = "nets/bom.nn")]
pub struct FromBomFile;

#[test]
fn a_byte_order_mark_is_accepted() {
    let net = FromBomFile::new(3);
    assert_eq!(FromBomFile::PARAMS, 4 * 2 + 4 + 4 + 1);
    // `normal(0, 0.5)`: the hidden weights are not Glorot-uniform's
    assert!(net.params.h_weight.iter().flatten().any(|w| w.abs() > 0.2));
    assert!(net.predict(&[0.5, 0.5])[0].is_finite());
}
