use nn_runtime::network;

#[network {
    input x[3];
    target y[4];
    param w[4, 2] = xavier;
    out = w @ x;
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
