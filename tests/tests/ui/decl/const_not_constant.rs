use nn_runtime::network;

#[network {
    input x[2];
    target y[1];
    const scale = sum(x);
    out = dense(x, 1) * scale;
    loss = mse(out, y);
}]
struct Net;

fn main() {}
