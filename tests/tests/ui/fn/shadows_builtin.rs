use nn_runtime::network;

#[network {
    input x[2];
    target y[1];
    fn relu(z) = z * (z > 0);
    out = relu(dense(x, 1));
    loss = mse(out, y);
}]
struct Net;

fn main() {}
