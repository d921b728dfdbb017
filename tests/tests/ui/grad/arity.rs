use nn_runtime::network;

#[network {
    input x[2]; target y[1];
    out = dense(x, 1);
    loss = mse(out, y) + sum(grad(sum(out)));
}]
struct Net;

fn main() {}
