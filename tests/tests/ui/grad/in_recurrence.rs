use nn_runtime::network;

#[network {
    steps 8;
    input x[t][2];
    target y[t][1];
    state h[4] = zeros;
    h[t] = tanh(dense(x[t], 4) + dense(h[t-1], 4));
    out[t] = dense(h[t], 1) + grad(sum(h[t]), x[t]);
    loss = mean_steps(mse(out[t], y[t]));
}]
struct Rnn;

fn main() {}
