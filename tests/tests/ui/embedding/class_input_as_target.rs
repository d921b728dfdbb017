use nn_runtime::network;

#[network {
    input tok: class[10];
    input x[3];
    target y[2];
    out = dense(x, 10);
    loss = softmax_cross_entropy(out, tok);
}]
pub struct Net;

fn main() {}
