use nn_runtime::network;

#[network {
    steps 4;
    input x[t][3];
    target y[t][2];
    state h[8] = zeros;
    h[t] = tanh(dense(h[t-1], 8) + dense(batch_norm(x[t]), 8));
    out[t] = dense(h[t], 2);
    loss = mean_steps(mse(out[t], y[t]));
}]
pub struct Net;

fn main() {}
