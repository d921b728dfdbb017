use nn_runtime::network;

#[network(file = "nets/ok.nn", file = "nets/bad_shape.nn")]
pub struct Net;

fn main() {}
