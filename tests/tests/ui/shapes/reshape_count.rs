use nn_runtime::network;

#[network {
    input x[1, 8, 8];
    target y[1];
    r = reshape(x, 8, 7);
    out = dense(flatten(r), 1);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
