use nn_runtime::network;

#[network {
    input x[4];
    target y[2];
    e = embedding(x, 8);
    out = dense(e, 2);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
