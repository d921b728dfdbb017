use nn_runtime::network;

#[network {
    input x[3, 4];
    target y[2];
    h = layer_norm(x);
    out = dense(mean(h, 1), 2);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
