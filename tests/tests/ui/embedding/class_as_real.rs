use nn_runtime::network;

#[network {
    input tok: class[10];
    target y[2];
    out = dense(tok * 2, 2);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
