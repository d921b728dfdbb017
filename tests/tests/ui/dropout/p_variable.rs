use nn_runtime::network;

#[network {
    input x[4];
    target y[2];
    param p;
    h = dropout(dense(x, 8), p);
    out = dense(h, 2);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
