use nn_runtime::network;

#[network {
    input x[2];
    target y[2];
    loss = mse(x, y);
}]
pub struct Net;

fn main() {}
