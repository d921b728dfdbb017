use nn_runtime::network;

#[network {
    input x[2];
    target y[1];
    param w[1, 2];
    fn layer(z) = tanh(w @ z);
    out = layer(x);
    loss = mse(out, y);
}]
struct Net;

fn main() {}
