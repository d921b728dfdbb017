use nn_runtime::network;

#[network {
    input u[65537]; input v[65536]; target y[1];
    p = outer(u, v);
    out = dense(sum(p, 1), 1);
    loss = mse(out, y);
}]
struct Net;

fn main() {}
