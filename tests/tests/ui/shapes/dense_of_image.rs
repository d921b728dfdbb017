use nn_runtime::network;

#[network {
    input x[1, 8, 8];
    target y[1];
    out = dense(x, 1);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
