use nn_runtime::network;

#[network {
    input x[2];
    target y[1];
    x = relu(x);
    out = dense(x, 1);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
