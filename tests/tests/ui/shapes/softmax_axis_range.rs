use nn_runtime::network;

#[network {
    input x[3, 4];
    target y[3, 4];
    out = log_softmax(x, 2);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
