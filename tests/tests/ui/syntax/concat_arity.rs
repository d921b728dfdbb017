use nn_runtime::network;

#[network {
    input x[2]; target y[1];
    h = concat(x, x, x, x, x, x, x, x, x);
    out = dense(h, 1);
    loss = mse(out, y);
}]
struct Net;

fn main() {}
