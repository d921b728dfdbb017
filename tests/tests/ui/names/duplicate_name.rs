use nn_runtime::network;

#[network {
    input x[2];
    target y[1];
    h = dense(x, 4);
    h = sigmoid(dense(h, 1));
    loss = mse(h, y);
}]
pub struct Net;

fn main() {}
