use nn_runtime::network;

#[network {
    input x[2];
    target y[1];
    out = dense(x, 1) * sigmoid;
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
