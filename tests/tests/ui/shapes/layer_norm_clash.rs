use nn_runtime::network;

#[network {
    input x[3];
    target y[2];
    param h_weight[3];
    h = layer_norm(x) * h_weight;
    loss = mse(dense(h, 2), y);
}]
pub struct Net;

fn main() {}
