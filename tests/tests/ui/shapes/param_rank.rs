use nn_runtime::network;

#[network {
    input x[3];
    target y[3];
    param w[3, 3, 3, 3];
    out = x;
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
