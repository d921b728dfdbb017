use nn_runtime::network;

// A convolution padded on both sides reads positions after t: the network
// streams nothing, so it has no `stream_state` or `stream_step` (see the
// README's "Streaming causal convolutional networks").
#[network {
    input x[1, 32]; target y[4, 32];
    h = tanh(conv1d(x, 4, 3, padding = 1));
    out = conv1d(h, 4, 2, causal);
    loss = mse(out, y);
}]
struct Net;

fn main() {
    let net = Net::new(1);
    let mut state = net.stream_state();
    let y: [f32; 4] = net.stream_step(&mut state, &[0.5]);
    println!("{}", y[0]);
}
