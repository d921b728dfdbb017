use nn_runtime::network;

#[network {
    input x[1, 8];
    target y[1];
    p = avg_pool1d(x, 2, 2, stride = 1);
    out = dense(flatten(p), 1);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
