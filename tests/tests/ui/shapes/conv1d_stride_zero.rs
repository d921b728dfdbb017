use nn_runtime::network;

#[network {
    input x[1, 8];
    target y[1];
    h = conv1d(x, 4, 3, stride = 0);
    out = dense(flatten(h), 1);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
