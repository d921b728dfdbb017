use nn_runtime::network;

#[network {
    input x[3];
    target y[2];
    param w[4, 2] = xavier;
    h = sigmod(w @ x);
    loss = mse(h, y);
}]
pub struct Net;

fn main() {}
