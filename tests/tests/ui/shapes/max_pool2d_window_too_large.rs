use nn_runtime::network;

#[network {
    input x[1, 4, 4];
    target y[1];
    p = max_pool2d(x, 5);
    out = dense(flatten(p), 1);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
