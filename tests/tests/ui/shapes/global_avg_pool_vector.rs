use nn_runtime::network;

#[network {
    input x[8];
    target y[1];
    g = global_avg_pool(x);
    out = dense(g, 1);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
