use nn_runtime::network;

#[network {
    input x[2];
    input z[3];
    target y[1];
    param unused[4];
    out = sigmoid(dense(x, 1));
    loss = mse(out, y);
}]
struct Net;

fn main() {}
