use nn_runtime::network;

#[network {
    input x[2]; target y[3];
    out = dense(x, 3);
    loss = mse(grad(out, x), y);
}]
struct Net;

fn main() {}
