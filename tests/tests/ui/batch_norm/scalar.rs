use nn_runtime::network;

#[network {
    input x[3];
    target y[1];
    s = sum(x);
    h = batch_norm(s);
    loss = mse(h, y);
}]
pub struct Net;

fn main() {}
