use nn_runtime::network;

#[network {
    input x[2];
    target y[4];
    param w[4, 2] = xavir;
    out = w @ x;
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
