use nn_runtime::network;

#[network {
    input tok: class[10][4];
    target y[2];
    e = embedding(tok, 8);
    out = dense(e, 2);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
