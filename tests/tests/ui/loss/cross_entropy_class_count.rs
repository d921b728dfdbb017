use nn_runtime::network;

#[network {
    input x[3, 4];
    target t: class[5][3];
    param w[5, 3];
    loss = softmax_cross_entropy(w @ x, t, 0);
}]
pub struct Net;

fn main() {}
