use nn_runtime::network;

// A definition with an error, used as if it had compiled: the user sees the
// definition's error, not one error per use of a method the macro did not
// generate.
#[network {
    input x[2]; target y[1];
    out = dense(x, 1) + z;
    loss = mse(out, y);
}]
struct Net;

fn main() {
    let net = Net::new(1);
    let y: [f32; 1] = net.predict(&[0.0, 1.0]);
    let mut tape = Net::new_tape();
    let mut grads = Net::new_grads();
    let loss: f32 = net.forward(&[0.0, 1.0], &[1.0], &mut tape);
    net.backward(&tape, &mut grads);
    println!("{} {} {}", y[0], loss, Net::PARAMS);
}
