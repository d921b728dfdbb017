use nn_runtime::network;

#[network(file = "nets/bad_shape.nn")]
pub struct Net;

fn main() {}
