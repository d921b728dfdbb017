use nn_runtime::network;

#[network {
    input x[2, 8];
    target y[1];
    h = conv2d(x, 4, 3);
    out = dense(flatten(h), 1);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
