//! XOR end to end: the 2-4-1 network learns all four points for at least 9 of 10 seeds.

use nn_runtime::prelude::*;

#[network {
    input  x[2];
    target y[1];
    h    = sigmoid(dense(x, 4));
    out  = sigmoid(dense(h, 1));
    loss = mse(out, y);
}]
pub struct Xor;

fn xor_data() -> Dataset<[f32; 2], [f32; 1]> {
    Dataset::new(
        vec![[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]],
        vec![[0.0], [1.0], [1.0], [0.0]],
    )
}

#[test]
fn xor_is_learned_for_at_least_nine_of_ten_seeds() {
    let data = xor_data();
    let mut solved = 0;
    for seed in 0..10 {
        let mut net = Xor::new(seed);
        Trainer::new(Sgd::new(2.0))
            .epochs(3000)
            .fit(&mut net, &data)
            .unwrap();
        let correct = data
            .iter()
            .filter(|(x, y)| (net.predict(x)[0] > 0.5) == (y[0] > 0.5))
            .count();
        if correct == 4 {
            solved += 1;
        }
    }
    assert!(solved >= 9, "solved {solved} of 10 seeds");
}

#[test]
fn the_summary_lists_every_parameter() {
    let net = Xor::new(1);
    let s = net.to_string();
    let expected = format!(
        "Xor (f32)\n\
parameter   shape   count\n\
h.weight    [4, 2]      8\n\
h.bias      [4]         4\n\
out.weight  [1, 4]      4\n\
out.bias    [1]         1\n\
total                  17 (68 B)\n\
per sample: forward {} FLOPs, backward {} FLOPs, tape {} B\n\
batched passes: [32, 4] samples",
        Xor::FORWARD_FLOPS,
        Xor::BACKWARD_FLOPS,
        Xor::TAPE_BYTES
    );
    assert_eq!(s, expected);
}
