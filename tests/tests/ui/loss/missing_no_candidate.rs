use nn_runtime::network;

#[network {
    input x[2];
    target y[1];
    out = sigmoid(dense(x, 1));
}]
pub struct Net;

fn main() {}
