use nn_runtime::network;

#[network {
    input x[4];
    target y[1];
    h = leaky_relu(x, alpha = 0.1);
    out = dense(h, 1);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
