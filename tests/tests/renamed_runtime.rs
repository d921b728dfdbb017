//! A user crate that names the runtime differently (a renamed dependency,
//! here an `extern crate ... as`): with `#[network(crate = path)]` below the
//! definition the network compiles and trains. (`::nn_runtime` resolves here
//! too; that no path of the expansion still names it is checked on the
//! tokens, in nn-macro's `crate_option_rebases_every_runtime_path`.)

extern crate nn_runtime as nn;

use nn::{Network, Sgd, Trainer};

/// XOR through the renamed runtime.
#[nn::network {
    input  x[2];
    target y[1];
    h    = tanh(dense(x, 8));
    out  = sigmoid(dense(h, 1));
    loss = mse(out, y);
}]
#[network(crate = nn)]
pub struct Xor;

#[test]
fn a_network_compiled_against_a_renamed_runtime_trains() {
    let data = nn::Dataset::new(
        vec![[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]],
        vec![[0.0f32], [1.0], [1.0], [0.0]],
    );
    let mut net = Xor::new(3);
    Trainer::new(Sgd::new(0.5).momentum(0.9))
        .epochs(2000)
        .quiet()
        .fit(&mut net, &data)
        .unwrap();
    for (x, y) in data.iter() {
        assert!((net.predict(x)[0] - y[0]).abs() < 0.2, "{x:?}");
    }
    assert_eq!(<Xor as Network>::PARAM_INFO.len(), 4);
}
