use nn_runtime::network;

#[network {
    input x[3];
    target y[3];
    out = 2 @ x;
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
