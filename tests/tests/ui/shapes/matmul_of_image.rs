use nn_runtime::network;

#[network {
    input x[2, 4, 4];
    target y[1];
    param w[3, 2] = xavier;
    h = w @ x;
    out = dense(flatten(h), 1);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
