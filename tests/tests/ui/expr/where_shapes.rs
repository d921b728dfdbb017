use nn_runtime::network;

#[network {
    input x[3];
    target y[2];
    out = dense(x, 2);
    loss = sum(where(out > 0, out, x));
}]
struct Net;

fn main() {}
