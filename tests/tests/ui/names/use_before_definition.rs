use nn_runtime::network;

#[network {
    input x[2];
    target y[1];
    out = sigmoid(dense(h, 1));
    h = tanh(dense(x, 4));
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
