use nn_runtime::network;

#[network {
    steps 8;
    input x[t][2];
    target y[1];
    state h[4] = zeros;
    h[t] = tanh(dense(x[t], 4) + dense(h[t-1], 4));
    out = dense(h[t], 1);
    loss = mse(out, y);
}]
struct Rnn;

fn main() {}
