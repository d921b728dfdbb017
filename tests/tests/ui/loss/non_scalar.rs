use nn_runtime::network;

#[network {
    input x[2];
    target y[3];
    out = dense(x, 3);
    loss = (out - y) ^ 2;
}]
pub struct Net;

fn main() {}
