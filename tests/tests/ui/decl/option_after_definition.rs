use nn_runtime::network;

#[network { input x[2]; target y[1]; out = dense(x, 1); loss = mse(out, y); }]
#[network(dtype = f64)]
pub struct Net;

fn main() {}
