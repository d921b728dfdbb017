use nn_runtime::network;

#[network {
    input x[4];
    target label: class[3];
    logits = dense(x, 3);
    loss = mse(logits, label);
}]
pub struct Net;

fn main() {}
