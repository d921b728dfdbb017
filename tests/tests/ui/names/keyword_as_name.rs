use nn_runtime::network;

#[network {
    input x[2];
    target y[1];
    param = dense(x, 1);
    loss = mse(param, y);
}]
pub struct Net;

fn main() {}
