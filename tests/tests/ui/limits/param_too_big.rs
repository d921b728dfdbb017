use nn_runtime::network;

#[network {
    input x[2]; target y[1];
    param w[4294967296, 4294967296];
    out = dense(x, 1);
    loss = mse(out, y) + sum(w);
}]
struct Net;

fn main() {}
