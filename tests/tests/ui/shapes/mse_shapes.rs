use nn_runtime::network;

#[network {
    input x[3];
    target y[2];
    out = dense(x, 3);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
