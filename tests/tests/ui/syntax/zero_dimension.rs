use nn_runtime::network;

#[network {
    input x[2, 0];
    target y[1];
    out = dense(x, 1);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
