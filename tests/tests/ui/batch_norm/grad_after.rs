use nn_runtime::network;

#[network {
    input x[3];
    target y[3];
    h = batch_norm(dense(x, 3));
    d = grad(sum(h * h), x);
    loss = mse(d, y);
}]
pub struct Net;

fn main() {}
