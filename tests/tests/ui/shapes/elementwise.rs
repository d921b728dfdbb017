use nn_runtime::network;

#[network {
    input x[3];
    target y[2];
    param b[2];
    out = x + b;
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
