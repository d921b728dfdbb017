use nn_runtime::network;

#[network {
    input x[2];
    target y[1];
    param w[4, 2] = gaussian;
    hidden = tanh(w @ x);
    out = dense(hiden, 1);
    loss = mse(out, y);
}]
pub struct Net;

fn main() {}
