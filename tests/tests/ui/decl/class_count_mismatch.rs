use nn_runtime::network;

#[network {
    input x[4];
    target label: class[3];
    logits = dense(x, 5);
    loss = softmax_cross_entropy(logits, label);
}]
pub struct Net;

fn main() {}
