use nn_runtime::network;

#[network {
    input x[2];
    target y[2];
    out = x ^ y;
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
