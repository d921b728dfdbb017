use nn_runtime::network;

#[network {
    input x[2]; target y[1]; param w[1, 2];
    out = w @ x;
    loss = mse(out, y) + sum(grad(sum(out), w));
}]
struct Net;

fn main() {}
