use nn_runtime::network;

#[network {
    input x[2];
    target y[1];
    fn huber(a, b) = where(abs(a - b) < 1, 0.5 * square(a - b), abs(a - b) - 0.5);
    out = dense(x, 1);
    loss = sum(huber(out));
}]
struct Net;

fn main() {}
