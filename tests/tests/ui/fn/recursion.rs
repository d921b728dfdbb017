use nn_runtime::network;

#[network {
    input x[2];
    target y[1];
    fn f(a) = g(a) + 1;
    fn g(b) = f(b) * 2;
    out = f(dense(x, 1));
    loss = mse(out, y);
}]
struct Net;

fn main() {}
