use nn_runtime::network;

#[network {
    input x[1, 8, 4];
    target y[1];
    h = conv2d(x, 2, 3, stride = 2, dilation = 2);
    out = dense(flatten(h), 1);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
