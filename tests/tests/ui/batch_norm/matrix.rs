use nn_runtime::network;

#[network {
    input x[3, 4];
    target y[3, 4];
    h = batch_norm(x);
    loss = mse(h, y);
}]
pub struct Net;

fn main() {}
