use nn_runtime::network;

#[network {
    steps 100000;
    input x[t][100000]; target y[1];
    state h[1] = zeros;
    h[t] = tanh(dense(x[t], 1));
    out = h[last];
    loss = mse(out, y);
}]
struct Net;

fn main() {}
