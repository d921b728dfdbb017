use nn_runtime::network;

#[network {
    input x[2];
    target label[1];
    out = dense(x, 1);
    loss = mse(out, lable);
}]
pub struct Net;

fn main() {}
