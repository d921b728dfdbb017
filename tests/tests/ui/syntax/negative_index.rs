use nn_runtime::network;

#[network {
    steps 4;
    input x[t][2]; target y[1];
    state h[3] = zeros;
    h[t] = tanh(dense(x[t], 3));
    out = dense(h[-1], 1);
    loss = mse(out, y);
}]
struct Net;

fn main() {}
