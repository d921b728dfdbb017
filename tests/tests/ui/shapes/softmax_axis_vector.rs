use nn_runtime::network;

#[network {
    input x[4];
    target y[4];
    out = softmax(x, 0);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
