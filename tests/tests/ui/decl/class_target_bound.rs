use nn_runtime::network;

#[network {
    input x[4];
    target label: class[3];
    logits = dense(x, 3);
    t = label;
    loss = softmax_cross_entropy(logits, t);
}]
pub struct Net;

fn main() {}
