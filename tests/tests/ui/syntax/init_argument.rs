use nn_runtime::network;

#[network {
    input x[2]; target y[1];
    out = dense(x, 1, normal(0, x));
    loss = mse(out, y);
}]
struct Net;

fn main() {}
