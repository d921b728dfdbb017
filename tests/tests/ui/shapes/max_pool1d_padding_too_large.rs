use nn_runtime::network;

#[network {
    input x[1, 8];
    target y[1];
    p = max_pool1d(x, 2, padding = 2);
    out = dense(flatten(p), 1);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
