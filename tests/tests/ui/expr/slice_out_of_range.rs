use nn_runtime::network;

#[network {
    input x[4];
    target y[2];
    out = dense(x[2:6], 2);
    loss = mse(out, y);
}]
struct Net;

fn main() {}
