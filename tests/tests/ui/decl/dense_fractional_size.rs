use nn_runtime::network;

#[network {
    input x[2];
    target y[1];
    h = dense(x, 2.5);
    out = dense(h, 1);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
